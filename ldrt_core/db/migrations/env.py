"""Alembic environment: migrates the engine ldrt passes in, or $LDRT_DB_URL for the alembic CLI."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from alembic import context
from sqlalchemy import Connection, Engine

from ldrt_core.db.models import Base
from ldrt_core.errors import DatabaseError

config = context.config
engine = config.attributes.get("engine")
if engine is None:  # `alembic -c ... revision --autogenerate` from a developer's shell
    from ldrt_core.config import load_settings
    from ldrt_core.db import connect

    engine = connect(load_settings())


@contextmanager
def _sqlite_transaction(engine: Engine) -> Iterator[Connection]:
    """A migration on SQLite in one real transaction, foreign keys off while it runs.

    SQLite cannot ALTER most things: a batch migration copies a table, drops it and renames
    the copy. With foreign keys on, dropping a table other rows point at fails; and pysqlite
    runs DDL outside any transaction, so a migration that failed half-way stayed half-done
    (and its `_alembic_tmp_*` table blocked the next try). The pragma only takes effect
    outside a transaction, and the keys are checked before the commit."""
    with engine.connect() as plain:
        connection = plain.execution_options(isolation_level="AUTOCOMMIT")  # we say BEGIN
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        try:
            connection.exec_driver_sql("BEGIN")
            try:
                yield connection
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                if broken:
                    raise DatabaseError(f"the migration would break foreign keys: {broken[:5]}")
            except BaseException:
                connection.exec_driver_sql("ROLLBACK")
                raise
            connection.exec_driver_sql("COMMIT")
        finally:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")


sqlite = engine.dialect.name == "sqlite"
with _sqlite_transaction(engine) if sqlite else engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=sqlite,  # SQLite cannot ALTER most things
        compare_type=True,
    )
    context.run_migrations()
