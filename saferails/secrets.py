"""Secrets kept in files outside the database, readable by their owner only.

The approval-code signing key must not live in the store: whoever can read the database (a backup, a reporting
role, the agent's own connection) could otherwise mint codes. When no key is configured, one is generated on
first use and kept in a mode-0600 file inside a mode-0700 directory (by default
``<data_dir>/keys/approval-secret``). A file that group or others could read or write is refused, never
"fixed": someone may already have read it.

The same helpers create the other private files (per-approver inboxes, the local credentials file).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from saferails.errors import ConfigurationError, SecretFileInsecure
from saferails.settings import MIN_SECRET_BYTES

__all__ = [
    "APPROVAL_SECRET_FILE",
    "approval_secret_path",
    "check_private_file",
    "ensure_private_dir",
    "load_or_create_secret",
    "open_private_append",
    "write_private_file",
]

APPROVAL_SECRET_FILE = Path("keys") / "approval-secret"
_GROUP_OTHER = 0o077


def approval_secret_path(data_dir: Path) -> Path:
    """Where the generated approval secret lives for a data directory: ``<data_dir>/keys/approval-secret``."""
    return Path(data_dir) / APPROVAL_SECRET_FILE


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if missing; ``path`` itself ends up mode 0700.

    An existing directory that group or others can access is tightened to 0700 only if we own it; otherwise
    ``SecretFileInsecure`` is raised.
    """
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode):
        raise SecretFileInsecure(f"{path} is not a directory", path=str(path))
    if info.st_mode & _GROUP_OTHER:
        if info.st_uid != os.getuid():
            raise SecretFileInsecure(f"{path} is accessible to group/others and not ours to fix", path=str(path))
        # A directory we created moments ago under a permissive umask, or one of ours left open: the files in
        # it are checked one by one, so tightening the directory cannot hide an exposure.
        os.chmod(path, 0o700)
    return path


def check_private_file(path: Path) -> None:
    """Raise ``SecretFileInsecure`` unless ``path`` is a regular file (not a symlink), owned by this user,
    with no permission bits for group or others."""
    info = Path(path).lstat()
    if not stat.S_ISREG(info.st_mode):
        raise SecretFileInsecure(f"{path} is not a regular file", path=str(path))
    if info.st_uid != os.getuid():
        raise SecretFileInsecure(f"{path} belongs to another user (uid {info.st_uid})", path=str(path))
    if info.st_mode & _GROUP_OTHER:
        raise SecretFileInsecure(
            f"{path} has mode {stat.S_IMODE(info.st_mode):04o}; it must be readable by its owner only "
            f"(chmod 600 {path}, then consider the secret leaked and replace it)",
            path=str(path),
            mode=f"{stat.S_IMODE(info.st_mode):04o}",
        )


def write_private_file(path: Path, data: bytes, *, replace: bool = True) -> None:
    """Write ``data`` to ``path`` as a mode-0600 file in a 0700 directory, atomically (a reader sees the old
    content or the new, never half). With ``replace=False`` an existing file is left alone and
    ``FileExistsError`` is raised."""
    path = Path(path)
    ensure_private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if another process created it first
    finally:
        tmp.unlink(missing_ok=True)


def open_private_append(path: Path) -> int:
    """A file descriptor for appending to ``path``, created mode 0600 (dir 0700) if missing; an existing file
    must pass ``check_private_file``. The caller closes it."""
    path = Path(path)
    ensure_private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        check_private_file(path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def load_or_create_secret(path: Path) -> bytes:
    """The secret kept in ``path``, generated (384 random bits, URL-safe text) when the file does not exist.

    Safe when several processes start at once: exactly one file wins and everyone reads it. Raises
    ``SecretFileInsecure`` if the file (or its directory) is open to group/others, and ``ConfigurationError``
    if it holds fewer than 32 bytes.
    """
    path = Path(path)
    if not path.exists():
        # FileExistsError: another process generated it first; read theirs.
        with contextlib.suppress(FileExistsError):
            write_private_file(path, secrets.token_urlsafe(48).encode("ascii"), replace=False)
    ensure_private_dir(path.parent)
    check_private_file(path)
    secret = path.read_bytes().strip()
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigurationError(
            f"the secret in {path} is shorter than {MIN_SECRET_BYTES} bytes", path=str(path), min_bytes=MIN_SECRET_BYTES
        )
    return secret
