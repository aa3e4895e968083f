"""The weekly cycle's deployments against a Prefect API: what `deploy` registers, the new-pairs
event starting a `retrain` flow run (through the server's trigger and action services), and the
`prepare` flow sending that event with the right count.

Input: a Prefect server, CI's when LDRT_TEST_PREFECT_API_URL names one, else Prefect's test
harness (a temporary server whose event services run too); the sample corpus under an embedded
LDRT_HOME. Output: work pools, deployments, automations, flow runs and events read back from
the API. No worker runs: a created (Scheduled) flow run is what the trigger must produce.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, TypeVar

import pytest
from prefect import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.events import emit_event
from prefect.events.filters import (
    EventFilter,
    EventNameFilter,
    EventOccurredFilter,
    EventResourceFilter,
)
from prefect.events.worker import EventsWorker
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
    temporary_settings,
)

from deployments.deploy import (
    REFRESH_DEPLOYMENT,
    RETRAIN_DEPLOYMENT,
    SILENT_RUNS_AUTOMATION,
    DeployConfig,
    deploy,
    ensure_automation,
    silent_after,
    silent_runs_automation,
)
from flows.retraining import NEW_PAIRS_EVENT, at_least_globs, count_label, prepare
from ldrt_core import db
from ldrt_core.config import load_settings
from ldrt_core.db.models import DatasetMember, TrainingRun
from ldrt_core.errors import ConfigError
from ldrt_core.samples import write_sample_corpus
from tests.flows.test_flows import (
    artifacts,
    flow_run,
    flow_run_id,
    outcomes,
    retry_flow_run,
    table,
)
from tests.support.corpus import cut_short

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_api")]

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")
MIN_PAIRS = 50
# Unique per test session, so a shared CI server's earlier runs never satisfy the polls.
CPU_POOL, GPU_POOL = f"ldrt-cpu-{uuid.uuid4().hex[:6]}", f"ldrt-gpu-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def deployed() -> dict[str, Any]:
    config = DeployConfig(retrain_min_pairs=MIN_PAIRS, cpu_pool=CPU_POOL, gpu_pool=GPU_POOL)
    return deploy(config)


def poll(read: Callable[[], T], done: Callable[[T], bool], seconds: float = 60) -> T:
    deadline = time.monotonic() + seconds
    while True:
        value = read()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.5)


def retrain_runs(deployment_id: Any) -> list[Any]:
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        )


def events(name: str, resource: str, since: dt.datetime | None = None) -> list[Any]:
    """The events of that name about that resource (since then: a shared server keeps older
    ones)."""
    occurred = EventOccurredFilter(since=since) if since else EventOccurredFilter()
    with get_client(sync_client=True) as client:
        page = client.read_events(
            EventFilter(
                occurred=occurred,
                event=EventNameFilter(name=[name]),
                resource=EventResourceFilter(id=[resource]),
            ),
            limit=10,  # the client's default (100) is over the server's maximum (50)
        )
    return list(page.events)


# ----------------------------------------------------------------------------- no server needed


def test_the_crash_window_follows_the_heartbeat_setting() -> None:
    assert silent_after() == dt.timedelta(seconds=540)  # Prefect's default: a beat every 180 s
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 600}):
        assert silent_after() == dt.timedelta(seconds=1800)
        trigger = silent_runs_automation().trigger
        assert trigger.within == dt.timedelta(seconds=1800)  # type: ignore[union-attr]


@pytest.mark.parametrize("threshold", [1, 9, 10, 99, 500, 501, 1000, 123_456])
def test_threshold_globs_match_exactly_the_counts_at_or_above(threshold: int) -> None:
    globs = at_least_globs(threshold)
    for n in [*range(0, 1200), threshold - 1, threshold, threshold + 1, 10**8, 10**12]:
        matched = any(fnmatchcase(count_label(n), g) for g in globs)
        assert matched == (n >= threshold), n


def test_config_from_env_reads_and_checks_the_variables() -> None:
    assert DeployConfig.from_env({}) == DeployConfig()
    config = DeployConfig.from_env(
        {"LDRT_REFRESH_CRON": "0 4 * * *", "LDRT_RETRAIN_MIN_PAIRS": "7"}
    )
    assert (config.refresh_cron, config.retrain_min_pairs) == ("0 4 * * *", 7)
    with pytest.raises(ConfigError, match="LDRT_RETRAIN_MIN_PAIRS"):
        DeployConfig.from_env({"LDRT_RETRAIN_MIN_PAIRS": "many"})


def test_deploy_without_a_prefect_server_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without PREFECT_API_URL Prefect would register everything with a temporary server that
    stops when the command ends: nothing would ever run."""
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME

    from deployments.deploy import ldrt_deploy_main

    with temporary_settings({PREFECT_API_URL: None, PREFECT_HOME: tmp_path}):
        assert ldrt_deploy_main([]) == 2
    assert "set PREFECT_API_URL" in capsys.readouterr().err


