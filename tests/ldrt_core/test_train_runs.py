"""Training runs on real dataset versions: rows in the lineage database, outputs in the store,
resume after a crash from the store's checkpoint, and merging into a standalone checkpoint.

Input: the sample corpus taken through refresh, extraction, curation and template QA (embedded
settings: SQLite and a local store; the CLI test below runs on PostgreSQL and S3), and the tiny
random LLaVA. Output: assertions on `training_runs` rows, stored files and model outputs.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
import torch
from sqlalchemy import Engine

from ldrt_core import db
from ldrt_core.curate.dataset import CurationConfig, build_dataset
from ldrt_core.db.models import TrainingRun
from ldrt_core.errors import LdrtError, TrainingError
from ldrt_core.qa import TemplateQAGenerator, generate_for_dataset
from ldrt_core.train.loop import StepReport, TrainConfig
from ldrt_core.train.model import TINY_RANDOM, load_llava
from ldrt_core.train.runs import (
    RunSummary,
    deepspeed_config_path,
    find_run,
    load_projector,
    merge_run,
    resolve_dataset,
    resume_stage,
    train_stage,
)
from tests.support.corpus import extracted_world

pytestmark = pytest.mark.slow


class Crash(Exception):
    pass


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("home")
    engine, store = extracted_world(home, tmp_path_factory.mktemp("papers"), papers=4, seed=3)
    curated = build_dataset(engine, store, CurationConfig(eval_share=0.25)).id
    qa = generate_for_dataset(engine, store, curated, TemplateQAGenerator())
    return {
        "engine": engine,
        "store": store,
        "home": home,
        "curated": curated,
        "align": qa.align_id,
        "instruct": qa.instruct_id,
    }


def config(stage: str, **overrides: Any) -> TrainConfig:
    base: dict[str, Any] = {"batch_size": 4, "lora_r": 8, "lora_alpha": 16, "max_length": 1024}
    return TrainConfig.for_stage(stage, **{**base, **overrides})


def train_instruct(world: dict[str, Any], settings: TrainConfig, **kwargs: Any) -> RunSummary:
    """A stage-2 run on the world's instruct version, from the tiny random base."""
    return train_stage(
        world["engine"],
        world["store"],
        world["home"],
        dataset=world["instruct"],
        base_model=TINY_RANDOM,
        config=settings,
        **kwargs,
    )


def row(engine: Engine, run_id: str) -> TrainingRun:
    return find_run(engine, run_id)


def test_stage_datasets_resolve_from_the_curated_version(world: dict[str, Any]) -> None:
    engine = world["engine"]
    assert resolve_dataset(engine, world["curated"], "align").id == world["align"]
    assert resolve_dataset(engine, world["curated"][:10], "instruct").id == world["instruct"]
    assert resolve_dataset(engine, world["align"], "instruct").id == world["instruct"]
    assert resolve_dataset(engine, "latest", "align").id == world["align"]
    with pytest.raises(LdrtError, match="no dataset version starts with"):
        resolve_dataset(engine, "ffffffff", "align")


