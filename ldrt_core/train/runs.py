"""Training runs: a dataset version and a base model in, a recorded run with stored outputs out.

Input: the lineage database, the artifact store, a dataset version (a curated one, or its
derived "align"/"instruct" version: `ldrt qa generate` makes them), a base model (a local llava-hf
directory or "tiny-random") and a `TrainConfig`. Output: one `training_runs` row per stage, linking
the base model, the dataset version, the parent run (stage 2's stage 1) and the outputs in the
store under `runs/<run id>/`:

    config.json                    what ran: training config, base model, dataset, data summary
    loss.json                      the loss curve, one point per optimizer step
    projector.safetensors          the projector (stage 1; stage 2 when it trained it)
    adapter/adapter_model.safetensors, adapter/adapter_config.json     stage 2's LoRA (PEFT)
    checkpoints/step-N/...         the newest checkpoint while the run is unfinished

A run that fails is marked failed with its error; `resume_stage` continues it from its newest
checkpoint (local, else the store's copy). `merge_run` writes a standalone merged checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ldrt_core.config import Settings
from ldrt_core.curate.dataset import find_version
from ldrt_core.db import session_scope
from ldrt_core.db.models import DatasetMember, DatasetVersion, TrainingRun
from ldrt_core.errors import CheckpointMismatchError, LdrtError, TrainingError
from ldrt_core.store import ArtifactStore
from ldrt_core.train.data import PreparedData, prepare_samples
from ldrt_core.train.loop import (
    ADAPTER_DIR,
    PROJECTOR_FILE,
    StepReport,
    TrainConfig,
    TrainResult,
    latest_checkpoint,
    run_training,
)
from ldrt_core.train.model import (
    TINY_RANDOM,
    attention_implementation,
    load_llava,
    projector_parameters,
    quiet_peft,
)

__all__ = [
    "DEEPSPEED_CONFIGS",
    "RunSummary",
    "chain_projectors",
    "deepspeed_config_path",
    "find_run",
    "merge_run",
    "resolve_dataset",
    "resume_stage",
    "run_chain",
    "stage_configs",
    "train_stage",
]

DEEPSPEED_CONFIGS = Path(__file__).with_name("deepspeed")
TRAIN_FILES = {"align": "align_train.json", "instruct": "llava_instruct_train.json"}


log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    run_id: str
    stage: str
    dataset_id: str
    base_model: str
    parent_run_id: str | None
    data: dict[str, Any]
    metrics: dict[str, Any]
    outputs: dict[str, str]  # name -> store key


# ----------------------------------------------------------------------------- lookups


def resolve_dataset(engine: Engine, version: str, stage: str) -> DatasetVersion:
    """The dataset version a stage trains on: `version` itself when it is of the stage's kind,
    else the newest derived version of that kind made from it (or from its curated parent)."""
    row = find_version(engine, version)
    if row.kind == stage:
        return row
    parent = row.id if row.kind == "curated" else row.parent_id
    with session_scope(engine) as session:
        child = session.scalars(
            select(DatasetVersion)
            .where(DatasetVersion.parent_id == parent, DatasetVersion.kind == stage)
            .order_by(DatasetVersion.created_at.desc(), DatasetVersion.id)
            .limit(1)
        ).first()
    if child is None:
        raise LdrtError(
            f"dataset {row.id[:12]} ({row.kind}) has no {stage!r} version: run "
            f"`ldrt qa generate --dataset {(parent or row.id)[:12]}` first"
        )
    return child


def find_run(engine: Engine, prefix: str) -> TrainingRun:
    """A training run by id or unique id prefix; 'latest': the newest completed run."""
    if prefix == "latest":
        newest = _newest_run(engine, TrainingRun.status == "completed")
        matches = [] if newest is None else [newest]
    else:
        with session_scope(engine) as session:
            query = select(TrainingRun).where(TrainingRun.id.startswith(prefix)).limit(2)
            matches = list(session.scalars(query))
    if len(matches) != 1:
        what = "no training run" if not matches else "more than one training run"
        raise LdrtError(f"{what} matches {prefix!r}: see `ldrt model list`")
    return matches[0]


def _newest_run(engine: Engine, *conditions: Any) -> TrainingRun | None:
    """The newest training run that meets every one of `conditions` (SQL expressions)."""
    with session_scope(engine) as session:
        return session.scalars(
            select(TrainingRun).where(*conditions).order_by(TrainingRun.created_at.desc()).limit(1)
        ).first()


def deepspeed_config_path(name: str | None) -> str | None:
    """A bundled config by name ("zero3", "zero2") or a path to a JSON file."""
    if not name:
        return None
    bundled = DEEPSPEED_CONFIGS / f"{name}.json"
    if bundled.is_file():
        return str(bundled)
    if Path(name).is_file():
        return str(Path(name).absolute())
    known = ", ".join(sorted(p.stem for p in DEEPSPEED_CONFIGS.glob("*.json")))
    raise TrainingError(f"no DeepSpeed config {name!r}: give a JSON file or one of {known}")


def count_new_pairs(engine: Engine, dataset: str) -> dict[str, int]:
    """Train pairs of curated version `dataset` not yet trained on (`new_pairs`: not in the
    curated version behind the newest completed training run; all of them before the first),
    and not in the curated version made before it (`added`), of `train_pairs` in all."""
    with session_scope(engine) as session:
        current = session.get(DatasetVersion, dataset)
        if current is None:
            raise LdrtError(f"no dataset version {dataset}")
        members = _train_members(session, dataset)
        trained_on = session.scalars(
            select(TrainingRun.dataset_id)
            .where(TrainingRun.status == "completed")
            .order_by(TrainingRun.finished_at.desc(), TrainingRun.created_at.desc())
            .limit(1)
        ).first()
        baseline = _curated_root(session, trained_on) if trained_on else None
        previous = session.scalars(
            select(DatasetVersion.id)
            .where(
                DatasetVersion.kind == "curated",
                DatasetVersion.id != dataset,
                DatasetVersion.created_at <= current.created_at,
            )
            .order_by(DatasetVersion.created_at.desc(), DatasetVersion.id)
            .limit(1)
        ).first()
        return {
            "new_pairs": len(members - _train_members(session, baseline)),
            "added": len(members - _train_members(session, previous)),
            "train_pairs": len(members),
        }


def _curated_root(session: Session, version_id: str) -> str | None:
    """The curated version a derived (align, instruct) version was made from."""
    seen: set[str] = set()
    current: str | None = version_id
    while current is not None and current not in seen:
        seen.add(current)
        version = session.get(DatasetVersion, current)
        if version is None:
            return None
        if version.kind == "curated":
            return str(version.id)
        current = version.parent_id
    return None


def _train_members(session: Session, version_id: str | None) -> set[str]:
    if version_id is None:
        return set()
    return set(
        session.scalars(
            select(DatasetMember.content_sha256).where(
                DatasetMember.dataset_id == version_id, DatasetMember.split == "train"
            )
        )
    )


# ------------------------------------------------------------------------------ training


def stage_configs(
    settings: Settings,
    stage: str,
    *,
    from_run: str | None = None,
    deepspeed: str | None = None,
    align_lr: float | None = None,
    instruct_lr: float | None = None,
    projector_lr: float | None = None,
    checkpoint_every: int | None = None,
    **options: Any,
) -> list[TrainConfig]:
    """The config of each stage `stage` names ("align", "instruct" or "both", in that order).

    Options left None take the stage's defaults; `checkpoint_every` and `deepspeed` default to
    LDRT_TRAIN_CHECKPOINT_EVERY and LDRT_TRAIN_DEEPSPEED. `from_run` (a stage-1 run to start
    from) only goes with "instruct"."""
    from ldrt_core.train.loop import STAGES

    stages = list(STAGES) if stage == "both" else [stage]
    if any(s not in STAGES for s in stages):
        raise TrainingError(f"stage {stage!r}: use align, instruct or both")
    if from_run and stages != ["instruct"]:
        raise TrainingError("a run to start from (--from-run) goes with stage instruct")
    common = {
        **options,
        "checkpoint_every": settings.train_checkpoint_every
        if checkpoint_every is None
        else checkpoint_every,
        "deepspeed": deepspeed_config_path(deepspeed or settings.train_deepspeed),
    }
    rates: dict[str, dict[str, Any]] = {
        "align": {"learning_rate": align_lr},
        "instruct": {"learning_rate": instruct_lr, "projector_lr": projector_lr},
    }
    return [TrainConfig.for_stage(name, **common, **rates[name]) for name in stages]


def train_stage(
    engine: Engine,
    store: ArtifactStore,
    work_dir: Path,
    *,
    dataset: str,
    base_model: str,
    config: TrainConfig,
    parent_run: str | None = None,
    on_step: Callable[[StepReport], None] | None = None,
    on_prepare: Callable[[int, int], None] | None = None,
    flow_run_id: str | None = None,
    root_flow_run_id: str | None = None,
) -> RunSummary:
    """Train one stage on `dataset` from `base_model`, recording the run. `parent_run` (stage 2):
    a completed stage-1 run whose projector is loaded first.

    In a flow run that already started this same training (a retried flow run: its earlier
    attempt failed or crashed), that run is picked up rather than started over: returned as it
    is when it has completed since (`ldrt train --resume` by hand), resumed from its newest
    checkpoint when it has one. The flow run is `root_flow_run_id`, the top one (Prefect retries
    a parent with new subflow runs), else `flow_run_id`. One process only; a multi-process
    launch always starts anew."""
    root_flow_run_id = root_flow_run_id or flow_run_id
    version = resolve_dataset(engine, dataset, config.stage)
    parent = find_run(engine, parent_run) if parent_run else None
    if parent is not None and parent.status != "completed":
        raise TrainingError(f"run {parent.id[:12]} is {parent.status}, not completed")
    config_hash = _config_hash(config, base_model, version.id, parent)
    if root_flow_run_id and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        earlier = _newest_run(  # the one this flow run started with this config, data, parent
            engine,
            TrainingRun.root_flow_run_id == root_flow_run_id,
            TrainingRun.config_hash == config_hash,
        )
        if earlier is not None and earlier.status == "completed":
            data = dict(earlier.metrics or {}).get("data", {})
            return RunSummary(
                earlier.id,
                earlier.stage,
                earlier.dataset_id,
                earlier.base_model,
                earlier.parent_run_id,
                data,
                dict(earlier.metrics or {}),
                dict(earlier.outputs or {}),
            )
        if earlier is not None and _checkpoint_ready(store, work_dir, earlier.id):
            try:
                return _run(engine, store, work_dir, earlier.id, True, on_step, on_prepare)
            except CheckpointMismatchError as exc:  # recorded on that run; this one starts over
                log.warning("run %s cannot resume (%s); training anew", earlier.id[:12], exc)
    run_id = str(uuid.uuid4())
    if _rank() == 0:
        with session_scope(engine) as session:
            session.add(
                TrainingRun(
                    id=run_id,
                    stage=config.stage,
                    base_model=base_model,
                    dataset_id=version.id,
                    parent_run_id=parent.id if parent else None,
                    status="running",
                    config=config.as_dict(),
                    config_hash=config_hash,
                    flow_run_id=flow_run_id,
                    root_flow_run_id=root_flow_run_id,
                )
            )
    run_id = _from_rank0(run_id)  # sent once the row is committed: other ranks then read it
    return _run(engine, store, work_dir, run_id, False, on_step, on_prepare)


def resume_stage(
    engine: Engine,
    store: ArtifactStore,
    work_dir: Path,
    run: str,
    *,
    on_step: Callable[[StepReport], None] | None = None,
    on_prepare: Callable[[int, int], None] | None = None,
) -> RunSummary:
    """Continue an unfinished run from its newest checkpoint, with the config it started with.
    `run`: an id or unique prefix, or 'latest', the newest unfinished run."""
    row = _newest_unfinished(engine) if run == "latest" else find_run(engine, run)
    if row.status == "completed":
        raise TrainingError(f"run {row.id[:12]} is already completed")
    if not _checkpoint_ready(store, work_dir, row.id):
        raise TrainingError(
            f"run {row.id[:12]} has no checkpoint (locally or in the store) to resume from; "
            "start a new run instead"
        )
    return _run(engine, store, work_dir, row.id, True, on_step, on_prepare)


def _newest_unfinished(engine: Engine) -> TrainingRun:
    row = _newest_run(engine, TrainingRun.status != "completed")
    if row is None:
        raise TrainingError("no unfinished training run to resume: see `ldrt model list`")
    return row


def _checkpoint_ready(store: ArtifactStore, work_dir: Path, run_id: str) -> bool:
    """Whether the run has a checkpoint here, or in the store (then fetched here)."""
    local = _run_dir(work_dir, run_id) / "checkpoints"
    return latest_checkpoint(local) is not None or _download_checkpoint(store, run_id, local)


def _run(
    engine: Engine,
    store: ArtifactStore,
    work_dir: Path,
    run_id: str,
    resume: bool,
    on_step: Callable[[StepReport], None] | None,
    on_prepare: Callable[[int, int], None] | None,
) -> RunSummary:
    with session_scope(engine) as session:
        row = session.get(TrainingRun, run_id)
        assert row is not None
        if _rank() == 0 and resume:
            row.status, row.error, row.finished_at = "running", None, None
        config = TrainConfig.from_dict(row.config)
        base_model, dataset_id, parent_id = row.base_model, row.dataset_id, row.parent_run_id
        version = session.get(DatasetVersion, dataset_id)
        assert version is not None
        parent = session.get(TrainingRun, parent_id) if parent_id else None
    run_dir = _run_dir(work_dir, run_id)
    out_dir = run_dir / "out"
    if out_dir.exists():
        shutil.rmtree(out_dir)
    try:
        model, processor = _load_model(base_model, config, store, parent)
        records = json.loads(store.get(f"datasets/{version.id}/{TRAIN_FILES[config.stage]}"))
        data = _prepare(records, processor, store, work_dir, config, on_prepare)
        _, result = run_training(
            model,
            processor,
            data,
            config,
            checkpoint_dir=run_dir / "checkpoints",
            out_dir=out_dir,
            resume=resume,
            on_step=on_step,
            on_checkpoint=lambda step, folder: _upload_checkpoint(store, run_id, folder),
        )
        if _rank() != 0:
            return RunSummary(run_id, config.stage, dataset_id, base_model, parent_id, {}, {}, {})
        return _finish(
            engine, store, run_id, out_dir, config, base_model, version, parent, data, result
        )
    except BaseException as exc:
        if _rank() == 0:
            _fail(engine, run_id, exc)
        raise


def _load_model(
    base_model: str, config: TrainConfig, store: ArtifactStore, parent: TrainingRun | None
) -> tuple[torch.nn.Module, Any]:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    attn = (
        attention_implementation(device)
        if config.attn_implementation == "auto"
        else config.attn_implementation
    )
    bf16 = config.precision == "bf16" or (
        config.precision == "auto" and device == "cuda" and torch.cuda.is_bf16_supported()
    )
    model, processor = load_llava(
        base_model, dtype=torch.bfloat16 if bf16 else None, attn_implementation=attn
    )
    if parent is not None:
        load_projector(model, store.get(parent.outputs[PROJECTOR_FILE]))
    return model, processor


def load_projector(model: torch.nn.Module, payload: bytes) -> None:
    """Copy stored projector weights (safetensors bytes) into `model`'s projector."""
    from safetensors.torch import load

    saved = load(payload)
    params = dict(projector_parameters(model))
    if set(saved) != set(params):
        raise TrainingError(
            "the stored projector does not fit this model "
            f"(has {sorted(saved)}, the model wants {sorted(params)}): same base model?"
        )
    with torch.no_grad():
        for name, param in params.items():
            if saved[name].shape != param.shape:
                raise TrainingError(f"projector weight {name}: shape {tuple(saved[name].shape)}")
            param.copy_(saved[name].to(param.dtype))