# ----------------------------------------------------------------------------- against the API


def test_deploy_registers_pools_schedule_and_trigger(deployed: dict[str, Any]) -> None:
    assert set(deployed) == {REFRESH_DEPLOYMENT, RETRAIN_DEPLOYMENT}
    with get_client(sync_client=True) as client:
        cpu, gpu = client.read_work_pool(CPU_POOL), client.read_work_pool(GPU_POOL)
        weekly = client.read_deployment(deployed[REFRESH_DEPLOYMENT])
        retrain = client.read_deployment(deployed[RETRAIN_DEPLOYMENT])
        automations = client.read_resource_related_automations(f"prefect.deployment.{retrain.id}")
    assert (cpu.type, gpu.type) == ("process", "process")
    assert gpu.concurrency_limit == 1 and cpu.concurrency_limit is None

    assert weekly.entrypoint == "flows.retraining.prepare" and weekly.work_pool_name == CPU_POOL
    [schedule] = weekly.schedules
    assert schedule.active and schedule.schedule.model_dump(include={"cron", "timezone"}) == {
        "cron": "0 3 * * 1",
        "timezone": "UTC",
    }

    assert retrain.entrypoint == "flows.retraining.retrain" and retrain.work_pool_name == GPU_POOL
    assert retrain.schedules == []
    [automation] = automations
    trigger = automation.trigger.model_dump()
    assert trigger["expect"] == {NEW_PAIRS_EVENT} and trigger["posture"] == "Reactive"
    assert trigger["match"]["ldrt.new-pairs"] == at_least_globs(MIN_PAIRS)
    [action] = automation.actions
    assert action.model_dump()["deployment_id"] == retrain.id
    assert action.model_dump()["parameters"] == {"dataset": "{{ event.payload.instruct }}"}

    # Deploying again updates in place: same ids, still one trigger.
    again = deploy(DeployConfig(retrain_min_pairs=MIN_PAIRS, cpu_pool=CPU_POOL, gpu_pool=GPU_POOL))
    assert again == deployed
    with get_client(sync_client=True) as client:
        assert (
            len(client.read_resource_related_automations(f"prefect.deployment.{retrain.id}")) == 1
        )
        [silent] = client.read_automations_by_name(SILENT_RUNS_AUTOMATION)
    assert silent.enabled and silent.trigger.model_dump()["posture"] == "Proactive"


def test_a_flow_run_whose_process_dies_is_marked_crashed_and_one_that_ends_is_not() -> None:
    """The silent-runs automation (with a 10 s window instead of 540 s, and its own tag) against
    two real flow runs sending Prefect's heartbeats: one process killed, one that finishes."""
    tag = f"ldrt-silent-{uuid.uuid4().hex[:6]}"
    automation = ensure_automation(silent_runs_automation(tag, within=dt.timedelta(seconds=10)))
    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30",  # the least Prefect takes: one at the start
    }
    command = [sys.executable, "-m", "tests.support.tagged_flow", tag]
    killed = subprocess.Popen([*command, "600"], cwd=REPO, env=env, stdout=subprocess.PIPE)
    ends = subprocess.Popen([*command, "1"], cwd=REPO, env=env, stdout=subprocess.PIPE)
    try:
        assert killed.stdout is not None and ends.stdout is not None
        killed_id, ends_id = (
            uuid.UUID(p.stdout.readline().decode().strip()) for p in (killed, ends)
        )
        poll(
            lambda: events("prefect.flow-run.heartbeat", f"prefect.flow-run.{killed_id}"),
            bool,
            seconds=60,
        )
        killed.kill()
        assert ends.wait(timeout=120) == 0

        crashed = poll(lambda: flow_run(killed_id).state, lambda s: s.is_crashed(), seconds=90)
        assert crashed.is_crashed(), crashed
        assert "no heartbeat for 10 s" in str(crashed.message)
        assert flow_run(ends_id).state.is_completed()
    finally:
        killed.kill()
        ends.kill()
        with get_client(sync_client=True) as client:
            client.delete_automation(automation)


