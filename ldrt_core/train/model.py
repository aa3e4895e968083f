"""Load a LLaVA model for fine-tuning, or build a tiny random one offline, and name what to train.

Input: a llava-hf format model directory (config.json, `*.safetensors` weights and the processor
files, as `save_pretrained` writes them) or the special value "tiny-random". Output: the model
(`LlavaForConditionalGeneration`, or `LlavaNextForConditionalGeneration` when config.json says so)
and its `LlavaProcessor`; the full module names of the language model's linear layers (PEFT
`target_modules` for LoRA); the multi-modal projector's parameters.

`build_tiny_llava` writes a 2-layer CLIP vision tower (32x32 images, 8x8 patches) and a 2-layer
Llama (hidden size 32) with random weights, the offline byte-level tokenizer of
`ldrt_core.llm.tiny` plus an `<image>` token, and a CLIP image processor. Nothing is downloaded,
ever: the tiny model exists so training runs end to end without a model hub or a GPU.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ldrt_core.errors import LdrtError

if TYPE_CHECKING:
    from transformers import LlavaProcessor, PreTrainedModel

__all__ = [
    "IMAGE_TOKEN",
    "LLAVA_CHAT_TEMPLATE",
    "TINY_RANDOM",
    "ModelLoadError",
    "attention_implementation",
    "build_tiny_llava",
    "drop_input_grad_hooks",
    "enable_gradient_checkpointing",
    "language_model_lora_targets",
    "load_llava",
    "lora_target_pattern",
    "projector_parameters",
    "quiet_peft",
]

TINY_RANDOM = "tiny-random"
IMAGE_TOKEN = "<image>"
LORA_LINEAR_NAMES = frozenset(
    {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
)

_IMAGE_SIZE = 32
_PATCH_SIZE = 8
_TINY_VERSION = "v2"  # bump when build_tiny_llava writes something different
# The llava-hf LLaVA-1.5 conversation format ("USER: <image>\n... ASSISTANT: ..."), in the same
# Jinja shape as llava-hf's processors: content is a string or a list of image/text parts.
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] + ' ' }}{% else %}"
    "{% for part in message['content'] if part['type'] == 'image' %}{{ '<image>\n' }}{% endfor %}"
    "{% for part in message['content'] if part['type'] == 'text' %}{{ part['text'] + ' ' }}"
    "{% endfor %}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)
_ARCHITECTURES = ("LlavaForConditionalGeneration", "LlavaNextForConditionalGeneration")
_MODEL_DIR_HELP = (
    "a LLaVA model directory must hold config.json (with `architectures` "
    f"{' or '.join(_ARCHITECTURES)}), the weights as model.safetensors (or sharded *.safetensors "
    "with model.safetensors.index.json) and the processor files (tokenizer.json, "
    "tokenizer_config.json, processor_config.json or preprocessor_config.json), as llava-hf's "
    "`save_pretrained` writes them; nothing is downloaded: pass a local directory, or "
    f"{TINY_RANDOM!r} for a tiny random model built offline"
)


class ModelLoadError(LdrtError):
    """A model directory is missing, incomplete or not a LLaVA model."""


def build_tiny_llava(out_dir: Path, seed: int = 0) -> Path:
    """Write the tiny random LLaVA and its processor into `out_dir` (created); return it.

    Deterministic: the same `seed` gives the same weights and the same files. The global torch
    random state is left as it was. Only safetensors weights are written.
    """
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    from ldrt_core.llm.tiny import _build_tokenizer, tiny_llama_config

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = _build_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    assert isinstance(image_token_id, int)
    vision_config = CLIPVisionConfig(
        image_size=_IMAGE_SIZE,
        patch_size=_PATCH_SIZE,
        hidden_size=32,
        intermediate_size=64,
        projection_dim=32,
        num_hidden_layers=2,
        num_attention_heads=2,
    )
    # Wider initial weights than the usual 0.02: with hidden size 32 the frozen lm_head could
    # otherwise not make a peaked distribution, and no amount of LoRA would fit a small set.
    text_config = tiny_llama_config(tokenizer, initializer_range=0.3)
    # "default" drops the CLS token: one image is (32 / 8) ** 2 = 16 tokens.
    image_seq_length = (_IMAGE_SIZE // _PATCH_SIZE) ** 2
    config = LlavaConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_index=image_token_id,
        image_seq_length=image_seq_length,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        projector_hidden_act="gelu",
    )
    config.image_token_id = image_token_id
    config.image_token_index = image_token_id
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlavaForConditionalGeneration(config)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": _IMAGE_SIZE},
        crop_size={"height": _IMAGE_SIZE, "width": _IMAGE_SIZE},
    )
    processor = LlavaProcessor(  # type: ignore[no-untyped-call]
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=_PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # the CLS token, dropped again by "default"
        image_token=IMAGE_TOKEN,
        chat_template=LLAVA_CHAT_TEMPLATE,
    )
    model.save_pretrained(out_dir)  # safetensors is the default (and only) format written
    processor.save_pretrained(out_dir)
    return out_dir


def load_llava(
    path: str | Path,
    *,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
    attn_implementation: str | None = None,
) -> tuple[PreTrainedModel, LlavaProcessor]:
    """The LLaVA model at `path` (on `device`, in `dtype` if given) and its processor.

    `attn_implementation` ("sdpa", "flash_attention_2", "eager") goes to `from_pretrained`;
    `attention_implementation(device)` picks the best one available.

    `path` is a local llava-hf format directory, or "tiny-random": the tiny model is then built
    into a cache folder (once) and loaded back from there. Nothing is ever downloaded.

    Raises ModelLoadError when the directory, its config.json or its weights are missing, or
    when the config is not a LLaVA architecture.
    """
    directory = _tiny_random_dir() if str(path) == TINY_RANDOM else Path(path)
    architecture = _check_model_dir(directory)
    from safetensors import SafetensorError
    from transformers import (
        AutoProcessor,
        LlavaForConditionalGeneration,
        LlavaNextForConditionalGeneration,
    )

    model_class: Any = (
        LlavaNextForConditionalGeneration
        if architecture == "LlavaNextForConditionalGeneration"
        else LlavaForConditionalGeneration
    )
    kwargs: dict[str, Any] = {"local_files_only": True, "use_safetensors": True}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    try:
        model = model_class.from_pretrained(directory, **kwargs)
        processor = AutoProcessor.from_pretrained(  # type: ignore[no-untyped-call]
            directory, local_files_only=True
        )
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise ModelLoadError(
            f"cannot load the LLaVA model at {directory}: {exc}; {_MODEL_DIR_HELP}"
        ) from exc
    model.to(device)
    return model, processor


def language_model_lora_targets(model: torch.nn.Module) -> list[str]:
    """Full module names of the language model's q/k/v/o and gate/up/down projections.

    Neither the vision tower's projections nor the multi-modal projector are included, so the
    list can go to PEFT's `LoraConfig(target_modules=...)` as it is.
    """
    prefix = _module_path(model, _language_model(model))
    return [
        name
        for name, module in model.named_modules()
        if name.startswith(prefix + ".")
        and isinstance(module, torch.nn.Linear)
        and name.rsplit(".", 1)[-1] in LORA_LINEAR_NAMES
    ]


def lora_target_pattern(model: torch.nn.Module) -> str:
    """A regular expression PEFT full-matches against module names: the language model's
    q/k/v/o/gate/up/down projections, the same set as `language_model_lora_targets`.

    One short pattern keeps `adapter_config.json` readable for a 40-layer model (280 names).
    """
    prefix = re.escape(_module_path(model, _language_model(model)))
    names = "|".join(sorted(LORA_LINEAR_NAMES))
    return rf"{prefix}\.(?:.*\.)?(?:{names})"


def attention_implementation(device: str | torch.device) -> str:
    """FlashAttention-2 on CUDA when `flash_attn` is importable, else PyTorch SDPA."""
    if torch.device(device).type == "cuda" and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def enable_gradient_checkpointing(model: torch.nn.Module) -> None:
    """Non-reentrant activation checkpointing on every decoder layer (frozen inputs are fine)."""
    kwargs = {"use_reentrant": False}
    enable = getattr(model, "activation_checkpointing_enable", None)
    if enable is not None:  # transformers >= 5.2
        enable(kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)  # type: ignore[operator]
    config = getattr(model, "config", None)
    for owner in (config, getattr(config, "text_config", None)):
        if owner is not None:
            owner.use_cache = False  # no KV cache while training (and no warning about it)


@contextmanager
def quiet_peft() -> Iterator[None]:
    """PEFT (0.21) asks transformers' deprecated `is_gradient_checkpointing` whenever it wraps a
    model; hide that one FutureWarning, nothing else."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        yield


