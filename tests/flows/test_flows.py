"""The Prefect flows against a Prefect API: the pipeline end to end on the sample corpus, and one
corrupt PDF failing one extract task run while the others finish.

Input: the sample corpus (and a truncated PDF) under an embedded LDRT_HOME; a Prefect server,
CI's when LDRT_TEST_PREFECT_API_URL names one, else Prefect's test harness (a temporary server
on SQLite). Output: flow and task run states, artifacts, and the rows in the lineage database.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterParentFlowRunId,
)
from prefect.client.schemas.objects import State
from prefect.exceptions import ParameterTypeError
from prefect.settings import PREFECT_API_URL, PREFECT_LOCAL_STORAGE_PATH
from sqlalchemy import select

from flows.pipeline import pipeline
from flows.retraining import prepare, retrain
from flows.server import RECORDER_FLUSH_S
from flows.stages import (
    NONE_FAILED,
    ItemsFailed,
    evaluate_flow,
    extract_flow,
    refresh_flow,
    train_flow,
)
from ldrt_core import db
from ldrt_core.config import load_settings
from ldrt_core.db.models import (
    Document,
    EvaluationRun,
    EvaluationScore,
    Figure,
    Paper,
    TrainingRun,
)
from ldrt_core.samples import write_sample_corpus
from ldrt_core.store import open_store
from ldrt_core.train.model import ModelLoadError
from tests.support import bad_pdfs
from tests.support.corpus import cut_short, store_documents

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_api")]

REPO = Path(__file__).resolve().parents[2]

# The pipeline at its smallest: a few sample papers, two training steps a stage, two questions.
TINY_PIPELINE: dict[str, Any] = {
    "curation": {"eval_share": 0.3},  # four papers: some must be held out to evaluate on
    "qa_backend": "template",
    "base_model": "tiny-random",
    "max_steps": 2,
    "lora_r": 8,
    "lora_alpha": 16,
    "checkpoint_every": 0,
    "eval_limit": 2,
    "max_new_tokens": 8,
}


def flow_run_id(state: State[Any]) -> UUID:
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    return run_id


def task_runs(run_id: UUID, wait_s: float = 30) -> list[Any]:
    """The flow run's task runs once the server has recorded them: their states reach it as
    events, which it writes in batches at least once a second (flows/server.py), so this reads
    until two reads a flush apart agree (at most `wait_s`)."""
    seen: list[tuple[UUID, Any]] | None = None
    deadline = time.monotonic() + wait_s
    while True:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
            )
        now = sorted((r.id, r.state_type) for r in runs)
        if now == seen or time.monotonic() > deadline:
            return runs
        seen = now
        time.sleep(RECORDER_FLUSH_S + 0.2)


def flow_run(run_id: UUID) -> Any:
    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)


def subflow_runs(run_id: UUID) -> list[Any]:
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run_id])
            )
        )


def retry_flow_run(
    run_id: UUID, entrypoint: str, timeout_s: float = 600, succeeds: bool = True
) -> None:
    """`prefect flow-run retry` as a user runs it on the same machine: the same flow run runs
    again in a new process, with this process's LDRT_* environment and result storage."""
    prefect_cli = Path(sys.executable).with_name("prefect")
    done = subprocess.run(
        [str(prefect_cli), "flow-run", "retry", str(run_id), "--entrypoint", entrypoint],
        cwd=REPO,
        env={
            **os.environ,
            "PREFECT_API_URL": str(PREFECT_API_URL.value()),
            "PREFECT_LOCAL_STORAGE_PATH": str(PREFECT_LOCAL_STORAGE_PATH.value()),
        },
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    assert (done.returncode == 0) == succeeds, done.stdout[-3000:] + done.stderr[-3000:]


STAGES = ("refresh", "extract", "curate", "qa", "train", "evaluate")


def table(made: list[Any], key: str) -> list[dict[str, Any]]:
    """The rows of the table artifact `key` among `made`."""
    rows: list[dict[str, Any]] = json.loads(next(a for a in made if a.key == key).data)
    return rows


def outcomes(summary: list[dict[str, Any]]) -> dict[str, str]:
    """Each stage's outcome in a flow's stage table, in the order the stages ran."""
    return {row["stage"]: row["value"] for row in summary if row["metric"] == "outcome"}


def artifacts(run_ids: list[UUID]) -> list[Any]:
    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=run_ids))
        )


