"""Alembic's environment: idgate hands it an open connection (schema.py); it never reads alembic.ini."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import idgate.adapters.store.tables  # noqa: F401 - registers the tables on SQLModel.metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    # SQLite alters a table by copying it; batch mode writes the copy (a no-op on PostgreSQL).
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
