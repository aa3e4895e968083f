"""The training loop: one stage of LLaVA fine-tuning, with checkpoints and an exact resume.

Input: a loaded LLaVA model and processor, prepared samples (`ldrt_core.train.data`), a
`TrainConfig`, a folder for checkpoints and one for outputs. Output: the trained weights written
to the output folder (stage 1: `projector.safetensors`; stage 2: a PEFT LoRA adapter in
`adapter/`, plus `projector.safetensors` when the projector was trained) and a `TrainResult` with
the loss curve.

What trains:
- "align" (stage 1): only the multi-modal projector; the vision tower and the LLM are frozen.
- "instruct" (stage 2): LoRA (default r=128, alpha=256, dropout 0.05) on the language model's
  q/k/v/o/gate/up/down projections only, and the projector at its own learning rate unless
  `projector_lr` is None. No `modules_to_save`: the adapter loads in PEFT and in vLLM as is.

How: AdamW, linear warmup then cosine decay, gradient clipping, gradient accumulation,
non-reentrant gradient checkpointing, bf16 autocast on CUDA (trainable weights kept in fp32). With
`deepspeed` (a JSON config, e.g. ZeRO-3) the DeepSpeed engine takes the model, optimizer and
schedule; it is the way to train on several GPUs (`deepspeed` / `torchrun` / `accelerate launch`).

Resume: a checkpoint holds the trainable weights, optimizer, schedule, random number generator
states and the position in the epoch's sample order (a permutation seeded by seed and epoch), so a
resumed run takes the same batches in the same order and ends where an uninterrupted one does.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ldrt_core.errors import CheckpointMismatchError, TrainingError
from ldrt_core.train.data import Collator, PreparedData, SampleDataset
from ldrt_core.train.model import (
    drop_input_grad_hooks,
    enable_gradient_checkpointing,
    lora_target_pattern,
    projector_parameters,
    quiet_peft,
)

__all__ = [
    "STAGES",
    "StepReport",
    "TrainConfig",
    "TrainResult",
    "run_training",
]

STAGES = ("align", "instruct")
CHECKPOINT_STATE = "state.json"
PROJECTOR_FILE = "projector.safetensors"
ADAPTER_DIR = "adapter"
_DEEPSPEED_TAG = "engine"


@dataclass(frozen=True)
class TrainConfig:
    """One stage's hyperparameters. Defaults: LLaVA-1.5's public scripts (`for_stage`)."""

    stage: str
    learning_rate: float
    projector_lr: float | None = None  # stage 2: None keeps the projector frozen
    epochs: int = 1
    max_steps: int | None = None  # stop after this many optimizer steps (None: the epochs)
    batch_size: int = 4  # per device
    grad_accum: int = 1
    max_length: int = 2048
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    lora_r: int = 128
    lora_alpha: int = 256
    lora_dropout: float = 0.05
    seed: int = 0
    checkpoint_every: int = 200  # optimizer steps; 0: only at the end
    gradient_checkpointing: bool = True
    precision: str = "auto"  # auto (bf16 on a CUDA GPU that has it, else fp32), bf16, fp32
    attn_implementation: str = "auto"  # auto (FlashAttention-2 if importable on CUDA, else sdpa)
    pad_to_square: bool = True
    workers: int = 0  # data loader processes
    deepspeed: str | None = None  # a DeepSpeed JSON config (path), e.g. ZeRO-3

    @classmethod
    def for_stage(cls, stage: str, **overrides: Any) -> TrainConfig:
        if stage not in STAGES:
            raise TrainingError(f"unknown stage {stage!r}: use one of {', '.join(STAGES)}")
        defaults: dict[str, Any] = (
            {"learning_rate": 1e-3}
            if stage == "align"
            else {"learning_rate": 2e-4, "projector_lr": 2e-5}
        )
        given = {k: v for k, v in overrides.items() if v is not None}
        if overrides.get("projector_lr") == 0:  # 0 freezes the projector in stage 2
            given["projector_lr"] = None
        return cls(stage=stage, **{**defaults, **given})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TrainConfig:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in raw.items() if k in known})


@dataclass(frozen=True, slots=True)
class StepReport:
    step: int
    total_steps: int
    epoch: int
    loss: float
    learning_rate: float
    samples_per_s: float
    tokens_per_s: float


@dataclass
class TrainResult:
    steps: int
    samples_seen: int
    tokens_seen: int
    seconds: float
    loss_curve: list[dict[str, float]] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)  # files written, relative to out_dir
    resumed_from_step: int | None = None
    trainable_parameters: int = 0
    precision: str = "fp32"
    attn_implementation: str = "sdpa"

    @property
    def first_loss(self) -> float | None:
        return self.loss_curve[0]["loss"] if self.loss_curve else None

    @property
    def final_loss(self) -> float | None:
        return self.loss_curve[-1]["loss"] if self.loss_curve else None

    def metrics(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "samples_seen": self.samples_seen,
            "tokens_seen": self.tokens_seen,
            "seconds": round(self.seconds, 3),
            "first_loss": self.first_loss,
            "final_loss": self.final_loss,
            "resumed_from_step": self.resumed_from_step,
            "trainable_parameters": self.trainable_parameters,
            "precision": self.precision,
            "attn_implementation": self.attn_implementation,
        }


# ------------------------------------------------------------------------------- the stage


def resolve_precision(config: TrainConfig, device: torch.device) -> str:
    if config.precision not in ("auto", "bf16", "fp32"):
        raise TrainingError(f"precision {config.precision!r}: use auto, bf16 or fp32")
    if config.precision != "auto":
        return config.precision
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return "bf16" if cuda_bf16 else "fp32"


def prepare_model(model: torch.nn.Module, config: TrainConfig) -> torch.nn.Module:
    """Freeze what the stage does not train; wrap with LoRA for stage 2. Returns the model to
    train (a `PeftModel` for stage 2) with only the trained parameters requiring grad (fp32)."""
    model.requires_grad_(False)
    if config.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    train_projector = config.stage == "align" or config.projector_lr is not None
    if config.stage == "instruct":
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=lora_target_pattern(model),
            bias="none",
            task_type="CAUSAL_LM",
        )
        with quiet_peft():
            model = get_peft_model(model, lora)
    drop_input_grad_hooks(model)  # no backward through the frozen vision tower
    for _, param in projector_parameters(model):
        param.requires_grad_(train_projector)
    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()  # master weights of what trains stay in fp32
    return model


def parameter_groups(model: torch.nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
    projector = {id(p) for _, p in projector_parameters(model)}
    main: list[torch.nn.Parameter] = []
    proj: list[torch.nn.Parameter] = []
    for param in model.parameters():
        if param.requires_grad:
            (proj if id(param) in projector and config.stage == "instruct" else main).append(param)
    groups = [{"params": main, "lr": config.learning_rate, "name": "main"}]
    if proj:
        groups.append({"params": proj, "lr": config.projector_lr, "name": "projector"})
    return [g for g in groups if g["params"]]


def run_training(
    model: torch.nn.Module,
    processor: Any,
    data: PreparedData,
    config: TrainConfig,
    *,
    checkpoint_dir: Path,
    out_dir: Path,
    resume: bool = False,
    on_step: Callable[[StepReport], None] | None = None,
    on_checkpoint: Callable[[int, Path], None] | None = None,
) -> tuple[torch.nn.Module, TrainResult]:
    """Train one stage; write its outputs to `out_dir`. Returns the trained model and result.

    `resume`: continue from the newest checkpoint in `checkpoint_dir` (an error when there is
    none). `on_checkpoint(step, folder)` is called on rank 0 after each checkpoint is written,
    e.g. to copy it to the artifact store.
    """
    if not data.samples:
        raise TrainingError(
            f"no usable training sample (skipped: {dict(data.skipped) or 'none'}); "
            "check the dataset version"
        )
    distributed = _init_distributed(config)
    rank, world = _rank_world(distributed)
    device = _device()
    precision = resolve_precision(config, device)
    _seed_everything(config.seed + rank)  # LoRA's initial weights come from this state
    model.to(device)
    model = prepare_model(model, config)
    groups = parameter_groups(model, config)
    trainable = sum(p.numel() for g in groups for p in g["params"])
    if not trainable:
        raise TrainingError("nothing to train: every parameter is frozen")

    micro_batches = len(_epoch_batches(len(data.samples), config, 0, rank, world))
    steps_per_epoch = max(1, math.ceil(micro_batches / config.grad_accum))
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    warmup = math.ceil(total_steps * config.warmup_ratio)

    optimizer = torch.optim.AdamW(
        groups, weight_decay=config.weight_decay, betas=(0.9, 0.999), eps=1e-8
    )
    from transformers import get_cosine_schedule_with_warmup

    scheduler = get_cosine_schedule_with_warmup(optimizer, warmup, total_steps)
    engine = None
    if config.deepspeed:
        engine = _deepspeed_engine(model, optimizer, scheduler, config, precision, world)

    # Which samples, in which order: the epochs' permutations index this list, so a resumed run
    # continues the same sample order only over the same list.
    samples = {
        "count": len(data.samples),
        "sha256": hashlib.sha256("\n".join(s.id for s in data.samples).encode()).hexdigest(),
    }
    state: dict[str, Any] = {
        "step": 0,
        "epoch": 0,
        "micro": 0,
        "samples": 0,
        "tokens": 0,
        "seconds": 0.0,
        "data": samples,
    }
    curve: list[dict[str, float]] = []
    resumed_from = None
    if resume:
        folder = latest_checkpoint(checkpoint_dir)
        if folder is None:
            raise TrainingError(f"no checkpoint to resume from in {checkpoint_dir}")
        state, curve = _load_checkpoint(folder, model, optimizer, scheduler, engine, config)
        then = state.setdefault("data", samples)  # checkpoints before this check: trusted
        if then != samples:
            raise CheckpointMismatchError(
                f"the training samples changed since {folder.name} ({then['count']} then, "
                f"{samples['count']} now: an image that failed to load then loads now, or the "
                "reverse): resuming would repeat or skip samples; start a new run"
            )
        resumed_from = int(state["step"])

    dataset = SampleDataset(data.samples, processor, config.pad_to_square)
    collate = Collator(processor)
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if precision == "bf16" and engine is None
        else nullcontext()
    )
    trainable_params = [p for g in groups for p in g["params"]]
    model.train()
    started = time.perf_counter() - float(state["seconds"])
    window_start, window_samples, window_tokens = time.perf_counter(), 0, 0
    step = int(state["step"])
    while step < total_steps and int(state["epoch"]) < config.epochs:
        epoch = int(state["epoch"])
        batches = _epoch_batches(len(data.samples), config, epoch, rank, world)
        first = int(state["micro"])
        loader = iter(
            torch.utils.data.DataLoader(
                dataset,
                batch_sampler=batches[first:],
                collate_fn=collate,
                num_workers=config.workers,
                # Its own generator: the global random state (dropout) is left untouched, so a
                # resumed run draws exactly what the uninterrupted one did.
                generator=torch.Generator().manual_seed(config.seed + epoch),
                pin_memory=device.type == "cuda",
            )
        )
        for index in range(first, len(batches), config.grad_accum):
            group = batches[index : index + config.grad_accum]
            loss_sum = 0.0
            for indices in group:
                batch = {k: v.to(device) for k, v in next(loader).items()}
                with autocast:
                    outputs = (engine or model)(**batch)
                loss = outputs.loss
                if engine is not None:
                    engine.backward(loss)
                    engine.step()
                else:
                    (loss / len(group)).backward()
                loss_sum += float(loss.detach())
                window_samples += len(indices) * world
                window_tokens += int(batch["attention_mask"].sum()) * world
            if engine is None:
                if config.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(trainable_params, config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            step += 1
            state.update(
                step=step,
                micro=index + len(group),
                samples=int(state["samples"]) + window_samples,
                tokens=int(state["tokens"]) + window_tokens,
            )
            elapsed = max(time.perf_counter() - window_start, 1e-9)
            report = StepReport(
                step=step,
                total_steps=total_steps,
                epoch=epoch,
                loss=_mean_across_ranks(loss_sum / len(group), distributed),
                learning_rate=float(scheduler.get_last_lr()[0]),
                samples_per_s=window_samples / elapsed,
                tokens_per_s=window_tokens / elapsed,
            )
            window_start, window_samples, window_tokens = time.perf_counter(), 0, 0
            curve.append({"step": step, "loss": report.loss, "lr": report.learning_rate})
            if on_step is not None and rank == 0:
                on_step(report)
            if step >= total_steps:
                break
            if config.checkpoint_every and step % config.checkpoint_every == 0:
                state["seconds"] = time.perf_counter() - started
                folder = _save_checkpoint(
                    checkpoint_dir, model, optimizer, scheduler, engine, state, curve, rank
                )
                if on_checkpoint is not None and rank == 0:
                    on_checkpoint(step, folder)
        else:
            state.update(epoch=epoch + 1, micro=0)

    written = save_outputs(model, config, out_dir, engine, rank)
    result = TrainResult(
        steps=step,
        samples_seen=int(state["samples"]),
        tokens_seen=int(state["tokens"]),
        seconds=time.perf_counter() - started,
        loss_curve=curve,
        outputs=written,
        resumed_from_step=resumed_from,
        trainable_parameters=trainable,
        precision=precision,
        attn_implementation=str(getattr(_config_of(model), "_attn_implementation", "") or "?"),
    )
    if rank == 0:
        (out_dir / "loss.json").write_text(json.dumps(curve), encoding="utf-8")
        result.outputs.append("loss.json")
    return model, result


# ------------------------------------------------------------------------------ outputs


def save_outputs(
    model: torch.nn.Module,
    config: TrainConfig,
    out_dir: Path,
    engine: Any = None,
    rank: int = 0,
) -> list[str]:
    """Write the trained weights (gathered from ZeRO-3 partitions when needed) on rank 0."""
    from safetensors.torch import save_file

    written: list[str] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    projector = projector_parameters(model)
    with _gathered([p for _, p in projector], engine):
        if rank == 0 and (config.stage == "align" or config.projector_lr is not None):
            tensors = {
                _base_name(name): p.detach().to("cpu", torch.float32).contiguous()
                for name, p in projector
            }
            save_file(tensors, out_dir / PROJECTOR_FILE, metadata={"format": "pt"})
            written.append(PROJECTOR_FILE)
    if config.stage == "instruct":
        lora = [(n, p) for n, p in model.named_parameters() if "lora_" in n]
        with _gathered([p for _, p in lora], engine):
            if rank == 0:
                written += save_adapter(model, out_dir / ADAPTER_DIR, dict(lora))
    return written


def save_adapter(
    model: Any, folder: Path, lora: Mapping[str, torch.nn.Parameter] | None = None
) -> list[str]:
    """`adapter_model.safetensors` + `adapter_config.json`, as PEFT writes them."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    params = lora if lora is not None else dict(model.named_parameters())
    state = {n: p.detach().to("cpu", torch.float32).contiguous() for n, p in params.items()}
    adapter = get_peft_model_state_dict(model, state_dict=state)
    save_file(adapter, folder / "adapter_model.safetensors", metadata={"format": "pt"})
    model.peft_config["default"].save_pretrained(str(folder))
    return [f"{ADAPTER_DIR}/adapter_model.safetensors", f"{ADAPTER_DIR}/adapter_config.json"]


