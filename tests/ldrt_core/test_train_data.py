"""Training samples from LLaVA records: the rendered text, which tokens are trained on, the
image tokens, the skipped records, the image cache, square padding and the collated batch.

Input: toy bar-chart records and images made in memory (`tests.support.train_data`), odd records
(missing or broken images, bad conversations, over-long ones), chat templates that do and do not
render prefix by prefix, and the tiny LLaVA `build_tiny_llava` writes (its template is
LLaVA-1.5's "USER: <image>\\n... ASSISTANT: ..."). Output: assertions on segments, token ids,
labels, skip counts, fetch counts, cache files, pixels and a forward pass's loss.
"""

from __future__ import annotations

import copy
import io
import math
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from ldrt_core.errors import ObjectNotFoundError
from ldrt_core.llm.tiny import CHAT_TEMPLATE
from ldrt_core.train.data import (
    IGNORE_INDEX,
    MAX_EXAMPLES,
    Collator,
    PreparedData,
    Sample,
    SampleDataset,
    expand_to_square,
    prepare_samples,
    render_segments,
)
from ldrt_core.train.model import IMAGE_TOKEN, LLAVA_CHAT_TEMPLATE, build_tiny_llava, load_llava
from tests.support.train_data import bar_chart, records

pytestmark = pytest.mark.unit

EOS = "</s>"
IMAGE_TOKENS = 16  # tiny model: 32 px image, 8 px patches, CLS dropped

QUESTION = "What does the chart show?"
CAPTION = "Figure 1. IL-6 falls after 0.5 Gy in arm 0."
DOSE_ANSWER = "0.5 Gy."
TWO_ROUNDS = [
    {"from": "human", "value": f"{IMAGE_TOKEN}\n{QUESTION}"},
    {"from": "gpt", "value": CAPTION},
    {"from": "human", "value": "Which dose?"},
    {"from": "gpt", "value": DOSE_ANSWER},
]
# The same conversation as chat messages, as a llava-hf processor's template takes them.
TWO_ROUNDS_MESSAGES: list[dict[str, Any]] = [
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]},
    {"role": "assistant", "content": [{"type": "text", "text": CAPTION}]},
    {"role": "user", "content": [{"type": "text", "text": "Which dose?"}]},
    {"role": "assistant", "content": [{"type": "text", "text": DOSE_ANSWER}]},
]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llava(tmp_path_factory.mktemp("tiny-llava"), seed=0)


@pytest.fixture(scope="module")
def tiny(tiny_dir: Path) -> tuple[Any, Any]:
    return load_llava(tiny_dir)


@pytest.fixture
def processor(tiny: tuple[Any, Any]) -> Any:
    """A private copy: tests may change its template or tokenizer."""
    return copy.deepcopy(tiny[1])


class Store:
    """Image bytes by key, counting fetches; a missing key raises as the artifact store does."""

    def __init__(self, images: dict[str, bytes]) -> None:
        self.images = images
        self.fetches: Counter[str] = Counter()

    def __call__(self, key: str) -> bytes:
        self.fetches[key] += 1
        if key not in self.images:
            raise ObjectNotFoundError(f"no object at {key}")
        return self.images[key]


def prepare(
    rows: list[dict[str, Any]],
    processor: Any,
    fetch: Callable[[str], bytes],
    cache_dir: Path,
    *,
    stage: str = "instruct",
    max_length: int = 1024,
    **kwargs: Any,
) -> PreparedData:
    return prepare_samples(
        rows, processor, fetch, cache_dir, stage=stage, max_length=max_length, **kwargs
    )


def trained_runs(sample: Sample) -> list[list[int]]:
    """The label tokens (labels != -100), in runs of consecutive positions."""
    runs: list[list[int]] = []
    previous = False
    for label in sample.labels:
        trained = label != IGNORE_INDEX
        if trained:
            if not previous:
                runs.append([])
            runs[-1].append(label)
        previous = trained
    return runs


def image_id(processor: Any) -> int:
    return int(processor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN))


# ------------------------------------------------------------------------------ rendering


