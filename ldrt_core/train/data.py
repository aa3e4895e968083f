"""Training samples: LLaVA conversation records in, token ids with masked labels and images out.

Input: the records of a dataset version's `align_train.json` or `llava_instruct_train.json`
(`{"id", "image": store key, "conversations": [{"from": "human"|"gpt", "value"}]}`), the model's
processor and a way to fetch image bytes. Output: `Sample`s (token ids, labels with -100 wherever
no loss is taken) whose images sit in a local cache folder, a torch `Dataset` over them and a
collator that pads a batch and runs the image processor.

Two formats, as LLaVA-1.5 trains:
- stage 1 ("align", LLaVA's "plain" format): the image tokens, then the caption and EOS. The
  loss is on the caption (and EOS) only; the instruction is not shown.
- stage 2 ("instruct"): the conversation rendered with the base model's own chat template; the
  loss is on the assistant turns only, each closed by EOS (added when the template has none).

The template is rendered turn by turn (what `apply_chat_template` adds for each message), so the
character span of every assistant turn is known; the full text is tokenized once with offsets,
and a token is trained on when it starts inside an assistant span. Any chat template whose
renderings of successive prefixes extend each other works.

Bad samples are skipped and counted, never fatal: an image that is missing from the store or
does not decode, a sample longer than `max_length` tokens, a record with no assistant text.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ldrt_core.errors import StoreError
from ldrt_core.train.model import IMAGE_TOKEN, LLAVA_CHAT_TEMPLATE

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = [
    "IGNORE_INDEX",
    "Collator",
    "PreparedData",
    "Sample",
    "SampleDataset",
    "prepare_samples",
    "render_prompt",
    "render_segments",
]

IGNORE_INDEX = -100
MAX_EXAMPLES = 20  # skipped ids kept per reason, for the run's record
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True, slots=True)
class Sample:
    id: str
    image: Path  # a decoded-once, verified copy in the local image cache
    input_ids: tuple[int, ...]
    labels: tuple[int, ...]

    @property
    def target_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


@dataclass
class PreparedData:
    samples: list[Sample]
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> count
    examples: dict[str, list[str]] = field(default_factory=dict)  # reason -> a few record ids

    def skip(self, reason: str, record_id: str) -> None:
        self.skipped[reason] += 1
        kept = self.examples.setdefault(reason, [])
        if len(kept) < MAX_EXAMPLES:
            kept.append(record_id)

    def summary(self) -> dict[str, Any]:
        tokens = [len(s.input_ids) for s in self.samples]
        return {
            "samples": len(self.samples),
            "skipped": dict(sorted(self.skipped.items())),
            "skipped_examples": self.examples,
            "tokens": sum(tokens),
            "target_tokens": sum(s.target_tokens for s in self.samples),
            "max_tokens": max(tokens, default=0),
        }


# ------------------------------------------------------------------------------ rendering


def render_segments(
    conversations: Sequence[Mapping[str, str]], processor: Any, *, stage: str
) -> list[tuple[str, bool]]:
    """The training text as (piece, trained-on) segments that concatenate to the full text.

    `<image>` appears (once, unexpanded) where the image goes. Raises ValueError for a record
    with no assistant turn or a chat template that does not render prefix by prefix.
    """
    tokenizer = processor.tokenizer
    eos = tokenizer.eos_token or ""
    if stage == "align":
        captions = [t["value"].strip() for t in conversations if t.get("from") == "gpt"]
        if not captions or not captions[0]:
            raise ValueError("no caption")
        return [(IMAGE_TOKEN + "\n", False), (captions[0] + eos, True)]
    messages = _messages(conversations)
    if not any(m["role"] == "assistant" for m in messages):
        raise ValueError("no assistant turn")
    segments: list[tuple[str, bool]] = []
    done = ""
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = _render(processor, messages[:index], generation_prompt=True)
        full = _render(processor, messages[: index + 1], generation_prompt=False)
        if not prompt.startswith(done) or not full.startswith(prompt):
            raise ValueError("the chat template does not render conversations prefix by prefix")
        answer = full[len(prompt) :]
        if not answer.strip():
            raise ValueError("an empty assistant turn")
        if eos and eos not in answer:
            answer = answer.rstrip(" ") + eos  # the model must learn to stop
        segments.append((prompt[len(done) :], False))
        segments.append((answer, True))
        done = full
    return [(text, trained) for text, trained in segments if text]


def render_prompt(processor: Any, history: Sequence[tuple[str, str]], question: str) -> str:
    """The text a model answers `question` from, after `history`'s (question, answer) turns,
    exactly as training rendered it (same template, EOS after each earlier answer), ending with
    the generation prompt; `<image>` (unexpanded) goes with the first question."""
    turns: list[dict[str, str]] = []
    for index, (asked, answered) in enumerate([*history, (question, "-")]):
        turns.append({"from": "human", "value": f"{IMAGE_TOKEN}\n{asked}" if index == 0 else asked})
        turns.append({"from": "gpt", "value": answered})
    segments = render_segments(turns, processor, stage="instruct")
    return "".join(text for text, _ in segments[:-1])


def _messages(conversations: Sequence[Mapping[str, str]]) -> list[dict[str, Any]]:
    """LLaVA turns as chat messages; `<image>` in a human turn becomes an image part."""
    messages: list[dict[str, Any]] = []
    for turn in conversations:
        role = {"human": "user", "gpt": "assistant", "system": "system"}.get(turn.get("from", ""))
        if role is None:
            raise ValueError(f"unknown speaker {turn.get('from')!r}")
        value = str(turn.get("value", ""))
        parts: list[dict[str, str]] = []
        if IMAGE_TOKEN in value:
            parts.append({"type": "image"})
            value = value.replace(IMAGE_TOKEN, "").strip()
        parts.append({"type": "text", "text": value})
        messages.append({"role": role, "content": parts})
    return messages


def _render(processor: Any, messages: list[dict[str, Any]], *, generation_prompt: bool) -> str:
    if not messages:
        return ""
    owner = processor if getattr(processor, "chat_template", None) else None
    kwargs: dict[str, Any] = {"tokenize": False, "add_generation_prompt": generation_prompt}
    if owner is None:  # a processor without a template: LLaVA-1.5's format
        kwargs["chat_template"] = LLAVA_CHAT_TEMPLATE
        owner = processor
    text = owner.apply_chat_template(messages, **kwargs)
    return str(text if isinstance(text, str) else text[0])


# ----------------------------------------------------------------------------- preparing


def prepare_samples(
    records: Iterable[Mapping[str, Any]],
    processor: Any,
    fetch_image: Callable[[str], bytes],
    cache_dir: Path,
    *,
    stage: str,
    max_length: int,
    pad_to_square: bool = True,
    progress: Callable[[int], None] | None = None,
) -> PreparedData:
    """Tokenize every record and check its image; keep the good ones, count the rest.

    Each image is fetched once (`fetch_image(key)`), decoded to prove it is an image, and kept in
    `cache_dir` (one file per key) for the data loader. `progress(n)` after every record.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    preparer = _Preparer(processor, fetch_image, cache_dir, stage, max_length, pad_to_square)
    data = PreparedData(samples=[])
    for done, record in enumerate(records, 1):
        record_id = str(record.get("id", f"#{done}"))
        sample = preparer.sample(record_id, record)
        if isinstance(sample, Sample):
            data.samples.append(sample)
        else:
            data.skip(sample, record_id)
        if progress is not None:
            progress(done)
    return data