def test_two_stages_record_runs_and_store_outputs(world: dict[str, Any]) -> None:
    engine, store, home = world["engine"], world["store"], world["home"]
    align = train_stage(
        engine,
        store,
        home,
        dataset=world["curated"],
        base_model=TINY_RANDOM,
        config=config("align", epochs=2, checkpoint_every=1),
    )
    assert align.dataset_id == world["align"] and align.parent_run_id is None
    assert align.data["samples"] > 0 and align.data["skipped"] == {}
    assert set(align.outputs) == {"projector.safetensors", "loss.json", "config.json"}
    instruct = train_stage(
        engine,
        store,
        home,
        dataset=world["curated"],
        base_model=TINY_RANDOM,
        config=config("instruct", max_steps=3),
        parent_run=align.run_id[:8],
    )
    saved = row(engine, instruct.run_id)
    assert saved.status == "completed" and saved.finished_at is not None
    assert saved.parent_run_id == align.run_id and saved.dataset_id == world["instruct"]
    assert saved.config["lora_r"] == 8 and saved.config["projector_lr"] == 2e-5
    assert saved.metrics["steps"] == 3 and saved.metrics["data"]["samples"] > align.data["samples"]
    assert set(saved.outputs) == {
        "adapter/adapter_model.safetensors",
        "adapter/adapter_config.json",
        "projector.safetensors",
        "loss.json",
        "config.json",
    }
    for key in saved.outputs.values():
        assert key.startswith(f"runs/{instruct.run_id}/") and store.exists(key)
    record = json.loads(store.get(saved.outputs["config.json"]))
    assert record["parent_run_id"] == align.run_id and record["dataset_id"] == world["instruct"]
    assert len(json.loads(store.get(saved.outputs["loss.json"]))) == 3
    assert not list(store.list(f"runs/{align.run_id}/checkpoints/"))  # done: no checkpoint left

    # Stage 2 started from stage 1's projector: its untrained-projector copy equals stage 1's.
    frozen = train_stage(
        engine,
        store,
        home,
        dataset=world["instruct"],
        base_model=TINY_RANDOM,
        config=config("instruct", max_steps=1, projector_lr=0),
        parent_run=align.run_id,
    )
    assert "projector.safetensors" not in frozen.outputs
    merged = merge_run(engine, store, frozen.run_id, home / "merged-frozen")
    stage1, _ = load_llava(TINY_RANDOM)
    load_projector(stage1, store.get(align.outputs["projector.safetensors"]))
    again, _ = load_llava(merged)
    for (name, a), (_, b) in zip(
        stage1.model.multi_modal_projector.named_parameters(),
        again.model.multi_modal_projector.named_parameters(),
        strict=True,
    ):
        assert torch.equal(a, b), name


def test_crashed_run_is_failed_and_resumes_from_the_store(world: dict[str, Any]) -> None:
    engine, store, home = world["engine"], world["store"], world["home"]
    settings = config("instruct", max_steps=6, checkpoint_every=2, learning_rate=5e-3)
    straight = train_instruct(world, settings)

    def crash(report: StepReport) -> None:
        if report.step == 3:
            raise Crash("power cut")

    with pytest.raises(Crash):
        train_instruct(world, settings, on_step=crash)
    failed = find_latest(engine, "failed")
    assert "Crash: power cut" in (failed.error or "")
    keys = list(store.list(f"runs/{failed.id}/checkpoints/"))
    assert keys and all(k.startswith(f"runs/{failed.id}/checkpoints/step-2/") for k in keys)
    shutil.rmtree(home / "runs" / failed.id)  # another machine: only the store has it

    resumed = resume_stage(engine, store, home, "latest")  # the newest unfinished run
    done = row(engine, failed.id)
    assert done.status == "completed" and done.error is None
    assert resumed.metrics["resumed_from_step"] == 2 and resumed.metrics["steps"] == 6
    assert resumed.metrics["final_loss"] == pytest.approx(straight.metrics["final_loss"], rel=1e-5)
    assert store.get(resumed.outputs["adapter/adapter_model.safetensors"]) == store.get(
        straight.outputs["adapter/adapter_model.safetensors"]
    )
    with pytest.raises(TrainingError, match="already completed"):
        resume_stage(engine, store, home, failed.id[:10])


def test_a_retried_flow_run_picks_up_its_own_training(world: dict[str, Any]) -> None:
    """The same flow run (retried after a crash) resumes its run, or takes it once completed;
    another flow run trains anew."""
    engine = world["engine"]
    settings = config("instruct", max_steps=4, checkpoint_every=2, learning_rate=4e-3)
    steps: list[int] = []

    def train(flow_run_id: str, crash_at: int = 0) -> RunSummary:
        def on_step(report: StepReport) -> None:
            steps.append(report.step)
            if report.step == crash_at:
                raise Crash("worker lost")

        return train_instruct(world, settings, on_step=on_step, flow_run_id=flow_run_id)

    flow_run = str(uuid.uuid4())
    with pytest.raises(Crash):
        train(flow_run, crash_at=3)
    failed = find_latest(engine, "failed")
    steps.clear()
    resumed = train(flow_run)  # the flow run's retry
    assert resumed.run_id == failed.id and steps == [3, 4]
    assert resumed.metrics["resumed_from_step"] == 2
    steps.clear()
    again = train(flow_run)  # retried once more: nothing left to train
    assert (again.run_id, again.outputs, steps) == (failed.id, resumed.outputs, [])
    assert train(str(uuid.uuid4())).run_id != failed.id and steps == [1, 2, 3, 4]