def _base_name(name: str) -> str:
    """A parameter's name in the base model (PEFT prefixes 'base_model.model.')."""
    prefix = "base_model.model."
    return name[len(prefix) :] if name.startswith(prefix) else name


@contextmanager
def _gathered(params: Sequence[torch.nn.Parameter], engine: Any) -> Iterator[None]:
    """Full tensors of ZeRO-3 partitioned parameters for the block (a no-op without ZeRO-3)."""
    if engine is None or not any(hasattr(p, "ds_id") for p in params):
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(list(params), modifier_rank=None):
        yield


def _config_of(model: torch.nn.Module) -> Any:
    base = getattr(model, "get_base_model", None)
    return getattr(base() if callable(base) else model, "config", None)


# -------------------------------------------------------------------------- checkpoints


def latest_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest complete checkpoint folder (`step-N` with its state.json), if any."""
    if not checkpoint_dir.is_dir():
        return None
    done = [
        p
        for p in checkpoint_dir.iterdir()
        if p.is_dir() and p.name.startswith("step-") and (p / CHECKPOINT_STATE).is_file()
    ]
    return max(done, key=lambda p: int(p.name.split("-", 1)[1]), default=None)


def _save_checkpoint(
    checkpoint_dir: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    engine: Any,
    state: Mapping[str, Any],
    curve: list[dict[str, float]],
    rank: int,
) -> Path:
    """Write `step-N/` (state.json last: a folder without it is incomplete and ignored) and
    remove older checkpoints."""
    folder = checkpoint_dir / f"step-{state['step']}"
    if engine is not None:
        engine.save_checkpoint(str(folder), tag=_DEEPSPEED_TAG, exclude_frozen_parameters=True)
    elif rank == 0:
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        trainable = {
            n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad
        }
        save_file(trainable, folder / "trainable.safetensors")
        torch.save(
            {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
            folder / "optimizer.pt",
        )
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(_rng_state(), folder / f"rng-{rank}.pt")
    _barrier()
    if rank == 0:
        payload = {"state": dict(state), "curve": curve}
        (folder / CHECKPOINT_STATE).write_text(json.dumps(payload), encoding="utf-8")
        for old in checkpoint_dir.iterdir():
            if old.is_dir() and old.name.startswith("step-") and old != folder:
                shutil.rmtree(old, ignore_errors=True)
    _barrier()
    return folder


def _load_checkpoint(
    folder: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    engine: Any,
    config: TrainConfig,
) -> tuple[dict[str, Any], list[dict[str, float]]]:
    payload = json.loads((folder / CHECKPOINT_STATE).read_text(encoding="utf-8"))
    if engine is not None:
        if not (folder / _DEEPSPEED_TAG).is_dir():
            raise TrainingError(f"{folder} is not a DeepSpeed checkpoint; resume without it")
        engine.load_checkpoint(str(folder), tag=_DEEPSPEED_TAG, load_module_strict=False)
    else:
        if not (folder / "trainable.safetensors").is_file():
            raise TrainingError(f"{folder} is a DeepSpeed checkpoint: resume with --deepspeed")
        from safetensors.torch import load_file

        saved = load_file(folder / "trainable.safetensors")
        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        if set(saved) != set(params):
            raise TrainingError(
                f"checkpoint {folder} holds other trainable weights than this run's model "
                f"({len(saved)} saved, {len(params)} now): same base model and stage?"
            )
        with torch.no_grad():
            for name, param in params.items():
                param.copy_(saved[name])
        extra = torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True)
        optimizer.load_state_dict(extra["optimizer"])
        scheduler.load_state_dict(extra["scheduler"])
    rank, _ = _rank_world(torch.distributed.is_initialized())
    rng_file = folder / f"rng-{rank}.pt"
    if rng_file.is_file():
        _set_rng_state(torch.load(rng_file, weights_only=False))
    else:
        _seed_everything(config.seed + rank + int(payload["state"]["step"]))
    return dict(payload["state"]), list(payload["curve"])


def _rng_state() -> dict[str, Any]:
    import numpy as np

    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": np.random.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    import numpy as np

    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _seed_everything(seed: int) -> None:
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------- batching


def _epoch_batches(
    count: int, config: TrainConfig, epoch: int, rank: int, world: int
) -> list[list[int]]:
    """This rank's micro-batches for `epoch`: a permutation fixed by (seed, epoch), dealt out
    round-robin to the ranks, cut into `batch_size` pieces.

    Under DeepSpeed the permutation wraps around (as `DistributedSampler` pads) to fill whole
    optimizer steps on every rank: world x batch_size x grad_accum samples each. Ranks then run
    the same number of micro-batches, so none of them waits in a ZeRO-3 gather the others never
    reach, and no short last group leaves DeepSpeed's own accumulation count (which decides when
    it steps) out of line with ours. Without DeepSpeed (one process) a short last batch and
    group are kept as they are: the loop scales the loss by the group's size."""
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
    order = torch.randperm(count, generator=generator).tolist()
    if config.deepspeed and order:
        block = world * config.batch_size * config.grad_accum
        needed = math.ceil(count / block) * block
        order = (order * math.ceil(needed / count))[:needed]
    mine = order[rank::world]
    return [mine[i : i + config.batch_size] for i in range(0, len(mine), config.batch_size)]


