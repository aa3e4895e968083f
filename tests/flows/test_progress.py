"""tasks/progress.py: which updates of a progress bar reach the Prefect API.

The clock and the publishing threads are replaced: `put` records what would be sent, and `send`
runs it as a publishing thread would, against a recorder in place of Prefect's artifact calls.
The publisher itself (lanes in order, lanes side by side, flush) is tested with plain calls.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable
from typing import Any
from uuid import uuid4

import pytest

import tasks.progress as progress
from tasks.progress import ProgressArtifact

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> tuple[Clock, list[Callable[[], Any]], list[str]]:
    clock = Clock()
    queued: list[Callable[[], Any]] = []
    published: list[str] = []
    monkeypatch.setattr(progress.time, "monotonic", clock)
    monkeypatch.setattr(progress._publisher, "put", lambda _lane, call: queued.append(call))

    def create(percent: float, description: str) -> Any:
        published.append(description)
        return uuid4()

    def update(_artifact: Any, percent: float, description: str) -> None:
        published.append(description)

    monkeypatch.setattr(progress, "create_progress_artifact", create)
    monkeypatch.setattr(progress, "update_progress_artifact", update)
    return clock, queued, published


def send_all(queued: list[Callable[[], Any]]) -> None:
    while queued:
        queued.pop(0)()


def test_work_over_within_the_interval_shows_no_bar(world: Any) -> None:
    clock, queued, published = world
    bar = ProgressArtifact("extracting PDFs", every_s=2.0)
    for done in range(9):
        bar(done, 8)
        clock.now += 0.2  # 8 items in 1.6 s
    send_all(queued)
    assert published == []


def test_long_work_shows_once_due_then_throttled_and_always_its_end(world: Any) -> None:
    clock, queued, published = world
    bar = ProgressArtifact("training instruct: steps", every_s=2.0)
    for step in range(1, 41):  # a step every 0.25 s: 10 s of work
        clock.now += 0.25
        bar(step, 40)
        send_all(queued)  # a server that keeps up
    # The clock starts at step 1; step 9 is the first 2 s later, then one every 2 s, and the end.
    assert published == [f"training instruct: steps: {s} of 40" for s in (9, 17, 25, 33, 40)]


def test_a_slow_first_item_shows_the_bar_when_it_ends(world: Any) -> None:
    clock, queued, published = world
    bar = ProgressArtifact("downloading PDFs", every_s=2.0)
    for seconds, done in ((0.0, 0), (30.0, 1), (0.5, 2), (0.5, 3)):  # 2: throttled; 3: the end
        clock.now += seconds
        bar(done, 3)
        send_all(queued)
    assert published == ["downloading PDFs: 1 of 3", "downloading PDFs: 3 of 3"]


def test_interval_zero_publishes_every_new_update(world: Any) -> None:
    _clock, queued, published = world
    bar = ProgressArtifact("answers", every_s=0)
    for done in (0, 1, 1, 2):
        bar(done, 2)
        send_all(queued)
    assert published == ["answers: 0 of 2", "answers: 1 of 2", "answers: 2 of 2"]


def test_updates_waiting_behind_a_newer_one_are_dropped(world: Any) -> None:
    _clock, queued, published = world
    bar = ProgressArtifact("answers", every_s=0)
    bar(1, 3)
    bar(2, 3)
    bar(3, 3)
    assert len(queued) == 3  # the server was slow: all three wait
    send_all(queued)
    assert published == ["answers: 3 of 3"]  # the first send takes the newest; the rest skip


# ----------------------------------------------------------------------------- the publisher


def test_calls_in_one_lane_are_made_in_the_order_asked() -> None:
    publisher = progress._Publisher(threads=4)
    made: list[int] = []

    def call(number: int) -> None:
        time.sleep(0.002 * (number % 3))  # uneven calls: a free thread must not jump the queue
        made.append(number)

    for number in range(20):
        publisher.put("ldrt-train-summary", functools.partial(call, number))
    publisher.flush()
    assert made == list(range(20))


def test_lanes_are_published_side_by_side() -> None:
    publisher = progress._Publisher(threads=4)
    both = threading.Barrier(2, timeout=5)  # met only when the two calls run at once
    met: list[str] = []

    def call(lane: str) -> None:
        both.wait()
        met.append(lane)

    publisher.put("ldrt-evaluation-report", functools.partial(call, "report"))
    publisher.put("ldrt-pipeline-summary", functools.partial(call, "summary"))
    publisher.flush()
    assert sorted(met) == ["report", "summary"]


def test_flush_waits_for_every_call_and_a_failed_one_is_only_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    publisher = progress._Publisher(threads=2)
    made: list[str] = []

    def fail() -> None:
        raise ConnectionError("the Prefect API is down")

    publisher.put("a", fail)
    publisher.put("a", lambda: (time.sleep(0.05), made.append("after the failure")))
    publisher.put("b", lambda: made.append("other lane"))
    publisher.flush()
    assert sorted(made) == ["after the failure", "other lane"]
    assert "the Prefect API is down" in caplog.text
    publisher.flush()  # nothing pending: returns at once


def test_a_call_that_raises_a_base_exception_neither_stops_the_lane_nor_hangs_flush(
    caplog: pytest.LogCaptureFixture,
) -> None:
    publisher = progress._Publisher(threads=1)  # one thread: it must survive to serve the rest
    made: list[str] = []

    def cancelled() -> None:
        raise asyncio.CancelledError  # as an interrupted Prefect client call raises

    publisher.put("a", cancelled)
    publisher.put("a", lambda: made.append("after the cancelled call"))
    publisher.put("b", lambda: made.append("other lane"))
    flushing = threading.Thread(target=publisher.flush, daemon=True)
    flushing.start()
    flushing.join(5)
    assert not flushing.is_alive(), "flush still waiting"
    assert sorted(made) == ["after the cancelled call", "other lane"]
    assert "CancelledError" in caplog.text


def test_flush_waits_a_bounded_time_and_says_what_it_left(
    caplog: pytest.LogCaptureFixture,
) -> None:
    publisher = progress._Publisher(threads=1)
    release = threading.Event()
    publisher.put("ldrt-evaluation-report", lambda: release.wait(5))  # a call that hangs
    started = time.monotonic()
    publisher.flush(timeout_s=0.2)
    assert time.monotonic() - started < 2
    assert "1 artifact call(s) still pending" in caplog.text
    release.set()
    publisher.flush()  # the call ends: nothing left
