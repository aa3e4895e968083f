"""What a task needs besides its inputs: the lineage database, the artifact store, the pool of
extraction workers. Tasks take the `Settings` (picklable, secrets masked in its repr) and open
these here, once per process: threads in one flow run share them, and a Dask worker process
would open its own.
"""

from __future__ import annotations

import atexit
import hashlib
import threading
from functools import cache

from sqlalchemy import Engine

from ldrt_core import db
from ldrt_core.config import Settings, mask_url
from ldrt_core.extract.isolation import IsolatedPool
from ldrt_core.extract.records import ExtractOptions
from ldrt_core.store import ArtifactStore, open_store

_upgrade_lock = threading.Lock()
_migrated: set[Engine] = set()


@cache
def lineage(settings: Settings) -> Engine:
    """The lineage database's engine (one pool per process and configuration)."""
    return db.connect(settings)


def migrated_lineage(settings: Settings) -> Engine:
    """`lineage(settings)` migrated to the newest schema; each flow calls it at its start, and
    it migrates once per process (the pipeline's six stage flows share one check)."""
    engine = lineage(settings)
    with _upgrade_lock:
        if engine not in _migrated:
            db.upgrade(engine)
            _migrated.add(engine)
    return engine


@cache
def artifact_store(settings: Settings) -> ArtifactStore:
    return open_store(settings)


_pools: list[IsolatedPool] = []  # every extraction pool this process started


@cache
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
