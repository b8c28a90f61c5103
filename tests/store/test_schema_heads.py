"""``migrate`` skips Alembic only for a database at exactly the heads this code ships."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from saferails.store.db import MIGRATIONS_DIR, at_heads, create_engine, migrate, schema_heads


def test_schema_heads_are_what_alembics_upgrade_leaves(tmp_path: Path) -> None:
    """Alembic's own ``upgrade heads`` (not ``migrate``, which may skip it) on an empty database."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    engine = create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "heads")
        with engine.connect() as conn:
            stored = frozenset(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())
    finally:
        engine.dispose()
    assert schema_heads() == stored
    # Every head Alembic names is stored, or is a revision a stored one depends on.
    assert stored <= frozenset(ScriptDirectory.from_config(cfg).get_heads())


def test_only_a_database_at_every_head_counts_as_at_heads(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        assert not at_heads(engine)  # no alembic_version table yet
        migrate(engine)
        assert at_heads(engine)
        head = sorted(schema_heads())[0]
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM alembic_version WHERE version_num = :v"), {"v": head})
        assert not at_heads(engine)  # one branch behind: the next migrate goes through Alembic
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO alembic_version (version_num) VALUES (:v), ('9999_newer')"),
                         {"v": head})
        assert not at_heads(engine)  # ahead of this code
    finally:
        engine.dispose()
