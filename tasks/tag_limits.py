"""Tag concurrency limits, asked of the server only where one exists.

Prefect (3.9) asks the server for a slot under a task run's tags (`increment-with-lease`) at the
start of every tagged task run, whether or not a limit exists on any of them, and it sends those
requests one at a time per set of tags. Every ldrt task is tagged, so every task run waited for
one round trip on the work's critical path (25 to 35 ms against an idle local server), and
per-item tasks that start together waited for each other's: the first four downloads of a
refresh started 130 ms after they were submitted.

`install()` puts a gate in front of that call for this process's task runs. The gate reads which
`tag:` limits the server has (one request, at most once every `REFRESH_S` seconds per API) and
calls Prefect's own acquisition, unchanged, for a task run with a limited tag. A task run whose
tags have no limit starts at once, as Prefect's call would have let it after its round trip. A
limit made while a process runs (`prefect concurrency-limit create ldrt-extract 2`) applies to
its task runs within `REFRESH_S` seconds; a new flow run process sees it at once. When the
limits cannot be read, every tagged task run asks as before.

It replaces one private name in `prefect.task_engine` (async tasks, which ldrt has none of,
keep Prefect's); on a Prefect without it, `install()` leaves Prefect's in place. Importing
`tasks` installs it, so every process that runs ldrt's task runs has it, flows imported or not.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from prefect import task_engine
from prefect.client.orchestration import get_client
from prefect.settings import get_current_settings

log = logging.getLogger(__name__)

REFRESH_S = 10.0  # the longest a new tag limit goes unseen by a running process
_PAGE = 200

_prefect_concurrency: Callable[..., AbstractContextManager[None]] | None = getattr(
    task_engine, "_concurrency", None
)


class LimitedTags:
    """The names of the server's `tag:` concurrency limits, re-read when `refresh_s` old."""

    def __init__(self, refresh_s: float = REFRESH_S) -> None:
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._read: dict[str, tuple[float, frozenset[str] | None]] = {}  # API URL -> when, names

    def names(self) -> frozenset[str] | None:
        """The limited `tag:NAME`s on the current API; None when they could not be read."""
        api = str(get_current_settings().api.url)
        with self._lock:  # task runs starting together wait for one read, not one each
            read_at, names = self._read.get(api, (float("-inf"), None))
            if time.monotonic() - read_at >= self.refresh_s:
                names = _read_tag_limits()
                self._read[api] = (time.monotonic(), names)
            return names

    def forget(self) -> None:
        """Read again at the next task run (tests; after changing limits in this process)."""
        with self._lock:
            self._read.clear()


def _read_tag_limits() -> frozenset[str] | None:
    names: set[str] = set()
    try:
        with get_client(sync_client=True) as client:
            while True:
                page = client.read_global_concurrency_limits(limit=_PAGE, offset=len(names))
                names.update(limit.name for limit in page)
                if len(page) < _PAGE:
                    break
    except Exception as exc:  # the server decides, as without the gate
        log.debug("could not read the concurrency limits, so every tagged task asks: %s", exc)
        return None
    return frozenset(name for name in names if name.startswith("tag:"))


limited_tags = LimitedTags()


@contextmanager
def concurrency_where_limited(names: str | list[str], *args: Any, **kwargs: Any) -> Iterator[None]:
    """Prefect's tag concurrency for a task run, when one of its tags has a limit."""
    wanted = {names} if isinstance(names, str) else set(names)
    limited = limited_tags.names() if wanted else frozenset()
    if limited is not None and not wanted & limited:
        yield
        return
    assert _prefect_concurrency is not None  # install() makes sure
    with _prefect_concurrency(names, *args, **kwargs):
        yield


def install() -> bool:
    """Gate the tag concurrency call of this process's task runs; False if this Prefect differs."""
    if _prefect_concurrency is None or getattr(task_engine, "_concurrency", None) not in (
        _prefect_concurrency,
        concurrency_where_limited,
    ):
        return False
    task_engine._concurrency = concurrency_where_limited  # type: ignore[attr-defined]
    return True
