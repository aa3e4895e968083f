"""The per-item flows' task runner: threads by default, or a Dask cluster (`flows.runners`).

Input: LDRT_TASK_RUNNER specs; for the cluster test, three sample PDFs stored as documents under
an embedded LDRT_HOME, a local Dask cluster of two worker processes, and the Prefect API (CI's
server, else the test harness). Output: the runner objects; the extract flow's task runs, the
documents' rows, and which processes opened extraction workers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask
import pytest
from distributed import Client, LocalCluster
from prefect.task_runners import ThreadPoolTaskRunner
from prefect_dask.task_runners import DaskTaskRunner
from sqlalchemy import select

from flows.runners import task_runner
from flows.stages import extract_flow
from ldrt_core import db
from ldrt_core.config import load_settings
from ldrt_core.db.models import Document
from ldrt_core.errors import ConfigError
from ldrt_core.samples import write_sample_corpus
from ldrt_core.store import open_store
from tests.flows.test_flows import flow_run_id, task_runs
from tests.support.corpus import store_documents


def test_threads_by_default_and_with_a_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LDRT_TASK_RUNNER", raising=False)
    default = task_runner()
    assert isinstance(default, ThreadPoolTaskRunner)
    assert default._max_workers == ThreadPoolTaskRunner()._max_workers  # Prefect's default
    monkeypatch.setenv("LDRT_TASK_RUNNER", "threads:3")
    sized = task_runner()
    assert isinstance(sized, ThreadPoolTaskRunner) and sized._max_workers == 3


def test_dask_runners_local_or_at_an_address() -> None:
    local = task_runner("dask:2")
    assert isinstance(local, DaskTaskRunner) and local.address is None
    assert local.cluster_kwargs == {"n_workers": 2, "threads_per_worker": 1, "processes": True}
    assert dask.config.get("distributed.worker.daemon") is False  # extraction forks workers
    remote = task_runner("dask:tcp://10.1.2.3:8786")
    assert isinstance(remote, DaskTaskRunner) and remote.address == "tcp://10.1.2.3:8786"


@pytest.mark.parametrize("spec", ["thread", "threads:0", "dask:two", "spark", "threads:x"])
def test_a_bad_spec_names_the_variable_and_the_choices(spec: str) -> None:
    with pytest.raises(ConfigError, match=r"LDRT_TASK_RUNNER=.*dask:tcp://HOST:PORT"):
        task_runner(spec)


def test_settings_refuse_a_bad_spec_too() -> None:
    with pytest.raises(ConfigError, match=r"LDRT_TASK_RUNNER: 'dask:two': use threads, "):
        load_settings({"LDRT_TASK_RUNNER": "dask:two"})


def _extraction_calls() -> int:
    """How often this process asked for its extraction worker pool (run on each Dask worker)."""
    from tasks.resources import extraction_pool

    return extraction_pool.calls


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_extract_flow_on_a_local_dask_cluster_of_two_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LDRT_HOME", str(tmp_path / "home"))
    settings = load_settings()
    engine = db.connect(settings)
    db.upgrade(engine)
    store = open_store(settings)
    papers = write_sample_corpus(tmp_path / "papers", papers=3, seed=2)
    shas = store_documents(engine, store, [p.pdf_path.read_bytes() for p in papers])
    here_before = _extraction_calls()

    with (
        dask.config.set({"distributed.worker.daemon": False}),
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        runner: Any = task_runner(f"dask:{cluster.scheduler_address}")
        state = extract_flow.with_options(task_runner=runner)(return_state=True)
        per_worker: dict[str, int] = client.run(_extraction_calls)

    assert state.is_completed(), state.message
    assert state.result()["extracted"] == 3
    runs = [r for r in task_runs(flow_run_id(state)) if r.name.startswith("extract-")]
    assert sorted(r.name for r in runs) == sorted(f"extract-{sha[:12]}" for sha in shas)
    assert all(r.state.is_completed() for r in runs)
    with db.session_scope(engine) as session:
        documents = list(session.scalars(select(Document)))
    assert len(documents) == 3 and all(d.extract_status == "ok" and d.pages for d in documents)
    # The work ran in the two worker processes, each with its own extraction pool, not here.
    assert len(per_worker) == 2 and sum(per_worker.values()) == 3
    assert _extraction_calls() == here_before
