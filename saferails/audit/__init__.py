"""Append-only, hash-chained audit trail: append (``chain``), sign a checkpoint per appending transaction with a
key kept outside the database (``signing``, ``checkpoints``), publish checkpoints outside the database, verify
(``verify``), chain records written unchained by concurrent writers (``sequencer``), anchor the head by hand
(``anchor``) and read it back (``query``)."""

from saferails.audit.anchor import (
    Anchor,
    AnchorInvalid,
    AnchorWriteFailed,
    current_head,
    export_anchor,
    load_anchor,
    sign_unsigned_records,
)
from saferails.audit.chain import (
    GENESIS_HASH,
    Appended,
    AuditEntry,
    append,
    append_many,
    canonical_json,
    deferred,
    install_sequencer,
)
from saferails.audit.checkpoints import (
    DEFAULT_PUBLISHED_NAME,
    Checkpoint,
    CheckpointFileInvalid,
    CheckpointForged,
    CheckpointPublishFailed,
    default_published_path,
    install_signer,
    publish_checkpoints,
)
from saferails.audit.query import AuditPage, AuditQuery, AuditQueryInvalid, AuditRecordView, query_audit
from saferails.audit.sequencer import Sequenced, sequence_pending
from saferails.audit.signing import AuditKeyInvalid, AuditSigner, AuditVerifierKey, audit_key_path
from saferails.audit.verify import VerifyReport, require_intact, verify_chain

__all__ = [
    "DEFAULT_PUBLISHED_NAME",
    "GENESIS_HASH",
    "Anchor",
    "AnchorInvalid",
    "AnchorWriteFailed",
    "Appended",
    "AuditEntry",
    "AuditKeyInvalid",
    "AuditPage",
    "AuditQuery",
    "AuditQueryInvalid",
    "AuditRecordView",
    "AuditSigner",
    "AuditVerifierKey",
    "Checkpoint",
    "CheckpointFileInvalid",
    "CheckpointForged",
    "CheckpointPublishFailed",
    "Sequenced",
    "VerifyReport",
    "append",
    "append_many",
    "audit_key_path",
    "canonical_json",
    "current_head",
    "default_published_path",
    "deferred",
    "export_anchor",
    "install_sequencer",
    "install_signer",
    "load_anchor",
    "publish_checkpoints",
    "query_audit",
    "require_intact",
    "sequence_pending",
    "sign_unsigned_records",
    "verify_chain",
]