def test_new_pairs_event_creates_a_retrain_run_only_at_the_threshold(
    deployed: dict[str, Any],
) -> None:
    retrain_id = deployed[RETRAIN_DEPLOYMENT]
    tag = uuid.uuid4().hex
    below, enough = f"below-{tag}", f"enough-{tag}"
    for instruct, n in ((below, MIN_PAIRS - 1), (enough, MIN_PAIRS)):
        emit_event(
            event=NEW_PAIRS_EVENT,
            resource={
                "prefect.resource.id": f"ldrt.dataset.{instruct}",
                "ldrt.new-pairs": count_label(n),
            },
            payload={"new_pairs": n, "dataset": f"curated-{tag}", "instruct": instruct},
        )
    EventsWorker.drain_all()

    runs = poll(
        lambda: retrain_runs(retrain_id),
        lambda rs: any(r.parameters.get("dataset") == enough for r in rs),
    )
    started = [r for r in runs if r.parameters.get("dataset") == enough]
    assert len(started) == 1, "the trigger did not create a retrain flow run within 60 s"
    assert started[0].state.type.value in {"SCHEDULED", "PENDING"}
    # The lower count came first; give the services a moment more, then it must have no run.
    time.sleep(2)
    assert not [r for r in retrain_runs(retrain_id) if r.parameters.get("dataset") == below]


def test_prepare_sends_the_pairs_not_yet_trained_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LDRT_HOME", str(tmp_path / "home"))
    write_sample_corpus(tmp_path / "papers", papers=3, seed=4)
    source = f"folder:{tmp_path / 'papers'}"
    started = dt.datetime.now(dt.UTC)

    state = prepare(
        source=source, curation={"eval_share": 0.3}, qa_backend="template", return_state=True
    )
    first = state.result()

    engine = db.connect(load_settings())
    with db.session_scope(engine) as session:
        train = session.query(DatasetMember).filter_by(dataset_id=first["dataset"], split="train")
        n_train = train.count()
    assert n_train > 0
    assert first["new_pairs"] == first["added"] == n_train  # nothing trained, nothing before
    summary = table(artifacts([flow_run_id(state)]), "ldrt-prepare-summary")
    stages = {"refresh": "ok", "extract": "ok", "curate": "ok", "qa": "ok"}
    assert outcomes(summary) == {**stages, NEW_PAIRS_EVENT: "sent"}
    assert {"stage": NEW_PAIRS_EVENT, "metric": "new_pairs", "value": str(n_train)} in summary
    EventsWorker.drain_all()
    [event] = poll(
        lambda: events(NEW_PAIRS_EVENT, f"ldrt.dataset.{first['instruct']}", started),
        bool,
        seconds=30,
    )
    assert event.payload == first
    assert event.resource["ldrt.new-pairs"] == count_label(n_train)

    # Once a model is trained on that version, the same data again counts no new pairs.
    with db.session_scope(engine) as session:
        session.add(
            TrainingRun(
                id=str(uuid.uuid4()),
                stage="instruct",
                base_model="tiny-random",
                dataset_id=first["instruct"],
                status="completed",
                config_hash="0" * 64,
            )
        )
    second = prepare(source=source, curation={"eval_share": 0.3}, qa_backend="template")
    assert second["dataset"] == first["dataset"] and second["new_pairs"] == 0


def test_a_retried_prepare_announces_the_same_data_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A retry that changes nothing starts no second retrain; one that fixed an item does."""
    monkeypatch.setenv("LDRT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LDRT_DOWNLOAD_RETRIES", "0")
    papers = write_sample_corpus(tmp_path / "papers", papers=3, seed=4)
    broken = papers[-1].pdf_path
    good = cut_short(broken)
    started = dt.datetime.now(dt.UTC)

    def announced() -> list[str]:
        EventsWorker.drain_all()
        time.sleep(2)  # the server persists events in batches
        with get_client(sync_client=True) as client:
            page = client.read_events(
                EventFilter(
                    occurred=EventOccurredFilter(since=started),
                    event=EventNameFilter(name=[NEW_PAIRS_EVENT]),
                ),
                limit=10,
            )
        return sorted(e.payload["instruct"] for e in page.events)

    state = prepare(
        source=f"folder:{tmp_path / 'papers'}",
        curation={"eval_share": 0.3},
        qa_backend="template",
        return_state=True,
    )
    assert state.is_failed()
    run_id = flow_run_id(state)
    first = poll(announced, bool, seconds=30)
    assert len(first) == 1

    retry_flow_run(run_id, "flows/retraining.py:prepare", succeeds=False)  # still cut short
    assert flow_run(run_id).state.is_failed()
    assert announced() == first

    broken.write_bytes(good)
    retry_flow_run(run_id, "flows/retraining.py:prepare")
    run = flow_run(run_id)
    assert run.state.is_completed() and run.run_count == 3
    both = poll(announced, lambda found: len(found) == 2, seconds=30)
    assert first[0] in both  # and the new version with the fixed paper's pairs
