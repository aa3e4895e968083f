"""tasks/resources.py: what tasks share in a process is made once, even by threads together."""

from __future__ import annotations

import pickle
import threading
import time
from typing import Any

import pytest

import tasks.resources as resources
from ldrt_core.extract.records import ExtractOptions

pytestmark = pytest.mark.unit


def test_extract_tasks_starting_together_share_one_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first extract tasks of a flow run start side by side; they must not each start a
    pool of worker processes."""
    made: list[int] = []

    class SlowPool:  # an IsolatedPool takes a moment to start its worker threads
        def __init__(self, workers: int, options: ExtractOptions) -> None:
            time.sleep(0.05)
            made.append(workers)

        def close(self) -> None:
            pass

    monkeypatch.setattr(resources, "IsolatedPool", SlowPool)
    resources.close_extraction_pools()
    options = ExtractOptions()
    start = threading.Barrier(6)
    got: list[Any] = []

    def task() -> None:
        start.wait()
        got.append(resources.extraction_pool(2, options))

    threads = [threading.Thread(target=task) for _ in range(6)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert made == [2]
        assert len({id(pool) for pool in got}) == 1

        resources.extraction_pool(3, options)  # another configuration is another pool
        assert made == [2, 3]
    finally:
        resources.close_extraction_pools()
    resources.extraction_pool(2, options)  # closed pools are forgotten: the next run starts anew
    assert made == [2, 3, 2]
    resources.close_extraction_pools()


def test_made_once_keys_on_every_argument() -> None:
    calls: list[tuple[Any, ...]] = []

    @resources.made_once
    def make(a: int, b: str = "x") -> tuple[int, str]:
        calls.append((a, b))
        return (a, b)

    assert make(1) is make(1)
    assert make(1, b="y") == (1, "y")
    assert make(2) == (2, "x")
    assert calls == [(1, "x"), (1, "y"), (2, "x")]
    make.cache_clear()
    make(1)
    assert calls[-1] == (1, "x") and len(calls) == 4


def test_a_shared_resource_pickles_by_name() -> None:
    """Tasks shipped to Dask workers carry references to these, not this process's pools."""
    assert pickle.loads(pickle.dumps(resources.extraction_pool)) is resources.extraction_pool
