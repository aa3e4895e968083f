"""Register the weekly cycle with a Prefect server: two work pools and two deployments.

    LDRT_REFRESH_CRON="0 3 * * 1" LDRT_RETRAIN_MIN_PAIRS=500 ldrt-deploy
    prefect worker start --pool ldrt-cpu     # runs the weekly refresh
    prefect worker start --pool ldrt-gpu     # runs retrain, one at a time
    (ldrt-deploy is `python -m deployments.deploy`)

- `weekly-refresh` (pool ldrt-cpu): `flows.retraining.prepare` on a cron schedule in UTC
  (default Monday 03:00); it ends by sending `ldrt.dataset.new-pairs`.
- `retrain` (pool ldrt-gpu, concurrency 1): `flows.retraining.retrain`, started by a deployment
  trigger on that event when it counts at least LDRT_RETRAIN_MIN_PAIRS pairs not yet trained on;
  the event's instruct version becomes the run's `dataset` parameter (Jinja:
  `{{ event.payload.instruct }}`).

It also keeps one automation, `ldrt: crash silent flow runs`: a flow run of these deployments
(tag `ldrt`) that stops sending Prefect's heartbeats (every PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
180 s by default) for three of their periods without ending is marked Crashed. A worker that
dies mid-run (a GPU node lost, an OOM kill) then leaves a Crashed run that can be retried, not
one that shows Running forever.

No image and no code download: the entrypoints are module paths (`flows.retraining.prepare`),
so a worker runs the flows from the `ldrt` package installed in its own environment (the
compose file's workers, or `pip install -e .` here). Upgrading the code means upgrading that
package; running this again updates the deployments in place.

With an S3 store (LDRT_STORE_URL=s3://..., MinIO in the compose stack) it also saves an `S3Bucket`
block, `ldrt-results`, with the store's endpoint and keys, and makes it the server's default
result storage: task results (the cached extraction and training records) then persist under
`prefect-results/` in the store's bucket, readable from any worker. With a local store they stay
on the worker's disk (PREFECT_LOCAL_STORAGE_PATH).

Prefect's triggers match event resource labels with globs and cannot compare payload numbers,
so the event also carries the count as a zero-padded label and the trigger matches it with the
globs that mean "at least the threshold" (`flows.retraining.at_least_globs`). The threshold
thus lives in the trigger alone; changing it is a redeploy, not a change to the workers.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast
from uuid import UUID

from prefect import get_client
from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
from prefect.client.schemas.objects import StateType
from prefect.deployments.runner import RunnerDeployment
from prefect.events import DeploymentEventTrigger
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.exceptions import ObjectNotFound
from prefect.schedules import Cron
from prefect.settings import get_current_settings
from prefect.types.entrypoint import EntrypointType
from prefect.workers.process import ProcessWorker

from flows.retraining import NEW_PAIRS_EVENT, NEW_PAIRS_LABEL, at_least_globs, prepare, retrain
from ldrt_core.config import Settings, load_settings
from ldrt_core.errors import ConfigError

REFRESH_DEPLOYMENT = "weekly-refresh"
RETRAIN_DEPLOYMENT = "retrain"
RESULTS_BLOCK = "ldrt-results"  # an S3Bucket block: Prefect's result storage in the S3 store
RESULTS_FOLDER = "prefect-results"
SILENT_RUNS_AUTOMATION = "ldrt: crash silent flow runs"
HEARTBEAT_S = 180  # Prefect's default PREFECT_FLOWS_HEARTBEAT_FREQUENCY
FLOW_RUN_ENDS = ("Completed", "Failed", "Cancelled", "Crashed")


@dataclass(frozen=True)
class DeployConfig:
    refresh_cron: str = "0 3 * * 1"  # Monday 03:00, in `timezone`
    timezone: str = "UTC"
    retrain_min_pairs: int = 500  # new pairs (not yet trained on) that start a retrain
    source: str = "s2"  # the refresh's paper source: s2 or folder:PATH
    cpu_pool: str = "ldrt-cpu"
    gpu_pool: str = "ldrt-gpu"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DeployConfig:
        """Defaults, overridden by LDRT_REFRESH_CRON, LDRT_RETRAIN_MIN_PAIRS and
        LDRT_REFRESH_SOURCE where they are set."""
        env = os.environ if env is None else env
        raw_min = env.get("LDRT_RETRAIN_MIN_PAIRS", str(cls.retrain_min_pairs))
        try:
            min_pairs = int(raw_min)
        except ValueError:
            raise ConfigError(
                f"LDRT_RETRAIN_MIN_PAIRS must be a whole number, got {raw_min!r}"
            ) from None
        if min_pairs < 1:
            raise ConfigError(f"LDRT_RETRAIN_MIN_PAIRS must be at least 1, got {min_pairs}")
        return cls(
            refresh_cron=env.get("LDRT_REFRESH_CRON") or cls.refresh_cron,
            retrain_min_pairs=min_pairs,
            source=env.get("LDRT_REFRESH_SOURCE") or cls.source,
        )


def retrain_trigger(config: DeployConfig) -> DeploymentEventTrigger:
    """Run `retrain` on each new-pairs event that counts at least the threshold."""
    return DeploymentEventTrigger(
        name=f"ldrt: retrain on {config.retrain_min_pairs}+ new pairs",
        description=(
            f"{NEW_PAIRS_EVENT} with {NEW_PAIRS_LABEL} >= {config.retrain_min_pairs}: "
            "train and evaluate on the event's instruct version"
        ),
        expect={NEW_PAIRS_EVENT},
        match={
            "prefect.resource.id": "ldrt.dataset.*",
            NEW_PAIRS_LABEL: at_least_globs(config.retrain_min_pairs),
        },
        posture="Reactive",
        threshold=1,
        parameters={"dataset": "{{ event.payload.instruct }}"},
    )


def silent_after() -> dt.timedelta:
    """Three missed heartbeats: 3 x PREFECT_FLOWS_HEARTBEAT_FREQUENCY as this process reads it.
    The workers send them at their own setting: set it for ldrt-deploy too (compose: in the
    environment they share), or a slower beat than the window marks healthy runs Crashed."""
    every = get_current_settings().flows.heartbeat_frequency or HEARTBEAT_S
    return dt.timedelta(seconds=3 * every)


def silent_runs_automation(tag: str = "ldrt", within: dt.timedelta | None = None) -> AutomationCore:
    """Mark Crashed each flow run tagged `tag` that has sent a heartbeat and then, for `within`
    (default `silent_after()`), neither another heartbeat nor a final state."""
    within = within or silent_after()
    silent = f"{within.total_seconds():.0f} s"
    return AutomationCore(
        name=SILENT_RUNS_AUTOMATION if tag == "ldrt" else f"{SILENT_RUNS_AUTOMATION} ({tag})",
        description=(
            f"A flow run tagged {tag!r} silent for {silent} after a "
            "heartbeat: its process is gone (worker lost, killed); mark it Crashed"
        ),
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                *(f"prefect.flow-run.{s}" for s in FLOW_RUN_ENDS),
            },
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.id": f"prefect.tag.{tag}"},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=within,
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"no heartbeat for {silent}: the run's process is gone",
            )
        ],
    )


def ensure_automation(automation: AutomationCore) -> UUID:
    """Create the automation, or update the one of that name in place; its id."""
    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(automation.name)
        if not existing:
            return client.create_automation(automation)
        client.update_automation(existing[0].id, automation)
        return existing[0].id


def build_deployments(config: DeployConfig) -> list[RunnerDeployment]:
    """The two deployments, not yet registered."""
    try:
        schedule = Cron(config.refresh_cron, timezone=config.timezone)
    except ValueError as exc:
        raise ConfigError(f"LDRT_REFRESH_CRON {config.refresh_cron!r}: {exc}") from None
    weekly = cast(
        RunnerDeployment,
        prepare.to_deployment(
            REFRESH_DEPLOYMENT,
            schedules=[schedule],
            parameters={"source": config.source},
            description="Refresh, extract, curate and generate QA; announce the new pairs.",
            tags=["ldrt"],
            work_pool_name=config.cpu_pool,
            entrypoint_type=EntrypointType.MODULE_PATH,
        ),
    )
    on_new_pairs = cast(
        RunnerDeployment,
        retrain.to_deployment(
            RETRAIN_DEPLOYMENT,
            triggers=[retrain_trigger(config)],
            description="Train both stages and evaluate; started by enough new pairs.",
            tags=["ldrt"],
            work_pool_name=config.gpu_pool,
            entrypoint_type=EntrypointType.MODULE_PATH,
        ),
    )
    return [weekly, on_new_pairs]


def ensure_work_pools(config: DeployConfig) -> None:
    """Create the process pools if missing; the GPU pool runs one flow run at a time."""
    wanted: dict[str, int | None] = {config.cpu_pool: None, config.gpu_pool: 1}
    with get_client(sync_client=True) as client:
        for name, limit in wanted.items():
            try:
                pool = client.read_work_pool(name)
            except ObjectNotFound:
                client.create_work_pool(
                    WorkPoolCreate(
                        name=name,
                        type="process",
                        base_job_template=ProcessWorker.get_default_base_job_template(),
                        concurrency_limit=limit,
                    )
                )
                continue
            if limit is not None and pool.concurrency_limit != limit:
                client.update_work_pool(name, WorkPoolUpdate(concurrency_limit=limit))


def configure_result_storage(settings: Settings) -> UUID | None:
    """With an S3 store: save the `ldrt-results` S3Bucket block (the store's endpoint, keys and
    bucket, folder `prefect-results`) and make it the Prefect server's default result storage.
    Returns the block's id; None, changing nothing, when the store is local."""
    if not settings.store_is_s3:
        return None
    from prefect_aws import AwsClientParameters, MinIOCredentials, S3Bucket

    if settings.s3_access_key is None or settings.s3_secret_key is None:
        raise ConfigError("an S3 store needs LDRT_S3_ACCESS_KEY and LDRT_S3_SECRET_KEY")
    bucket, _, prefix = settings.store_url.removeprefix("s3://").partition("/")
    scheme = "https" if settings.s3_secure else "http"
    credentials = MinIOCredentials(
        minio_root_user=settings.s3_access_key.get_secret_value(),
        minio_root_password=settings.s3_secret_key,
        region_name=settings.s3_region or "us-east-1",
        aws_client_parameters=AwsClientParameters(
            endpoint_url=f"{scheme}://{settings.s3_host}", use_ssl=scheme == "https"
        ),
    )
    storage = S3Bucket(
        bucket_name=bucket,
        bucket_folder="/".join(p for p in (prefix.strip("/"), RESULTS_FOLDER) if p),
        credentials=credentials,
    )
    block_id = cast(UUID, storage.save(RESULTS_BLOCK, overwrite=True))
    with get_client(sync_client=True) as client:
        client.update_server_default_result_storage(block_id)
    return block_id


