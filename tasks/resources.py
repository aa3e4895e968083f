"""What a task needs besides its inputs: the lineage database, the artifact store, the pool of
extraction workers. Tasks take the `Settings` (picklable, secrets masked in its repr) and open
these here, once per process: threads in one flow run share them, and a Dask worker process
would open its own.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import threading
from collections.abc import Callable, Hashable
from typing import Generic, ParamSpec, TypeVar

from sqlalchemy import Engine

from ldrt_core import db
from ldrt_core.config import Settings, mask_url
from ldrt_core.extract.isolation import IsolatedPool
from ldrt_core.extract.records import ExtractOptions
from ldrt_core.store import ArtifactStore, open_store

P = ParamSpec("P")
V = TypeVar("V")


class made_once(Generic[P, V]):  # a decorator, named like functools.cache
    """`functools.cache` that makes each value once even when threads ask for it together.
    With `cache` alone, the first two extract tasks of a flow run, starting side by side, each
    made an extraction pool: four worker processes booted on two cores, and both first PDFs
    took three times as long."""

    def __init__(self, make: Callable[P, V]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._made: dict[Hashable, V] = {}
        self.calls = 0  # how often it was asked, made or not
        functools.update_wrapper(self, make)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> V:
        key = (args, tuple(sorted(kwargs.items())))
        with self._lock:
            self.calls += 1
            if key not in self._made:
                self._made[key] = self._make(*args, **kwargs)
            return self._made[key]

    def cache_clear(self) -> None:
        with self._lock:
            self._made.clear()

    def __reduce__(self) -> str:
        """Pickled by name, as functions are: a task shipped to a Dask worker uses the worker's."""
        return self._make.__qualname__


@made_once
def lineage(settings: Settings) -> Engine:
    """The lineage database's engine (one pool per process and configuration)."""
    return db.connect(settings)


@made_once
def _migrate(engine: Engine) -> None:
    db.upgrade(engine)


def migrated_lineage(settings: Settings) -> Engine:
    """`lineage(settings)` migrated to the newest schema; each flow calls it at its start, and
    it migrates once per process (the pipeline's six stage flows share one check)."""
    engine = lineage(settings)
    _migrate(engine)
    return engine


@made_once
def artifact_store(settings: Settings) -> ArtifactStore:
    return open_store(settings)


_pools: list[IsolatedPool] = []  # every extraction pool this process started


@made_once
def extraction_pool(workers: int, options: ExtractOptions) -> IsolatedPool:
    """Long-lived worker processes with time and memory limits, closed when the process exits."""
    pool = IsolatedPool(workers, options)
    _pools.append(pool)
    return pool


@atexit.register
def close_extraction_pools() -> None:
    """Stop the extraction pools this process started; the next extraction starts a new one.
    Runs at exit (and `bench/orchestration.py` calls it between runs: a worker starts each flow
    run in a new process, whose first extraction starts the pool)."""
    extraction_pool.cache_clear()
    while _pools:
        _pools.pop().close()


def target_fingerprint(settings: Settings) -> str:
    """Which database and store results land in, without secrets: part of every cache key, so a
    cached result is never reused against another database or store."""
    where = f"{mask_url(settings.db_url)}\n{settings.store_url}"
    return hashlib.sha256(where.encode()).hexdigest()[:16]