@dataclass
class _Preparer:
    processor: Any
    fetch_image: Callable[[str], bytes]
    cache_dir: Path
    stage: str
    max_length: int
    pad_to_square: bool
    image_tokens: dict[tuple[int, int], int] = field(default_factory=dict)  # by image size

    def sample(self, record_id: str, record: Mapping[str, Any]) -> Sample | str:
        """The record's sample, or why it is skipped."""
        try:
            segments = render_segments(
                record.get("conversations") or [], self.processor, stage=self.stage
            )
        except ValueError:
            return "bad_conversation"
        if sum(piece.count(IMAGE_TOKEN) for piece, _ in segments) != 1:
            return "bad_conversation"  # one figure a sample: exactly one <image> in the prompt
        key = str(record.get("image") or "")
        local = self.cache_dir / _cache_name(key)
        image = _cached_image(key, local, self.fetch_image) if key else None
        if image is None:
            return "broken_image"
        if self.pad_to_square:
            image = expand_to_square(image, self.processor)
        if image.size not in self.image_tokens:
            self.image_tokens[image.size] = _count_image_tokens(self.processor, image)
        tokens = self.image_tokens[image.size]
        sample = _tokenize(record_id, local, segments, self.processor.tokenizer, tokens)
        if len(sample.input_ids) > self.max_length:
            return "too_long"
        if sample.target_tokens == 0:
            return "bad_conversation"
        return sample


