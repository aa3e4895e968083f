"""The training loop on the tiny random LLaVA (CPU): what each stage changes, that the loss falls,
that a resumed run ends where an uninterrupted one does, and that the saved adapter reloads.

Input: toy bar-chart figures with captions and conversations made in memory, and the tiny LLaVA
`build_tiny_llava` writes. Output: assertions on parameters (bit for bit), losses and files.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from ldrt_core.errors import ObjectNotFoundError, TrainingError
from ldrt_core.train.data import Collator, PreparedData, SampleDataset, prepare_samples
from ldrt_core.train.loop import StepReport, TrainConfig, run_training
from ldrt_core.train.model import build_tiny_llava, load_llava, projector_parameters
from tests.support.train_data import records

pytestmark = pytest.mark.slow


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llava(tmp_path_factory.mktemp("tiny-llava"), seed=0)


def prepared(tiny_dir: Path, tmp_path: Path, stage: str, count: int = 8) -> PreparedData:
    rows, images = records(count, stage)
    _, processor = load_llava(tiny_dir)

    def fetch(key: str) -> bytes:
        if key not in images:
            raise ObjectNotFoundError(key)
        return images[key]

    return prepare_samples(rows, processor, fetch, tmp_path / "cache", stage=stage, max_length=512)


def small(stage: str, **overrides: Any) -> TrainConfig:
    base: dict[str, Any] = {
        "batch_size": 4,
        "lora_r": 8,
        "lora_alpha": 16,
        "checkpoint_every": 0,
        "warmup_ratio": 0.0,
    }
    return TrainConfig.for_stage(stage, **{**base, **overrides})


def train(
    tiny_dir: Path, tmp_path: Path, config: TrainConfig, data: PreparedData, **kwargs: Any
) -> tuple[torch.nn.Module, Any, dict[str, torch.Tensor], dict[str, torch.nn.Parameter], Any]:
    model, processor = load_llava(tiny_dir)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    objects = dict(model.named_parameters())
    trained, result = run_training(
        model,
        processor,
        data,
        config,
        checkpoint_dir=kwargs.pop("checkpoint_dir", tmp_path / "checkpoints"),
        out_dir=kwargs.pop("out_dir", tmp_path / "out"),
        **kwargs,
    )
    return trained, processor, before, objects, result


def changed(before: dict[str, torch.Tensor], objects: dict[str, torch.nn.Parameter]) -> set[str]:
    return {name for name, p in objects.items() if not torch.equal(p.detach(), before[name])}


def test_stage1_changes_only_the_projector(tiny_dir: Path, tmp_path: Path) -> None:
    data = prepared(tiny_dir, tmp_path, "align")
    config = small("align", epochs=3)
    _, _, before, objects, result = train(tiny_dir, tmp_path, config, data)
    projector = {name for name, _ in projector_parameters(load_llava(tiny_dir)[0])}
    assert len(projector) == 4
    assert changed(before, objects) == projector  # all of it trained, nothing else moved
    assert result.outputs == ["projector.safetensors", "loss.json"]

    saved = load_file(tmp_path / "out" / "projector.safetensors")
    assert set(saved) == projector
    for name in projector:
        assert torch.equal(saved[name], objects[name].detach().float())
    assert result.final_loss < result.first_loss


@pytest.mark.parametrize("projector_lr", [None, 1e-3], ids=["projector-frozen", "projector-lr"])
def test_stage2_changes_only_lora_and_the_projector_when_asked(
    tiny_dir: Path, tmp_path: Path, projector_lr: float | None
) -> None:
    data = prepared(tiny_dir, tmp_path, "instruct")
    config = small("instruct", epochs=2, projector_lr=projector_lr or 0)
    assert config.projector_lr == projector_lr
    trained, _, before, objects, result = train(tiny_dir, tmp_path, config, data)
    projector = {name for name, _ in projector_parameters(load_llava(tiny_dir)[0])}
    assert changed(before, objects) == (projector if projector_lr else set())
    lora = {n: p for n, p in trained.named_parameters() if "lora_" in n}
    assert len(lora) == 2 * 14  # A and B for the 14 language-model linear layers
    assert all("language_model" in n for n in lora)
    assert {n for n, p in trained.named_parameters() if p.requires_grad} == set(lora) | {
        f"base_model.model.{n}" for n in (projector if projector_lr else set())
    }
    lora_b = [p for n, p in lora.items() if "lora_B" in n]
    assert all(bool(p.detach().abs().sum() > 0) for p in lora_b)  # B starts at zero: it moved
    expected = ["adapter/adapter_model.safetensors", "adapter/adapter_config.json", "loss.json"]
    if projector_lr:
        expected.insert(0, "projector.safetensors")
    assert result.outputs == expected


def test_stage2_overfits_a_small_set(tiny_dir: Path, tmp_path: Path) -> None:
    data = prepared(tiny_dir, tmp_path, "instruct")
    config = small("instruct", epochs=40, learning_rate=1e-2, lora_dropout=0.0)
    _, _, _, _, result = train(tiny_dir, tmp_path, config, data)
    assert result.steps == 80
    losses = [point["loss"] for point in result.loss_curve]
    assert losses[0] > 6.0
    assert min(losses[-5:]) < 0.25 * losses[0], losses[::10]


def cut_and_resumed(
    tiny_dir: Path, tmp_path: Path, config: TrainConfig, data: PreparedData, crash_at: int
) -> tuple[torch.nn.Module, Any, torch.nn.Module, Any]:
    """The same training straight through (in tmp_path/full), and stopped at step `crash_at` and
    resumed (tmp_path/cut), with the same loss at every step: both models and results."""
    full, _, _, _, full_result = train(tiny_dir, tmp_path / "full", config, data)

    def crash(report: StepReport) -> None:
        if report.step == crash_at:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(tiny_dir, tmp_path / "cut", config, data, on_step=crash)
    resumed, _, _, _, result = train(tiny_dir, tmp_path / "cut", config, data, resume=True)
    for a, b in zip(result.loss_curve, full_result.loss_curve, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    return full, full_result, resumed, result


def test_resumed_run_ends_where_an_uninterrupted_one_does(tiny_dir: Path, tmp_path: Path) -> None:
    data = prepared(tiny_dir, tmp_path, "instruct", count=6)
    # 6 samples, batch 2: 3 steps an epoch; 9 steps cross two epoch boundaries. Dropout on, so
    # the random state must come back too; projector trained at its own rate.
    config = small(
        "instruct",
        batch_size=2,
        epochs=3,
        checkpoint_every=2,
        projector_lr=1e-3,
        learning_rate=5e-3,
        warmup_ratio=0.2,
    )
    full, full_result, resumed, result = cut_and_resumed(tiny_dir, tmp_path, config, data, 5)
    # Resumed from step 4 (stopped at 5); only the newest checkpoint is kept.
    assert sorted(p.name for p in (tmp_path / "cut" / "checkpoints").iterdir()) == ["step-8"]
    assert result.resumed_from_step == 4 and result.steps == full_result.steps == 9
    assert [p["step"] for p in result.loss_curve] == list(range(1, 10))
    full_params = dict(full.named_parameters())
    trained = [(n, p) for n, p in resumed.named_parameters() if p.requires_grad]
    assert len(trained) == 28 + 4
    for name, param in trained:
        torch.testing.assert_close(param, full_params[name], rtol=1e-5, atol=1e-6)


def test_resume_over_other_samples_is_an_error(tiny_dir: Path, tmp_path: Path) -> None:
    """One sample fewer now (an image that loaded then fails now): the epoch's order differs."""
    config = small("instruct", batch_size=2, checkpoint_every=2)

    def crash(report: StepReport) -> None:
        if report.step == 3:
            raise Interrupt

    six = prepared(tiny_dir, tmp_path, "instruct", 6)
    with pytest.raises(Interrupt):
        train(tiny_dir, tmp_path, config, six, on_step=crash)
    fewer = prepared(tiny_dir, tmp_path / "fewer", "instruct", 5)
    with pytest.raises(TrainingError, match=r"samples changed since step-2 \(6 then, 5 now"):
        train(tiny_dir, tmp_path, config, fewer, resume=True)


