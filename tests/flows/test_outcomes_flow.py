"""The hourly outcome-monitoring flow with the default policy (the did judge, 24 weeks before, 21 days after): an
isolating intervention is rolled back when the clock passes its monitoring delay, a harmless one is kept, and
each decision leaves a markdown artifact with the judge's finding, the target against its controls over time,
and the snapshot table and chart."""

from __future__ import annotations

from datetime import timedelta
from itertools import combinations

import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from blocks.settings import Runtime
from flows.outcomes import monitor_outcomes
from saferails.actions.service import Proposal
from saferails.clock import ManualClock
from saferails.org import OrgRepository
from saferails.orggraph import insert_interactions
from saferails.policy import load_policy_text
from saferails.store.db import transaction
from tests.support.approvals import coded_service

pytestmark = pytest.mark.flow

OPEN_POLICY = 'version: "outcome-flow"\nimpact: {default: low}\nrules: []\n'
TEAM = ["lead", "t", "a", "b", "c"]


def _interactions(runtime: Runtime, pairs: list[tuple[str, str]], days: range) -> None:
    midnight = runtime.clock.now().replace(hour=0, minute=0)
    rows = [{"kind": "meeting", "person_a": p, "person_b": q, "occurred_at": midnight + timedelta(days=d, hours=11)}
            for d in days for p, q in pairs]
    with transaction(runtime.sessions) as session:
        insert_interactions(session, pd.DataFrame(rows))


def _markdown(key: str) -> str:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    return str(found[0].data)


def test_the_flow_rolls_back_an_isolating_intervention_keeps_a_harmless_one_and_shows_both(
    runtime: Runtime, clock: ManualClock
) -> None:
    people = [*TEAM, "other", "x"]
    with transaction(runtime.sessions) as session:
        OrgRepository(session).insert({
            "teams": [{"id": "T"}, {"id": "U"}], "roles": [{"id": "member"}, {"id": "senior"}],
            "employees": [{"id": p, "name": p, "email": f"{p}@example.org", "team_id": "T",
                           "manager_id": None if p in ("lead", "other") else "lead"} for p in people]})
    team_pairs = list(combinations(TEAM, 2))
    _interactions(runtime, [*team_pairs, ("other", "x")], range(-7 * 24, 0))
    actions = coded_service(runtime.sessions, load_policy_text(OPEN_POLICY), runtime.clock)
    assert runtime.execution is not None
    ids = []
    for action_type, target, params in (("reassign_manager", "t", {"new_manager_id": "other"}),
                                        ("role_change", "x", {"new_role": "senior"})):
        action = actions.propose(Proposal(action_type=action_type, target=target, params=params, proposer="hr-bot"))
        ids.append(runtime.execution.execute(action.id).id)
    _interactions(runtime, [p for p in team_pairs if "t" not in p] + [("t", "other"), ("other", "x")], range(0, 21))

    first = monitor_outcomes()
    assert (first["scheduled"], first["claimed"]) == (2, 0)
    clock.advance(timedelta(days=6))
    assert monitor_outcomes()["claimed"] == 0  # the default delay is 21 days
    clock.advance(timedelta(days=15))
    second = monitor_outcomes()

    assert (second["negative"], second["ok"], second["artifacts"]) == (1, 1, 2)
    assert [actions.get(i).state for i in ids] == ["rolled_back", "completed"]
    negative, kept = _markdown(f"outcome-{ids[0]}"), _markdown(f"outcome-{ids[1]}")
    assert "NEGATIVE - rolled back" in negative and "| degree_centrality | 0.6667 | 0.1667 | -75% |" in negative
    assert "```text" in negative and "█" in negative
    assert "ok - kept" in kept
    # The did judge's finding and the target against its controls, week by week around the change.
    assert "Judge `did` against" in negative and "| isolation | degree_centrality | -75% |" in negative
    assert "target against its controls over time" in negative and "| **change " in negative
    assert "| +3 | 0.25 | 1.00 |" in negative and "●" in negative and "┼" in negative
    assert "| isolation | degree_centrality |" in kept and "| 30% | ok |" in kept