@pytest.mark.slow
def test_pipeline_on_the_sample_corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LDRT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LDRT_PROGRESS_EVERY_S", "0")  # a bar for work this short, too
    write_sample_corpus(tmp_path / "papers", papers=4, seed=6)

    state = pipeline(source=f"folder:{tmp_path / 'papers'}", **TINY_PIPELINE, return_state=True)

    assert state.is_completed(), state.message
    done = state.result()
    assert done["extract"]["failed"] == 0 and done["extract"]["figures"] > 0
    run_id = flow_run_id(state)
    # One flow run: every stage's tasks are the pipeline run's own (no subflow runs).
    assert subflow_runs(run_id) == []
    tasks = task_runs(run_id)
    ran = {task.name for task in tasks}
    assert {
        "discover-papers",
        "build-dataset",
        "generate-qa",
        "train-align",
        "train-instruct",
        "evaluate-run",
    } <= {re.sub(r"-[0-9a-f]{3}$", "", name) for name in ran}  # Prefect's run-name suffix
    assert sum(name.startswith("download-") for name in ran) == 4
    assert sum(name.startswith("extract-") for name in ran) == 4
    assert all(task.state.is_completed() for task in tasks)

    engine = db.connect(load_settings())
    with db.session_scope(engine) as session:
        papers = list(session.scalars(select(Paper)))
        documents = list(session.scalars(select(Document)))
        trained = {r.stage: r for r in session.scalars(select(TrainingRun))}
        evaluations = list(session.scalars(select(EvaluationRun)))
        scores = list(session.scalars(select(EvaluationScore)))
        figure_runs = set(session.scalars(select(Figure.flow_run_id)))
    run_ids = {str(run_id)}
    assert len(papers) == 4 and all(p.download_status == "ok" for p in papers)
    assert all(d.extract_status == "ok" for d in documents)
    assert {p.flow_run_id for p in papers} | figure_runs <= run_ids  # lineage: who made what
    assert set(trained) == {"align", "instruct"}
    assert all(r.status == "completed" and r.metrics["steps"] == 2 for r in trained.values())
    assert trained["instruct"].parent_run_id == trained["align"].id == done["train"]["align"]
    assert trained["instruct"].flow_run_id in run_ids
    assert len(evaluations) == 2 and all(e.status == "completed" for e in evaluations)
    assert scores and {e.id for e in evaluations} == {s.evaluation_run_id for s in scores}

    made = artifacts([run_id])
    keys = {a.key for a in made if a.key}
    # One table for every stage's outcome and counts; the filters, runs and report apart.
    assert {
        "ldrt-pipeline-summary",
        "ldrt-curate-filters",
        "ldrt-train-summary",
        "ldrt-evaluation-report",
    } <= keys
    # One failures table for every stage's items, saying that none failed.
    assert {key for key in keys if key.endswith("-failures")} == {"ldrt-pipeline-failures"}
    assert table(made, "ldrt-pipeline-failures") == [NONE_FAILED]
    counted_apart = {f"ldrt-{stage}-summary" for stage in STAGES if stage != "train"}
    assert not counted_apart & keys  # train's summary is its table of runs
    summary = table(made, "ldrt-pipeline-summary")
    assert outcomes(summary) == dict.fromkeys(STAGES, "ok")
    value = {(row["stage"], row["metric"]): row["value"] for row in summary}
    assert value["refresh", "downloaded"] == value["extract", "extracted"] == "4"
    assert value["curate", "dataset"] == done["curate"]
    assert value["train", "output"] == ", ".join(f"{k}: {v}" for k, v in done["train"].items())
    assert value["evaluate", "questions"] == str(done["evaluate"]["items"])
    report = next(a for a in made if a.key == "ldrt-evaluation-report")
    assert report.type == "markdown" and report.data.startswith("#")
    assert "](data:image/png;base64," in report.data  # its plots show in the UI
    progress = [a for a in made if a.type == "progress"]
    assert progress and all(a.data == 100.0 for a in progress)

    # The same data and training config again: both stages come from Prefect's cache, untrained.
    again = train_flow(
        dataset=done["qa"]["instruct"],
        base_model="tiny-random",
        max_steps=2,
        lora_r=8,
        lora_alpha=16,
        checkpoint_every=0,
        return_state=True,
    )
    assert again.is_completed() and again.result() == done["train"]
    cached = [r for r in task_runs(flow_run_id(again)) if r.name.startswith("train-")]
    assert sorted(r.state.name for r in cached) == ["Cached", "Cached"]
    with db.session_scope(engine) as session:
        assert len(list(session.scalars(select(TrainingRun)))) == 2


