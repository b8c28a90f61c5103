"""Signed checkpoints of the audit chain, and their publication outside the database.

A checkpoint says "the head moved from ``prev_sequence``/``prev_hash`` to ``sequence``/``hash``", with the time,
the id of the key that signed it and an Ed25519 signature over a canonical encoding (``message``). The writer
makes exactly one per transaction that appended audit records, in that transaction (``saferails.audit.chain``
writes it just before commit when a signer is installed on the session: ``install_signer``), so every record
the writer appended lies in the range of a checkpoint signed when it was written. Whoever can write the
database but not read the private key can delete checkpoints but not make new ones: a rewritten record no longer
matches its checkpoint, a record appended behind the writer's back lies in no checkpoint's range.

``publish_checkpoints`` appends the newest checkpoint to a JSON-lines file outside the database (sweeps and
flows call it), so a deleted tail (records AND their checkpoints removed) is still caught: the published
checkpoint is beyond the head. Every read of that file is bounded (per line and in memory).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from saferails.audit.signing import AuditSigner, AuditVerifierKey
from saferails.clock import as_utc
from saferails.errors import AuditChainBroken, InvalidInput, SaferailsError
from saferails.store.tables import AuditCheckpoint

FORMAT = "saferails-audit-checkpoint"
FORMAT_VERSION = 1
SIGNER_INFO_KEY = "saferails.audit_signer"
DEFAULT_PUBLISHED_NAME = "audit-checkpoints.jsonl"
# A published line is ~450 bytes; a longer one is not ours (and a device such as /dev/zero must not be read on).
MAX_LINE_BYTES = 4096
_HEX = frozenset("0123456789abcdef")


class CheckpointFileInvalid(InvalidInput):
    """The published checkpoint file cannot be read or a line is not a checkpoint; names the file and line."""

    code = "AUDIT_CHECKPOINT_FILE_INVALID"


class CheckpointForged(AuditChainBroken):
    """A stored checkpoint does not verify with the expected key (found while publishing)."""

    code = "AUDIT_CHECKPOINT_FORGED"


class CheckpointPublishFailed(SaferailsError):
    """The published checkpoint file could not be written."""

    code = "AUDIT_CHECKPOINT_PUBLISH_FAILED"


@dataclass(frozen=True)
class Checkpoint:
    """One signed head movement. ``signature`` is base64 over ``message()``."""

    sequence: int
    hash: str
    prev_sequence: int
    prev_hash: str
    signed_at: datetime
    key_id: str
    signature: str

    def message(self) -> bytes:
        """The canonical bytes that are signed: sorted-key compact JSON, time as ISO-8601 UTC."""
        return signing_message(
            sequence=self.sequence,
            digest=self.hash,
            prev_sequence=self.prev_sequence,
            prev_hash=self.prev_hash,
            signed_at=self.signed_at,
            key_id=self.key_id,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "sequence": self.sequence,
            "hash": self.hash,
            "prev_sequence": self.prev_sequence,
            "prev_hash": self.prev_hash,
            "signed_at": as_utc(self.signed_at).isoformat(),
            "key_id": self.key_id,
            "signature": self.signature,
        }

    @classmethod
    def from_row(cls, row: Any) -> Checkpoint:
        """From an ``audit_checkpoints`` row; raises ``ValueError`` naming the bad field (verify reports it)."""
        return cls(
            sequence=_int(row.sequence, "sequence"),
            hash=str(row.hash),
            prev_sequence=_int(row.prev_sequence, "prev_sequence"),
            prev_hash=str(row.prev_hash),
            signed_at=_time(row.signed_at, stored=True),
            key_id=str(row.key_id),
            signature=str(row.signature),
        )

    @classmethod
    def from_dict(cls, data: Any) -> Checkpoint:
        """From a published line's object; raises ``ValueError`` naming the problem."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if data.get("format") != FORMAT or data.get("version") != FORMAT_VERSION:
            raise ValueError(f"not a {FORMAT} version {FORMAT_VERSION} line")
        for name in ("hash", "prev_hash", "key_id", "signature", "signed_at"):
            if not isinstance(data.get(name), str):
                raise ValueError(f"{name} must be a string")
        return cls(
            sequence=_int(data.get("sequence"), "sequence"),
            hash=data["hash"],
            prev_sequence=_int(data.get("prev_sequence"), "prev_sequence"),
            prev_hash=data["prev_hash"],
            signed_at=_time(data["signed_at"]),
            key_id=data["key_id"],
            signature=data["signature"],
        )