def _cache_name(key: str) -> str:
    """A flat file name for a store key: readable, and unique by the key's hash."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"{digest}-{_SAFE_NAME.sub('_', key.rsplit('/', 1)[-1])[-64:]}"


def _cached_image(key: str, local: Path, fetch: Callable[[str], bytes]) -> Image | None:
    from PIL import Image, UnidentifiedImageError

    try:
        raw = local.read_bytes() if local.is_file() else fetch(key)
        image = Image.open(io.BytesIO(raw))
        image.load()
    except (StoreError, OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None
    if not local.is_file():
        _cache(local, raw)
    return image.convert("RGB")


def _cache(local: Path, raw: bytes) -> None:
    """Keep a fetched image for the next epoch and run. Several processes (the ranks of one
    run) may cache the same image at once: each writes its own temp file and renames it over
    the name, so none sees a partial file or loses its rename to another. A cache that cannot
    be written only costs a fetch next time."""
    fd, staging = tempfile.mkstemp(dir=local.parent, prefix=f".{local.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(raw)
        os.replace(staging, local)
    except OSError:
        Path(staging).unlink(missing_ok=True)


def expand_to_square(image: Image, processor: Any) -> Image:
    """LLaVA-1.5's "pad" aspect: centre the image on a square of the processor's mean colour."""
    from PIL import Image as PILImage

    width, height = image.size
    if width == height:
        return image
    mean = getattr(processor.image_processor, "image_mean", None) or (0.5, 0.5, 0.5)
    side = max(width, height)
    square = PILImage.new("RGB", (side, side), tuple(int(255 * m) for m in mean))
    square.paste(image, ((side - width) // 2, (side - height) // 2))
    return square


def _count_image_tokens(processor: Any, image: Image) -> int:
    """How many `<image>` tokens the processor expands one image of this size into."""
    encoded = processor(text=IMAGE_TOKEN, images=[image], return_tensors="pt")
    image_id = processor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    return int((encoded["input_ids"] == image_id).sum())


def _tokenize(
    record_id: str,
    image: Path,
    segments: Sequence[tuple[str, bool]],
    tokenizer: Any,
    image_tokens: int,
) -> Sample:
    text = ""
    spans: list[tuple[int, int]] = []
    for piece, trained in segments:
        if not trained:
            piece = piece.replace(IMAGE_TOKEN, IMAGE_TOKEN * image_tokens)
        else:
            spans.append((len(text), len(text) + len(piece)))
        text += piece
    bos = tokenizer.bos_token
    encoded = tokenizer(
        text,
        add_special_tokens=not (bos and text.startswith(bos)),
        return_offsets_mapping=True,
    )
    input_ids = tuple(int(i) for i in encoded["input_ids"])
    labels = []
    for token, (start, end) in zip(input_ids, encoded["offset_mapping"], strict=True):
        trained = end > start and any(a <= start < b for a, b in spans)
        labels.append(token if trained else IGNORE_INDEX)
    return Sample(record_id, image, input_ids, tuple(labels))


# ------------------------------------------------------------------------- loading batches


class SampleDataset(torch.utils.data.Dataset[tuple[Sample, "Image"]]):
    """Samples with their images decoded from the local cache (safe in loader workers)."""

    def __init__(self, samples: Sequence[Sample], processor: Any, pad_to_square: bool) -> None:
        self.samples = list(samples)
        self.processor = processor
        self.pad_to_square = pad_to_square

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Sample, Image]:
        from PIL import Image

        sample = self.samples[index]
        with Image.open(sample.image) as raw:
            image = raw.convert("RGB")
        if self.pad_to_square:
            image = expand_to_square(image, self.processor)
        return sample, image


class Collator:
    """Right-pads token ids (pad id) and labels (-100); the image processor makes pixel values."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor
        tokenizer = processor.tokenizer
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else tokenizer.eos_token_id)

    def __call__(self, batch: Sequence[tuple[Sample, Image]]) -> dict[str, torch.Tensor]:
        width = max(len(sample.input_ids) for sample, _ in batch)
        input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (sample, _) in enumerate(batch):
            length = len(sample.input_ids)
            input_ids[row, :length] = torch.tensor(sample.input_ids)
            labels[row, :length] = torch.tensor(sample.labels)
            attention[row, :length] = 1
        pixels = self.processor.image_processor(
            images=[image for _, image in batch], return_tensors="pt"
        )
        out = {"input_ids": input_ids, "attention_mask": attention, "labels": labels}
        out.update({k: v for k, v in pixels.items() if isinstance(v, torch.Tensor)})
        return out
