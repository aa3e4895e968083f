"""What the Prefect UI shows of a run: progress bars and tables, published off the work's thread.

Each artifact is an API call, and against a busy server one takes 20 to 70 ms. `publish` hands it
to a few background threads per process instead, which make the calls, each in the context (flow
run, task run, settings) of the code that asked for it; the work goes on at once. Calls in one
lane (one artifact key, one progress bar) are made in the order they were asked for; calls in
different lanes go side by side, so the tables at the end of a run (the last stage's, the
report, the pipeline's summary) cost the wait for one call, not for each in turn.
`FLUSH_ARTIFACTS` (flow hooks) makes a flow run wait for them before its function returns, so
that no artifact is lost when the process ends, for at most `FLUSH_TIMEOUT_S`, so that a call
that hangs never hangs the run. A call that fails (even cancelled) is logged, and never fails
the run.

`ProgressArtifact` is a progress bar for long work, fed by `(done, total)`: nothing is published
until the work has run `every_s` seconds (LDRT_PROGRESS_EVERY_S), then the newest update at most
once every `every_s`, and always the last (done == total) once the bar shows. Updates still
waiting when a newer one comes are dropped, so a slow server never holds a backlog. Work that
ends sooner shows no bar (its stage's table says what it did): each update is an API call that
costs the server 7 to 10 ms of CPU, and on a machine it shares with the work, a demo-sized
pipeline ran 0.2 to 0.4 s longer for its dozen bars that were over in under a second.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any, ParamSpec
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact

log = logging.getLogger(__name__)

P = ParamSpec("P")

_Call = tuple[contextvars.Context, Callable[[], Any]]

# The longest a flow run's end waits for its artifacts. A call normally takes 20 to 70 ms; one
# still going after two minutes is stuck, and the run ends rather than hang with it.
FLUSH_TIMEOUT_S = 120.0


class _Publisher:
    def __init__(self, threads: int = 4) -> None:
        self._threads = threads
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._ready: queue.SimpleQueue[tuple[Hashable, _Call]] = queue.SimpleQueue()
        # A lane with a call under way (or ready) -> the calls waiting behind it; no lanes, no
        # calls pending.
        self._lanes: dict[Hashable, deque[_Call]] = {}
        self._started_in: int | None = None  # the process whose threads serve (none survive a fork)

    def put(self, lane: Hashable, call: Callable[[], Any]) -> None:
        """Make `call` in the caller's context, after the calls asked for before it in `lane`."""
        made: _Call = (contextvars.copy_context(), call)
        with self._lock:
            self._start()
            if lane in self._lanes:  # a call of this lane is under way: wait behind it
                self._lanes[lane].append(made)
                return
            self._lanes[lane] = deque()
        self._ready.put((lane, made))

    def _start(self) -> None:
        if self._started_in == os.getpid():
            return
        if self._started_in is not None:  # a forked child: its parent's calls are not its own
            self._ready, self._lanes = queue.SimpleQueue(), {}
        self._started_in = os.getpid()
        for number in range(self._threads):
            name = f"ldrt-artifacts-{number}"
            threading.Thread(target=self._serve, name=name, daemon=True).start()

    def _serve(self) -> None:
        while True:
            lane, made = self._ready.get()
            while True:  # this lane's calls, in order, until none is waiting
                context, call = made
                try:
                    context.run(call)
                # BaseException too: a call interrupted with asyncio.CancelledError would end
                # this thread with its lane still registered, and flush would wait for it forever.
                except BaseException as exc:  # an artifact is worth a warning, never a failed run
                    log.warning(
                        "could not publish an artifact to the Prefect API: %s: %s",
                        type(exc).__name__,
                        exc,
                    )
                with self._lock:
                    waiting = self._lanes[lane]
                    if not waiting:
                        del self._lanes[lane]
                        if not self._lanes:
                            self._idle.notify_all()
                        break
                    made = waiting.popleft()

    def flush(self, timeout_s: float = FLUSH_TIMEOUT_S) -> None:
        """Wait until every call asked for so far is made, at most `timeout_s`: a call that
        hangs costs the run its artifacts, never its end."""
        with self._lock:
            if not self._idle.wait_for(lambda: not self._lanes, timeout=timeout_s):
                pending = sum(1 + len(waiting) for waiting in self._lanes.values())
                log.warning(
                    "%d artifact call(s) still pending after %.0f s; not waiting for them",
                    pending,
                    timeout_s,
                )


_publisher = _Publisher()


def publish(create: Callable[P, Any], *args: P.args, **kwargs: P.kwargs) -> None:
    """Call `create` (e.g. `create_table_artifact`) on a publishing thread, in this context; calls
    with the same `key` are made in order."""
    lane = kwargs.get("key") or object()
    _publisher.put(lane, functools.partial(create, *args, **kwargs))


def _flush_hook(*_: Any) -> None:
    """Wait until every artifact asked for so far is published."""
    _publisher.flush()


# For `@flow(..., **FLUSH_ARTIFACTS)`: whatever way the flow run ends, its artifacts are published
# before its function returns (the hooks run after the final state is set, in the flow's
# process). The pipeline runs its stages' bodies inline, which run no hooks: their artifacts
# are published in the background while the next stage works, and the pipeline's hooks wait.
FLUSH_ARTIFACTS: dict[str, Any] = {
    hook: [_flush_hook] for hook in ("on_completion", "on_failure", "on_crashed", "on_cancellation")
}


class ProgressArtifact:
    def __init__(self, description: str, every_s: float) -> None:
        self.description = description
        self.every_s = every_s
        self.artifact: UUID | None = None
        self.started: float | None = None  # when the first update came
        self.shown: tuple[int, int] | None = None  # the newest update asked for
        self.sent: tuple[int, int] | None = None  # the newest update published
        self.last = float("-inf")  # when the newest update was asked for

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self.started is None:
            self.started = now
        if now - self.started < self.every_s or self.shown == (done, total):
            return  # short work so far, or nothing new
        final = total > 0 and done >= total
        if not final and now - self.last < self.every_s:
            return
        self.shown, self.last = (done, total), now
        _publisher.put(self, self._send)

    def _send(self) -> None:
        update = self.shown
        if update is None or update == self.sent:
            return  # a newer update was already sent in this one's place
        self.sent = update
        done, total = update
        percent = min(100.0, 100.0 * done / total) if total else 0.0
        description = f"{self.description}: {done} of {total}"
        if self.artifact is None:
            made: Any = create_progress_artifact(percent, description=description)
            self.artifact = made
        else:
            update_progress_artifact(self.artifact, percent, description=description)