def default_published_path(data_dir: Path | str) -> Path:
    """Where checkpoints are published by default: ``<data_dir>/audit-checkpoints.jsonl``."""
    return Path(data_dir) / DEFAULT_PUBLISHED_NAME


def signing_message(
    *, sequence: int, digest: str, prev_sequence: int, prev_hash: str, signed_at: datetime, key_id: str
) -> bytes:
    body = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "sequence": sequence,
        "hash": digest,
        "prev_sequence": prev_sequence,
        "prev_hash": prev_hash,
        "signed_at": as_utc(signed_at).isoformat(),
        "key_id": key_id,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def sign_checkpoint(
    signer: AuditSigner, *, sequence: int, digest: str, prev_sequence: int, prev_hash: str, signed_at: datetime
) -> Checkpoint:
    """A checkpoint for the head movement ``prev`` -> ``sequence``, signed now (one Ed25519 signature)."""
    at = as_utc(signed_at).astimezone(UTC)
    message = signing_message(
        sequence=sequence,
        digest=digest,
        prev_sequence=prev_sequence,
        prev_hash=prev_hash,
        signed_at=at,
        key_id=signer.key_id,
    )
    return Checkpoint(sequence, digest, prev_sequence, prev_hash, at, signer.key_id, signer.sign(message))


def checkpoint_row(checkpoint: Checkpoint) -> AuditCheckpoint:
    return AuditCheckpoint(
        sequence=checkpoint.sequence,
        hash=checkpoint.hash,
        prev_sequence=checkpoint.prev_sequence,
        prev_hash=checkpoint.prev_hash,
        signed_at=checkpoint.signed_at,
        key_id=checkpoint.key_id,
        signature=checkpoint.signature,
    )


def install_signer(target: sessionmaker[Session] | Session, signer: AuditSigner | None) -> None:
    """Make every transaction of ``target`` (a session factory, or one session) sign a checkpoint of the audit
    records it appends. ``None`` removes the signer: appends still work and are simply not covered (verification
    with a key then reports them). The code that opens the store calls this; the append path never reads
    settings or the environment."""
    info: dict[Any, Any] = target.kw.setdefault("info", {}) if isinstance(target, sessionmaker) else target.info
    if signer is None:
        info.pop(SIGNER_INFO_KEY, None)
    else:
        info[SIGNER_INFO_KEY] = signer


def signer_of(session: Session) -> AuditSigner | None:
    """The signer installed on ``session`` (through its factory or directly), if any."""
    signer = session.info.get(SIGNER_INFO_KEY)
    return signer if isinstance(signer, AuditSigner) else None


def latest_checkpoint(session: Session) -> Checkpoint | None:
    """The checkpoint with the highest sequence in the store (not verified), or None."""
    row = session.execute(
        sa.select(AuditCheckpoint).order_by(AuditCheckpoint.sequence.desc()).limit(1)
    ).scalar_one_or_none()
    return None if row is None else Checkpoint.from_row(row)


