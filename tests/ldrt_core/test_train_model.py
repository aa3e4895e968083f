"""The tiny offline LLaVA, `load_llava` and what fine-tuning trains (LoRA targets, projector).

Input: the tiny random LLaVA `build_tiny_llava` writes (built once per module; nothing is
downloaded) and hand-made broken model directories. Output: assertions on the files written, a
forward pass through the processor and model, the LoRA target names, and the ModelLoadErrors.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from ldrt_core.errors import LdrtError
from ldrt_core.train.model import (
    IMAGE_TOKEN,
    TINY_RANDOM,
    ModelLoadError,
    build_tiny_llava,
    language_model_lora_targets,
    load_llava,
    projector_parameters,
)

pytestmark = pytest.mark.unit

LORA_NAMES = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llava(tmp_path_factory.mktemp("tiny-llava"), seed=0)


def test_builds_safetensors_only_and_loads_back(tiny_dir: Path) -> None:
    names = {p.name for p in tiny_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
    assert not [n for n in names if n.endswith(".bin")]
    model, processor = load_llava(tiny_dir)
    assert type(model).__name__ == "LlavaForConditionalGeneration"
    assert type(processor).__name__ == "LlavaProcessor"
    image_id = processor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    assert model.config.image_token_id == image_id
    assert processor.tokenizer.pad_token_id is not None
    assert next(model.parameters()).device.type == "cpu"


def test_forward_with_an_image_gives_logits_and_a_finite_loss(tiny_dir: Path) -> None:
    model, processor = load_llava(tiny_dir)
    image = Image.new("RGB", (32, 32), (200, 30, 10))
    batch = processor(
        images=image, text=f"{IMAGE_TOKEN}\nDose-response curve at 0.5 Gy", return_tensors="pt"
    )
    image_id = processor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    assert int((batch["input_ids"] == image_id).sum()) == (32 // 8) ** 2  # expanded: 16 tokens
    assert tuple(batch["pixel_values"].shape) == (1, 3, 32, 32)
    with torch.no_grad():
        out = model(**batch, labels=batch["input_ids"])
    seq_len = batch["input_ids"].shape[1]
    assert tuple(out.logits.shape) == (1, seq_len, model.config.text_config.vocab_size)
    assert out.loss is not None and torch.isfinite(out.loss)


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a = build_tiny_llava(tmp_path / "a", seed=3)
    b = build_tiny_llava(tmp_path / "b", seed=3)
    c = build_tiny_llava(tmp_path / "c", seed=4)
    weights = [(d / "model.safetensors").read_bytes() for d in (a, b, c)]
    assert weights[0] == weights[1]
    assert weights[0] != weights[2]


def test_tiny_random_builds_into_a_cache_and_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    model, _ = load_llava(TINY_RANDOM, dtype=torch.bfloat16)
    assert type(model).__name__ == "LlavaForConditionalGeneration"
    assert next(model.parameters()).dtype == torch.bfloat16
    assert list(tmp_path.rglob("model.safetensors"))
    load_llava(TINY_RANDOM)  # the second call reuses the cached copy
    assert len(list(tmp_path.rglob("model.safetensors"))) == 1


def test_lora_targets_are_exactly_the_language_models_linear_layers(tiny_dir: Path) -> None:
    model, _ = load_llava(tiny_dir)
    targets = language_model_lora_targets(model)
    assert not [t for t in targets if "vision" in t or "projector" in t]
    assert len(targets) == len(set(targets))
    expected = [
        name
        for name, module in model.named_modules()
        if ".language_model." in f".{name}"
        and isinstance(module, torch.nn.Linear)
        and name.rsplit(".", 1)[-1] in LORA_NAMES
    ]
    assert sorted(targets) == sorted(expected)
    assert len(targets) == 7 * model.config.text_config.num_hidden_layers  # 2 layers, 14
    modules = dict(model.named_modules())
    assert all(isinstance(modules[t], torch.nn.Linear) for t in targets)
    # the vision tower has q/k/v projections too; none of them is a target
    vision_qkv = [n for n in modules if "vision_tower" in n and n.endswith("q_proj")]
    assert vision_qkv and not set(vision_qkv) & set(targets)


def test_projector_parameters(tiny_dir: Path) -> None:
    model, _ = load_llava(tiny_dir)
    params = projector_parameters(model)
    assert len(params) == 4  # linear_1 and linear_2, weight and bias
    assert all("multi_modal_projector" in name for name, _ in params)
    named = dict(model.named_parameters())
    assert all(named[name] is param for name, param in params)


def _copy_config(tiny_dir: Path, dest: Path, architectures: list[str] | None = None) -> Path:
    dest.mkdir()
    config = json.loads((tiny_dir / "config.json").read_text())
    if architectures is not None:
        config["architectures"] = architectures
    (dest / "config.json").write_text(json.dumps(config))
    return dest


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no model directory") as info:
        load_llava(tmp_path / "nowhere")
    assert "config.json" in str(info.value) and TINY_RANDOM in str(info.value)
    assert "nothing is downloaded" in str(info.value)
    assert isinstance(info.value, LdrtError)


def test_directory_without_config(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"has no config\.json") as info:
        load_llava(tmp_path)
    assert "model.safetensors" in str(info.value)


def test_config_that_is_not_llava(tiny_dir: Path, tmp_path: Path) -> None:
    d = _copy_config(tiny_dir, tmp_path / "llama", ["LlamaForCausalLM"])
    with pytest.raises(ModelLoadError, match="not a LLaVA architecture") as info:
        load_llava(d)
    assert "LlamaForCausalLM" in str(info.value)


def test_missing_weights(tiny_dir: Path, tmp_path: Path) -> None:
    d = _copy_config(tiny_dir, tmp_path / "noweights")
    (d / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ModelLoadError, match="has no weights") as info:
        load_llava(d)
    assert ".bin weights are not loaded" in str(info.value)


def test_llava_next_architecture_is_accepted_before_weights_are_checked(
    tiny_dir: Path, tmp_path: Path
) -> None:
    d = _copy_config(tiny_dir, tmp_path / "next", ["LlavaNextForConditionalGeneration"])
    with pytest.raises(ModelLoadError, match="has no weights"):
        load_llava(d)


def test_unreadable_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="cannot read"):
        load_llava(tmp_path)


def test_broken_weights_become_a_model_load_error(tiny_dir: Path, tmp_path: Path) -> None:
    d = tmp_path / "broken"
    shutil.copytree(tiny_dir, d)
    (d / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelLoadError, match="cannot load the LLaVA model"):
        load_llava(d)
