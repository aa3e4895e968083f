"""tasks/tag_limits.py: task runs ask the server for slots only under tags that have a limit,
and a limit still holds, including one made while the process runs.

Real flow runs against the Prefect server; the spy counts Prefect's own slot requests and calls
through to them.
"""

from __future__ import annotations

import contextlib
import itertools
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from prefect import flow, task, task_engine
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.concurrency import _sync
from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, temporary_settings

import tasks  # noqa: F401  (installs the gate)
from tasks.stages import extract_document_task
from tasks.tag_limits import LimitedTags, concurrency_where_limited, install, limited_tags

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.usefixtures("prefect_api")

HOLD_S = 0.3


@pytest.fixture
def slot_requests(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The names of every slot request Prefect sends to the server from here on."""
    sent: list[list[str]] = []
    real = _sync.acquire_concurrency_slots_with_lease

    def spy(names: list[str], *args: Any, **kwargs: Any) -> Any:
        sent.append(list(names))
        return real(names, *args, **kwargs)

    monkeypatch.setattr(_sync, "acquire_concurrency_slots_with_lease", spy)
    return sent


@pytest.fixture
def tag() -> Iterator[str]:
    """A tag of this test's own, with no limit left behind."""
    name = f"ldrt-test-{uuid.uuid4().hex[:8]}"
    yield name
    with get_client(sync_client=True) as client, contextlib.suppress(Exception):  # none made
        client.delete_concurrency_limit_by_tag(name)
    limited_tags.forget()


def run_tagged(tag: str, count: int) -> list[tuple[float, float]]:
    """`count` task runs tagged `tag`, submitted at once; when each held its slot."""
    spans: list[tuple[float, float]] = []
    lock = threading.Lock()

    @task(tags={tag}, cache_policy=NO_CACHE)
    def hold(i: int) -> int:
        started = time.monotonic()
        time.sleep(HOLD_S)
        with lock:
            spans.append((started, time.monotonic()))
        return i

    @flow(persist_result=False)
    def tagged() -> list[int]:
        return [future.result() for future in [hold.submit(i) for i in range(count)]]

    assert sorted(tagged()) == list(range(count))
    return sorted(spans)


def test_tasks_import_installs_it_on_this_prefect() -> None:
    assert install()  # False would mean this Prefect no longer has the call the gate wraps
    assert task_engine._concurrency is concurrency_where_limited


def test_a_process_that_only_unpickles_a_task_has_it() -> None:
    """A process that gets a task by pickle and never imports the flows runs it gated."""
    pickled = cloudpickle.dumps(extract_document_task)
    worker = (
        "import pickle, sys\n"
        "task = pickle.loads(sys.stdin.buffer.read())\n"
        "from prefect import task_engine\n"
        "print(task.name, task_engine._concurrency.__module__, 'flows' in sys.modules)\n"
    )
    shown = subprocess.run(
        [sys.executable, "-c", worker], input=pickled, capture_output=True, check=True, cwd=REPO
    ).stdout.decode()
    assert shown.split() == ["extract-document", "tasks.tag_limits", "False"]


def test_tags_without_a_limit_send_no_slot_request(
    slot_requests: list[list[str]], tag: str
) -> None:
    limited_tags.forget()
    spans = run_tagged(tag, 4)
    assert slot_requests == []  # Prefect's engine sent one per task run, one at a time
    assert spans[-1][0] - spans[0][0] < HOLD_S  # and the four ran side by side


def test_a_tag_limit_made_while_the_process_runs_holds_after_the_refresh(
    slot_requests: list[list[str]], tag: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    limited_tags.forget()
    monkeypatch.setattr(limited_tags, "refresh_s", 0.5)
    run_tagged(tag, 2)  # reads the limits: none on this tag yet
    assert slot_requests == []

    with get_client(sync_client=True) as client:
        client.create_concurrency_limit(tag=tag, concurrency_limit=1)
    time.sleep(0.6)
    spans = run_tagged(tag, 3)

    assert slot_requests == [[f"tag:{tag}"]] * 3
    for (_, first_end), (second_start, _) in itertools.pairwise(spans):
        assert second_start >= first_end - 0.05  # one at a time: the server's limit held


def test_limits_that_cannot_be_read_leave_every_request_to_the_server() -> None:
    with temporary_settings(
        {PREFECT_API_URL: "http://127.0.0.1:9/api", PREFECT_CLIENT_MAX_RETRIES: 0}
    ):
        assert LimitedTags().names() is None