def test_instruct_segments_are_the_chat_template_text_with_eos_after_each_answer(
    processor: Any,
) -> None:
    segments = render_segments(TWO_ROUNDS, processor, stage="instruct")

    rendered = processor.apply_chat_template(TWO_ROUNDS_MESSAGES, tokenize=False)
    assert rendered == (
        f"USER: {IMAGE_TOKEN}\n{QUESTION} ASSISTANT: {CAPTION} "
        f"USER: Which dose? ASSISTANT: {DOSE_ANSWER} "
    )
    # The template closes each message with a space; after an answer, EOS takes its place
    # (LLaVA-1.5's "ASSISTANT: answer</s>USER: ..." format).
    expected = rendered.replace(f"{CAPTION} ", CAPTION + EOS).replace(
        f"{DOSE_ANSWER} ", DOSE_ANSWER + EOS
    )
    assert "".join(text for text, _ in segments) == expected
    assert segments == [
        (f"USER: {IMAGE_TOKEN}\n{QUESTION} ASSISTANT:", False),
        (f" {CAPTION}{EOS}", True),
        ("USER: Which dose? ASSISTANT:", False),
        (f" {DOSE_ANSWER}{EOS}", True),
    ]
    # The prompt of each round is what the model sees at inference (generation prompt).
    prompt = processor.apply_chat_template(
        TWO_ROUNDS_MESSAGES[:1], tokenize=False, add_generation_prompt=True
    )
    assert segments[0][0] == prompt
    assert sum(text.count(IMAGE_TOKEN) for text, _ in segments) == 1


def test_align_segments_are_the_image_then_the_caption_only(processor: Any) -> None:
    conversation = [
        {"from": "human", "value": f"{IMAGE_TOKEN}\nDescribe the figure briefly."},
        {"from": "gpt", "value": f"  {CAPTION}\n"},
        {"from": "human", "value": "And?"},
        {"from": "gpt", "value": "A second answer that stage 1 ignores."},
    ]

    segments = render_segments(conversation, processor, stage="align")

    assert segments == [(f"{IMAGE_TOKEN}\n", False), (CAPTION + EOS, True)]


def test_an_answer_the_template_closes_with_eos_gets_no_second_eos(processor: Any) -> None:
    processor.chat_template = (
        "{% for message in messages %}<|{{ message['role'] }}|>\n"
        "{% for part in message['content'] %}"
        "{% if part['type'] == 'image' %}<image>\n{% else %}{{ part['text'] }}{% endif %}"
        "{% endfor %}{{ eos_token }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
    )

    segments = render_segments(TWO_ROUNDS, processor, stage="instruct")

    assert [text for text, trained in segments if trained] == [
        f"{CAPTION}{EOS}\n",
        f"{DOSE_ANSWER}{EOS}\n",
    ]
    rendered = processor.apply_chat_template(TWO_ROUNDS_MESSAGES, tokenize=False)
    assert "".join(text for text, _ in segments) == rendered


NOT_PREFIX_BY_PREFIX = {
    "message count first": "{{ messages | length }}" + LLAVA_CHAT_TEMPLATE,
    "newest message first": LLAVA_CHAT_TEMPLATE.replace(
        "for message in messages", "for message in messages | reverse"
    ),
}


@pytest.mark.parametrize("template", NOT_PREFIX_BY_PREFIX.values(), ids=NOT_PREFIX_BY_PREFIX)
def test_a_template_that_does_not_render_prefix_by_prefix_is_refused(
    processor: Any, tmp_path: Path, template: str
) -> None:
    processor.chat_template = template
    rows, images = records(2)

    with pytest.raises(ValueError, match="prefix by prefix"):
        render_segments(TWO_ROUNDS, processor, stage="instruct")
    data = prepare(rows, processor, Store(images), tmp_path / "cache")

    assert data.samples == []
    assert data.skipped == {"bad_conversation": 2}
    assert data.examples == {"bad_conversation": ["r0", "r1"]}


def test_a_processor_without_a_chat_template_uses_llava_15s(processor: Any) -> None:
    expected = render_segments(TWO_ROUNDS, processor, stage="instruct")
    # A template on the tokenizer (a text model's) is not the processor's: it is not used.
    processor.tokenizer.chat_template = CHAT_TEMPLATE

    processor.chat_template = None

    assert render_segments(TWO_ROUNDS, processor, stage="instruct") == expected


