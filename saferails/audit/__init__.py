"""Append-only, hash-chained audit trail: append (``chain``), verify (``verify``), anchor the head outside the
database (``anchor``) and read it back (``query``)."""

from saferails.audit.anchor import Anchor, AnchorInvalid, AnchorWriteFailed, current_head, export_anchor, load_anchor
from saferails.audit.chain import GENESIS_HASH, AuditEntry, append, canonical_json
from saferails.audit.query import AuditPage, AuditQuery, AuditQueryInvalid, AuditRecordView, query_audit
from saferails.audit.verify import VerifyReport, require_intact, verify_chain

__all__ = [
    "GENESIS_HASH",
    "Anchor",
    "AnchorInvalid",
    "AnchorWriteFailed",
    "AuditEntry",
    "AuditPage",
    "AuditQuery",
    "AuditQueryInvalid",
    "AuditRecordView",
    "VerifyReport",
    "append",
    "canonical_json",
    "current_head",
    "export_anchor",
    "load_anchor",
    "query_audit",
    "require_intact",
    "verify_chain",
]