def deploy(config: DeployConfig | None = None, settings: Settings | None = None) -> dict[str, Any]:
    """Create the work pools, point result storage at an S3 store, and register (or update)
    both deployments; their ids by name."""
    config = config or DeployConfig.from_env()
    ensure_work_pools(config)
    configure_result_storage(settings or load_settings())
    ensure_automation(silent_runs_automation())
    return {d.name: d.apply() for d in build_deployments(config)}


def ldrt_deploy_main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: deploy with the settings from the environment, print what was
    registered. (No options yet: everything is an LDRT_* variable.)"""
    argv = sys.argv[1:] if argv is None else argv
    if argv:
        print(
            "usage: ldrt-deploy  (configure with LDRT_REFRESH_CRON, LDRT_RETRAIN_MIN_PAIRS, "
            "LDRT_REFRESH_SOURCE and the LDRT_STORE_URL / LDRT_S3_* of the workers)"
        )
        return 2
    if not get_current_settings().api.url:
        # Prefect would register everything with a temporary server that stops on exit.
        print(
            "ldrt-deploy: no Prefect server to register with: set PREFECT_API_URL (e.g. "
            "http://localhost:4200/api, the compose stack's) or `prefect config set "
            "PREFECT_API_URL=...`",
            file=sys.stderr,
        )
        return 2
    config = DeployConfig.from_env()
    settings = load_settings()
    ids = deploy(config, settings)
    results = (
        f"s3-bucket/{RESULTS_BLOCK} in {settings.store_url}"
        if settings.store_is_s3
        else "each worker's PREFECT_LOCAL_STORAGE_PATH"
    )
    print(
        f"deployed {', '.join(f'{name} ({i})' for name, i in ids.items())}: weekly-refresh on "
        f"'{config.refresh_cron}' {config.timezone} in pool {config.cpu_pool}; retrain on "
        f"{config.retrain_min_pairs}+ new pairs in pool {config.gpu_pool} (concurrency 1); "
        f"task results in {results}; "
        f"flow runs silent for {silent_after().total_seconds():.0f} s marked Crashed"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(ldrt_deploy_main())
