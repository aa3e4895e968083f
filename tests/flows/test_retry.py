"""Retrying a failed `pipeline` run by hand, as a user does after fixing its input.

Input: the Prefect server (CI's, on PostgreSQL; else Prefect's test harness), the lineage
database on PostgreSQL, the S3 store on the loopback S3 server with Prefect's task results kept
in it (the `ldrt-results` S3Bucket block as the server's default result storage), and four
sample papers whose last PDF is cut off halfway.
Output: flow and task run states read back from the API, rows in the lineage database, and the
result objects in the bucket.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect import get_client
from sqlalchemy import select

from deployments.deploy import RESULTS_FOLDER, configure_result_storage
from flows.pipeline import pipeline
from flows.stages import NONE_FAILED
from ldrt_core import db
from ldrt_core.config import load_settings
from ldrt_core.db.models import DatasetVersion, Document, Paper, TrainingRun
from ldrt_core.samples import write_sample_corpus
from ldrt_core.store import open_store
from tests.flows.test_flows import (
    TINY_PIPELINE,
    artifacts,
    flow_run_id,
    retry_flow_run,
    subflow_runs,
    table,
    task_runs,
)
from tests.support.corpus import cut_short

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]

REPO = Path(__file__).resolve().parents[2]
ITEM_TASKS = ("download-", "extract-")


def tasks_of(run_id: UUID, since: dt.datetime | None = None) -> list[Any]:
    """The pipeline run's task runs (those created since), and no subflow runs."""
    assert subflow_runs(run_id) == []
    return [t for t in task_runs(run_id) if since is None or t.created >= since]


def test_retrying_a_failed_pipeline_run_reruns_only_the_failed_item(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_url: str, s3_env: dict[str, str]
) -> None:
    papers = write_sample_corpus(tmp_path / "papers", papers=4, seed=4)  # 4th: train split
    broken = papers[-1].pdf_path
    good = cut_short(broken)
    env = {
        "LDRT_HOME": str(tmp_path / "home"),
        "LDRT_DB_URL": pg_url,
        **s3_env,
        "LDRT_DOWNLOAD_RETRIES": "0",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert configure_result_storage(settings) is not None
    try:
        state = pipeline(source=f"folder:{tmp_path / 'papers'}", **TINY_PIPELINE, return_state=True)

        # The run ends Failed, with one failed task: the cut-off paper's download.
        assert state.is_failed()
        run_id = flow_run_id(state)
        first = tasks_of(run_id)
        failed = [t.name for t in first if t.state.is_failed()]
        engine = db.connect(settings)
        with db.session_scope(engine) as session:
            paper = session.scalars(select(Paper).where(Paper.download_status == "failed")).one()
            assert "cut short" in (paper.download_error or "")
            bad_paper = paper.id
        assert failed == [f"download-{bad_paper}"]
        assert sum(t.name.startswith("extract-") for t in first) == 3
        listed = table(artifacts([run_id]), "ldrt-pipeline-failures")
        assert [row["item"] for row in listed] == [f"refresh {bad_paper}"]

        # Fix the input; retry the same flow run from the command line.
        broken.write_bytes(good)
        retried_at = dt.datetime.now(dt.UTC)
        retry_flow_run(run_id, "flows/pipeline.py:pipeline")

        with get_client(sync_client=True) as client:
            run = client.read_flow_run(run_id)
        assert run.state is not None and run.state.is_completed() and run.run_count == 2
        # The failures table's newest version (the one the UI shows) says none failed now.
        tables = [a for a in artifacts([run_id]) if a.key == "ldrt-pipeline-failures"]
        newest = max(tables, key=lambda a: a.created)
        assert len(tables) == 2 and table([newest], "ldrt-pipeline-failures") == [NONE_FAILED]
        again = tasks_of(run_id, since=retried_at)
        with db.session_scope(engine) as session:
            fixed = session.get(Paper, bad_paper)
            assert fixed is not None and fixed.download_status == "ok"
            new_document = fixed.document_sha256
            documents = list(session.scalars(select(Document)))
            curated = list(
                session.scalars(
                    select(DatasetVersion)
                    .where(DatasetVersion.kind == "curated")
                    .order_by(DatasetVersion.created_at)
                )
            )
            trained = list(session.scalars(select(TrainingRun)))
        assert new_document is not None
        # Of the per-item tasks, only the failed download ran again, and the one new document
        # it brought was extracted; the other three papers were neither fetched nor extracted.
        items = sorted(t.name for t in again if t.name.startswith(ITEM_TASKS))
        assert items == [f"download-{bad_paper}", f"extract-{new_document[:12]}"]
        assert all(t.state.is_completed() for t in again)
        # Every stage ran again (the aggregate ones on the data with the fixed paper in it).
        assert {"train-align", "train-instruct"} <= {t.name for t in again}
        assert any(t.name.startswith("evaluate-run") for t in again)
        assert len(documents) == 4 and all(d.extract_status == "ok" for d in documents)
        # The stages after it ran on the data with the fixed paper in it.
        assert len(curated) == 2
        assert curated[1].stats["candidates"] > curated[0].stats["candidates"]
        assert len(trained) == 4 and all(r.status == "completed" for r in trained)

        # Task results (extraction and training records) are in the S3 store, not on disk.
        results = list(open_store(settings).list(f"{RESULTS_FOLDER}/"))
        assert len(results) >= 4 + 4  # at least one per extraction and per training run
    finally:
        with get_client(sync_client=True) as client:
            client.clear_server_default_result_storage()


def test_retrying_a_retrain_resumes_its_training_from_the_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The GPU worker is lost at step 3 of stage 2 (a checkpoint at step 2): the retry, in new
    subflow runs, takes the finished stage 1 and resumes stage 2, not trains it again."""
    from flows.retraining import prepare, retrain
    from tasks.progress import ProgressArtifact

    monkeypatch.setenv("LDRT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LDRT_TRAIN_CHECKPOINT_EVERY", "2")
    write_sample_corpus(tmp_path / "papers", papers=4, seed=4)
    papers = f"folder:{tmp_path / 'papers'}"
    prepare(source=papers, curation={"eval_share": 0.3}, qa_backend="template")
    shown = ProgressArtifact.__call__

    def lost_at_step_3(self: ProgressArtifact, done: int, total: int) -> None:
        if self.description.startswith("training instruct") and done == 3:
            raise RuntimeError("the GPU worker is gone")
        shown(self, done, total)

    monkeypatch.setattr(ProgressArtifact, "__call__", lost_at_step_3)
    parameters = {"base_model": "tiny-random", "max_steps": 4, "eval_limit": 2, "max_new_tokens": 8}
    state = retrain(**parameters, return_state=True)
    assert state.is_failed()
    monkeypatch.setattr(ProgressArtifact, "__call__", shown)  # the worker is back

    retry_flow_run(flow_run_id(state), "flows/retraining.py:retrain")
    engine = db.connect(load_settings({"LDRT_HOME": str(tmp_path / "home")}))
    with db.session_scope(engine) as session:
        runs = {r.stage: r for r in session.scalars(select(TrainingRun))}
        assert len(list(session.scalars(select(TrainingRun)))) == 2  # one a stage: none anew
    assert all(r.status == "completed" for r in runs.values())
    assert runs["instruct"].metrics["resumed_from_step"] == 2
    assert runs["instruct"].metrics["steps"] == 4
