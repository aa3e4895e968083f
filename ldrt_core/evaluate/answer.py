"""Answering the evaluation questions: a dataset version's eval split in, each model's answers out.

Input: an instruct dataset version (its `llava_instruct_eval.json` and the curated parent's
`eval.jsonl` for captions and citing sentences), and a model: the base LLaVA, or a training run
(base + its projector(s) + its LoRA adapter, applied with PEFT and not merged). Output: one answer
per `EvalItem`, generated with the same prompts and sampling for every model, and cached in the
store under (model, adapter, dataset version, prompt version, sampling), so asking again costs
nothing.

Each human turn of a held-out conversation is one question; earlier turns are given as history
with their reference answers, so every model answers the same conversation.

Backends: transformers (CPU or GPU; here) and vLLM with a `LoRARequest` (optional: `pip install
-e '.[gpu]'`; it serves the base model with the run's projector, as `ldrt model merge
--keep-adapter` writes it, and applies the adapter unmerged).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from sqlalchemy import Engine

from ldrt_core.curate.dataset import find_version
from ldrt_core.db.models import DatasetVersion
from ldrt_core.errors import LdrtError
from ldrt_core.evaluate.records import EvalItem
from ldrt_core.llm.base import model_fingerprint
from ldrt_core.store import ArtifactStore
from ldrt_core.train.data import expand_to_square
from ldrt_core.train.loop import ADAPTER_DIR
from ldrt_core.train.model import IMAGE_TOKEN, load_llava, quiet_peft
from ldrt_core.train.runs import chain_projectors, resolve_dataset, run_chain

__all__ = [
    "ANSWER_PROMPT_VERSION",
    "Answerer",
    "Sampling",
    "TransformersAnswerer",
    "VLLMAnswerer",
    "answer_items",
    "load_eval_items",
]

ANSWER_PROMPT_VERSION = "answer-v1"
EVAL_FILE = "llava_instruct_eval.json"


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.2
    max_new_tokens: int = 512
    top_p: float = 1.0
    seed: int = 0


class Answerer(Protocol):
    """Something that answers evaluation items (one string each, in order)."""

    @property
    def key(self) -> str:
        """What answers: base model, projector and adapter content (for the cache key)."""

    def answer(self, items: Sequence[EvalItem], images: Sequence[Any]) -> list[str]: ...


# ------------------------------------------------------------------------------ the items


def load_eval_items(
    engine: Engine, store: ArtifactStore, dataset: str, *, limit: int | None = None
) -> tuple[DatasetVersion, list[EvalItem]]:
    """The evaluation questions of an instruct dataset version (or of a curated one's newest
    instruct version), in a stable order; `limit`: the first N conversations only."""
    version = resolve_dataset(engine, dataset, "instruct")
    key = f"datasets/{version.id}/{EVAL_FILE}"
    if not store.exists(key):
        raise LdrtError(
            f"dataset {version.id[:12]} has no held-out split to evaluate on (too few papers, "
            "or eval_share 0): build a dataset with more papers or a larger eval_share"
        )
    records = json.loads(store.get(key))
    context = _captions(engine, store, version)
    items: list[EvalItem] = []
    for record in records[:limit] if limit else records:
        pair = str(record["id"]).split("-", 1)[0]
        caption, mentions = context.get(pair, ("", ()))
        turns = record.get("conversations") or []
        history: list[tuple[str, str]] = []
        for index in range(0, len(turns) - 1, 2):
            question = str(turns[index]["value"]).replace(IMAGE_TOKEN, "").strip()
            reference = str(turns[index + 1]["value"]).strip()
            items.append(
                EvalItem(
                    item_id=f"{record['id']}#{index // 2}",
                    record_id=str(record["id"]),
                    category=str(record.get("category", "conversation")),
                    image=str(record["image"]),
                    history=tuple(history),
                    question=question,
                    reference=reference,
                    caption=caption,
                    mentions=mentions,
                )
            )
            history.append((question, reference))
    if not items:
        raise LdrtError(
            f"dataset {version.id[:12]} has no evaluation questions: was its eval split empty?"
        )
    return version, items


def _captions(
    engine: Engine, store: ArtifactStore, version: DatasetVersion
) -> dict[str, tuple[str, tuple[str, ...]]]:
    """pair id prefix -> (caption, citing sentences), from the curated parent's eval split."""
    parent = find_version(engine, version.parent_id) if version.parent_id else version
    found: dict[str, tuple[str, tuple[str, ...]]] = {}
    for split in ("eval", "train"):
        key = f"datasets/{parent.id}/{split}.jsonl"
        if not store.exists(key):
            continue
        for line in store.get(key).decode().splitlines():
            row = json.loads(line)
            found[str(row["id"])] = (str(row.get("caption", "")), tuple(row.get("mentions") or ()))
    return found