# -------------------------------------------------------------------------- distribution


def _device() -> torch.device:
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def _init_distributed(config: TrainConfig) -> bool:
    """Join the process group the launcher set up (WORLD_SIZE > 1), or make a one-process group
    for DeepSpeed. Returns whether torch.distributed is in use."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not config.deepspeed:
        raise TrainingError(
            f"{world} processes were launched: training on several devices needs --deepspeed "
            "(e.g. the ZeRO-3 config)"
        )
    if not config.deepspeed:
        return False
    if not torch.distributed.is_initialized():
        import deepspeed

        os.environ.setdefault("RANK", "0")
        os.environ.setdefault("LOCAL_RANK", "0")
        os.environ.setdefault("WORLD_SIZE", "1")
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        deepspeed.init_distributed(dist_backend=backend)
    return True


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rank_world(distributed: bool) -> tuple[int, int]:
    if distributed and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _barrier() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.barrier()


def _mean_across_ranks(value: float, distributed: bool) -> float:
    if not distributed or torch.distributed.get_world_size() == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=_device())
    torch.distributed.all_reduce(tensor)
    return float(tensor.item()) / torch.distributed.get_world_size()


def load_deepspeed_config(
    path: str, config: TrainConfig, precision: str, world: int
) -> dict[str, Any]:
    """The JSON config with its "auto" values filled from `config` (as HF Trainer does)."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise TrainingError(f"cannot read the DeepSpeed config {path}: {exc}") from exc
    filled = {
        "train_micro_batch_size_per_gpu": config.batch_size,
        "gradient_accumulation_steps": config.grad_accum,
        "train_batch_size": config.batch_size * config.grad_accum * world,
        "gradient_clipping": config.max_grad_norm,
    }
    for key, value in filled.items():
        if raw.get(key, "auto") == "auto":
            raw[key] = value
    for section, enabled in (("bf16", precision == "bf16"), ("fp16", False)):
        block = raw.setdefault(section, {})
        if block.get("enabled", "auto") == "auto":
            block["enabled"] = enabled
    # Our optimizer is torch's AdamW (DeepSpeed's fused CPU/GPU Adam needs compiled ops).
    raw.setdefault("zero_allow_untested_optimizer", True)
    raw.setdefault("zero_force_ds_cpu_optimizer", False)
    return dict(raw)


def _deepspeed_engine(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    config: TrainConfig,
    precision: str,
    world: int,
) -> Any:
    import deepspeed

    assert config.deepspeed is not None
    ds_config = load_deepspeed_config(config.deepspeed, config, precision, world)
    engine, _, _, _ = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config
    )
    return engine
