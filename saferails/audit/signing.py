"""Ed25519 keys that sign audit checkpoints.

The private key lives outside the database, in a file only its owner can read (mode 0600, in a 0700 directory),
generated on first use. The public key is written next to it (``<private>.pub``, readable by anyone) so an
auditor verifies the trail without the private key. Whoever can write the database but cannot read the private
key cannot produce a checkpoint that verifies: a rewrite, a deleted tail or an appended forgery shows up in
``verify_chain(session, key=AuditVerifierKey.from_file(...))``.

A key is named by its id, ``ed25519:`` plus the SHA-256 of the raw 32-byte public key in hex, so a checkpoint
says which key signed it and a verifier refuses one signed by a key it does not know.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from saferails.errors import ConfigurationError

# Key files are a few hundred bytes: anything larger is not a key (and /dev/zero must not be read forever).
MAX_KEY_FILE_BYTES = 64 * 1024
PUBLIC_SUFFIX = ".pub"
KEY_DIRECTORY = "keys"
PRIVATE_KEY_NAME = "audit-signing.key"


class AuditKeyInvalid(ConfigurationError):
    """An audit signing or verification key file is missing, unreadable, too open (private key readable by
    group or others) or not an Ed25519 key; the message names the file and the problem."""

    code = "AUDIT_KEY_INVALID"


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """The fingerprint that names a key: ``ed25519:<sha256 of the raw public key, hex>``."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()


def audit_key_path(data_dir: Path | str) -> Path:
    """The default private key location under a data directory: ``<data_dir>/keys/audit-signing.key`` (the
    public key is ``audit-signing.key.pub`` next to it)."""
    return Path(data_dir) / KEY_DIRECTORY / PRIVATE_KEY_NAME


def public_key_path_for(private_key_path: Path | str) -> Path:
    """Where ``AuditSigner.load_or_create`` writes the public key: the private key's path plus ``.pub``."""
    path = Path(private_key_path)
    return path.with_name(path.name + PUBLIC_SUFFIX)


def read_bounded(path: Path, limit: int) -> bytes:
    """Read at most ``limit`` bytes of ``path``; raise ``OSError`` if it holds more (a device, a huge file)."""
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise OSError(f"file is larger than {limit} bytes")
    return data


@dataclass(frozen=True)
class AuditVerifierKey:
    """A public key that verifies checkpoint signatures; holds no secret."""

    public_key: Ed25519PublicKey
    key_id: str

    @classmethod
    def from_public_key(cls, public_key: Ed25519PublicKey) -> AuditVerifierKey:
        return cls(public_key=public_key, key_id=key_id_of(public_key))

    @classmethod
    def from_file(cls, path: Path | str) -> AuditVerifierKey:
        """Load a PEM public key written by ``AuditSigner.load_or_create``. Raises ``AuditKeyInvalid``."""
        target = Path(path)
        try:
            data = read_bounded(target, MAX_KEY_FILE_BYTES)
            key = serialization.load_pem_public_key(data)
        except (OSError, ValueError) as exc:
            raise AuditKeyInvalid(f"cannot load audit public key {target}: {exc}", path=str(target)) from None
        if not isinstance(key, Ed25519PublicKey):
            raise AuditKeyInvalid(f"{target} is not an Ed25519 public key", path=str(target))
        return cls.from_public_key(key)

    def verify(self, signature: str, message: bytes) -> bool:
        """True when ``signature`` (base64) is this key's signature of ``message``; False for anything else."""
        try:
            raw = base64.b64decode(signature.encode("ascii"), validate=True)
            self.public_key.verify(raw, message)
        except (InvalidSignature, ValueError, UnicodeEncodeError):
            return False
        return True


class AuditSigner:
    """The private key that signs checkpoints. Never stored in the database; never logged."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key
        self._mac_key: bytes | None = None
        self.verifier = AuditVerifierKey.from_public_key(private_key.public_key())

    @property
    def key_id(self) -> str:
        return self.verifier.key_id

    def sign(self, message: bytes) -> str:
        """The Ed25519 signature of ``message``, base64 (~50 us)."""
        return base64.b64encode(self._private_key.sign(message)).decode("ascii")

    def entry_mac(self, message: bytes) -> str:
        """HMAC-SHA256 of ``message`` (hex) under a key derived from the private key (~2 us): how an audit record
        written unchained proves to the sequencer that a process holding this key wrote it
        (``saferails.audit.sequencer``). Only holders of the private key can make or check it."""
        if self._mac_key is None:
            raw = self._private_key.private_bytes(
                serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
            )
            self._mac_key = hashlib.sha256(b"saferails-audit-entry-mac-v1\0" + raw).digest()
        return hmac.new(self._mac_key, message, hashlib.sha256).hexdigest()

    @classmethod
    def generate(cls) -> AuditSigner:
        """A fresh key held in memory only (tests, or a caller that stores the key itself)."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load_or_create(cls, private_key_path: Path | str) -> AuditSigner:
        """Load the PEM private key at ``private_key_path``, generating it first when the file does not exist.

        A new key is written with mode 0600 (created exclusively: two processes starting at once do not
        overwrite each other's key; the loser loads the winner's), its directory created 0700, and the public key
        written to ``<path>.pub`` (0644) for auditors. An existing private key readable or writable by group or
        others is refused, as ssh does, and so is a file that is not an Ed25519 private key: both raise
        ``AuditKeyInvalid``. The public key file is rewritten when missing.
        """
        path = Path(private_key_path)
        if not path.exists():
            _create_private_key(path)
        try:
            mode = path.stat().st_mode
            if not stat.S_ISREG(mode):
                raise OSError("not a regular file")
            if mode & 0o077:
                raise AuditKeyInvalid(
                    f"audit private key {path} is accessible by group or others (mode {stat.S_IMODE(mode):04o}); "
                    "chmod 600 it",
                    path=str(path),
                )
            data = read_bounded(path, MAX_KEY_FILE_BYTES)
            key = serialization.load_pem_private_key(data, password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise AuditKeyInvalid(f"cannot load audit private key {path}: {exc}", path=str(path)) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise AuditKeyInvalid(f"{path} is not an Ed25519 private key", path=str(path))
        signer = cls(key)
        public_path = public_key_path_for(path)
        if not public_path.exists():
            _write_public_key(public_path, key.public_key())
        return signer


def _create_private_key(path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        if not path.parent.exists():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(path.parent, 0o700)  # mkdir's mode is filtered by the umask
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process created it first: load theirs
    except OSError as exc:
        raise AuditKeyInvalid(f"cannot create audit private key {path}: {exc}", path=str(path)) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise AuditKeyInvalid(f"cannot write audit private key {path}: {exc}", path=str(path)) from None
    _write_public_key(public_key_path_for(path), key.public_key())


def _write_public_key(path: Path, public_key: Ed25519PublicKey) -> None:
    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        raise AuditKeyInvalid(f"cannot write audit public key {path}: {exc}", path=str(path)) from None