def _prepare(
    records: list[dict[str, Any]],
    processor: Any,
    store: ArtifactStore,
    work_dir: Path,
    config: TrainConfig,
    on_prepare: Callable[[int, int], None] | None,
) -> PreparedData:
    total = len(records)
    return prepare_samples(
        records,
        processor,
        store.get,
        work_dir / "cache" / "images",
        stage=config.stage,
        max_length=config.max_length,
        pad_to_square=config.pad_to_square and "Next" not in type(processor).__name__,
        progress=(lambda done: on_prepare(done, total)) if on_prepare else None,
    )


def _finish(
    engine: Engine,
    store: ArtifactStore,
    run_id: str,
    out_dir: Path,
    config: TrainConfig,
    base_model: str,
    version: DatasetVersion,
    parent: TrainingRun | None,
    data: PreparedData,
    result: TrainResult,
) -> RunSummary:
    prefix = f"runs/{run_id}"
    summary_data = data.summary()
    record = {
        "run_id": run_id,
        "stage": config.stage,
        "base_model": base_model,
        "dataset_id": version.id,
        "parent_run_id": parent.id if parent else None,
        "config": config.as_dict(),
        "data": summary_data,
        "metrics": result.metrics(),
    }
    outputs: dict[str, str] = {}
    for name in result.outputs:
        outputs[name] = store.put(f"{prefix}/{name}", out_dir / name, overwrite=True).key
    outputs["config.json"] = store.put(
        f"{prefix}/config.json", json.dumps(record, indent=1).encode(), overwrite=True
    ).key
    for key in list(store.list(f"{prefix}/checkpoints/")):
        store.delete(key)  # the run is done: its outputs replace the checkpoint
    metrics = {**result.metrics(), "data": summary_data}
    with session_scope(engine) as session:
        row = session.get(TrainingRun, run_id)
        assert row is not None
        row.status, row.outputs, row.metrics = "completed", outputs, metrics
        row.finished_at = datetime.now(UTC)
    parent_id = parent.id if parent else None
    return RunSummary(
        run_id, config.stage, version.id, base_model, parent_id, summary_data, metrics, outputs
    )


