"""What the Prefect UI shows of a run: progress bars and tables, published off the work's thread.

Each artifact is an API call, and against a busy server one takes 20 to 70 ms. `publish` hands it
to one background thread per process instead, which makes the calls in order, each in the
context (flow run, task run, settings) of the code that asked for it; the work goes on at once.
`FLUSH_ARTIFACTS` (flow hooks) makes a flow run wait for them before its function returns, so
that no artifact is lost when the process ends. A call that fails is logged, and never
fails the run.

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
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, ParamSpec
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact

log = logging.getLogger(__name__)

P = ParamSpec("P")


class _Publisher:
    def __init__(self) -> None:
        self._calls: queue.Queue[tuple[contextvars.Context, Callable[[], Any]]] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def put(self, call: Callable[[], Any]) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._serve, name="ldrt-artifacts", daemon=True
                )
                self._thread.start()
        self._calls.put((contextvars.copy_context(), call))

    def _serve(self) -> None:
        while True:
            context, call = self._calls.get()
            try:
                context.run(call)
            except Exception as exc:  # an artifact is worth a warning, never a failed run
                log.warning("could not publish an artifact to the Prefect API: %s", exc)
            finally:
                self._calls.task_done()

    def flush(self) -> None:
        self._calls.join()


_publisher = _Publisher()


def publish(create: Callable[P, Any], *args: P.args, **kwargs: P.kwargs) -> None:
    """Call `create` (e.g. `create_table_artifact`) on the publishing thread, in this context."""
    _publisher.put(functools.partial(create, *args, **kwargs))


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
        _publisher.put(self._send)

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