# ------------------------------------------------------------------------------ answering


def answer_items(
    store: ArtifactStore,
    answerer: Answerer,
    items: Sequence[EvalItem],
    *,
    dataset_id: str,
    sampling: Sampling,
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> list[str]:
    """Every item's answer: from the store when this model answered it before, else generated
    (a batch at a time, each batch stored at once: a crash loses at most one batch)."""
    prefix = "answers/" + _digest(
        {
            "model": answerer.key,
            "dataset": dataset_id,
            "prompt": ANSWER_PROMPT_VERSION,
            "sampling": asdict(sampling),
        }
    )
    answers: dict[str, str] = {}
    for key in store.list(prefix + "/"):
        answers.update(json.loads(store.get(key)))
    todo = [item for item in items if item.item_id not in answers]
    done = len(items) - len(todo)
    if progress is not None:
        progress(done, len(items))
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        images = [_image(store, item.image) for item in batch]
        texts = answerer.answer(batch, images)
        fresh = {item.item_id: text for item, text in zip(batch, texts, strict=True)}
        name = _digest(sorted(fresh))
        store.put(f"{prefix}/{name}.json", json.dumps(fresh).encode(), overwrite=True)
        answers.update(fresh)
        done += len(batch)
        if progress is not None:
            progress(done, len(items))
    return [answers[item.item_id] for item in items]


def _image(store: ArtifactStore, key: str) -> Any:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(store.get(key))) as raw:
        return raw.convert("RGB")


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:32]


class TransformersAnswerer:
    """LLaVA through transformers; a run's adapter applied with PEFT, unmerged."""

    def __init__(
        self,
        base_model: str,
        *,
        projectors: Sequence[bytes] = (),
        adapter: dict[str, bytes] | None = None,
        sampling: Sampling = Sampling(),
        device: str | None = None,
    ) -> None:
        from ldrt_core.train.model import attention_implementation
        from ldrt_core.train.runs import load_projector

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        bf16 = self.device == "cuda" and torch.cuda.is_bf16_supported()
        model, processor = load_llava(
            base_model,
            dtype=torch.bfloat16 if bf16 else None,
            device=self.device,
            attn_implementation=attention_implementation(self.device),
        )
        for payload in projectors:
            load_projector(model, payload)
        content = hashlib.sha256(model_fingerprint(base_model).encode())
        for payload in projectors:
            content.update(hashlib.sha256(payload).digest())
        if adapter:
            from peft import PeftModel

            with tempfile.TemporaryDirectory() as tmp:
                for name, payload in sorted(adapter.items()):
                    (Path(tmp) / name).write_bytes(payload)
                    content.update(name.encode() + hashlib.sha256(payload).digest())
                with quiet_peft():
                    model = PeftModel.from_pretrained(model, tmp)  # type: ignore[assignment]
        ready: Any = model
        ready.eval()
        self.model = ready
        self.processor = processor
        self.sampling = sampling
        self.pad_images = "Next" not in type(processor).__name__
        self._key = content.hexdigest()

    @property
    def key(self) -> str:
        return self._key

    def answer(self, items: Sequence[EvalItem], images: Sequence[Any]) -> list[str]:
        from ldrt_core.train.data import render_prompt

        prompts = [render_prompt(self.processor, item.history, item.question) for item in items]
        if self.pad_images:
            images = [expand_to_square(image, self.processor) for image in images]
        tokenizer = self.processor.tokenizer
        tokenizer.padding_side = "left"  # generation continues from the right edge
        batch = self.processor(text=prompts, images=list(images), padding=True, return_tensors="pt")
        batch = {k: v.to(self.device) for k, v in batch.items()}
        sampling = self.sampling
        torch.manual_seed(sampling.seed)
        with torch.inference_mode():
            output = self.model.generate(
                **batch,
                do_sample=sampling.temperature > 0,
                temperature=sampling.temperature if sampling.temperature > 0 else None,
                top_p=sampling.top_p if sampling.temperature > 0 else None,
                max_new_tokens=sampling.max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
            )
        new = output[:, batch["input_ids"].shape[1] :]
        return [text.strip() for text in tokenizer.batch_decode(new, skip_special_tokens=True)]


