"""Anchors: the chain head written outside the database.

Whoever can write the database can delete the newest audit records and rewrite ``audit_head`` to match, or
recompute the whole tail; the chain then verifies on its own. An anchor (sequence and hash of the head at some
moment) kept where that person cannot write (another machine, a ticket, a WORM bucket, a printed report) turns
either into a failed verification: ``verify_chain(session, anchor=load_anchor(path))``.

The file is small JSON::

    {"exported_at": "2026-11-22T09:00:00+00:00", "format": "saferails-audit-anchor",
     "hash": "<64 hex>", "sequence": 42, "version": 1}
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.orm import Session

from saferails.audit.chain import GENESIS_HASH, canonical_json, read_head
from saferails.audit.checkpoints import Checkpoint, checkpoint_row, latest_checkpoint, sign_checkpoint
from saferails.audit.signing import AuditSigner, read_bounded
from saferails.audit.verify import require_intact, verify_chain
from saferails.clock import as_utc
from saferails.errors import AuditChainBroken, InvalidInput, SaferailsError

FORMAT = "saferails-audit-anchor"
FORMAT_VERSION = 1
# An anchor is ~150 bytes; reading stops here so a device or a huge file (``--anchor /dev/zero``) is refused.
MAX_ANCHOR_BYTES = 1024 * 1024


class AnchorInvalid(InvalidInput):
    """An anchor file cannot be read or is not a well-formed anchor; the message names the file and the problem."""

    code = "ANCHOR_INVALID"


class AnchorWriteFailed(SaferailsError):
    """The anchor file could not be written (directory missing permissions, disk full, ...)."""

    code = "ANCHOR_WRITE_FAILED"


@dataclass(frozen=True)
class Anchor:
    """The chain head at one moment: record ``sequence`` had ``hash``. ``sequence == 0`` anchors the empty chain
    (hash = ``GENESIS_HASH``). ``exported_at`` is None for an anchor taken in memory and never exported."""

    sequence: int
    hash: str
    exported_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "sequence": self.sequence,
            "hash": self.hash,
            "exported_at": None if self.exported_at is None else as_utc(self.exported_at).isoformat(),
        }


class _AnchorFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    format: Literal["saferails-audit-anchor"]
    version: Literal[1]
    sequence: int = Field(ge=0)
    hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    exported_at: AwareDatetime


def current_head(session: Session, now: datetime | None = None) -> Anchor:
    """The head as the ``audit_head`` row states it, stamped ``now``. Does not verify the chain."""
    sequence, digest = read_head(session)
    return Anchor(sequence=sequence, hash=digest, exported_at=None if now is None else as_utc(now))


def export_anchor(session: Session, path: Path | str, now: datetime) -> Anchor:
    """Verify the chain, then write its head to ``path`` atomically (temp file, fsync, rename) and return it.

    If ``path`` already holds an anchor the chain is verified against it first, so an export never replaces the
    evidence of a truncation or rewrite with a fresh anchor of the damaged chain. Raises ``AuditChainBroken``
    (nothing written), ``AnchorInvalid`` (the existing file is malformed: it is left alone) or
    ``AnchorWriteFailed``. Reads the whole chain: O(records), constant memory.
    """
    target = Path(path)
    previous = load_anchor(target) if target.exists() else None
    report = require_intact(session, anchor=previous)
    anchor = Anchor(sequence=report.head_sequence, hash=report.head_hash, exported_at=as_utc(now))
    _write_atomically(target, canonical_json(anchor.to_dict()) + "\n")
    return anchor


def load_anchor(path: Path | str) -> Anchor:
    """Read an anchor file written by ``export_anchor`` (at most ``MAX_ANCHOR_BYTES``). Raises ``AnchorInvalid``
    naming the problem."""
    target = Path(path)
    try:
        text = read_bounded(target, MAX_ANCHOR_BYTES).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AnchorInvalid(f"cannot read anchor file {target}: {exc}", path=str(target)) from None
    try:
        data = _AnchorFile.model_validate_json(text)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()]
        raise AnchorInvalid(
            f"{target} is not a saferails audit anchor: {'; '.join(problems)}", path=str(target), problems=problems
        ) from None
    return Anchor(sequence=data.sequence, hash=data.hash, exported_at=as_utc(data.exported_at))


def _write_atomically(target: Path, text: str) -> None:
    """Readers see the old file or the new one, never a torn write; a crash leaves at most a stray temp file."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        _fsync_directory(target.parent)
    except OSError as exc:
        raise AnchorWriteFailed(f"cannot write anchor file {target}: {exc}", path=str(target)) from None


def _fsync_directory(directory: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sign_unsigned_records(session: Session, signer: AuditSigner, now: datetime) -> Checkpoint | None:
    """Sign a checkpoint covering the records after the newest stored checkpoint, after verifying the chain.

    For records appended while no signer was installed (a store created before signed checkpoints, a process
    opened without the key): with a key, ``verify_chain`` reports them as not covered until an operator who has
    checked them runs this (the integrator's ``audit sign-head``). Verifies the chain first (hashes, links, head
    and every existing checkpoint with ``signer``'s public key, uncovered records excepted) and raises
    ``AuditChainBroken`` without writing when anything else is wrong. Writes inside the caller's transaction
    (never commits); returns the checkpoint written, or None when every record is already covered.
    """
    from saferails.audit.chain import _head_lock

    report = verify_chain(session, key=signer.verifier)
    newest = latest_checkpoint(session)
    prev_sequence, prev_hash = (0, GENESIS_HASH) if newest is None else (newest.sequence, newest.hash)
    # Only a trailing run of unsigned records after the newest checkpoint may be signed; a gap between
    # checkpoints (a record slipped under a later real append) stays a finding.
    trailing = (
        not report.ok
        and report.problem is not None
        and "not covered by a signed checkpoint" in report.problem
        and report.signed_through == prev_sequence
        and report.first_broken_sequence == prev_sequence + 1
    )
    if not report.ok and not trailing:
        raise AuditChainBroken(
            f"audit chain broken at record {report.first_broken_sequence}: {report.problem}",
            report=report.to_dict(),
        )
    lock = _head_lock(session)
    if lock.head.sequence <= prev_sequence:
        return None
    checkpoint = sign_checkpoint(
        signer,
        sequence=lock.head.sequence,
        digest=lock.head.hash,
        prev_sequence=prev_sequence,
        prev_hash=prev_hash,
        signed_at=now,
    )
    session.add(checkpoint_row(checkpoint))
    lock.checkpointed_sequence, lock.checkpointed_hash = checkpoint.sequence, checkpoint.hash
    return checkpoint
