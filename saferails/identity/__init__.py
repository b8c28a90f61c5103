"""Identity: principals with roles and tenants, hashed expiring credentials, and the permission check.

See ``service`` (IdentityService), ``roles`` (Role, Permission, Principal, require) and ``credentials_file``
(the local 0600 credentials file and the token resolution order).
"""

from saferails.identity.credentials_file import credentials_path, read_token, resolve_token, save_credential
from saferails.identity.roles import ROLE_PERMISSIONS, Permission, Principal, Role, parse_roles, require
from saferails.identity.service import (
    DEFAULT_CREDENTIAL_LIFETIME,
    TOKEN_PREFIX,
    CredentialInfo,
    IdentityService,
    IssuedCredential,
)
from saferails.identity.tables import Credential

__all__ = [
    "DEFAULT_CREDENTIAL_LIFETIME",
    "ROLE_PERMISSIONS",
    "TOKEN_PREFIX",
    "Credential",
    "CredentialInfo",
    "IdentityService",
    "IssuedCredential",
    "Permission",
    "Principal",
    "Role",
    "credentials_path",
    "parse_roles",
    "read_token",
    "require",
    "resolve_token",
    "save_credential",
]
