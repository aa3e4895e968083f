"""Split by paper, leakage removal, and dataset versions built from extracted sample papers."""

from __future__ import annotations

import io
import json
from collections import defaultdict
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import Engine, func, select

from ldrt_core import db
from ldrt_core.config import load_settings
from ldrt_core.curate.dataset import CurationConfig, build_dataset, find_version
from ldrt_core.curate.records import PairCandidate
from ldrt_core.curate.split import split_of, split_pairs
from ldrt_core.db.models import DatasetMember, DatasetVersion, Pair, Paper
from ldrt_core.errors import ConfigError, LdrtError
from ldrt_core.store import ArtifactStore, open_store
from tests.support.corpus import extracted_world

pytestmark = pytest.mark.unit


def png(seed: int, size: tuple[int, int] = (200, 150)) -> bytes:
    import random

    rng = random.Random(seed)
    image = Image.new("RGB", size, "white")
    for _ in range(12):  # a few random blocks: a distinct picture per seed
        x, y = rng.randrange(size[0] - 40), rng.randrange(size[1] - 30)
        colour = tuple(rng.randrange(256) for _ in range(3))
        image.paste(colour, (x, y, x + rng.randrange(10, 40), y + rng.randrange(10, 30)))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def pair(key: str, paper: str, image: bytes) -> PairCandidate:
    import hashlib

    return PairCandidate(
        pair_key=key,
        paper_id=paper,
        paper_title="LDRT",
        label="Figure 1",
        caption="Figure 1. Dose response after 0.5 Gy.",
        image=image,
        image_sha256=hashlib.sha256(image).hexdigest(),
    )


def test_split_is_deterministic_by_paper_with_the_requested_share() -> None:
    papers = [f"paper-{i}" for i in range(20_000)]
    splits = [split_of(p, 0.03) for p in papers]
    assert splits == [split_of(p, 0.03) for p in papers]
    assert 0.025 < splits.count("eval") / len(papers) < 0.035
    assert splits != [split_of(p, 0.03, salt="other") for p in papers]


def test_split_keeps_papers_whole() -> None:
    pairs = [pair(f"{p}:{i}", f"paper-{p}", png(p * 10 + i)) for p in range(60) for i in range(3)]
    result = split_pairs(pairs, eval_share=0.3)
    sides: dict[str, set[str]] = defaultdict(set)
    for side, members in (("train", result.train), ("eval", result.eval)):
        for member in members:
            sides[member.paper_id].add(side)
    assert all(len(s) == 1 for s in sides.values())
    assert result.train and result.eval


def test_an_eval_image_that_duplicates_a_train_image_is_dropped() -> None:
    eval_paper = next(f"p{i}" for i in range(1000) if split_of(f"p{i}", 0.5) == "eval")
    train_paper = next(f"p{i}" for i in range(1000) if split_of(f"p{i}", 0.5) == "train")
    original = png(1, (400, 300))
    reencoded = io.BytesIO()
    Image.open(io.BytesIO(original)).convert("RGB").resize((360, 270)).save(
        reencoded, "JPEG", quality=80
    )
    near = io.BytesIO()
    Image.open(io.BytesIO(reencoded.getvalue())).save(near, "PNG")  # the preprint's copy
    pairs = [
        pair("train:0", train_paper, original),
        pair("eval:0", eval_paper, near.getvalue()),
        pair("eval:1", eval_paper, png(99, (400, 300))),
    ]
    result = split_pairs(pairs, eval_share=0.5)
    assert [p.pair_key for p in result.eval] == ["eval:1"]
    assert result.leaked == {"eval:0": "train:0"}


# ---------------------------------------------------------------------------- dataset versions


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Engine, ArtifactStore]:
    engine, store = extracted_world(
        tmp_path_factory.mktemp("home"), tmp_path_factory.mktemp("papers"), papers=8, seed=2
    )
    return engine, store


def count(engine: Engine, model: type[object]) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(model)) or 0)  # type: ignore[arg-type]


def test_building_twice_gives_the_same_version(extracted: tuple[Engine, ArtifactStore]) -> None:
    engine, store = extracted
    config = CurationConfig(eval_share=0.25)
    first = build_dataset(engine, store, config)
    rows = (count(engine, DatasetVersion), count(engine, DatasetMember), count(engine, Pair))
    again = build_dataset(engine, store, config)
    assert first.created and not again.created
    assert again.id == first.id
    assert (
        count(engine, DatasetVersion),
        count(engine, DatasetMember),
        count(engine, Pair),
    ) == rows
    assert find_version(engine, first.id[:10]).id == first.id


