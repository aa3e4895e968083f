"""Migrations up and down on SQLite and PostgreSQL, and the schema they build matches the models."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError

from ldrt_core import db
from ldrt_core.db.models import Base, Document, Figure, Paper, RefreshCursor
from ldrt_core.errors import DatabaseError, DatabaseUnavailableError

TABLES = {
    "papers",
    "documents",
    "figures",
    "pairs",
    "dataset_versions",
    "dataset_members",
    "training_runs",
    "evaluation_runs",
    "evaluation_scores",
    "refresh_cursors",
}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'sub' / 'ldrt.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    return db.connect(url)


def test_upgrade_builds_every_table_and_downgrade_removes_them(engine: Engine) -> None:
    assert db.current_revision(engine) is None
    db.upgrade(engine)
    assert db.current_revision(engine) == db.head_revision()
    assert set(inspect(engine).get_table_names()) >= TABLES
    db.downgrade(engine, "base")
    assert db.current_revision(engine) is None
    assert not TABLES & set(inspect(engine).get_table_names())
    db.upgrade(engine)  # and up again, from nothing
    assert db.current_revision(engine) == db.head_revision()


def test_a_used_database_migrates_down_and_up_keeping_its_rows(engine: Engine) -> None:
    """SQLite rebuilds a table to drop a column: with rows that point at it, that must neither
    break a foreign key nor leave the database half-migrated."""
    from ldrt_core.db.models import DatasetVersion, EvaluationRun, TrainingRun

    db.upgrade(engine)
    sha = "a" * 64
    with db.session_scope(engine) as session:
        session.add(Document(sha256=sha, store_key=f"sha256/aa/{sha}", size=3))
        session.flush()
        session.add(
            Figure(
                document_sha256=sha,
                extractor_version="1",
                ordinal=0,
                label="Figure 1",
                page=1,
                bbox=[0, 0, 1, 1],
                caption="c",
            )
        )
        session.add(Paper(source="s2", external_id="p1", title="t", document_sha256=sha))
        session.add(
            DatasetVersion(id="d" * 64, kind="curated", config_hash="c" * 64, manifest_key="m")
        )
        session.flush()
        session.add(
            TrainingRun(
                id="r1", stage="align", base_model="m", dataset_id="d" * 64, config_hash="c" * 64
            )
        )
        session.flush()
        session.add(
            EvaluationRun(id="e1", training_run_id="r1", dataset_id="d" * 64, model_label="x")
        )
    revisions = ["0003", "0002", "0001"]
    for revision in revisions:
        db.downgrade(engine, revision)
        assert db.current_revision(engine) == revision
    db.upgrade(engine)
    assert db.current_revision(engine) == db.head_revision()
    with engine.connect() as conn:
        counts = [
            conn.execute(text(f"SELECT count(*) FROM {table}")).scalar()
            for table in ("documents", "figures", "papers", "training_runs", "evaluation_runs")
        ]
    assert counts == [1, 1, 1, 1, 1]
    assert not [t for t in inspect(engine).get_table_names() if t.startswith("_alembic_tmp")]
    with engine.connect() as conn:  # and the foreign keys are enforced again afterwards
        if engine.dialect.name == "sqlite":
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_migrations_match_the_models(engine: Engine) -> None:
    db.upgrade(engine)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_lineage_rows_round_trip_with_constraints(engine: Engine) -> None:
    db.upgrade(engine)
    sha = "ab" * 32
    run_id = "0b3e7f7c-6d1a-4d59-9a43-1f2f8d0f9a10"
    with db.session_scope(engine) as session:
        session.add(Document(sha256=sha, store_key=f"sha256/ab/{sha}", size=10, flow_run_id=run_id))
        session.add(
            Paper(
                source="s2",
                external_id="p1",
                doi="10.1/x",
                title="LDRT for knee osteoarthritis",
                publication_date=dt.date(2025, 1, 2),
                authors=[{"name": "A. Author"}],
                download_status="ok",
                document_sha256=sha,
                flow_run_id=run_id,
            )
        )
        session.add(
            Figure(
                document_sha256=sha,
                extractor_version="1",
                ordinal=0,
                label="Figure 1",
                page=1,
                bbox=[10.0, 20.0, 300.0, 200.0],
                caption="Figure 1. Dose response.",
                mentions=["as shown in Fig. 1"],
            )
        )
        session.add(
            RefreshCursor(
                source="s2:abc", query="low dose", last_publication_date=dt.date(2025, 1, 2)
            )
        )
    with db.session_scope(engine) as session:
        paper = session.scalars(select(Paper)).one()
        figure = session.scalars(select(Figure)).one()
        assert paper.authors == [{"name": "A. Author"}]
        assert paper.flow_run_id == run_id
        assert paper.created_at is not None
        assert figure.bbox == [10.0, 20.0, 300.0, 200.0]
    # one paper per DOI
    with pytest.raises(IntegrityError), db.session_scope(engine) as session:
        session.add(Paper(source="s2", external_id="p2", doi="10.1/x", title="dup"))
    # a figure must belong to a known document
    with pytest.raises(IntegrityError), db.session_scope(engine) as session:
        session.add(
            Figure(
                document_sha256="cd" * 32,
                extractor_version="1",
                ordinal=0,
                label="Figure 1",
                page=1,
                bbox=[],
                caption="",
            )
        )
    # a status outside the known set is refused by the database itself
    with pytest.raises(IntegrityError), db.session_scope(engine) as session:
        session.add(Paper(source="s2", external_id="p3", title="t", download_status="weird"))


def test_rows_made_in_one_second_keep_their_order(engine: Engine) -> None:
    """The newest dataset version, training run or evaluation report is the newest row by
    created_at: rows made within a second of each other must not tie."""
    db.upgrade(engine)
    for n in range(5):
        with db.session_scope(engine) as session:
            session.add(Paper(source="s2", external_id=f"p{n}", title=f"paper {n}"))
    with db.session_scope(engine) as session:
        newest_first = session.scalars(select(Paper).order_by(Paper.created_at.desc())).all()
        assert [p.external_id for p in newest_first] == [f"p{n}" for n in range(4, -1, -1)]
        assert len({p.created_at for p in newest_first}) == 5


def test_unreachable_database_is_a_typed_error_without_the_password() -> None:
    engine = db.connect("postgresql://ldrt:sup3r-secret@127.0.0.1:9/ldrt", connect_timeout=2)
    with pytest.raises(DatabaseError) as info:
        db.current_revision(engine)
    assert isinstance(info.value, DatabaseUnavailableError)
    assert "cannot connect to the database" in str(info.value)
    assert "sup3r-secret" not in str(info.value)
    assert "127.0.0.1:9" in str(info.value)


@pytest.mark.integration
def test_a_connection_lost_mid_work_is_a_typed_error_and_loses_nothing_committed(
    pg_url: str,
) -> None:
    """PostgreSQL restarting under a running task: the task's error names the database, not
    the SQL it was running and its parameters; the rows committed before stay, and the next
    session reconnects by itself."""
    engine = db.connect(pg_url)
    db.upgrade(engine)
    with db.session_scope(engine) as session:
        session.add(Paper(source="s2", external_id="kept", title="committed before"))
    admin = db.connect(pg_url)
    with pytest.raises(DatabaseUnavailableError) as info, db.session_scope(engine) as session:
        session.add(Paper(source="s2", external_id="lost", title="not committed"))
        session.flush()
        backend = session.execute(text("SELECT pg_backend_pid()")).scalar()
        with admin.connect() as conn:  # what a restart does to every open connection
            conn.execute(text(f"SELECT pg_terminate_backend({backend})"))
        session.execute(select(Paper)).all()
    message = str(info.value)
    assert "lost the connection to the database" in message
    assert "(terminating connection due to administrator command)" in message
    assert "***@" in message and make_url(pg_url).password not in message
    assert "SELECT" not in message and "papers" not in message
    with db.session_scope(engine) as session:
        assert session.scalars(select(Paper.external_id)).all() == ["kept"]


def test_a_driver_error_without_a_message_is_named_by_its_type() -> None:
    """The message takes the driver's first line; an empty one must not hide the error."""
    engine = db.connect("sqlite://")
    unnamed = OperationalError("SELECT 1", {}, sqlite3.OperationalError())
    expected = r"cannot reach the database .*: OperationalError$"
    with pytest.raises(DatabaseError, match=expected), db._db_errors(engine, "reach"):
        raise unnamed
