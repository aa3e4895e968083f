"""Alembic environment: migrates the engine ldrt passes in, or $LDRT_DB_URL for the alembic CLI."""

from __future__ import annotations

from alembic import context

from ldrt_core.db.models import Base

config = context.config
engine = config.attributes.get("engine")
if engine is None:  # `alembic -c ... revision --autogenerate` from a developer's shell
    from ldrt_core.config import load_settings
    from ldrt_core.db import connect

    engine = connect(load_settings())

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
        compare_type=True,
    )
    context.run_migrations()
