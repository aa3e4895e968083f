"""flows/heartbeats.py: the same heartbeats as Prefect's, and a run that ends is not held up.

The engine here is a stand-in with the three members the loop uses; the crash-detection test in
test_deployments runs real flow runs (tests/support/tagged_flow.py) through the installed loop.
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

from prefect import flow_engine

import flows  # noqa: F401  (installs the loop)
from flows.heartbeats import install, send_heartbeats


class Engine:
    """What send_heartbeats reads of Prefect's flow run engine."""

    def __init__(self, seconds: int | None = 30, fail: bool = False) -> None:
        self.heartbeat_seconds = seconds
        self.flow_run = SimpleNamespace(state=SimpleNamespace(is_final=lambda: False))
        self.logger = SimpleNamespace(debug=lambda *a, **k: None)
        self.sent: list[tuple[Any, Any]] = []
        self.fail = fail

    def _build_heartbeat_event_template(self) -> tuple[dict[str, str], list[Any]]:
        return {"prefect.resource.id": "prefect.flow-run.x"}, []

    def _emit_flow_run_heartbeat(self, resource: Any, related: Any) -> None:
        self.sent.append((resource, related))
        if self.fail:
            raise ConnectionError("events API down")


def heartbeat_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "heartbeat"]


def test_flows_import_installs_it_on_this_prefect() -> None:
    assert install()  # False would mean this Prefect no longer has what the loop replaces
    assert flow_engine._send_heartbeats is send_heartbeats


def test_a_heartbeat_at_the_start_and_the_run_ends_without_waiting_for_the_next() -> None:
    engine = Engine(seconds=30)
    with send_heartbeats(engine):
        time.sleep(0.3)  # Prefect's loop, asleep until 1.0 s, held the run's end 0.7 s here
        assert engine.sent == [({"prefect.resource.id": "prefect.flow-run.x"}, [])]
        assert heartbeat_threads()
        stopping = time.perf_counter()
    assert time.perf_counter() - stopping < 0.25
    assert not heartbeat_threads()


def test_a_failed_heartbeat_does_not_fail_the_run() -> None:
    engine = Engine(fail=True)
    with send_heartbeats(engine):
        pass
    assert len(engine.sent) == 1 and not heartbeat_threads()


def test_no_frequency_no_heartbeats() -> None:
    engine = Engine(seconds=None)
    with send_heartbeats(engine):
        assert not heartbeat_threads()
    assert engine.sent == []