def test_resume_without_a_checkpoint_is_an_error(tiny_dir: Path, tmp_path: Path) -> None:
    data = prepared(tiny_dir, tmp_path, "align")
    with pytest.raises(TrainingError, match="no checkpoint to resume from"):
        train(tiny_dir, tmp_path, small("align"), data, resume=True)


def test_no_usable_sample_is_a_clear_error(tiny_dir: Path, tmp_path: Path) -> None:
    data = PreparedData(samples=[])
    data.skip("broken_image", "r0")
    with pytest.raises(TrainingError, match=r"no usable training sample.*broken_image"):
        train(tiny_dir, tmp_path, small("align"), data)


def test_saved_adapter_reloads_with_peft_and_gives_the_same_outputs(
    tiny_dir: Path, tmp_path: Path
) -> None:
    from peft import PeftModel

    from ldrt_core.train.runs import load_projector

    data = prepared(tiny_dir, tmp_path, "instruct")
    config = small("instruct", epochs=3, learning_rate=1e-2, projector_lr=1e-3)
    trained, processor, _, _, _ = train(tiny_dir, tmp_path, config, data)
    adapter = tmp_path / "out" / "adapter"
    settings = json.loads((adapter / "adapter_config.json").read_text())
    assert settings["r"] == 8 and settings["lora_alpha"] == 16
    assert not settings.get("modules_to_save")
    weights = load_file(adapter / "adapter_model.safetensors")
    assert len(weights) == 28
    assert all(re.search(r"language_model\..*\.lora_[AB]\.weight$", k) for k in weights)
    assert not any("vision_tower" in k or "projector" in k for k in weights)

    base, _ = load_llava(tiny_dir)
    load_projector(base, (tmp_path / "out" / "projector.safetensors").read_bytes())
    reloaded = PeftModel.from_pretrained(base, adapter)
    vision = {n for n, _ in base.named_modules() if "vision_tower" in n and "lora" in n}
    assert not vision  # the pattern never reached the vision tower's q/k/v projections
    batch = Collator(processor)([SampleDataset(data.samples, processor, True)[i] for i in (0, 1)])
    trained.eval()
    reloaded.eval()
    with torch.no_grad():
        expected = trained(**batch).logits
        got = reloaded(**batch).logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    untrained, _ = load_llava(tiny_dir)
    with torch.no_grad():
        assert not torch.allclose(untrained(**batch).logits, expected, atol=1e-3)