def _fail(engine: Engine, run_id: str, exc: BaseException) -> None:
    message = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, KeyboardInterrupt):
        message = "interrupted (resume it with `ldrt train --resume RUN`)"
    with session_scope(engine) as session:
        row = session.get(TrainingRun, run_id)
        if row is not None:
            row.status, row.error = "failed", message[:4000]
            row.finished_at = datetime.now(UTC)


# --------------------------------------------------------------------------- checkpoints


def _upload_checkpoint(store: ArtifactStore, run_id: str, folder: Path) -> None:
    """Copy a checkpoint folder to the store (state.json last), then drop older ones there."""
    prefix = f"runs/{run_id}/checkpoints/{folder.name}"
    for path in sorted(_iter_files(folder), key=lambda p: p.name == "state.json"):
        store.put(f"{prefix}/{path.relative_to(folder).as_posix()}", path, overwrite=True)
    for key in list(store.list(f"runs/{run_id}/checkpoints/")):
        if not key.startswith(prefix + "/"):
            store.delete(key)


def _download_checkpoint(store: ArtifactStore, run_id: str, local: Path) -> bool:
    base = f"runs/{run_id}/checkpoints/"
    keys = list(store.list(base))
    steps = {k[len(base) :].split("/", 1)[0] for k in keys if k.endswith("/state.json")}
    if not steps:
        return False
    newest = max(steps, key=lambda s: int(s.split("-", 1)[1]))
    for key in keys:
        if key.startswith(f"{base}{newest}/"):
            store.get_file(key, local / key[len(base) :])
    return True


