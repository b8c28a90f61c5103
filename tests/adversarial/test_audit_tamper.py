"""Tamper campaign: someone with full write access to the database (triggers bypassed) but without the private
signing key tampers in every way ``bench.audit_tamper`` knows; ``verify_chain`` with only the public key and the
published checkpoint file must detect every case and name a record at or before the first one touched. The
campaign lives in ``bench/audit_tamper.py`` so ``make bench`` prints its counts too.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bench.audit_tamper import (
    CASES,
    LOG,
    Ctx,
    _bypass_guards,
    _verify,
    build_signed_chain,
    campaign_counts,
    rewrite_the_tail_consistently,
    tamper_campaign,
)
from saferails import audit
from saferails.audit.signing import AuditSigner
from saferails.audit.verify import verify_chain
from saferails.clock import ManualClock


def test_every_tampering_is_detected_with_the_public_key_alone(db: Any, clock: ManualClock, tmp_path: Path) -> None:
    signer = AuditSigner.generate()
    published = tmp_path / audit.DEFAULT_PUBLISHED_NAME
    build_signed_chain(db.sessions, clock, signer, published)
    with db.engine.connect() as conn:
        assert _verify(conn, signer, published).ok  # the untouched chain verifies: detections are real

    outcomes = tamper_campaign(db.engine, signer, published, rounds=4, seed=20261129)

    counts = campaign_counts(outcomes)
    print(f"\naudit tamper campaign on {db.backend}:")
    for name, c in counts.items():
        print(f"  {name:45s} {c['detected']:3d}/{c['attempts']:3d} detected")
    assert {n: c for n, c in counts.items() if c["detected"] != c["attempts"]} == {}
    assert {n: o.misnamed for n, o in outcomes.items() if o.misnamed} == {}
    assert counts["total"]["attempts"] == 4 * len(CASES)
    with db.engine.connect() as conn:
        assert _verify(conn, signer, published).ok  # every case was rolled back


def test_a_rewrite_without_the_checkpoints_would_go_unnoticed(db: Any, clock: ManualClock, tmp_path: Path) -> None:
    """The control: the unkeyed checks alone miss a consistent rewrite, so the signatures are what catch it."""
    signer = AuditSigner.generate()
    published = tmp_path / audit.DEFAULT_PUBLISHED_NAME
    build_signed_chain(db.sessions, clock, signer, published)
    with db.engine.connect() as conn, conn.begin() as trans:
        _bypass_guards(conn)
        ctx = Ctx(conn, random.Random(7), signer, [dict(r._mapping) for r in conn.execute(sa.select(LOG))], [])
        ctx.records.sort(key=lambda r: r["sequence"])
        k = rewrite_the_tail_consistently(ctx)
        session = Session(bind=conn)
        unkeyed, keyed = verify_chain(session), verify_chain(session, key=signer.verifier)
        session.close()
        trans.rollback()

    assert unkeyed.ok
    assert not keyed.ok and keyed.first_broken_sequence is not None and keyed.first_broken_sequence <= k
