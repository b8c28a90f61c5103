"""The auto-resume sweep: a pause ends by itself when its time is up (seed 003).

Contract of ``AutoResumeSweep.run``: every agent in ``paused`` whose ``paused_until`` is at or before the clock's
now is moved back to ``active`` through the one transition function (audited ``agent_pause_expired`` by
``system:agent-auto-resume``, with the pause it ends), each in its own transaction, in ``paused_until`` order. An
agent resumed or re-paused by someone else between the query and its transaction is ``skipped`` (its row is
locked and checked again). Re-running is harmless: resumed agents are no longer due. The policy already stops
refusing a pause whose time is up, so the sweep only makes the store say what is true.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from saferails import transitions
from saferails.agents.lifecycle import PAUSED
from saferails.agents.repository import AGENT_KIND, resume
from saferails.agents.tables import Agent
from saferails.clock import Clock, as_utc
from saferails.errors import SaferailsError
from saferails.store.db import transaction
from saferails.sweeps.report import FAILED, RESOLVED, SKIPPED, SweepItem, SweepReport

SWEEP = "agent-auto-resume"
ACTOR = "system:agent-auto-resume"


class AutoResumeSweep:
    def __init__(self, sessions: sessionmaker[Session], clock: Clock, *, batch_size: int = 1000) -> None:
        self.sessions = sessions
        self.clock = clock
        self.batch_size = batch_size
        self.worker_id = f"{SWEEP}-{uuid.uuid4().hex[:12]}"

    def due(self) -> list[str]:
        now = self.clock.now()
        with transaction(self.sessions) as session:
            stmt = (sa.select(Agent.id).where(Agent.state == PAUSED, Agent.paused_until <= now)
                    .order_by(Agent.paused_until, Agent.id).limit(self.batch_size))
            return list(session.execute(stmt).scalars())

    def run(self) -> SweepReport:
        """Resume every agent whose pause has run out; one item per agent (``action_id`` holds the agent id)."""
        ids = self.due()
        report = SweepReport(SWEEP, self.worker_id, due_at_start=len(ids))
        for agent_id in ids:
            report.items.append(self._resume(agent_id))
        return report

    def _resume(self, agent_id: str) -> SweepItem:
        now = self.clock.now()
        try:
            with transaction(self.sessions) as session:
                row = transitions.lock_row(session, AGENT_KIND, agent_id)
                if row.state != PAUSED or row.paused_until is None or as_utc(row.paused_until) > now:
                    return SweepItem(agent_id, SKIPPED, state=row.state, detail="no longer due")
                resume(session, row, actor=ACTOR, now=now, reason="the pause ran out", event="agent_pause_expired")
                return SweepItem(agent_id, RESOLVED, state=row.state, detail="agent")
        except SaferailsError as exc:
            return SweepItem(agent_id, FAILED, detail=f"{exc.code}: {exc.message}")


__all__ = ["ACTOR", "SWEEP", "AutoResumeSweep"]
