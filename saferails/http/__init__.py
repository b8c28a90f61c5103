"""The HTTP API (FastAPI): a thin edge over the same services as the CLI. Never imports Prefect."""

from saferails.http.app import create_app
from saferails.http.auth import Authenticator, Principal, require
from saferails.http.links import ApprovalLinks, LinkClaims

__all__ = ["ApprovalLinks", "Authenticator", "LinkClaims", "Principal", "create_app", "require"]
