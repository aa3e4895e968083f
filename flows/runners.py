"""The task runner of the flows that fan out per item (refresh's downloads, extract's PDFs).

LDRT_TASK_RUNNER picks it when the flows are imported, so a worker's environment decides:

- `threads` (default) or `threads:N`: a thread pool in the flow run's process;
- `dask` or `dask:N`: a local Dask cluster of N worker processes (default: one per core),
  started for the flow run and closed after it;
- `dask:tcp://HOST:PORT`: the Dask cluster whose scheduler listens there (start its workers
  with DASK_DISTRIBUTED__WORKER__DAEMON=False: extraction needs child processes).

The flows still submit at most LDRT_DOWNLOAD_WORKERS / LDRT_EXTRACT_WORKERS items at a time;
the runner decides where they run. A Dask worker opens its own database pool, store client and
extraction processes (`tasks.resources`).
"""

from __future__ import annotations

import os
from typing import Any

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from ldrt_core.config import parse_task_runner
from ldrt_core.errors import ConfigError

VARIABLE = "LDRT_TASK_RUNNER"


def task_runner(spec: str | None = None) -> TaskRunner[Any]:
    """The runner `spec` names (default: LDRT_TASK_RUNNER, else threads)."""
    spec = (os.environ.get(VARIABLE) or "threads") if spec is None else spec
    try:
        kind, workers, address = parse_task_runner(spec)
    except ValueError as exc:
        raise ConfigError(f"{VARIABLE}={exc}") from None
    if kind == "threads":
        return ThreadPoolTaskRunner(max_workers=workers)
    return _dask_runner(workers, address)


def _dask_runner(workers: int | None, address: str | None) -> TaskRunner[Any]:
    try:
        import dask
        from prefect_dask.task_runners import DaskTaskRunner
    except ImportError:
        raise ConfigError(
            f"{VARIABLE} asks for Dask, which is not installed: pip install 'ldrt[dask]'"
        ) from None
    if address:
        return DaskTaskRunner(address=address)
    # Extraction runs each PDF in a child process, and daemonic processes may have none.
    dask.config.set({"distributed.worker.daemon": False})
    cluster: dict[str, Any] = {"threads_per_worker": 1, "processes": True}
    if workers:
        cluster["n_workers"] = workers
    return DaskTaskRunner(cluster_kwargs=cluster)