def test_a_retry_over_changed_samples_trains_anew(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The crashed attempt's checkpoint was made over other samples (an image that loaded then
    fails now): its run cannot resume, so the retry starts a new one."""
    import ldrt_core.train.runs as runs

    settings = config("instruct", max_steps=4, checkpoint_every=2, learning_rate=4e-3)
    flow_run = str(uuid.uuid4())

    def crash(report: StepReport) -> None:
        if report.step == 3:
            raise Crash("worker lost")

    with pytest.raises(Crash):
        train_instruct(world, settings, on_step=crash, flow_run_id=flow_run)
    crashed = find_latest(world["engine"], "failed")
    prepare = runs._prepare

    def one_fewer(*args: Any, **kwargs: Any) -> Any:
        data = prepare(*args, **kwargs)
        data.samples = data.samples[:-1]
        return data

    monkeypatch.setattr(runs, "_prepare", one_fewer)
    retried = train_instruct(world, settings, flow_run_id=flow_run)
    assert retried.run_id != crashed.id and retried.metrics["steps"] == 4
    assert "samples changed since step-2" in (row(world["engine"], crashed.id).error or "")


def find_latest(engine: Engine, status: str) -> TrainingRun:
    from sqlalchemy import select

    with db.session_scope(engine) as session:
        found = session.scalars(
            select(TrainingRun)
            .where(TrainingRun.status == status)
            .order_by(TrainingRun.created_at.desc())
        ).first()
    assert found is not None
    return found


def test_merged_checkpoint_matches_base_plus_adapter(world: dict[str, Any]) -> None:
    from peft import PeftModel

    engine, store, home = world["engine"], world["store"], world["home"]
    run = train_stage(
        engine,
        store,
        home,
        dataset=world["instruct"],
        base_model=TINY_RANDOM,
        config=config("instruct", max_steps=4, learning_rate=1e-2, projector_lr=1e-3),
    )
    out = merge_run(engine, store, run.run_id, home / "merged")
    assert json.loads((out / "ldrt_provenance.json").read_text())["training_run"] == run.run_id
    merged, processor = load_llava(out)
    base, _ = load_llava(TINY_RANDOM)
    load_projector(base, store.get(run.outputs["projector.safetensors"]))
    adapter = home / "adapter"
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        store.get_file(run.outputs[f"adapter/{name}"], adapter / name)
    reference = PeftModel.from_pretrained(base, adapter).eval()
    from PIL import Image

    batch = processor(
        images=Image.new("RGB", (32, 32), (90, 10, 200)),
        text="USER: <image>\nWhat dose? ASSISTANT:",
        return_tensors="pt",
    )
    with torch.no_grad():
        torch.testing.assert_close(
            merged.eval()(**batch).logits, reference(**batch).logits, rtol=1e-4, atol=1e-4
        )


def test_bad_inputs_are_clear_errors(world: dict[str, Any], tmp_path: Path) -> None:
    engine, store, home = world["engine"], world["store"], world["home"]
    with pytest.raises(LdrtError, match=r"config\.json"):
        train_stage(
            engine,
            store,
            home,
            dataset=world["instruct"],
            base_model=str(tmp_path),
            config=config("instruct"),
        )
    failed = find_latest(engine, "failed")
    assert "ModelLoadError" in (failed.error or "")
    with pytest.raises(TrainingError, match="only a completed run merges"):
        merge_run(engine, store, failed.id, tmp_path / "out")
    with pytest.raises(TrainingError, match=r"no DeepSpeed config 'zero9'.*zero2, zero3"):
        deepspeed_config_path("zero9")
    with pytest.raises(TrainingError, match="unknown stage"):
        TrainConfig.for_stage("pretrain")
