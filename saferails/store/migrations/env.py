"""Alembic environment: runs on the connection handed over by ``saferails.store.db.migrate``."""

from __future__ import annotations

from alembic import context

from saferails.store.tables import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through saferails.store.db.migrate(engine)")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