def drop_input_grad_hooks(model: torch.nn.Module) -> int:
    """Remove the forward hooks that make input embeddings require grad; return how many.

    transformers (when checkpointing is enabled) and PEFT (when it wraps a model) put one on
    every sub-model's input embeddings, the vision tower's patch embedding included: backward
    would then run through the frozen vision tower for nothing. Non-reentrant checkpointing does
    not need them.
    """
    removed = 0
    for module in model.modules():
        hooks = module._forward_hooks
        for key, hook in list(hooks.items()):
            if getattr(hook, "__name__", "") == "make_inputs_require_grads":
                del hooks[key]
                removed += 1
    for owner in model.modules():
        if getattr(owner, "_require_grads_hooks", None):
            setattr(owner, "_require_grads_hooks", [])  # noqa: B010 (not a declared attribute)
    return removed


def projector_parameters(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """The multi-modal projector's parameters, with their full names in `model`."""
    projector = _find_attr(model, "multi_modal_projector")
    prefix = _module_path(model, projector)
    return [(f"{prefix}.{name}", param) for name, param in projector.named_parameters()]


# ---------------------------------------------------------------------------------- helpers


def _tiny_random_dir() -> Path:
    """The cached tiny model's directory, built there first when missing (atomic rename)."""
    cache = Path(tempfile.gettempdir()) / "ldrt-tiny-llava"
    target = cache / f"{_TINY_VERSION}-seed0"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="building-", dir=cache))
    try:
        build_tiny_llava(staging, seed=0)
        try:
            os.replace(staging, target)
        except OSError:  # another process got there first; its copy is the same
            if not (target / "model.safetensors").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _check_model_dir(directory: Path) -> str:
    """The architecture config.json names; ModelLoadError when the directory is unusable."""
    if not directory.is_dir():
        raise ModelLoadError(f"no model directory at {directory}: {_MODEL_DIR_HELP}")
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise ModelLoadError(f"{directory} has no config.json: {_MODEL_DIR_HELP}")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"cannot read {config_file}: {exc}; {_MODEL_DIR_HELP}") from exc
    architectures = config.get("architectures") if isinstance(config, dict) else None
    found = [a for a in architectures or [] if a in _ARCHITECTURES]
    if not found:
        raise ModelLoadError(
            f"{config_file} names architectures {architectures!r}, not a LLaVA architecture "
            f"({' or '.join(_ARCHITECTURES)}): {_MODEL_DIR_HELP}"
        )
    if not any(directory.glob("*.safetensors")):
        raise ModelLoadError(
            f"{directory} has no weights (no model.safetensors or *.safetensors shards; "
            f".bin weights are not loaded): {_MODEL_DIR_HELP}"
        )
    return str(found[0])


def _find_attr(model: torch.nn.Module, attr: str) -> torch.nn.Module:
    """`model.<attr>`, or `model.model.<attr>` (the layout differs between versions)."""
    base = getattr(model, "get_base_model", None)  # a PEFT wrapper: look in the model it wraps
    if callable(base):
        model = base()
    for owner in (model, getattr(model, "model", None)):
        found = getattr(owner, attr, None) if owner is not None else None
        if isinstance(found, torch.nn.Module):
            return found
    raise ValueError(f"{type(model).__name__} has no {attr} module: is it a LLaVA model?")


def _language_model(model: torch.nn.Module) -> torch.nn.Module:
    return _find_attr(model, "language_model")


def _module_path(model: torch.nn.Module, module: torch.nn.Module) -> str:
    """The name `model.named_modules()` gives `module` (the first, if it is shared)."""
    for name, candidate in model.named_modules():
        if candidate is module:
            return str(name)
    raise ValueError(f"{type(module).__name__} is not a submodule of {type(model).__name__}")