@pytest.mark.parametrize("name", ["zero3"])
def test_deepspeed_zero3_on_cpu_with_gloo(tiny_dir: Path, tmp_path: Path, name: str) -> None:
    """One ZeRO-3 run (one process, gloo): only LoRA moves, and the gathered adapter is whole."""
    from peft import PeftModel

    from ldrt_core.train.runs import deepspeed_config_path

    data = prepared(tiny_dir, tmp_path, "instruct")
    config = small(
        "instruct",
        epochs=2,
        learning_rate=1e-2,
        projector_lr=0,
        deepspeed=deepspeed_config_path(name),
        checkpoint_every=2,
    )
    _, processor, _, _, result = train(tiny_dir, tmp_path, config, data)
    assert result.steps == 4
    assert (tmp_path / "checkpoints" / "step-2" / "engine").is_dir()
    base, _ = load_llava(tiny_dir)
    reference, _ = load_llava(tiny_dir)
    reloaded = PeftModel.from_pretrained(base, tmp_path / "out" / "adapter")

    weights = load_file(tmp_path / "out" / "adapter" / "adapter_model.safetensors")
    assert len(weights) == 28
    assert all(w.numel() > 0 for w in weights.values())  # gathered, not empty partitions
    assert any(float(w.abs().sum()) > 0 for k, w in weights.items() if "lora_B" in k)
    batch = Collator(processor)([SampleDataset(data.samples, processor, True)[i] for i in (0, 1)])
    reloaded.eval()
    with torch.no_grad():
        tuned = reloaded(**batch).logits
        plain = reference(**batch).logits
    assert not torch.allclose(tuned, plain, atol=1e-4)