# ------------------------------------------------------------------------- tokens and labels


@pytest.mark.parametrize("stage", ["instruct", "align"])
def test_only_the_answers_and_their_eos_are_trained_on(
    processor: Any, tmp_path: Path, stage: str
) -> None:
    rows, images = records(3, stage)
    tokenizer = processor.tokenizer

    data = prepare(rows, processor, Store(images), tmp_path / "cache", stage=stage)

    assert [s.id for s in data.samples] == ["r0", "r1", "r2"]
    for row, sample in zip(rows, data.samples, strict=True):
        answers = [t["value"] for t in row["conversations"] if t["from"] == "gpt"]
        if stage == "align":  # the caption, no leading space: it follows "<image>\n"
            expected = [answers[0] + EOS]
        else:
            expected = [f" {answer}{EOS}" for answer in answers]
        runs = trained_runs(sample)
        assert [tokenizer.decode(run) for run in runs] == expected
        assert all(run[-1] == tokenizer.eos_token_id for run in runs)
        assert sample.target_tokens == sum(len(run) for run in runs)
        # A trained position predicts its own input token.
        for token, label in zip(sample.input_ids, sample.labels, strict=True):
            assert label in (IGNORE_INDEX, token)
        trained_text = tokenizer.decode([t for t in sample.labels if t != IGNORE_INDEX])
        assert "USER" not in trained_text
        assert "ASSISTANT" not in trained_text
        assert image_id(processor) not in sample.labels
        assert sample.input_ids.count(image_id(processor)) == IMAGE_TOKENS
        assert len(sample.input_ids) == len(sample.labels)
        assert sample.image.parent == tmp_path / "cache"


def test_the_prompt_tokens_are_what_the_processor_gives_at_inference(
    processor: Any, tmp_path: Path
) -> None:
    rows, images = records(1)
    data = prepare(rows, processor, Store(images), tmp_path / "cache")
    sample = data.samples[0]
    first_trained = next(i for i, label in enumerate(sample.labels) if label != IGNORE_INDEX)
    prompt = render_segments(rows[0]["conversations"], processor, stage="instruct")[0][0]
    image = Image.open(io.BytesIO(images[rows[0]["image"]])).convert("RGB")

    encoded = processor(
        text=prompt, images=[expand_to_square(image, processor)], return_tensors="pt"
    )

    assert list(sample.input_ids[:first_trained]) == encoded["input_ids"][0].tolist()
    # The image tokens are one contiguous block, where "<image>" stood.
    ids = sample.input_ids
    start = ids.index(image_id(processor))
    assert ids[start : start + IMAGE_TOKENS] == (image_id(processor),) * IMAGE_TOKENS


@pytest.mark.parametrize("template_bos", [False, True], ids=["template-without-bos", "with-bos"])
def test_one_bos_whether_the_tokenizer_or_the_template_adds_it(
    processor: Any, tmp_path: Path, template_bos: bool
) -> None:
    from tokenizers.processors import TemplateProcessing

    tokenizer = processor.tokenizer
    bos_id = tokenizer.bos_token_id
    # Make the tokenizer add BOS, as Llama's does (the tiny one adds nothing).
    tokenizer._tokenizer.post_processor = TemplateProcessing(
        single=f"{tokenizer.bos_token} $A", special_tokens=[(tokenizer.bos_token, bos_id)]
    )
    assert tokenizer("USER:")["input_ids"][0] == bos_id
    if template_bos:
        processor.chat_template = "{{ bos_token }}" + LLAVA_CHAT_TEMPLATE
    rows, images = records(2)

    data = prepare(rows, processor, Store(images), tmp_path / "cache")

    assert len(data.samples) == 2
    for sample in data.samples:
        assert sample.input_ids[0] == bos_id
        assert sample.input_ids.count(bos_id) == 1
        assert sample.labels[0] == IGNORE_INDEX
        assert trained_runs(sample)[0][-1] == tokenizer.eos_token_id


