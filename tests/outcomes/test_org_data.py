"""Loading org graph data (CSV and DataFrames), the sample generator, outcome rules and the betweenness bound."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import networkx as nx
import numpy as np
import pytest
import sqlalchemy as sa

from saferails.orggraph import (
    Interaction,
    OrgDataInvalid,
    generate_org,
    insert_interactions,
    insert_sample,
    validate_interactions,
    validate_wellbeing,
)
from saferails.orggraph.betweenness import rk_betweenness
from saferails.outcomes import OutcomeRulesInvalid, load_rulebook
from saferails.store.db import transaction

GOOD = (
    "kind,person_a,person_b,occurred_at,weight\n"
    "meeting,bo,al,2026-11-20T10:00:00Z,1.5\nmessage,al,cy,2026-11-20,0.2\n"
)


@pytest.mark.parametrize(
    ("bad_line", "column", "problem"),
    [
        ("call,al,bo,2026-11-20T10:00:00Z,1", "kind", "must be one of"),
        ("meeting,al,al,2026-11-20T10:00:00Z,1", "person_b", "two different people"),
        ("meeting,,bo,2026-11-20T10:00:00Z,1", "person_a", "must not be empty"),
        ("meeting,al,bo,yesterday,1", "occurred_at", "not a timestamp"),
        ("meeting,al,bo,2026-11-20T10:00:00Z,-2", "weight", "greater than 0"),
        ("meeting,al,bo,2026-11-20T10:00:00Z,lots", "weight", "not a finite number"),
    ],
    ids=["unknown kind", "self interaction", "empty person", "bad timestamp", "negative weight", "text weight"],
)
def test_a_malformed_interactions_csv_is_refused_naming_the_row_and_column(
    bad_line: str, column: str, problem: str
) -> None:
    with pytest.raises(OrgDataInvalid) as refused:
        validate_interactions(io.StringIO(GOOD + bad_line + "\n"))
    assert refused.value.code == "ORG_DATA_INVALID"
    assert refused.value.details["row"] == 3 and refused.value.details["column"] == column
    assert problem in refused.value.message and "row 3" in refused.value.message


def test_a_csv_without_a_required_column_is_refused_naming_the_column() -> None:
    with pytest.raises(OrgDataInvalid, match="'occurred_at': required column is missing"):
        validate_interactions(io.StringIO("kind,person_a,person_b\nmeeting,al,bo\n"))


def test_wellbeing_scores_outside_zero_to_one_and_duplicates_are_refused() -> None:
    head = "person,observed_at,burnout_score\nal,2026-11-20,0.4\n"
    with pytest.raises(OrgDataInvalid, match="row 2, column 'burnout_score'"):
        validate_wellbeing(io.StringIO(head + "bo,2026-11-20,1.4\n"))
    with pytest.raises(OrgDataInvalid, match="row 2, column 'observed_at'"):
        validate_wellbeing(io.StringIO(head + "al,2026-11-20,0.5\n"))


def test_loaded_interactions_are_normalised_pairs_in_utc_and_default_to_weight_one() -> None:
    frame = validate_interactions(io.StringIO("kind,person_a,person_b,occurred_at\nCoedit,zed,amy,2026-11-20 10:00\n"))
    row = frame.iloc[0]
    assert (row["kind"], row["person_a"], row["person_b"], row["weight"]) == ("coedit", "amy", "zed", 1.0)
    assert row["occurred_at"].to_pydatetime() == datetime(2026, 11, 20, 10, tzinfo=UTC)


def test_a_refused_load_writes_nothing(db: Any) -> None:
    with pytest.raises(OrgDataInvalid), transaction(db.sessions) as session:
        insert_interactions(session, io.StringIO(GOOD + "meeting,al,bo,never,1\n"))
    with transaction(db.sessions) as session:
        insert_interactions(session, io.StringIO(GOOD))
        assert session.execute(sa.select(sa.func.count()).select_from(Interaction)).scalar_one() == 2


@pytest.mark.parametrize("size", [50, 997, 5000])
def test_the_generator_makes_an_org_of_the_requested_size_with_teams_of_five_to_twelve(size: int) -> None:
    org = generate_org(size, seed=3, days=7)
    assert len(org.employees) == size and org.employees["id"].is_unique
    team_sizes = org.employees.groupby("team_id").size()
    assert team_sizes.between(5, 12).all()
    assert org.employees["manager_id"].isna().sum() == 1  # one head of the organisation
    leads = org.employees[org.employees["role"] == "lead"]
    assert len(leads) == len(team_sizes) and leads["team_id"].is_unique


def test_generated_ties_are_dense_inside_teams_sparse_across_and_connect_almost_everyone() -> None:
    org = generate_org(2000, seed=5, days=14)
    team = dict(zip(org.employees["id"], org.employees["team_id"], strict=True))
    pairs = org.interactions[["person_a", "person_b"]].drop_duplicates()
    same = np.array([team[a] == team[b] for a, b in pairs.itertuples(index=False)])
    sizes = org.employees.groupby("team_id").size().to_numpy()
    intra_possible = int((sizes * (sizes - 1) // 2).sum())
    inter_possible = 2000 * 1999 // 2 - intra_possible
    assert same.sum() / intra_possible > 0.9  # two weeks of near-daily contact inside a team
    assert (~same).sum() / inter_possible < 0.01
    graph = nx.Graph(pairs.itertuples(index=False))
    assert len(max(nx.connected_components(graph), key=len)) >= 0.99 * 2000
    assert nx.average_clustering(graph) > 0.3  # small world: clustered, yet short paths across teams
    lengths = nx.single_source_shortest_path_length(graph, "p00000")
    assert max(lengths.values()) < 10  # and short paths across teams


def test_the_generator_is_deterministic_by_seed_and_refuses_sizes_out_of_range() -> None:
    first, again, other = generate_org(60, seed=1), generate_org(60, seed=1), generate_org(60, seed=2)
    assert first.interactions.equals(again.interactions) and first.wellbeing.equals(again.wellbeing)
    assert not first.interactions.equals(other.interactions)
    assert first.wellbeing["burnout_score"].between(0, 1).all()
    with pytest.raises(Exception, match="between 50 and 20000"):
        generate_org(49)


def test_a_generated_org_loads_into_the_store(db: Any) -> None:
    org = generate_org(80, seed=9, days=3)
    with transaction(db.sessions) as session:
        counts = insert_sample(session, org)
    assert counts["employees"] == 80 and counts["interactions"] == len(org.interactions)


def test_outcome_rules_are_configurable_per_type_and_refuse_bad_values() -> None:
    book = load_rulebook({"reduce_meetings": {"delay_days": 3, "rules": [
        {"name": "isolation", "metric": "degree_centrality", "direction": "drop", "threshold": 0.5}]},
        "schedule_focus_time": None})
    rules = book.for_type("reduce_meetings")
    assert rules is not None and rules.delay.days == 3 and [r.threshold for r in rules.rules] == [0.5]
    assert book.for_type("schedule_focus_time") is None and book.for_type("reassign_manager") is not None
    with pytest.raises(OutcomeRulesInvalid, match=r"role_change.*rules\.0\.metric"):
        load_rulebook({"role_change": {"rules": [{"name": "x", "metric": "mood", "direction": "drop",
                                                  "threshold": 0.3}]}})


def test_the_sampled_betweenness_stays_within_its_stated_bound_of_the_exact_value() -> None:
    org = generate_org(300, seed=4, days=7)
    graph = nx.Graph(org.interactions[["person_a", "person_b"]].itertuples(index=False))
    exact = nx.betweenness_centrality(graph)
    estimate = rk_betweenness(graph, epsilon=0.05, delta=0.1, seed=1)
    worst = max(abs(exact[v] - estimate.values[v]) for v in exact)
    assert worst <= estimate.params["bound_networkx_scale"]
    assert estimate.params["samples"] > 0 and estimate.params["vertex_diameter_bound"] >= nx.diameter(graph) + 1