def test_a_changed_filter_parameter_gives_a_new_version(
    extracted: tuple[Engine, ArtifactStore],
) -> None:
    engine, store = extracted
    base = CurationConfig(eval_share=0.25)
    stricter = CurationConfig(
        eval_share=0.25,
        filters=tuple(
            {**f, "min_words": 12} if f["name"] == "caption_length" else f for f in base.filters
        ),
    )
    assert build_dataset(engine, store, stricter).id != build_dataset(engine, store, base).id


def test_a_corrected_title_gives_a_new_version_not_a_conflict(tmp_path: Path) -> None:
    engine, store = extracted_world(tmp_path / "home", tmp_path / "papers", papers=3, seed=5)
    first = build_dataset(engine, store)
    with db.session_scope(engine) as session:  # as a refresh does when the source's title changes
        paper = session.scalars(select(Paper)).first()
        assert paper is not None
        paper.title += " (corrected)"
    second = build_dataset(engine, store)
    assert second.created and second.id != first.id
    for built in (first, second):  # each version's files are its own, untouched
        text = b"".join(store.get(built.keys[f"{split}.jsonl"]) for split in ("train", "eval"))
        titles = {json.loads(line)["paper_title"] for line in text.decode().splitlines()}
        assert any(t.endswith("(corrected)") for t in titles) == (built is second)
    manifest = json.loads(store.get(second.keys["manifest.json"]))
    assert set(manifest["files"]) == {
        "train.jsonl",
        "eval.jsonl",
        "llava_train.json",
        "llava_eval.json",
    }


def test_the_files_load_and_members_are_recorded(extracted: tuple[Engine, ArtifactStore]) -> None:
    import datasets

    engine, store = extracted
    built = build_dataset(engine, store, CurationConfig(eval_share=0.25))
    stats = built.stats
    assert stats["splits"]["train"] > 0 and stats["splits"]["eval"] > 0
    assert (
        sum(s["dropped"] for s in stats["filters"])
        + stats["splits"]["train"]
        + stats["splits"]["eval"]
        + stats["eval_dropped_as_near_duplicates"]
        == stats["candidates"]
    )

    llava = json.loads(store.get(built.keys["llava_train.json"]))
    assert len(llava) == stats["splits"]["train"]
    for record in llava:
        human, gpt = record["conversations"]
        assert human["from"] == "human" and human["value"].startswith("<image>")
        assert gpt["from"] == "gpt" and gpt["value"]
        assert store.get(record["image"]).startswith(b"\x89PNG")

    folder = Path(store.url_for(built.keys["train.jsonl"]).removeprefix("file://")).parent
    loaded = datasets.load_dataset(
        "json",
        data_files={"train": str(folder / "train.jsonl"), "eval": str(folder / "eval.jsonl")},
    )
    assert loaded["train"].num_rows == stats["splits"]["train"]
    assert loaded["eval"].num_rows == stats["splits"]["eval"]
    train_papers = set(loaded["train"]["paper_id"])
    assert not train_papers & set(loaded["eval"]["paper_id"])

    with db.session_scope(engine) as session:
        members = list(
            session.scalars(select(DatasetMember).where(DatasetMember.dataset_id == built.id))
        )
    assert len(members) == stats["splits"]["train"] + stats["splits"]["eval"]

    manifest = json.loads(store.get(built.keys["manifest.json"]))
    dropped_keys = set(manifest["dropped"])
    assert all(len(why) == 2 for why in manifest["dropped"].values())
    assert not dropped_keys & {m["key"] for m in manifest["members"]}


def test_bad_configuration_and_empty_input_are_clear() -> None:
    with pytest.raises(ConfigError, match="eval_share"):
        CurationConfig.from_mapping({"eval_share": 2})
    with pytest.raises(ConfigError, match="unknown curation settings"):
        CurationConfig.from_mapping({"evalshare": 0.1})


def test_nothing_extracted_yet(tmp_path: Path) -> None:
    settings = load_settings({"LDRT_HOME": str(tmp_path)})
    engine = db.connect(settings)
    db.upgrade(engine)
    with pytest.raises(LdrtError, match="ldrt extract"):
        build_dataset(engine, open_store(settings))
