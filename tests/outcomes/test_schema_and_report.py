"""Migrations 0006 and 0006_1 and the markdown each outcome check leaves behind."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from saferails.outcomes import CheckOutcome
from saferails.outcomes.report import render_markdown
from saferails.store.db import MIGRATIONS_DIR

OUR_TABLES = {"interactions", "wellbeing", "metric_snapshots", "outcome_checks"}


def _alembic(db: Any, action: Any, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        action(cfg, revision)


def test_the_org_graph_migration_downgrades_and_upgrades_cleanly(db: Any) -> None:
    assert set(sa.inspect(db.engine).get_table_names()) >= OUR_TABLES
    _alembic(db, command.downgrade, "0006_1@-2")  # 0006_1 (inconclusive checks), then 0006
    assert not OUR_TABLES & set(sa.inspect(db.engine).get_table_names())
    _alembic(db, command.upgrade, "heads")
    assert set(sa.inspect(db.engine).get_table_names()) >= OUR_TABLES


def test_the_artifact_of_a_negative_outcome_shows_the_change_the_rule_and_a_chart() -> None:
    outcome = CheckOutcome(
        "c1", "a1", "reassign_manager", "emp_7", "negative",
        [{"rule": "isolation", "metric": "degree_centrality", "negative": True},
         {"rule": "increased_burnout", "metric": "burnout", "negative": False}],
        {"degree_centrality": 0.5, "strength": 10.0, "clustering": 1.0, "betweenness": 0.0, "burnout": 0.4},
        {"degree_centrality": 0.1, "strength": 2.0, "clustering": 0.0, "betweenness": 0.0, "burnout": 0.42},
        rollback_state="rolled_back",
    )
    text = render_markdown(outcome)
    assert text.startswith("# Outcome of reassign_manager on emp_7")
    assert "**NEGATIVE - rolled back**" in text
    assert "| degree_centrality | 0.5 | 0.1 | -80% | isolation: NEGATIVE |" in text
    assert "| burnout | 0.4 | 0.42 | +5% | increased_burnout: ok |" in text
    assert "degree_centrality  before " + "█" * 30 in text
