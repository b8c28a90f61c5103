"""Payments and purchases booked in the store's ledger (store-local). The default policy blocks payments and
requires a KYC-verified proposer for purchases; these handlers only run once the policy let the action through.

The ledger is append-only: rollback appends a reversing entry, so the account's balance returns to its
pre-state while the history shows both the booking and its reversal. Amounts are kept in minor units with two
decimals (amounts with more precision are refused).
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from saferails.actions.types import MakePaymentParams, MakePurchaseParams
from saferails.errors import InvalidParams
from saferails.handlers.base import (
    APPLIED,
    NOT_APPLIED,
    ExecutionOutcome,
    HandlerContext,
    Reconciliation,
    RollbackConflict,
    parse_params,
)
from saferails.org.repository import OrgRepository
from saferails.org.tables import LedgerEntry

_ENTRY_IDS = uuid.UUID("0b8e3f52-2a7d-4f0e-8d8e-9a1f6c3b2d10")


def to_minor(action_type: str, amount: Decimal) -> int:
    minor = amount * 100
    if minor != minor.to_integral_value():
        raise InvalidParams(action_type, [f"amount: {amount} has more than two decimals"])
    return int(minor)


class _LedgerHandler:
    """Book one entry against ``target`` (the account); rollback books its reversal."""

    action_type: str
    kind: str
    external = False

    def entry(self, params: dict[str, Any]) -> tuple[str, int, str, str]:
        """(counterparty, amount in minor units, currency, memo)."""
        raise NotImplementedError

    def validate(self, ctx: HandlerContext, target: str, params: dict[str, Any]) -> None:
        self.entry(params)

    def capture(self, ctx: HandlerContext, target: str, params: dict[str, Any]) -> dict[str, Any]:
        _, _, currency, _ = self.entry(params)
        return {
            "account": target,
            "currency": currency,
            "balance_minor": OrgRepository(ctx.session).balance_minor(target, currency),
        }

    def preview(
        self, ctx: HandlerContext, target: str, params: dict[str, Any], pre_state: dict[str, Any]
    ) -> dict[str, Any]:
        counterparty, minor, currency, _ = self.entry(params)
        return {
            "summary": f"{self.kind} of {minor / 100:.2f} {currency} from {target} to {counterparty}",
            "balance_minor": {"from": pre_state["balance_minor"], "to": pre_state["balance_minor"] + minor},
        }

    def execute(
        self,
        ctx: HandlerContext,
        target: str,
        params: dict[str, Any],
        pre_state: dict[str, Any],
        idempotency_key: str,
    ) -> ExecutionOutcome:
        counterparty, minor, currency, memo = self.entry(params)
        entry_id = str(uuid.uuid5(_ENTRY_IDS, idempotency_key))
        ctx.session.add(
            LedgerEntry(
                id=entry_id,
                action_id=ctx.action_id,
                kind=self.kind,
                account=target,
                counterparty=counterparty,
                amount_minor=minor,
                currency=currency,
                memo=memo,
                created_at=ctx.clock.now(),
            )
        )
        ctx.session.flush()
        return ExecutionOutcome(
            result={"entry_id": entry_id, "amount_minor": minor, "currency": currency},
            rollback_data={"entry_id": entry_id},
        )

    def reconcile(
        self,
        ctx: HandlerContext,
        target: str,
        params: dict[str, Any],
        pre_state: dict[str, Any],
        idempotency_key: str,
    ) -> Reconciliation:
        """Applied when the ledger entry this action books (its id derives from the idempotency key) exists."""
        entry_id = str(uuid.uuid5(_ENTRY_IDS, idempotency_key))
        entry = OrgRepository(ctx.session).ledger_entry(entry_id)
        if entry is None or entry.action_id != ctx.action_id:
            return Reconciliation(NOT_APPLIED, f"no ledger entry {entry_id} of this action")
        result = {"entry_id": entry_id, "amount_minor": entry.amount_minor, "currency": entry.currency}
        return Reconciliation(APPLIED, f"ledger entry {entry_id} exists", result, {"entry_id": entry_id})

    def rollback(self, ctx: HandlerContext, target: str, rollback_data: dict[str, Any]) -> dict[str, Any]:
        original = OrgRepository(ctx.session).ledger_entry(str(rollback_data["entry_id"]))
        if original is None or original.action_id != ctx.action_id:
            raise RollbackConflict(f"ledger entry {rollback_data['entry_id']} of this action is missing")
        reversal_id = str(uuid.uuid5(_ENTRY_IDS, f"reversal:{original.id}"))
        if OrgRepository(ctx.session).ledger_entry(reversal_id) is not None:
            return {"reversal_id": reversal_id, "note": "already reversed"}
        ctx.session.add(
            LedgerEntry(
                id=reversal_id,
                action_id=ctx.action_id,
                kind="reversal",
                account=original.account,
                counterparty=original.counterparty,
                amount_minor=-original.amount_minor,
                currency=original.currency,
                memo=f"reversal of {original.id}: {ctx.reason}".strip(": "),
                reverses_id=original.id,
                created_at=ctx.clock.now(),
            )
        )
        ctx.session.flush()
        return {"reversal_id": reversal_id, "amount_minor": -original.amount_minor}


class MakePaymentHandler(_LedgerHandler):
    action_type = "make_payment"
    kind = "payment"

    def entry(self, params: dict[str, Any]) -> tuple[str, int, str, str]:
        p = parse_params(self.action_type, MakePaymentParams, params)
        return p.payee, to_minor(self.action_type, p.amount), p.currency, p.memo


class MakePurchaseHandler(_LedgerHandler):
    """Books ``max_total`` (the most the purchase may cost) against the account."""

    action_type = "make_purchase"
    kind = "purchase"

    def entry(self, params: dict[str, Any]) -> tuple[str, int, str, str]:
        p = parse_params(self.action_type, MakePurchaseParams, params)
        return p.vendor, to_minor(self.action_type, p.max_total), p.currency, f"{p.quantity} x {p.item}"
