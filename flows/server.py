"""The settings of every Prefect server ldrt starts or ships (compose, CI, the bench, the UI
screenshots, the tests' temporary server).

Task run states reach the server as events, and its task run recorder writes them to the
database. By default it writes each one in its own transaction (batch size 1), and rebuilds an
upsert statement each time. A pipeline run on the sample corpus sends about 80 of them, and
the server spent about 2.6 s of CPU on a run that takes 10 s of work. With batches of up to 100,
written at least once a second, it spends about 1.8 s, and on two cores that CPU comes out of
the work's time (`bench/orchestration.py`). The cost: a task run's state shows in the UI and
the API up to a second later.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

RECORDER_FLUSH_S = 1  # the longest a task run's state waits to be written

SERVER_SETTINGS: dict[str, str] = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": str(RECORDER_FLUSH_S),
}


@contextmanager
def temporary_server(startup_timeout_s: int = 120) -> Iterator[None]:
    """Prefect's temporary local server (a subprocess on a free port, on SQLite) with
    SERVER_SETTINGS, as the API for the length of the block."""
    from prefect.testing.utilities import prefect_test_harness

    with _environment(SERVER_SETTINGS), prefect_test_harness(startup_timeout_s):
        yield


@contextmanager
def _environment(variables: dict[str, str]) -> Iterator[None]:
    """These environment variables (the server's process takes this one's) for the block."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
