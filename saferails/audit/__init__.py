"""Append-only, hash-chained audit trail."""

from saferails.audit.chain import GENESIS_HASH, AuditEntry, append, canonical_json

__all__ = ["GENESIS_HASH", "AuditEntry", "append", "canonical_json"]
