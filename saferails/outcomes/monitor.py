"""The outcome monitor: capture a baseline after execution, decide when due, roll back negative outcomes.

Scheduling is a sweep (:meth:`OutcomeMonitor.schedule`), not an executor hook: it finds completed actions of
monitored types that have no outcome check yet and creates one, so the executor knows nothing of monitoring.
The baseline is the metrics of the target and its closest neighbours over the rule's window ending at midnight
UTC of the execution day: strictly before the change, and the same window (one shared snapshot) for every action
executed that day, however late the sweep runs. The check is due ``delay`` after execution.

:meth:`OutcomeMonitor.run_due` claims due checks (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; on SQLite the claim
runs under ``BEGIN IMMEDIATE``, which holds the writer lock), so two monitors never take the same check; a claim
expires after ``claim_ttl`` so a crashed worker's checks are taken again. Current metrics come from one snapshot
per window length (the window ending at the current whole hour), shared by every check of the sweep; so are the
``did`` judge's reads (``series.SweepSeries``). Decisions are committed ``decide_batch`` checks per transaction.
A negative outcome is audited ``negative_outcome_detected`` on the action, then rolled back through
``ExecutionService.rollback`` (which audits itself); otherwise ``outcome_ok``. A re-run after a crash does not
audit a detection twice and does not roll back an action that is no longer completed. Every decision records
the algorithm, library versions, parameters and snapshot hashes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from saferails import transitions
from saferails.actions import lifecycle as lc
from saferails.actions.service import ACTION_KIND, ENTITY
from saferails.approvals.codes import ApprovalCodes
from saferails.clock import Clock, as_utc
from saferails.errors import ApprovalError, OutcomeCheckNotInconclusive, SaferailsError
from saferails.notify.base import Notification, NotificationFailed, Notifier, Recipient
from saferails.orggraph.metrics import MetricParams, Window
from saferails.orggraph.snapshots import Snapshot, SnapshotCache, default_cache
from saferails.orggraph.tables import OutcomeCheck
from saferails.outcomes.judges import DiDJudge, Judgement, RuleSpec
from saferails.outcomes.rules import METRICS, Finding, RuleBook, TypeRules, default_rulebook
from saferails.outcomes.series import SweepSeries, series_for
from saferails.store.db import transaction
from saferails.store.tables import Action, Principal

ACTOR = "system:outcome-monitor"
SCHEDULE_BATCH = 200  # checks created per transaction by ``schedule``
DECIDE_BATCH = 100  # checks decided per transaction by ``run_due``
# A check to create: action id, action type, target, due at, baseline.
_NewCheck = tuple[str, str, str, datetime, dict[str, Any]]
Progress = Callable[[int, int], None]


def _reason(negative: list[Finding], judgement: Judgement | None) -> str:
    if judgement is not None:
        return "negative outcome (did): " + "; ".join(
            f"{m.rule} ({m.metric} {m.effect:+.0%} net of controls, "
            f"interval {m.interval[0]:+.0%}..{m.interval[1]:+.0%})"
            for m in judgement.metrics if m.verdict == "negative" and m.effect is not None and m.interval is not None)
    return "negative outcome: " + "; ".join(
        f"{f.rule} ({f.metric} {f.before:.3g} -> {f.after:.3g}, {f.change:+.0%})" for f in negative
        if f.before is not None and f.after is not None and f.change is not None)


class Rollbacker(Protocol):
    def rollback(self, action_id: str, actor: str, *, reason: str) -> Any: ...


def floor_day(when: datetime) -> datetime:
    return as_utc(when).replace(hour=0, minute=0, second=0, microsecond=0)


def floor_hour(when: datetime) -> datetime:
    return as_utc(when).replace(minute=0, second=0, microsecond=0)


def _metrics(snapshot: Snapshot, person: str) -> dict[str, Any]:
    values = snapshot.metrics(person)
    return {name: values.get(name) for name in METRICS}


def _capture(snapshot: Snapshot, target: str, neighbours: list[str]) -> dict[str, Any]:
    return {
        "snapshot_hash": snapshot.hash,
        "window": snapshot.header["window"],
        "target": _metrics(snapshot, target),
        "neighbours": {person: _metrics(snapshot, person) for person in neighbours},
    }


@dataclass(frozen=True)
class CheckView:
    id: str
    action_id: str
    action_type: str
    target: str
    state: str
    due_at: datetime
    baseline: dict[str, Any]
    result: dict[str, Any] | None
    claimed_by: str | None
    decided_at: datetime | None
    algorithm: str | None
    library_versions: dict[str, Any] | None
    params: dict[str, Any] | None
    snapshot_hash: str | None

    @classmethod
    def from_row(cls, row: OutcomeCheck) -> CheckView:
        return cls(row.id, row.action_id, row.action_type, row.target, row.state, as_utc(row.due_at),
                   dict(row.baseline), None if row.result is None else dict(row.result), row.claimed_by,
                   None if row.decided_at is None else as_utc(row.decided_at), row.algorithm,
                   row.library_versions, row.params, row.snapshot_hash)


@dataclass(frozen=True)
class CheckOutcome:
    """One decided check: ``state`` ok | negative | inconclusive | error, with what was compared."""

    check_id: str
    action_id: str
    action_type: str
    target: str
    state: str
    findings: list[dict[str, Any]]
    before: dict[str, Any]
    after: dict[str, Any]
    rollback_state: str | None = None
    note: str = ""
    judgement: dict[str, Any] | None = None  # the did judge's record (method, controls, weekly series), if any


@dataclass(frozen=True)
class _Judged:
    """A check decided inside a transaction: ``early`` is the outcome of an ok or inconclusive check (with the
    ``notes`` to send after the commit); None means negative, to roll back after the commit."""

    check_id: str
    early: CheckOutcome | None
    notes: list[Notification]
    view: tuple[str, str, str, str]  # check id, action id, action type, target
    found: list[dict[str, Any]]
    before: dict[str, Any]
    after: dict[str, Any]
    result: dict[str, Any]
    action_state: str
    reason: str


@dataclass
class MonitorReport:
    worker_id: str
    claimed: int = 0
    outcomes: list[CheckOutcome] = field(default_factory=list)
    lost: int = 0  # claims another worker took over (ours had expired)
    snapshots: dict[str, str] = field(default_factory=dict)  # window length -> snapshot hash
    # Wall seconds: getting the current snapshots (read, compute or load), the did judge's shared reads
    # (employees, due targets, weekly panels), and everything else (per-check judging and writing).
    timings: dict[str, float] = field(default_factory=dict)

    def count(self, state: str) -> int:
        return sum(1 for o in self.outcomes if o.state == state)

    def as_dict(self) -> dict[str, Any]:
        return {"worker_id": self.worker_id, "claimed": self.claimed, "lost": self.lost,
                "ok": self.count("ok"), "negative": self.count("negative"), "error": self.count("error"),
                "inconclusive": self.count("inconclusive"),
                "snapshots": dict(self.snapshots), "outcomes": [asdict(o) for o in self.outcomes]}


class OutcomeMonitor:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        execution_service: Rollbacker,
        rules: RuleBook | None = None,
        *,
        cache: SnapshotCache | None = None,
        params: MetricParams | None = None,
        claim_ttl: timedelta = timedelta(minutes=30),
        codes: ApprovalCodes | None = None,
        notifier: Notifier | None = None,
        decide_within: timedelta = timedelta(days=7),
        decide_batch: int = DECIDE_BATCH,
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        self.execution = execution_service
        self.rules = rules or default_rulebook()
        self.cache = cache or default_cache()
        self.params = params or MetricParams()
        self.claim_ttl = claim_ttl
        # With ``codes``, an inconclusive check issues one-time codes to the people who may decide
        # (``outcome_deciders``), sent through ``notifier``, valid ``decide_within``; resolving then requires one.
        self.codes = codes
        self.notifier = notifier
        self.decide_within = decide_within
        self.decide_batch = max(1, decide_batch)  # checks decided per transaction by ``run_due``

    # --- scheduling -------------------------------------------------------------------------------------------
    def schedule(self, *, limit: int = 1000, progress: Progress | None = None) -> int:
        """Create the outcome check (with its baseline) of up to ``limit`` completed, monitored actions that have
        none; returns how many were created. Idempotent and safe to run concurrently (one check per action)."""
        types = self.rules.monitored_types
        if not types:
            return 0
        unchecked = ~sa.exists().where(OutcomeCheck.action_id == Action.id)
        stmt = (sa.select(Action.id, Action.action_type, Action.target, Action.executed_at, Action.finished_at)
                .where(Action.state == lc.COMPLETED, Action.action_type.in_(types), unchecked)
                .order_by(Action.finished_at, Action.id).limit(limit))
        with transaction(self.sessions) as session:
            candidates = session.execute(stmt).all()
        created = 0
        snapshots: dict[Window, Snapshot] = {}
        batch: list[_NewCheck] = []
        for done, (action_id, action_type, target, executed_at, finished_at) in enumerate(candidates, start=1):
            rules = self.rules.for_type(action_type)
            assert rules is not None  # selected by monitored type
            executed = as_utc(executed_at or finished_at or self.clock.now())
            window = Window.ending(floor_day(executed), rules.window)
            if window not in snapshots:  # reading and hashing a window is not free: once per sweep
                snapshots[window] = self.cache.get(self.sessions, window, self.params, self.clock.now())
            snapshot = snapshots[window]
            neighbours = list(snapshot.metrics(target)["neighbours"])
            batch.append((action_id, action_type, target, executed + rules.delay,
                          _capture(snapshot, target, neighbours)))
            if len(batch) >= SCHEDULE_BATCH or done == len(candidates):
                created += self._create_checks(batch)
                batch = []
            if progress is not None:
                progress(done, len(candidates))
        return created

    def _create_checks(self, batch: list[_NewCheck]) -> int:
        """Create ``batch``'s checks in one transaction (one commit, one pass over the audit chain head); if
        any of them fails, each is tried on its own, so one bad item costs only itself."""
        try:
            with transaction(self.sessions) as session:
                return sum(self._create_check(session, *item) for item in batch)
        except (SaferailsError, SQLAlchemyError):
            if len(batch) == 1:
                raise
        created = 0
        for item in batch:
            try:
                with transaction(self.sessions) as session:
                    created += self._create_check(session, *item)
            except (SaferailsError, SQLAlchemyError):
                continue  # that action stays unchecked; the next sweep tries it again (scheduling is idempotent)
        return created

    def _create_check(self, session: Session, action_id: str, action_type: str, target: str, due_at: datetime,
                      baseline: dict[str, Any]) -> int:
        now = self.clock.now()
        insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
        inserted = session.execute(insert(OutcomeCheck).values(
            id=str(uuid.uuid4()), action_id=action_id, action_type=action_type, target=target, due_at=due_at,
            state="pending", baseline=baseline, baseline_snapshot_hash=baseline["snapshot_hash"], attempts=0,
            created_at=now).on_conflict_do_nothing(index_elements=["action_id"]).returning(OutcomeCheck.id))
        if inserted.first() is None:
            return 0
        row = transitions.lock_row(session, ACTION_KIND, action_id)
        transitions.record_event(session, ENTITY, row, actor=ACTOR, event="outcome_check_scheduled", now=now,
                                 details={"due_at": due_at.isoformat(),
                                          "baseline_snapshot": baseline["snapshot_hash"]})
        return 1

    # --- queries ----------------------------------------------------------------------------------------------
    def due(self, *, limit: int = 100) -> list[CheckView]:
        """Checks a run now would take (due pending ones and expired claims), earliest first."""
        with transaction(self.sessions) as session:
            rows = session.execute(self._due_query(self.clock.now(), limit)).scalars().all()
            return [CheckView.from_row(r) for r in rows]

    def check_for(self, action_id: str) -> CheckView | None:
        with transaction(self.sessions) as session:
            row = session.execute(sa.select(OutcomeCheck).where(OutcomeCheck.action_id == action_id)).scalar()
            return None if row is None else CheckView.from_row(row)

    @staticmethod
    def _due_query(now: datetime, limit: int) -> sa.Select[Any]:
        due = sa.or_(sa.and_(OutcomeCheck.state == "pending", OutcomeCheck.due_at <= now),
                     sa.and_(OutcomeCheck.state == "claimed", OutcomeCheck.claimed_until < now))
        return sa.select(OutcomeCheck).where(due).order_by(OutcomeCheck.due_at, OutcomeCheck.id).limit(max(1, limit))

    # --- the sweep --------------------------------------------------------------------------------------------
    def run_due(self, *, worker_id: str, limit: int = 100, progress: Progress | None = None) -> MonitorReport:
        """Claim and decide up to ``limit`` due checks (see the module docstring); ``progress(done, total)``
        is called after each check. Decisions are written ``decide_batch`` per transaction (one commit, one pass
        over the audit chain head); if a batch fails, its checks are decided one transaction each, so a bad
        check costs only itself and raises as it would alone. A negative check's rollback follows its batch's
        commit (the detection is recorded first, as for a single check)."""
        report = MonitorReport(worker_id)
        claimed = self._claim(worker_id, limit)
        report.claimed = len(claimed)
        snapshots: dict[timedelta, Snapshot] = {}
        shared = SweepSeries()  # the did judge's reads, once per sweep
        now = self.clock.now()
        batch: list[tuple[str, TypeRules]] = []
        started, snapshot_seconds = time.perf_counter(), 0.0

        def record(outcome: CheckOutcome | None) -> None:
            if outcome is None:
                report.lost += 1
            else:
                report.outcomes.append(outcome)
            if progress is not None:
                progress(report.lost + len(report.outcomes), len(claimed))

        def flush() -> None:
            for outcome in self._decide_batch(batch, worker_id, snapshots, shared):
                record(outcome)
            batch.clear()

        for check_id, action_type in claimed:
            rules = self.rules.for_type(action_type)
            if rules is None:
                flush()
                record(self._close(check_id, worker_id, "error", f"{action_type!r} is no longer monitored"))
                continue
            if rules.window not in snapshots:
                began = time.perf_counter()
                snapshots[rules.window] = self.cache.get(
                    self.sessions, Window.ending(floor_hour(now), rules.window), self.params, now)
                report.snapshots[str(rules.window)] = snapshots[rules.window].hash
                snapshot_seconds += time.perf_counter() - began
            batch.append((check_id, rules))
            if len(batch) >= self.decide_batch:
                flush()
        flush()
        total = time.perf_counter() - started
        report.timings = {"snapshots": snapshot_seconds, "series_reads": shared.read_seconds,
                          "checks": total - snapshot_seconds - shared.read_seconds}
        return report

    def _decide_batch(self, batch: list[tuple[str, TypeRules]], worker_id: str,
                      snapshots: dict[timedelta, Snapshot], shared: SweepSeries) -> list[CheckOutcome | None]:
        if not batch:
            return []
        try:
            with transaction(self.sessions) as session:
                steps = [self._judge_check(session, check_id, worker_id, rules, snapshots[rules.window], shared)
                         for check_id, rules in batch]
        except Exception:
            if len(batch) == 1:
                raise
        else:
            return [self._finish(step, worker_id) for step in steps]
        outcomes = []
        for check_id, rules in batch:  # one at a time: the failing check raises, those before it are decided
            with transaction(self.sessions) as session:
                step = self._judge_check(session, check_id, worker_id, rules, snapshots[rules.window], shared)
            outcomes.append(self._finish(step, worker_id))
        return outcomes

    def _claim(self, worker_id: str, limit: int) -> list[tuple[str, str]]:
        now = self.clock.now()
        with transaction(self.sessions) as session:
            stmt = self._due_query(now, limit).with_only_columns(OutcomeCheck.id, OutcomeCheck.action_type)
            if session.get_bind().dialect.name == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True)
            claimed = [(str(i), str(t)) for i, t in session.execute(stmt).all()]
            if claimed:
                session.execute(sa.update(OutcomeCheck).where(OutcomeCheck.id.in_([i for i, _ in claimed])).values(
                    state="claimed", claimed_by=worker_id, claimed_until=now + self.claim_ttl,
                    attempts=OutcomeCheck.attempts + 1))
        return claimed

    def _locked_check(self, session: Session, check_id: str, worker_id: str) -> OutcomeCheck | None:
        row = session.execute(sa.select(OutcomeCheck).where(OutcomeCheck.id == check_id).with_for_update()
                              .execution_options(populate_existing=True)).scalar_one()
        return row if row.state == "claimed" and row.claimed_by == worker_id else None

    def _close(self, check_id: str, worker_id: str, state: str, note: str) -> CheckOutcome | None:
        with transaction(self.sessions) as session:
            row = self._locked_check(session, check_id, worker_id)
            if row is None:
                return None
            row.state, row.decided_at, row.result = state, self.clock.now(), {"note": note}
            return CheckOutcome(row.id, row.action_id, row.action_type, row.target, state, [], {}, {}, note=note)

    def _judge_check(self, session: Session, check_id: str, worker_id: str, rules: TypeRules, snapshot: Snapshot,
                     shared: SweepSeries) -> _Judged | None:
        """Decide one claimed check inside ``session`` (None: the claim was lost); what must follow the commit
        (notifications, a rollback) is left to :meth:`_finish`."""
        now = self.clock.now()
        row = self._locked_check(session, check_id, worker_id)
        if row is None:
            return None
        baseline = dict(row.baseline)
        after = _capture(snapshot, row.target, list(baseline.get("neighbours", {})))
        findings = rules.evaluate(baseline["target"], after["target"])
        negative = [f for f in findings if f.negative]
        found = [asdict(f) for f in findings]
        recorded = bool((row.result or {}).get("negative_recorded"))
        judgement = self._judge_did(session, row, rules, now, shared) if rules.judge == "did" else None
        verdict = ("negative" if negative else "ok") if judgement is None else judgement.verdict
        result: dict[str, Any] = {"after": after, "findings": found, "negative": verdict == "negative",
                                  "negative_recorded": recorded, "judge": rules.judge,
                                  "judgement": None if judgement is None else
                                  {**judgement.as_dict(), "change_day": (baseline.get("window") or {}).get("end")}}
        row.algorithm = snapshot.algorithm
        row.library_versions = dict(snapshot.header["library_versions"])
        row.params = {"metrics": snapshot.header["params"], "current_window": snapshot.header["window"],
                      "baseline_window": baseline.get("window"), "delay": str(rules.delay),
                      "rules": [asdict(r) for r in rules.rules], "judge": rules.judge,
                      "pre_weeks": rules.pre_weeks, "confidence": rules.confidence}
        row.snapshot_hash = snapshot.hash
        action = transitions.lock_row(session, ACTION_KIND, row.action_id)
        details = {"check_id": row.id, "findings": result["findings"], "snapshot": snapshot.hash,
                   "baseline_snapshot": row.baseline_snapshot_hash, "algorithm": snapshot.algorithm,
                   "judge": rules.judge, "judgement": result["judgement"]}
        view = (row.id, row.action_id, row.action_type, row.target)
        notes: list[Notification] = []
        if verdict == "inconclusive":
            # A large effect the data cannot separate from noise: neither roll back nor wave through;
            # a person decides (resolve_inconclusive).
            if action.state == lc.COMPLETED:
                transitions.record_event(session, ENTITY, action, actor=ACTOR, event="outcome_inconclusive",
                                         now=now, details=details)
                if self.codes is not None:
                    issued = self.codes.issue_outcome(session, action, row.id, now + self.decide_within)
                    notes = _decision_requests(session, row, judgement, issued, now + self.decide_within)
                    result["deciders"] = sorted(issued)
                    result["decide_by"] = (now + self.decide_within).isoformat()
            row.state, row.decided_at, row.result = "inconclusive", now, result
            early = CheckOutcome(*view, "inconclusive", found, baseline["target"], after["target"],
                                 note="a person must decide whether to roll back", judgement=result["judgement"])
        elif verdict == "ok":
            if action.state == lc.COMPLETED:
                transitions.record_event(session, ENTITY, action, actor=ACTOR, event="outcome_ok", now=now,
                                         details=details)
            row.state, row.decided_at, row.result = "ok", now, result
            early = CheckOutcome(*view, "ok", found, baseline["target"], after["target"],
                                 note="" if action.state == lc.COMPLETED else f"action is {action.state}",
                                 judgement=result["judgement"])
        else:
            early = None
            if not recorded:
                transitions.record_event(session, ENTITY, action, actor=ACTOR,
                                         event="negative_outcome_detected", now=now, details=details)
                result["negative_recorded"] = True
            row.result = result
        return _Judged(check_id, early, notes, view, found, baseline["target"], after["target"], result,
                       action.state, _reason(negative, judgement) if early is None else "")

    def _finish(self, judged: _Judged | None, worker_id: str) -> CheckOutcome | None:
        """After the decision's commit: send an inconclusive check's requests, or roll a negative one back."""
        if judged is None:
            return None
        if judged.early is not None:
            if judged.early.state == "inconclusive":
                self._send(judged.notes)
            return judged.early
        rollback_state, note = self._roll_back(judged.view[1], judged.action_state, judged.reason)
        with transaction(self.sessions) as session:
            locked = self._locked_check(session, judged.check_id, worker_id)
            if locked is None:
                return None
            locked.state, locked.decided_at = "negative", self.clock.now()
            locked.result = {**judged.result, "rollback_state": rollback_state, "rollback_note": note}
        return CheckOutcome(*judged.view, "negative", judged.found, judged.before, judged.after,
                            rollback_state, note, judgement=judged.result["judgement"])

    def _judge_did(self, session: Session, row: OutcomeCheck, rules: TypeRules, now: datetime,
                   shared: SweepSeries) -> Judgement:
        window = row.baseline.get("window") or {}
        pre_end = as_utc(datetime.fromisoformat(window["end"])) if "end" in window else floor_day(now)
        # Targets of other changes whose checks fall due from the start of our pre-period on: their own change
        # overlaps our weeks, so they are no controls. Bounded by due_at (indexed), not the whole table; read once
        # per sweep and pre-period start (the check's own target is never its control anyway).
        since = pre_end - rules.window * rules.pre_weeks
        controls = shared.controls(session, row.target, exclude=shared.targets_due_from(session, since))
        # The post-period: every whole window since the change (delay_days 21 with 7-day windows: 3 weeks).
        post_end = floor_hour(now)
        post = max(1, int((post_end - pre_end) // rules.window))
        data = shared.weekly(session, [row.target, *controls], pre_end=pre_end, pre=rules.pre_weeks,
                             window=rules.window, post_end=post_end, post=post)
        judge = DiDJudge(confidence=rules.confidence)
        specs = [RuleSpec(r.name, r.metric, r.direction, r.threshold) for r in rules.rules]
        return judge.judge(specs, series_for(data, rules.pre_weeks, post), controls)

    def resolve_inconclusive(self, action_id: str, actor: str, *, roll_back: bool, reason: str,
                             code: str | None = None, channel: str = "api") -> CheckOutcome:
        """A person's decision on an ``inconclusive`` check: ``roll_back`` rolls the action back (audited
        ``outcome_inconclusive_resolved`` with the decision, then ``ExecutionService.rollback``), otherwise the
        change is kept and the check becomes ``ok``. Raises ``OutcomeCheckNotInconclusive`` when the action has
        no inconclusive check (already resolved, never inconclusive). ``actor`` must be the AUTHENTICATED
        principal. A monitor with ``codes`` requires ``actor`` to be one of ``outcome_deciders`` and ``code`` its
        one-time code (``PermissionDenied`` / ``ApprovalCodeInvalid``; the refusal is audited
        ``outcome_resolution_refused`` and nothing else changes), as an approval does."""
        now = self.clock.now()
        try:
            return self._resolve(action_id, actor, roll_back, reason, code, channel, now)
        except ApprovalError as exc:
            with transaction(self.sessions) as session:
                action = transitions.lock_row(session, ACTION_KIND, action_id)
                transitions.record_event(session, ENTITY, action, actor=actor, event="outcome_resolution_refused",
                                         now=now, details={"channel": channel, "error": exc.code,
                                                           "internal_reason": exc.details.get("internal_reason")})
            raise

    def _resolve(self, action_id: str, actor: str, roll_back: bool, reason: str, code: str | None, channel: str,
                 now: datetime) -> CheckOutcome:
        with transaction(self.sessions) as session:
            row = session.execute(sa.select(OutcomeCheck).where(OutcomeCheck.action_id == action_id)
                                  .with_for_update().execution_options(populate_existing=True)).scalar()
            if row is None or row.state != "inconclusive":
                raise OutcomeCheckNotInconclusive(
                    f"action {action_id} has no inconclusive outcome check"
                    + ("" if row is None else f" (the check is {row.state})"), action_id=action_id)
            action = transitions.lock_row(session, ACTION_KIND, action_id)
            if self.codes is not None:
                self.codes.verify_outcome(session, action, row.id, actor, code, now)
            decision = "roll_back" if roll_back else "keep"
            transitions.record_event(session, ENTITY, action, actor=actor, event="outcome_inconclusive_resolved",
                                     now=now, details={"check_id": row.id, "decision": decision, "reason": reason,
                                                       "channel": channel,
                                                       "codes": "verified" if self.codes is not None else "none"})
            result = dict(row.result or {})
            result.update({"resolved_by": actor, "resolution": decision, "resolution_reason": reason,
                           "negative": roll_back, "negative_recorded": roll_back})
            row.state, row.decided_at, row.result = ("negative" if roll_back else "ok"), now, result
            view = (row.id, row.action_id, row.action_type, row.target)
            found, before, after = result.get("findings", []), dict(row.baseline).get("target", {}), \
                result.get("after", {}).get("target", {})
            action_state = action.state
        if not roll_back:
            return CheckOutcome(*view, "ok", found, before, after, note=f"kept by {actor}: {reason}")
        rollback_state, note = self._roll_back(action_id, action_state, f"inconclusive outcome, {actor}: {reason}")
        with transaction(self.sessions) as session:
            locked = session.execute(sa.select(OutcomeCheck).where(OutcomeCheck.action_id == action_id)
                                     .with_for_update()).scalar_one()
            locked.result = {**(locked.result or {}), "rollback_state": rollback_state, "rollback_note": note}
        return CheckOutcome(*view, "negative", found, before, after, rollback_state, note)

    def _send(self, notes: list[Notification]) -> None:
        # Best effort after the commit, as approval requests: a failed delivery leaves the check inconclusive
        # (the codes can be re-sent by a later run's pause, and the CLI and flow still accept them).
        if self.notifier is None:
            return
        for note in notes:
            try:
                self.notifier.send(note)
            except NotificationFailed:
                continue

    def _roll_back(self, action_id: str, action_state: str, reason: str) -> tuple[str | None, str]:
        if action_state != lc.COMPLETED:
            # A re-run after a crash, or someone undid it meanwhile: never roll back twice.
            return action_state, f"not rolled back: action is {action_state}"
        try:
            view = self.execution.rollback(action_id, ACTOR, reason=reason)
        except SaferailsError as exc:
            return None, f"rollback refused: {exc.code}: {exc.message}"
        return str(getattr(view, "state", None)), reason


def _decision_requests(session: Session, row: OutcomeCheck, judgement: Judgement | None, codes: dict[str, str],
                       deadline: datetime) -> list[Notification]:
    """One message per decider: the evidence in short, the decider's one-time code and how to answer."""
    lines = [f"{m.rule}: {m.metric} {m.effect:+.0%} net of controls, interval {m.interval[0]:+.0%}.."
             f"{m.interval[1]:+.0%} (threshold {m.threshold:.0%}): {m.verdict}"
             for m in (judgement.metrics if judgement is not None else ())
             if m.effect is not None and m.interval is not None]
    notes = []
    for decider, code in sorted(codes.items()):
        principal = session.get(Principal, decider)
        text = (f"The outcome check of action {row.action_id} ({row.action_type} on {row.target}) is inconclusive:\n"
                + "\n".join(f"  {line}" for line in lines)
                + f"\n\nDecide by {deadline.isoformat()} whether to roll it back:\n"
                f"  saferails outcomes resolve {row.action_id} --rollback|--keep --code {code} --reason ...\n"
                f"or answer the paused monitor run in the Prefect UI with this code.\n")
        notes.append(Notification(
            kind="alert", subject=f"[saferails] decide: roll back {row.action_type} on {row.target}?", text=text,
            recipients=(Recipient(decider, principal.email if principal is not None else None),),
            entity_type="action", entity_id=row.action_id,
            data={"purpose": "outcome_decision", "check_id": row.id, "approver": decider, "code": code,
                  "deadline": deadline.isoformat()}))
    return notes