def test_a_clean_run_after_a_failed_one_publishes_failures_saying_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The UI shows a key's latest version: a clean run must replace a failed run's list."""
    monkeypatch.setenv("LDRT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LDRT_DOWNLOAD_RETRIES", "0")
    papers = write_sample_corpus(tmp_path / "papers", papers=2, seed=4)
    broken = papers[-1].pdf_path
    good = cut_short(broken)
    source = f"folder:{tmp_path / 'papers'}"

    failed = refresh_flow(source=source, return_state=True)
    broken.write_bytes(good)
    clean = refresh_flow(source=source, retry_failed=True, return_state=True)

    assert failed.is_failed() and clean.is_completed()
    listed = table(artifacts([flow_run_id(failed)]), "ldrt-refresh-failures")
    assert len(listed) == 1 and "cut short" in listed[0]["reason"]
    assert table(artifacts([flow_run_id(clean)]), "ldrt-refresh-failures") == [NONE_FAILED]


@pytest.mark.slow
def test_instruct_from_a_run_trains_from_the_run_it_names_now(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LDRT_HOME", str(tmp_path / "home"))
    write_sample_corpus(tmp_path / "papers", papers=4, seed=4)
    prepare(
        source=f"folder:{tmp_path / 'papers'}", curation={"eval_share": 0.3}, qa_backend="template"
    )
    tiny: dict[str, Any] = {
        "base_model": "tiny-random",
        "max_steps": 1,
        "lora_r": 8,
        "lora_alpha": 16,
        "checkpoint_every": 0,
    }

    train_flow(stage="align", **tiny)
    first = train_flow(stage="instruct", from_run="latest", **tiny)["instruct"]
    newer = train_flow(stage="align", seed=1, **tiny)["align"]  # 'latest' names it now
    second = train_flow(stage="instruct", from_run="latest", **tiny)["instruct"]

    assert second != first  # not the cached run trained from the older align run
    engine = db.connect(load_settings())
    with db.session_scope(engine) as session:
        assert session.get(TrainingRun, second).parent_run_id == newer
    # The same parent by an id prefix is the same training: Prefect's cache, no new run.
    again = train_flow(stage="instruct", from_run=newer[:8], **tiny, return_state=True)
    assert again.result()["instruct"] == second
    cached = [r for r in task_runs(flow_run_id(again)) if r.name.startswith("train-")]
    assert [r.state.name for r in cached] == ["Cached"]


@pytest.mark.parametrize(
    ("flow", "parameters"),
    [
        (train_flow, {"max_steps": 0}),
        (train_flow, {"epochs": 0}),
        (train_flow, {"batch_size": 0, "grad_accum": 0, "lora_r": 0}),
        (evaluate_flow, {"limit": -1}),
        (refresh_flow, {"max_papers": 0}),
        (pipeline, {"eval_limit": -1}),
        (retrain, {"max_steps": 0}),
    ],
    ids=lambda value: getattr(value, "name", None) or ",".join(value),
)
def test_a_parameter_out_of_bounds_is_refused_before_anything_runs(
    flow: Any, parameters: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bounds `ldrt` enforces hold for a flow run however it is started: 0 steps would make
    a 'completed' run that trained nothing, a negative limit evaluate all but the last."""
    monkeypatch.setenv("LDRT_HOME", str(tmp_path / "home"))
    if "source" in flow.parameters.properties:
        parameters = {**parameters, "source": f"folder:{tmp_path}"}

    with pytest.raises(ParameterTypeError) as refused:
        flow(**parameters)

    assert all(name in str(refused.value) for name in parameters if name != "source")
    assert not (tmp_path / "home").exists()  # nothing ran: not even the database was made


