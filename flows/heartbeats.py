"""Flow-run heartbeats that stop the moment the run ends.

Prefect (3.9) sends a `prefect.flow-run.heartbeat` event every PREFECT_FLOWS_HEARTBEAT_FREQUENCY
seconds (180 by default) from a thread that sleeps one second at a time, and the engine waits
for that thread when the run ends: every flow run ended up to a second late, half a second on
average (`bench/orchestration.py` saw 8-paper runs end on whole seconds after their start).
Our deployments' crash detection (`deployments/deploy.py`) reads those heartbeats, so they stay;
`install()` swaps in a loop that sends the same events and waits on the stop signal instead.

The flows package installs it on import. It replaces one private Prefect function; when a
Prefect version lacks what it uses, `install()` leaves Prefect's own in place.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect import flow_engine

_USES = ("heartbeat_seconds", "_build_heartbeat_event_template", "_emit_flow_run_heartbeat")


@contextmanager
def send_heartbeats(engine: Any, join_on_exit: bool = True) -> Iterator[None]:
    """Emit the run's heartbeat now and every `engine.heartbeat_seconds` until the block ends."""
    seconds = engine.heartbeat_seconds
    if seconds is None:
        yield
        return
    resource, related = engine._build_heartbeat_event_template()
    stop = threading.Event()

    def beat() -> None:
        while not (engine.flow_run and engine.flow_run.state and engine.flow_run.state.is_final()):
            try:
                engine._emit_flow_run_heartbeat(resource, related)
            except Exception:  # a lost heartbeat must not fail the run
                engine.logger.debug("Failed to emit heartbeat", exc_info=True)
            if stop.wait(seconds):
                return

    # The thread sees the caller's context (its settings, so its PREFECT_API_URL), as Prefect's.
    thread = threading.Thread(
        target=contextvars.copy_context().run, args=(beat,), name="heartbeat", daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        if join_on_exit:
            thread.join(timeout=2)


def install() -> bool:
    """Use `send_heartbeats` for every flow run in this process; False if this Prefect differs."""
    engine = getattr(flow_engine, "BaseFlowRunEngine", None)
    if not hasattr(flow_engine, "_send_heartbeats") or not all(
        hasattr(engine, name) for name in _USES
    ):
        return False
    flow_engine._send_heartbeats = send_heartbeats
    return True