# ------------------------------------------------------------------------------- merging


def run_chain(engine: Engine, run_id: str) -> list[TrainingRun]:
    """The run and its ancestors, newest first (stage 2, then the stage 1 it started from)."""
    chain: list[TrainingRun] = []
    current: str | None = run_id
    with session_scope(engine) as session:
        while current:
            row = session.get(TrainingRun, current)
            if row is None:
                raise LdrtError(f"no training run {current}")
            chain.append(row)
            current = row.parent_run_id
    return chain


def chain_projectors(store: ArtifactStore, chain: list[TrainingRun]) -> list[bytes]:
    """The stored projector weights along a run chain, oldest first: loaded in this order, the
    newest projector wins."""
    return [
        store.get(row.outputs[PROJECTOR_FILE])
        for row in reversed(chain)
        if PROJECTOR_FILE in row.outputs
    ]


def merge_run(
    engine: Engine,
    store: ArtifactStore,
    run: str,
    out_dir: Path,
    *,
    base_model: str | None = None,
    keep_adapter: bool = False,
) -> Path:
    """A standalone llava-hf checkpoint: the base model with the run's projector(s) and its LoRA
    merged in, saved with the processor (loadable by `load_llava`, servable by vLLM).

    `keep_adapter`: the LoRA is not merged but copied to `adapter/` beside the weights, for
    servers that apply it per request (vLLM's `--enable-lora` / `LoRARequest`)."""
    row = find_run(engine, run)
    if row.status != "completed":
        raise TrainingError(f"run {row.id[:12]} is {row.status}: only a completed run merges")
    chain = run_chain(engine, row.id)
    model, processor = load_llava(base_model or row.base_model)
    for payload in chain_projectors(store, chain):
        load_projector(model, payload)
    adapter_key = row.outputs.get(f"{ADAPTER_DIR}/adapter_model.safetensors")
    staging = out_dir.with_name(out_dir.name + ".part")
    shutil.rmtree(staging, ignore_errors=True)
    if adapter_key and keep_adapter:
        for name in ("adapter_model.safetensors", "adapter_config.json"):
            store.get_file(row.outputs[f"{ADAPTER_DIR}/{name}"], staging / ADAPTER_DIR / name)
    elif adapter_key:
        from peft import PeftModel

        with tempfile.TemporaryDirectory() as tmp:
            for name in ("adapter_model.safetensors", "adapter_config.json"):
                store.get_file(row.outputs[f"{ADAPTER_DIR}/{name}"], Path(tmp) / name)
            with quiet_peft():
                model = PeftModel.from_pretrained(model, tmp).merge_and_unload()
    model.save_pretrained(staging)
    processor.save_pretrained(staging)
    provenance = {
        "training_run": row.id,
        "chain": [r.id for r in chain],
        "base_model": row.base_model,
        "lora": "adapter/ (not merged)" if adapter_key and keep_adapter else "merged",
    }
    (staging / "ldrt_provenance.json").write_text(json.dumps(provenance, indent=1))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    staging.replace(out_dir)
    return out_dir


# ------------------------------------------------------------------------------- helpers


def _run_dir(work_dir: Path, run_id: str) -> Path:
    return work_dir / "runs" / run_id


def _config_hash(
    config: TrainConfig, base_model: str, dataset_id: str, parent: TrainingRun | None
) -> str:
    spec = {
        "config": config.as_dict(),
        "base_model": base_model if base_model == TINY_RANDOM else str(Path(base_model).resolve()),
        "dataset": dataset_id,
        "parent": parent.id if parent else None,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _from_rank0(run_id: str) -> str:
    """Rank 0's `run_id` on every rank of a multi-process launch (as given when alone)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            import deepspeed

            deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo")
        holder = [run_id]
        dist.broadcast_object_list(holder, src=0)
        run_id = str(holder[0])
    return run_id


def _iter_files(folder: Path) -> Iterator[Path]:
    return (p for p in sorted(folder.rglob("*")) if p.is_file())
