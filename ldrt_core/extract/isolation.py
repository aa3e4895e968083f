"""Run extraction in worker processes with a time and a memory limit, so a hostile or broken PDF
costs one failed document instead of a hung, crashed or swapped-to-death pipeline.

`IsolatedPool` keeps long-lived workers (started from a forkserver, never forked from this
possibly threaded process). One dispatcher thread per worker sends it one task at a time over
its own pipe and waits at most `timeout_s`; a worker that overruns, crashes or runs out of
memory is killed and replaced, and only its task fails, with a typed ExtractionError.
`run_isolated` is the one-document form.

The memory limit is an RLIMIT_AS cap set once when a worker starts: the worker may grow its
address space by `memory_mb` over its start-up footprint (what it inherits from the forkserver,
which imports the program's main module). Past it, allocations fail: Python raises MemoryError.

Functions run in a worker must be defined at module level (they are pickled by name), their
arguments and results must be picklable, and, as with any multiprocessing code, the program's
main script must only start work under `if __name__ == "__main__":`.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import pickle
import queue
import resource
import signal
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from ldrt_core.errors import (
    ExtractionCrashedError,
    ExtractionError,
    ExtractionMemoryError,
    ExtractionTimeoutError,
)
from ldrt_core.extract.records import ExtractOptions

T = TypeVar("T")
Task = Callable[[bytes, ExtractOptions], T]

_CONTEXT = multiprocessing.get_context("forkserver")
_AS = resource.RLIMIT_AS
_STOP_GRACE_S = 5.0  # how long a worker may take to exit when asked before it is killed


def run_isolated(fn: Task[T], pdf: bytes, options: ExtractOptions) -> T:
    """`fn(pdf, options)` in a fresh worker process under options' time and memory limits."""
    with IsolatedPool(1, options) as pool:
        return pool.submit(fn, pdf).result()


@dataclass
class _Job:
    fn: Task[Any]
    pdf: bytes
    future: Future[Any]


class IsolatedPool:
    """`workers` long-lived worker processes; each task gets options.timeout_s and the worker's
    address space is capped at options.memory_mb (0 or less: no cap)."""

    def __init__(self, workers: int, options: ExtractOptions) -> None:
        if workers < 1:
            raise ValueError(f"an IsolatedPool needs at least one worker, not {workers}")
        self._options = options
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._serve, name=f"ldrt-isolated-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def options(self) -> ExtractOptions:
        """What every PDF is extracted with here."""
        return self._options

    def submit(self, fn: Task[T], pdf: bytes) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the IsolatedPool is closed")
            self._jobs.put(_Job(fn, pdf, future))
        return future

    def close(self) -> None:
        """Finish the tasks already submitted, then stop the workers."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for _ in self._threads:
                self._jobs.put(None)
        for thread in self._threads:
            thread.join()

    def __enter__(self) -> IsolatedPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _serve(self) -> None:
        worker: _Worker | None = None
        with contextlib.suppress(Exception):  # start now; a failure shows at the first task
            worker = _Worker(self._options.memory_mb)
        try:
            while (job := self._jobs.get()) is not None:
                if not job.future.set_running_or_notify_cancel():
                    continue
                try:
                    if worker is None or not worker.process.is_alive():
                        if worker is not None:
                            worker.kill()
                        worker = _Worker(self._options.memory_mb)
                    result = worker.run(job.fn, job.pdf, self._options)
                except BaseException as exc:  # the task's failure, never the thread's
                    job.future.set_exception(exc)
                else:
                    job.future.set_result(result)
        finally:
            if worker is not None:
                worker.stop()


class _Worker:
    """One worker process and the parent's end of its pipe."""

    def __init__(self, memory_mb: int) -> None:
        self.memory_mb = memory_mb
        self.conn, child_conn = _CONTEXT.Pipe()
        self.process = _CONTEXT.Process(
            target=_worker_main, args=(child_conn, memory_mb), name="ldrt-extract", daemon=True
        )
        self.process.start()
        child_conn.close()

    def run(self, fn: Task[Any], pdf: bytes, options: ExtractOptions) -> Any:
        try:
            self.conn.send_bytes(pickle.dumps((fn, pdf, options)))
            ready = self.conn.poll(options.timeout_s)
            reply = self.conn.recv() if ready else None
        except (EOFError, OSError):  # the worker died: its exit status says how
            raise self._died() from None
        except Exception as exc:  # a reply this process cannot unpickle
            raise ExtractionError(f"the worker's reply cannot be read: {exc}") from exc
        if reply is None:
            self.kill()
            raise ExtractionTimeoutError(
                f"extraction took longer than {options.timeout_s:g} s and was stopped; raise "
                "LDRT_EXTRACT_TIMEOUT_S if the document is merely large"
            )
        outcome, value = reply
        if outcome == "ok":
            return value
        if outcome == "memory":
            self.kill()  # a MemoryError can leave the worker's state half-built: replace it
            raise self._memory_error()
        error_type, message = value
        try:
            error = error_type(message)
        except Exception:  # a subclass whose constructor wants more than the message
            error = ExtractionError(message)
        raise error

    def _died(self) -> ExtractionError:
        self.process.join(_STOP_GRACE_S)
        self.kill()
        code = self.process.exitcode
        if code == -signal.SIGKILL:
            return self._memory_error(
                " (the worker was killed by SIGKILL, most likely by the kernel)"
            )
        if code is not None and code < 0:
            return ExtractionCrashedError(
                f"the extraction worker crashed with signal {signal.Signals(-code).name}; the PDF "
                "probably triggers a parser bug: skip it or report it"
            )
        return ExtractionCrashedError(
            f"the extraction worker exited with code {code} without returning a result"
        )

    def _memory_error(self, detail: str = "") -> ExtractionMemoryError:
        return ExtractionMemoryError(
            f"extraction needed more than the {self.memory_mb} MB a worker may use{detail}; "
            "raise LDRT_EXTRACT_MEMORY_MB if the document is merely large"
        )

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send_bytes(pickle.dumps(None))
        self.process.join(_STOP_GRACE_S)
        self.kill()


def _worker_main(conn: Connection, memory_mb: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    if sys.platform == "linux":  # die with the forkserver, which dies with the parent
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if memory_mb > 0:
        limit, hard = _address_space() + memory_mb * 1024 * 1024, resource.getrlimit(_AS)[1]
        resource.setrlimit(
            _AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard)
        )
    while True:
        try:
            payload = conn.recv_bytes()
        except (EOFError, OSError):
            return  # the parent went away
        try:
            task = pickle.loads(payload)
            if task is None:
                return
            reply = _call(*task)
            data = pickle.dumps(reply)
        except MemoryError:
            data = pickle.dumps(("memory", None))
        except Exception as exc:  # the task could not be unpickled or its result pickled
            data = pickle.dumps(("error", (ExtractionError, _describe(exc))))
        conn.send_bytes(data)


def _call(fn: Task[Any], pdf: bytes, options: ExtractOptions) -> tuple[str, Any]:
    try:
        return ("ok", fn(pdf, options))
    except MemoryError:
        return ("memory", None)
    except ExtractionError as exc:
        return ("error", (type(exc), str(exc)))
    except Exception as exc:
        return ("error", (ExtractionError, _describe(exc)))


def _address_space() -> int:
    """This process's current address-space size in bytes (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[0]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return 0


def _describe(exc: BaseException) -> str:
    return f"extraction failed with {type(exc).__name__}: {exc}"