def test_a_stage_that_stops_the_pipeline_leaves_the_table_of_what_ran(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LDRT_HOME", str(tmp_path / "home"))
    corpus = tmp_path / "corpus"
    write_sample_corpus(corpus, papers=4, seed=0)
    missing = tmp_path / "no-model-here"

    state = pipeline(
        source=f"folder:{corpus}",
        **{**TINY_PIPELINE, "base_model": str(missing)},
        return_state=True,
    )

    assert state.is_failed()
    assert isinstance(state.result(raise_on_failure=False), ModelLoadError)
    made = artifacts([flow_run_id(state)])
    assert table(made, "ldrt-pipeline-failures") == [NONE_FAILED]  # published all the same
    summary = table(made, "ldrt-pipeline-summary")
    assert list(outcomes(summary).items()) == [
        ("refresh", "ok"),
        ("extract", "ok"),
        ("curate", "ok"),
        ("qa", "ok"),
        ("train", "failed: ModelLoadError (see the run's logs)"),
    ]
    assert {"stage": "extract", "metric": "extracted", "value": "4"} in summary


def test_one_corrupt_pdf_fails_one_extract_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LDRT_HOME", str(tmp_path / "home"))
    settings = load_settings()
    engine = db.connect(settings)
    db.upgrade(engine)
    store = open_store(settings)
    pdfs = [p.pdf_path.read_bytes() for p in write_sample_corpus(tmp_path / "p", papers=3, seed=1)]
    corrupt = bad_pdfs.rich_pdf()[:900]  # truncated: CorruptPDFError
    shas = store_documents(engine, store, [*pdfs, corrupt])
    bad = shas[-1]

    state = extract_flow(return_state=True)

    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, ItemsFailed) and "CorruptPDFError" in str(error)
    runs = [r for r in task_runs(flow_run_id(state)) if r.name.startswith("extract-")]
    assert sorted(r.state.type.value for r in runs) == ["COMPLETED"] * 3 + ["FAILED"]
    failed = next(r for r in runs if r.state.is_failed())
    assert failed.name == f"extract-{bad[:12]}" and failed.run_count == 1  # not retried
    with db.session_scope(engine) as session:
        documents = {d.sha256: d for d in session.scalars(select(Document))}
    assert documents[bad].extract_status == "failed"
    assert "CorruptPDFError" in (documents[bad].extract_error or "")
    assert all(documents[sha].extract_status == "ok" for sha in shas[:-1])
    assert all(documents[sha].flow_run_id == str(flow_run_id(state)) for sha in shas)
    made = {a.key: a for a in artifacts([flow_run_id(state)]) if a.key}
    assert "CorruptPDFError" in str(made["ldrt-extract-failures"].data)

    # Asked to retry, the flow runs the failed document only (the others are done), forcing it.
    again = extract_flow(retry_failed=True, return_state=True)
    assert again.is_failed()
    rerun = [r for r in task_runs(flow_run_id(again)) if r.name.startswith("extract-")]
    assert [r.name for r in rerun] == [f"extract-{bad[:12]}"]