def test_deepspeed_accumulates_whole_groups_and_resumes_exactly(
    tiny_dir: Path, tmp_path: Path
) -> None:
    """6 samples, batch 2, accumulation 2: the epoch's third batch starts a group it cannot fill.
    The permutation wraps around to fill it, so DeepSpeed steps when the loop does: the schedule
    runs to its end, and a run resumed mid-way ends where the uninterrupted one does."""
    from ldrt_core.train.runs import deepspeed_config_path

    data = prepared(tiny_dir, tmp_path, "instruct", count=6)
    config = small(
        "instruct",
        batch_size=2,
        grad_accum=2,
        epochs=2,
        learning_rate=5e-3,
        projector_lr=1e-3,
        checkpoint_every=2,
        deepspeed=deepspeed_config_path("zero3"),
    )
    # Stopped at step 3: after the checkpoint at step 2, which closed the first epoch.
    _, full_result, _, result = cut_and_resumed(tiny_dir, tmp_path, config, data, 3)
    rates = [p["lr"] for p in full_result.loss_curve]
    assert full_result.steps == 4 and rates[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(a > b for a, b in itertools.pairwise(rates)), rates  # one step each
    assert result.resumed_from_step == 2 and result.steps == 4
    # ZeRO-3 leaves the model's own parameters partitioned (empty here): compare what it saved.
    for name in ("adapter/adapter_model.safetensors", "projector.safetensors"):
        full, cut = (load_file(tmp_path / run / "out" / name) for run in ("full", "cut"))
        assert full.keys() == cut.keys() and all(w.numel() for w in full.values())
        for key, weight in full.items():
            torch.testing.assert_close(cut[key], weight, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("count", "batch_size", "grad_accum", "world"),
    [(5, 1, 1, 2), (9, 4, 1, 2), (10, 4, 2, 4), (6, 2, 2, 1), (3, 4, 2, 2), (8, 2, 2, 2)],
)
def test_under_deepspeed_every_rank_runs_the_same_whole_steps(
    count: int, batch_size: int, grad_accum: int, world: int
) -> None:
    from ldrt_core.train.loop import _epoch_batches

    config = small("instruct", batch_size=batch_size, grad_accum=grad_accum, deepspeed="zero3")
    for epoch in (0, 1):
        ranks = [_epoch_batches(count, config, epoch, rank, world) for rank in range(world)]
        assert len({len(batches) for batches in ranks}) == 1  # no rank waits alone in a gather
        assert len(ranks[0]) % grad_accum == 0  # whole accumulation groups only
        assert all(len(b) == batch_size for batches in ranks for b in batches)
        seen = [i for batches in ranks for b in batches for i in b]
        assert set(seen) == set(range(count))  # every sample, some twice to fill the last step
        assert len(seen) - count < world * batch_size * grad_accum


@pytest.mark.parametrize("stage", ["align", "instruct"])
def test_no_backward_through_the_frozen_vision_tower(
    tiny_dir: Path, tmp_path: Path, stage: str
) -> None:
    """Checkpointing and PEFT hook the input embeddings to require grad; prepare_model drops the
    hooks, so the vision tower runs forward only, once a batch, and still the loss falls."""
    from ldrt_core.train.loop import prepare_model

    model, processor = load_llava(tiny_dir)
    config = small(stage, lora_dropout=0.0)
    tuned = prepare_model(model, config)
    vision = next(m for n, m in model.named_modules() if n.endswith("vision_tower"))
    seen: list[bool] = []
    vision.register_forward_hook(lambda _m, _i, out: seen.append(out[0].requires_grad))
    data = prepared(tiny_dir, tmp_path, stage, count=2)
    batch = Collator(processor)([SampleDataset(data.samples, processor, True)[i] for i in (0, 1)])
    tuned.train()
    tuned(**batch).loss.backward()
    assert seen == [False]  # one forward, nothing to differentiate, no recompute
    grads = [p.grad for p in tuned.parameters() if p.requires_grad]
    assert grads and all(g is not None and bool(g.abs().sum() > 0) for g in grads[:4])