def test_the_tiny_tokenizer_adds_no_bos_and_the_samples_have_none(
    processor: Any, tmp_path: Path
) -> None:
    rows, images = records(2)
    data = prepare(rows, processor, Store(images), tmp_path / "cache")
    bos_id = processor.tokenizer.bos_token_id
    assert processor.tokenizer("USER:")["input_ids"][0] != bos_id
    assert all(bos_id not in sample.input_ids for sample in data.samples)


# ------------------------------------------------------------------------------ skipping


def test_bad_records_are_skipped_and_counted_and_the_good_ones_kept_in_order(
    processor: Any, tmp_path: Path
) -> None:
    rows, images = records(3)
    good = rows[0]["conversations"]
    whole = images[rows[0]["image"]]
    images["broken/not-a-png.png"] = b"not a png"
    images["broken/truncated.png"] = whole[: len(whole) // 2]
    odd = [
        {"id": "missing", "image": "figures/nowhere.png", "conversations": good},
        {"id": "not-png", "image": "broken/not-a-png.png", "conversations": good},
        {"id": "truncated", "image": "broken/truncated.png", "conversations": good},
        {"id": "no-image-key", "conversations": good},
        {
            "id": "no-gpt",
            "image": rows[0]["image"],
            "conversations": [{"from": "human", "value": f"{IMAGE_TOKEN}\nHello?"}],
        },
        {
            "id": "empty-answer",
            "image": rows[0]["image"],
            "conversations": [good[0], {"from": "gpt", "value": "  "}],
        },
        {
            "id": "robot",
            "image": rows[0]["image"],
            "conversations": [*good[:2], {"from": "robot", "value": "beep"}],
        },
        {"id": "no-conversations", "image": rows[0]["image"]},
    ]
    mixed = [odd[0], rows[0], *odd[1:4], rows[1], *odd[4:], rows[2]]

    data = prepare(mixed, processor, Store(images), tmp_path / "cache")

    assert [s.id for s in data.samples] == ["r0", "r1", "r2"]
    assert data.skipped == {"broken_image": 4, "bad_conversation": 4}
    assert data.examples == {
        "broken_image": ["missing", "not-png", "truncated", "no-image-key"],
        "bad_conversation": ["no-gpt", "empty-answer", "robot", "no-conversations"],
    }
    summary = data.summary()
    assert summary["samples"] == 3
    assert summary["skipped"] == {"bad_conversation": 4, "broken_image": 4}
    assert summary["skipped_examples"] == data.examples
    assert summary["tokens"] == sum(len(s.input_ids) for s in data.samples)
    assert summary["target_tokens"] == sum(s.target_tokens for s in data.samples)
    assert summary["max_tokens"] == max(len(s.input_ids) for s in data.samples)
    # Nothing broken reached the cache: only the three good images are there.
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(
        s.image.name for s in data.samples
    )


def test_a_record_longer_than_max_length_is_skipped(processor: Any, tmp_path: Path) -> None:
    rows, images = records(2)
    rows[1]["conversations"][1]["value"] += " A much longer answer than the first one has."
    lengths = [
        len(s.input_ids) for s in prepare(rows, processor, Store(images), tmp_path / "a").samples
    ]
    assert lengths[0] < lengths[1]

    data = prepare(rows, processor, Store(images), tmp_path / "b", max_length=lengths[0])

    assert [s.id for s in data.samples] == ["r0"]  # exactly max_length tokens is kept
    assert data.skipped == {"too_long": 1}
    assert data.examples == {"too_long": ["r1"]}
    assert data.summary()["max_tokens"] == lengths[0]


def test_skipped_examples_are_capped_but_every_skip_is_counted(
    processor: Any, tmp_path: Path
) -> None:
    rows, images = records(1)
    count = MAX_EXAMPLES + 5
    missing = [
        {"id": f"gone{i}", "image": f"figures/gone-{i}.png", "conversations": TWO_ROUNDS}
        for i in range(count)
    ]

    data = prepare([*missing, *rows], processor, Store(images), tmp_path / "cache")

    assert [s.id for s in data.samples] == ["r0"]
    assert data.skipped == {"broken_image": count}
    assert data.examples == {"broken_image": [f"gone{i}" for i in range(MAX_EXAMPLES)]}
    assert data.summary()["skipped"] == {"broken_image": count}


# --------------------------------------------------------------------------- image cache


def test_each_image_is_fetched_once_across_records_and_runs(processor: Any, tmp_path: Path) -> None:
    rows, images = records(2)
    shared = [{**rows[i % 2], "id": f"s{i}"} for i in range(5)]  # keys: r0's x3, r1's x2
    store = Store(images)
    cache = tmp_path / "cache"

    first = prepare(shared, processor, store, cache)
    second = prepare(shared, processor, store, cache)

    assert store.fetches == {rows[0]["image"]: 1, rows[1]["image"]: 1}
    assert [s.id for s in first.samples] == [f"s{i}" for i in range(5)]
    assert second.samples == first.samples
    files = sorted(cache.iterdir())
    assert len(files) == 2
    assert all(f.is_file() and f.parent == cache for f in files)
    for sample in first.samples:
        key = next(r["image"] for r in shared if r["id"] == sample.id)
        assert "/" in key and "/" not in sample.image.name
        assert sample.image.read_bytes() == images[key]
    assert not list(cache.glob("*.part"))


# ----------------------------------------------------------------------- square padding


@pytest.mark.parametrize("size", [(40, 20), (20, 40)], ids=["wide", "tall"])
def test_expand_to_square_centres_the_image_on_the_mean_colour(
    processor: Any, size: tuple[int, int]
) -> None:
    red = (200, 30, 30)
    image = Image.new("RGB", size, red)
    mean = processor.image_processor.image_mean
    padding = tuple(int(255 * m) for m in mean)
    assert padding == (122, 116, 104)  # CLIP's mean, not a default grey

    square = expand_to_square(image, processor)

    assert square.size == (40, 40)
    assert square.mode == "RGB"
    assert square.getpixel((20, 20)) == red
    if size == (40, 20):  # rows 10..29 are the image, 10 rows of padding above and below
        assert square.getpixel((0, 9)) == padding
        assert square.getpixel((0, 10)) == red
        assert square.getpixel((39, 29)) == red
        assert square.getpixel((39, 30)) == padding
    else:
        assert square.getpixel((9, 0)) == padding
        assert square.getpixel((10, 0)) == red
        assert square.getpixel((29, 39)) == red
        assert square.getpixel((30, 39)) == padding


def test_expand_to_square_leaves_a_square_image_alone(processor: Any) -> None:
    image = Image.new("RGB", (24, 24), (1, 2, 3))
    assert expand_to_square(image, processor) is image


def test_ranks_caching_the_same_images_at_once_all_succeed(processor: Any, tmp_path: Path) -> None:
    """The ranks of a distributed run prepare the same records into one cache folder at once."""
    rows, images = records(3)
    ranks = 6
    together = threading.Barrier(ranks, timeout=10)

    def fetch(key: str) -> bytes:  # every rank has the bytes before any writes them
        together.wait()
        return images[key]

    with ThreadPoolExecutor(ranks) as pool:
        prepared = [
            future.result()
            for future in [
                pool.submit(prepare, rows[:1], processor, fetch, tmp_path / "cache")
                for _ in range(ranks)
            ]
        ]

    assert all(len(data.samples) == 1 for data in prepared)
    cached = list((tmp_path / "cache").iterdir())
    assert [path.read_bytes() for path in cached] == [images[rows[0]["image"]]]  # no temp left


# ------------------------------------------------------------------------ dataset, batches


def test_the_dataset_reads_the_cached_images_squared_or_not(processor: Any, tmp_path: Path) -> None:
    rows, images = records(2)
    data = prepare(rows, processor, Store(images), tmp_path / "cache")

    squared = SampleDataset(data.samples, processor, pad_to_square=True)
    as_is = SampleDataset(data.samples, processor, pad_to_square=False)

    assert len(squared) == 2
    for index, row in enumerate(rows):
        sample, image = squared[index]
        assert sample == data.samples[index]
        assert image.size == (48, 48)  # the toy charts are 48x36
        original = Image.open(io.BytesIO(images[row["image"]])).convert("RGB")
        assert image.tobytes() == expand_to_square(original, processor).tobytes()
        _, plain = as_is[index]
        assert plain.size == (48, 36)
        assert plain.tobytes() == original.tobytes()


def test_the_collator_right_pads_and_makes_pixel_values(processor: Any) -> None:
    images = [Image.new("RGB", (32, 32), (10, 20, 30)), Image.new("RGB", (48, 48), (0, 0, 0))]
    short = Sample("a", Path("a.png"), (5, 6, 7), (IGNORE_INDEX, 6, 7))
    long = Sample("b", Path("b.png"), (8, 9, 10, 11, 12), (IGNORE_INDEX, IGNORE_INDEX, 10, 11, 12))
    pad = processor.tokenizer.pad_token_id
    assert pad is not None

    batch = Collator(processor)([(short, images[0]), (long, images[1])])

    assert batch["input_ids"].tolist() == [[5, 6, 7, pad, pad], [8, 9, 10, 11, 12]]
    assert batch["labels"].tolist() == [[-100, 6, 7, -100, -100], [-100, -100, 10, 11, 12]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch["input_ids"].dtype == torch.long
    assert batch["pixel_values"].shape == (2, 3, 32, 32)


def test_a_collated_batch_of_prepared_samples_gives_the_tiny_model_a_finite_loss(
    tiny: tuple[Any, Any], tmp_path: Path
) -> None:
    model, processor = tiny
    rows, images = records(2)
    rows[1]["conversations"][3]["value"] = "Half a gray, given once, then the arm was followed."
    data = prepare(rows, processor, Store(images), tmp_path / "cache")
    lengths = [len(s.input_ids) for s in data.samples]
    assert lengths[0] != lengths[1]
    dataset = SampleDataset(data.samples, processor, pad_to_square=True)

    batch = Collator(processor)([dataset[0], dataset[1]])

    assert batch["input_ids"].shape == (2, max(lengths))
    assert batch["attention_mask"].sum(dim=1).tolist() == lengths
    short = lengths.index(min(lengths))
    assert (batch["labels"][short, min(lengths) :] == IGNORE_INDEX).all()
    assert batch["pixel_values"].shape == (2, 3, 32, 32)
    with torch.no_grad():
        loss = model(**batch).loss
    assert math.isfinite(float(loss))
    assert float(loss) > 0


# ------------------------------------------------------------- once defects, now fixed


@pytest.mark.parametrize("placeholders", [0, 2], ids=["no-image-tag", "two-image-tags"])
def test_every_kept_sample_has_one_images_worth_of_image_tokens(
    processor: Any, tmp_path: Path, placeholders: int
) -> None:
    rows, images = records(1)
    question = f"{IMAGE_TOKEN}\n{QUESTION}" if placeholders else QUESTION
    conversation = [
        {"from": "human", "value": question},
        {"from": "gpt", "value": CAPTION},
        {"from": "human", "value": f"{IMAGE_TOKEN} Which dose?" if placeholders > 1 else "Dose?"},
        {"from": "gpt", "value": DOSE_ANSWER},
    ]
    odd = {"id": "odd", "image": rows[0]["image"], "conversations": conversation}

    data = prepare([odd], processor, Store(images), tmp_path / "cache")

    assert not data.samples and data.skipped == {"bad_conversation": 1}


def test_progress_reaches_the_number_of_records(processor: Any, tmp_path: Path) -> None:
    rows, images = records(2)
    rows.append({"id": "missing", "image": "figures/nowhere.png", "conversations": TWO_ROUNDS})
    done: list[int] = []

    prepare(rows, processor, Store(images), tmp_path / "cache", progress=done.append)

    assert done[-1] == len(rows)


def test_distinct_keys_never_share_a_cache_file(processor: Any, tmp_path: Path) -> None:
    images = {"figs/a.png": bar_chart(0), "figs_a.png": bar_chart(3)}
    rows = [{"id": key, "image": key, "conversations": TWO_ROUNDS} for key in images]

    data = prepare(rows, processor, Store(images), tmp_path / "cache")

    assert [s.image.read_bytes() for s in data.samples] == list(images.values())