class VLLMAnswerer:  # pragma: no cover - needs vllm and a GPU
    """vLLM in-process: `model_dir` holds the base model with the run's projector (`ldrt model
    merge RUN --keep-adapter`); its `adapter/` is applied per request with a `LoRARequest`."""

    def __init__(self, model_dir: Path, *, lora: bool, sampling: Sampling = Sampling()) -> None:
        try:
            from vllm import LLM, SamplingParams
            from vllm.lora.request import LoRARequest
        except ImportError as exc:
            raise LdrtError(
                "the vLLM answerer needs vllm (pip install -e '.[gpu]', on a CUDA host); "
                "without it, answer with --backend transformers"
            ) from exc
        self.llm = LLM(model=str(model_dir), enable_lora=lora, max_lora_rank=256)
        self.params = SamplingParams(
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_new_tokens,
            seed=sampling.seed,
        )
        self.lora = LoRARequest("tuned", 1, str(model_dir / ADAPTER_DIR)) if lora else None
        from transformers import AutoProcessor

        self.processor = AutoProcessor.from_pretrained(  # type: ignore[no-untyped-call]
            str(model_dir), local_files_only=True
        )
        self.pad_images = "Next" not in type(self.processor).__name__
        self._key = _digest({"vllm": model_fingerprint(model_dir), "lora": lora})

    @property
    def key(self) -> str:
        return self._key

    def answer(self, items: Sequence[EvalItem], images: Sequence[Any]) -> list[str]:
        from ldrt_core.train.data import render_prompt

        if self.pad_images:
            images = [expand_to_square(image, self.processor) for image in images]
        requests = [
            {
                "prompt": render_prompt(self.processor, item.history, item.question),
                "multi_modal_data": {"image": image},
            }
            for item, image in zip(items, images, strict=True)
        ]
        outputs = self.llm.generate(requests, self.params, lora_request=self.lora)
        return [o.outputs[0].text.strip() for o in outputs]


# ------------------------------------------------------------------------------ runs


def answerer_for_run(
    engine: Engine, store: ArtifactStore, run_id: str, sampling: Sampling, base_model: str | None
) -> TransformersAnswerer:
    """The base model with the run's projector(s) and adapter, ready to answer."""
    chain = run_chain(engine, run_id)
    projectors = chain_projectors(store, chain)
    newest = chain[0]
    adapter = None
    if f"{ADAPTER_DIR}/adapter_model.safetensors" in newest.outputs:
        adapter = {
            name: store.get(newest.outputs[f"{ADAPTER_DIR}/{name}"])
            for name in ("adapter_model.safetensors", "adapter_config.json")
        }
    return TransformersAnswerer(
        base_model or newest.base_model, projectors=projectors, adapter=adapter, sampling=sampling
    )
