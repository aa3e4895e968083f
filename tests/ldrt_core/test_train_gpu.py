"""Training on a CUDA GPU (skipped without one): bf16 autocast with fp32 trainable weights,
FlashAttention-2 when `flash_attn` imports, and a loss that still falls.

Input: the tiny random LLaVA and toy bar-chart records. Output: assertions on the precision and
attention the run reports, the loss curve, and the dtypes of what trained.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from ldrt_core.errors import ObjectNotFoundError
from ldrt_core.train.data import prepare_samples
from ldrt_core.train.loop import TrainConfig, run_training
from ldrt_core.train.model import attention_implementation, build_tiny_llava, load_llava
from tests.support.train_data import records

pytestmark = [pytest.mark.gpu, pytest.mark.slow]


def test_stage2_on_cuda_in_bf16(tmp_path: Path) -> None:
    tiny = build_tiny_llava(tmp_path / "tiny", seed=0)
    attn = attention_implementation("cuda")
    assert attn == ("flash_attention_2" if importlib.util.find_spec("flash_attn") else "sdpa")
    model, processor = load_llava(tiny, dtype=torch.bfloat16, attn_implementation=attn)
    rows, images = records(8)

    def fetch(key: str) -> bytes:
        if key not in images:
            raise ObjectNotFoundError(key)
        return images[key]

    data = prepare_samples(
        rows, processor, fetch, tmp_path / "cache", stage="instruct", max_length=512
    )
    config = TrainConfig.for_stage(
        "instruct",
        batch_size=4,
        epochs=30,
        learning_rate=1e-2,
        lora_r=8,
        lora_alpha=16,
        lora_dropout=0.0,
        checkpoint_every=0,
    )
    trained, result = run_training(
        model, processor, data, config, checkpoint_dir=tmp_path / "ck", out_dir=tmp_path / "out"
    )
    assert result.precision == "bf16" and result.attn_implementation == attn
    assert all(p.dtype == torch.float32 for p in trained.parameters() if p.requires_grad)
    assert next(p for n, p in trained.named_parameters() if "base_layer" in n).dtype == (
        torch.bfloat16
    )
    assert result.final_loss is not None and result.first_loss is not None
    assert result.final_loss < 0.5 * result.first_loss
    assert (tmp_path / "out" / "adapter" / "adapter_model.safetensors").is_file()
