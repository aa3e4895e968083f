"""Lineage database access: engines, sessions and schema migrations (Alembic).

`connect(settings)` gives an engine; `upgrade(engine)` migrates it to the newest schema.
SQLite (the embedded default) and PostgreSQL run the same migrations.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from ldrt_core.config import Settings, mask_url
from ldrt_core.db import models
from ldrt_core.errors import DatabaseError, DatabaseUnavailableError

__all__ = [
    "connect",
    "current_revision",
    "downgrade",
    "head_revision",
    "models",
    "schema_gap",
    "session_scope",
    "sqlite_file",
    "upgrade",
]

MIGRATIONS = Path(__file__).with_name("migrations")


def sqlite_file(db_url: str) -> Path | None:
    """The file a SQLite database URL names; None for a server's database or one in memory."""
    url = make_url(db_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(str(url.database))


def connect(settings: Settings | str, *, connect_timeout: int = 10) -> Engine:
    """An engine for the lineage database; SQLite files get their folder and foreign keys."""
    url = make_url(settings.db_url if isinstance(settings, Settings) else settings)
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.get_backend_name() == "sqlite":
        if (file := sqlite_file(str(url))) is not None:
            file.parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30}
    elif url.get_backend_name() == "postgresql":
        kwargs["connect_args"] = {"connect_timeout": connect_timeout}
    engine = create_engine(url, **kwargs)
    if url.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    event.listen(engine, "handle_error", _unavailable)
    return engine


def _unavailable(context: ExceptionContext) -> BaseException | None:
    """A connection refused, or lost mid-work, raises DatabaseUnavailableError naming the
    database (without its password) instead of the driver's error with the SQL and its
    parameters; every other error (a constraint, a bad statement) stays SQLAlchemy's. The pool
    still discards the lost connection, and its pre-ping reconnects quietly where it can."""
    dbapi = context.dialect.loaded_dbapi
    lost = context.is_disconnect or (
        context.connection is None
        and isinstance(context.original_exception, dbapi.OperationalError)
    )
    if context.is_pre_ping or not lost:
        return None
    reason = _reason(context.original_exception)
    where = "" if context.engine is None else f" {mask_url(str(context.engine.url))}"
    if context.connection is None:
        return DatabaseUnavailableError(
            f"cannot connect to the database{where} ({reason}): is it running, and is "
            "LDRT_DB_URL right?"
        )
    return DatabaseUnavailableError(
        f"lost the connection to the database{where} ({reason}); what was committed is kept: "
        "run again once it is back"
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
    cursor.execute("PRAGMA synchronous=NORMAL")  # WAL stays consistent; fsync at checkpoints
    cursor.close()


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        yield session


def _alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    with _db_errors(engine, "migrate"), _revision_errors(revision):
        command.upgrade(_alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    with _db_errors(engine, "downgrade"), _revision_errors(revision):
        command.downgrade(_alembic_config(engine), revision)


@contextmanager
def _revision_errors(revision: str) -> Iterator[None]:
    """Alembic's own errors (no such revision, an upgrade target below the current one) as
    ours, with the revisions there are."""
    try:
        yield
    except CommandError as exc:
        known = ", ".join(r.revision for r in ScriptDirectory(str(MIGRATIONS)).walk_revisions())
        raise DatabaseError(
            f"cannot go to revision {revision!r}: {_reason(exc)} (revisions: {known}; "
            "'head' is the newest, 'base' before the first)"
        ) from None


def current_revision(engine: Engine) -> str | None:
    with _db_errors(engine, "read the schema revision of"), engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def schema_gap(revision: str | None) -> str | None:
    """What keeps a database at `revision` from serving this ldrt, or None when it is at the
    newest revision."""
    head = head_revision()
    if revision == head:
        return None
    return "has no ldrt schema" if revision is None else f"schema at {revision}, ldrt needs {head}"


def head_revision() -> str:
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    return head


def server_version(engine: Engine) -> str:
    with _db_errors(engine, "reach"), engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            return str(conn.execute(text("SHOW server_version")).scalar()).split(" ")[0]
        return str(conn.execute(text("SELECT sqlite_version()")).scalar())


@contextmanager
def _db_errors(engine: Engine, action: str) -> Iterator[None]:
    try:
        yield
    except SQLAlchemyError as exc:
        reason = _reason(getattr(exc, "orig", None) or exc)
        raise DatabaseError(
            f"cannot {action} the database {mask_url(str(engine.url))}: {reason}"
        ) from None


def _reason(error: BaseException) -> str:
    """The first line of the driver's message (the SQL and parameters SQLAlchemy appends are
    left out), or the error's type when it has no message."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