def publish_checkpoints(
    session: Session, path: Path | str, *, key: AuditVerifierKey | None = None
) -> Checkpoint | None:
    """Append the newest stored checkpoint to the JSON-lines file ``path`` unless it is already there.

    Call it at every sweep (and from flows); it is idempotent and cheap: reads one row and the file's last line.
    The file is created 0644 (its directory as needed); each line is fsynced. Returns the checkpoint written, or
    None when there was nothing new. With ``key`` (the signer's ``verifier``: pass it whenever available) the
    checkpoint's signature is checked first, so a forged checkpoint with a huge sequence cannot be published to
    stop later real ones from being published: it raises ``CheckpointForged`` instead (an alarm for the sweep).
    Does not verify the chain (``verify_chain`` does, against this file). Raises ``CheckpointPublishFailed`` when
    the file cannot be written and ``CheckpointFileInvalid`` when its last line is not a checkpoint (the file is
    left alone: it is evidence).
    """
    newest = latest_checkpoint(session)
    if newest is None:
        return None
    if key is not None and (newest.key_id != key.key_id or not key.verify(newest.signature, newest.message())):
        raise CheckpointForged(
            f"the newest audit checkpoint ({newest.sequence}) is not signed by {key.key_id}: not published; "
            "run audit verify",
            sequence=newest.sequence,
        )
    target = Path(path)
    last = last_published(target)
    if last is not None and last.sequence >= newest.sequence:
        return None
    line = json.dumps(newest.to_dict(), sort_keys=True, separators=(",", ":")) + "\n"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise CheckpointPublishFailed(f"cannot publish audit checkpoint to {target}: {exc}", path=str(target)) from None
    return newest


def last_published(path: Path | str) -> Checkpoint | None:
    """The last checkpoint in a published file (reads at most the last ``MAX_LINE_BYTES`` bytes), None when the
    file is missing or empty."""
    target = Path(path)
    try:
        with target.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - MAX_LINE_BYTES))
            tail = handle.read(MAX_LINE_BYTES)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CheckpointFileInvalid(f"cannot read {target}: {exc}", path=str(target)) from None
    lines = tail.rstrip(b"\n").rsplit(b"\n", 1)
    if not lines[-1]:
        return None
    if len(lines) == 1 and size > len(tail):
        raise CheckpointFileInvalid(f"{target}: last line longer than {MAX_LINE_BYTES} bytes", path=str(target))
    return _parse_line(lines[-1], target, None)


def read_published(path: Path | str) -> Iterator[tuple[int, Checkpoint]]:
    """Stream ``(line number, checkpoint)`` from a published file in file order, one bounded line at a time.

    Raises ``CheckpointFileInvalid`` for an unreadable file or a line that is too long or not a checkpoint."""
    target = Path(path)
    try:
        handle = target.open("rb")
    except OSError as exc:
        raise CheckpointFileInvalid(f"cannot read {target}: {exc}", path=str(target)) from None
    with handle:
        number = 0
        while True:
            try:
                raw = handle.readline(MAX_LINE_BYTES + 1)
            except OSError as exc:
                raise CheckpointFileInvalid(f"cannot read {target}: {exc}", path=str(target)) from None
            if not raw:
                return
            number += 1
            if len(raw) > MAX_LINE_BYTES:
                raise CheckpointFileInvalid(
                    f"{target} line {number}: longer than {MAX_LINE_BYTES} bytes", path=str(target), line=number
                )
            if raw.strip():
                yield number, _parse_line(raw, target, number)


def _parse_line(raw: bytes, target: Path, number: int | None) -> Checkpoint:
    where = f"{target} line {number}" if number is not None else f"{target} last line"
    try:
        return Checkpoint.from_dict(json.loads(raw.decode("utf-8")))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise CheckpointFileInvalid(f"{where}: not an audit checkpoint ({exc})", path=str(target)) from None


def is_hex_digest(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return value


def _time(value: Any, *, stored: bool = False) -> datetime:
    """``stored``: read from the database, where SQLite keeps UTC times as text without an offset."""
    if isinstance(value, datetime):
        return as_utc(value)
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None and not stored:
            raise ValueError(f"time {value!r} has no timezone")
        return as_utc(parsed)
    raise ValueError(f"not a time: {value!r}")
