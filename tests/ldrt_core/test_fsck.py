"""`ldrt fsck`: the lineage database checked against the artifact store.

Input: the sample corpus refreshed, extracted, curated and turned into template QA (SQLite and a
local store; one test copies the store into S3 on loopback), with training and evaluation rows
and their files recorded the way those stages write them (no training here: `slow` runs the demo
for that). Each test damages a copy of that world and asserts exactly which problems come back.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from ldrt_core import db
from ldrt_core.config import load_settings
from ldrt_core.curate.dataset import CurationConfig, build_dataset
from ldrt_core.db import session_scope
from ldrt_core.db.models import (
    DatasetVersion,
    Document,
    EvaluationRun,
    Figure,
    Pair,
    TrainingRun,
)
from ldrt_core.fsck import NOT_ORPHANS, FsckReport, check, content_sha256
from ldrt_core.qa import TemplateQAGenerator, generate_for_dataset
from ldrt_core.store import ArtifactStore, LocalStore, open_store
from tests.flows.test_cli import run_ldrt
from tests.support.corpus import extracted_world

pytestmark = pytest.mark.unit


@dataclass
class World:
    home: Path
    engine: Engine
    store: ArtifactStore
    curated: str
    instruct: str
    done_run: str  # a completed training run with its outputs
    failed_run: str  # a failed one with a checkpoint to resume from
    report: str  # the report folder of a completed evaluation


def record_runs(engine: Engine, store: ArtifactStore, dataset: str) -> dict[str, str]:
    """Training and evaluation rows and files as train/runs.py and evaluate/stage.py leave them."""
    done, failed, base_eval, tuned_eval = (str(uuid.uuid4()) for _ in range(4))
    outputs = {
        name: store.put(f"runs/{done}/{name}", data).key
        for name, data in (
            ("projector.safetensors", b"projector weights"),
            ("adapter/adapter_model.safetensors", b"lora weights"),
            ("adapter/adapter_config.json", b"{}"),
            ("loss.json", b"[2.0, 1.0]"),
            ("config.json", b"{}"),
        )
    }
    store.put(f"runs/{failed}/checkpoints/step-2/state.json", b"{}")
    report = f"reports/{tuned_eval}"
    for name in ("report.md", "report.json", "metrics.png", "hedging.png"):
        store.put(f"{report}/{name}", name.encode())
    store.put("answers/0123abcd/batch.json", b"{}")  # the caches evaluation leaves behind
    store.put("judgements/ab/abcd.json", b"{}")
    run: dict[str, Any] = {
        "base_model": "tiny-random",
        "dataset_id": dataset,
        "config": {},
        "config_hash": "0" * 64,
    }
    evaluation: dict[str, Any] = {"dataset_id": dataset, "report_key": f"{report}/report.md"}
    with session_scope(engine) as session:
        session.add(
            TrainingRun(id=done, stage="instruct", status="completed", outputs=outputs, **run)
        )
        session.add(TrainingRun(id=failed, stage="instruct", status="failed", **run))
        session.flush()
        session.add(
            EvaluationRun(id=base_eval, model_label="base", status="completed", **evaluation)
        )
        session.add(
            EvaluationRun(
                id=tuned_eval,
                training_run_id=done,
                model_label="tuned",
                status="completed",
                **evaluation,
            )
        )
    return {"done": done, "failed": failed, "report": report}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("home")
    engine, store = extracted_world(home, tmp_path_factory.mktemp("papers"), papers=4, seed=5)
    curated = build_dataset(engine, store, CurationConfig(eval_share=0.3)).id
    qa = generate_for_dataset(engine, store, curated, TemplateQAGenerator())
    runs = record_runs(engine, store, qa.instruct_id)
    engine.dispose()  # SQLite's WAL is checkpointed: the folder can be copied
    return {"home": str(home), "curated": curated, "instruct": qa.instruct_id, **runs}


@pytest.fixture
def world(built: dict[str, str], tmp_path: Path) -> Iterator[World]:
    home = tmp_path / "home"
    shutil.copytree(built["home"], home)
    settings = load_settings({"LDRT_HOME": str(home)})
    engine = db.connect(settings)
    yield World(
        home,
        engine,
        open_store(settings),
        built["curated"],
        built["instruct"],
        built["done"],
        built["failed"],
        built["report"],
    )
    engine.dispose()


def found(report: FsckReport) -> set[tuple[str, str]]:
    return {(p.kind, p.key) for p in report.problems}


def one(engine: Engine, column: Any) -> Any:
    with session_scope(engine) as session:
        return session.scalars(select(column).order_by(column).limit(1)).one()


# ------------------------------------------------------------------------------ a clean world


def test_a_clean_world_is_ok_and_every_object_is_accounted_for(world: World) -> None:
    seen: dict[str, tuple[int, int | None]] = {}
    report = check(
        world.engine, world.store, progress=lambda what, d, t: seen.__setitem__(what, (d, t))
    )
    assert report.ok, report.problems
    keys = list(world.store.list(""))
    assert report.objects == len(keys)
    caches = [k for k in keys if k.startswith(("qa/", "answers/", "judgements/"))]
    assert report.cached == len(caches) and any(k.startswith("qa/") for k in caches)
    assert report.rows["documents"] == 4 and report.rows["training_runs"] == 2
    assert report.rows["evaluation_runs"] == 2 and report.rows["dataset_versions"] == 3
    with session_scope(world.engine) as session:
        pdf_bytes = sum(session.scalars(select(Document.size)))
    assert report.hashed and report.bytes_hashed > pdf_bytes  # the figures were read too
    assert seen["listing the store"] == (len(keys), len(keys))
    assert seen["hashing objects"][0] == seen["hashing objects"][1] == report.verified > 4

    sizes_only = check(world.engine, world.store, verify_hashes=False)
    assert sizes_only.ok and not sizes_only.hashed and sizes_only.bytes_hashed == 0
    assert sizes_only.verified == 4  # only documents record a size


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (f"sha256/ab/ab{'0' * 62}", f"ab{'0' * 62}"),
        (f"team/figures/cd/cd{'1' * 62}", f"cd{'1' * 62}"),
        (f"figures/ab/cd{'0' * 62}", None),  # the folder does not match the hash
        (f"qa/ab/ab{'0' * 62}.json", None),  # a cache key, not content
        ("datasets/abc/manifest.json", None),
    ],
)
def test_content_addressed_keys_name_their_hash(key: str, expected: str | None) -> None:
    assert content_sha256(key) == expected


def test_prefect_results_folder_is_not_an_orphan_prefix_by_accident() -> None:
    from deployments.deploy import RESULTS_FOLDER

    assert f"{RESULTS_FOLDER}/" in NOT_ORPHANS


# ------------------------------------------------------------------------------ damage


def test_deleted_objects_are_missing(world: World) -> None:
    image = one(world.engine, Pair.image_key)  # a figure's and a pair's image
    markdown = one(world.engine, Document.markdown_key)
    deleted = [
        image,
        markdown,
        f"runs/{world.done_run}/adapter/adapter_model.safetensors",
        f"{world.report}/report.json",
        f"datasets/{world.curated}/eval.jsonl",
        f"datasets/{world.instruct}/llava_instruct_train.json",
    ]
    for key in deleted:
        world.store.delete(key)
    report = check(world.engine, world.store)
    assert found(report) == {("missing", key) for key in deleted}
    assert not report.ok
    details = {p.key: p.detail for p in report.problems}
    assert details[markdown].startswith("recorded by documents ")
    assert "training_runs" in details[deleted[2]] and "outputs" in details[deleted[2]]


def test_overwritten_bytes_are_hash_and_size_mismatches(world: World) -> None:
    pdf = one(world.engine, Document.store_key)
    image = one(world.engine, Pair.image_key)
    manifest = f"datasets/{world.curated}/manifest.json"
    world.store.put(pdf, b"%PDF-1.7 other bytes\n%%EOF", overwrite=True)
    same_size = bytearray(world.store.get(image))
    same_size[-1] ^= 0xFF
    world.store.put(image, bytes(same_size), overwrite=True)
    world.store.put(manifest, world.store.get(manifest) + b" ", overwrite=True)

    report = check(world.engine, world.store)
    assert found(report) == {
        ("size_mismatch", pdf),
        ("hash_mismatch", pdf),
        ("hash_mismatch", image),
        ("hash_mismatch", manifest),  # a curated version is named by its manifest's hash
    }
    actual = hashlib.sha256(bytes(same_size)).hexdigest()
    assert any(p.key == image and actual in p.detail for p in report.problems)
    # Without hashing only the recorded size can tell.
    assert found(check(world.engine, world.store, verify_hashes=False)) == {("size_mismatch", pdf)}


def test_rows_that_disagree_with_their_objects_are_reported(world: World) -> None:
    pdf = one(world.engine, Document.store_key)
    image = one(world.engine, Figure.image_key)
    with session_scope(world.engine) as session:
        session.scalars(select(Document).where(Document.store_key == pdf)).one().size += 1
        for figure in session.scalars(select(Figure).where(Figure.image_key == image)):
            figure.image_sha256 = "0" * 64
    report = check(world.engine, world.store)
    assert found(report) == {("size_mismatch", pdf), ("hash_mismatch", image)}
    assert any(p.key == image and "records sha256 000" in p.detail for p in report.problems)


def test_unreferenced_objects_are_orphans_but_caches_and_open_runs_are_not(world: World) -> None:
    orphans = [
        world.store.put_content(b"a figure nothing records", namespace="figures"),
        world.store.put_content(b"%PDF-1.7 unrecorded\n%%EOF"),
        f"runs/{uuid.uuid4()}/projector.safetensors",  # a run with no row
        f"runs/{world.done_run}/checkpoints/step-4/state.json",  # completed runs drop these
        f"datasets/{world.curated}/extra.json",
        f"reports/{uuid.uuid4()}/report.md",
    ]
    kept = [
        *(f"{prefix}ab/cache.json" for prefix in NOT_ORPHANS),
        f"runs/{world.failed_run}/checkpoints/step-4/model.safetensors",  # kept for --resume
        f"{world.report}/scores.png",  # a plot beside a recorded report
    ]
    for key in orphans[2:] + kept:
        world.store.put(key, b"x")
    report = check(world.engine, world.store)
    assert found(report) == {("orphan", key) for key in orphans}
    # qa/ (with the new one), the three other new ones, and the two evaluation caches
    assert report.cached == len(list(world.store.list("qa/"))) + len(NOT_ORPHANS) - 1 + 2


def test_objects_of_a_running_stage_are_not_orphans(world: World) -> None:
    running_eval = str(uuid.uuid4())
    with session_scope(world.engine) as session:
        session.add(
            EvaluationRun(
                id=running_eval, dataset_id=world.curated, model_label="tuned", status="running"
            )
        )
        failed = session.get(TrainingRun, world.failed_run)
        assert failed is not None
        failed.status = "running"
    world.store.put(f"reports/{running_eval}/report.md", b"being written")
    world.store.put(f"runs/{world.failed_run}/projector.safetensors", b"being uploaded")
    assert check(world.engine, world.store).ok


def test_rows_committed_while_the_store_is_listed_are_not_orphans(world: World) -> None:
    pdf = b"%PDF-1.7 downloaded during the check\n%%EOF"
    info = world.store.put_content_info(pdf)

    def commit_document() -> None:  # a refresh finishing between our two reads of the database
        with session_scope(world.engine) as session:
            session.add(Document(sha256=info.sha256, store_key=info.key, size=info.size))

    store = ListingHook(world.home / "store", commit_document)
    report = check(world.engine, store)
    assert report.ok, report.problems
    assert report.rows["documents"] == 4  # the first read did not see it


class ListingHook(LocalStore):
    def __init__(self, root: Path, on_list: Callable[[], None]) -> None:
        super().__init__(root)
        self.on_list = on_list

    def _keys(self, prefix: str) -> Iterator[str]:
        self.on_list()
        return super()._keys(prefix)


# ------------------------------------------------------------------------------ the command


def test_cli_exits_0_when_clean_and_1_with_problems(world: World, tmp_path: Path) -> None:
    env = {"LDRT_HOME": str(world.home)}
    clean = run_ldrt(["fsck", "--json"], tmp_path, env)
    assert clean.returncode == 0, clean.stderr
    parsed = json.loads(clean.stdout)
    assert parsed["ok"] is True and parsed["problems"] == [] and parsed["hashed"] is True
    assert parsed["rows"]["documents"] == 4

    missing = f"{world.report}/report.json"
    orphan = f"runs/{uuid.uuid4()}/loss.json"
    world.store.delete(missing)
    world.store.put(orphan, b"[]")
    text = run_ldrt(["fsck"], tmp_path, env)
    assert text.returncode == 1, text.stderr
    assert "FAIL" in text.stdout and "1 missing, 1 orphan" in text.stdout
    lines = text.stdout.splitlines()
    assert any(line.split()[:2] == ["orphan", orphan] for line in lines), text.stdout
    assert any(line.split()[:2] == ["missing", missing] for line in lines), text.stdout
    broken = run_ldrt(["fsck", "--json", "--no-hash"], tmp_path, env)
    assert broken.returncode == 1, broken.stderr
    parsed = json.loads(broken.stdout)
    assert parsed["hashed"] is False and parsed["counts"] == {"missing": 1, "orphan": 1}
    assert {(p["kind"], p["key"]) for p in parsed["problems"]} == {
        ("missing", missing),
        ("orphan", orphan),
    }


def test_cli_checks_what_is_there_and_creates_nothing(world: World, tmp_path: Path) -> None:
    """A mistyped LDRT_DB_URL made an empty database, against which every object was an
    orphan; a mistyped store folder made every key missing."""
    nowhere = tmp_path / "nowhere"
    wrong_db = {"LDRT_HOME": str(world.home), "LDRT_DB_URL": f"sqlite:///{nowhere}/ldrt.db"}
    result = run_ldrt(["fsck", "--json"], tmp_path, wrong_db)
    assert result.returncode == 2 and "no database at" in result.stderr, result.stderr
    assert not nowhere.exists()
    wrong_store = {"LDRT_HOME": str(world.home), "LDRT_STORE_URL": nowhere.as_uri()}
    result = run_ldrt(["fsck", "--json"], tmp_path, wrong_store)
    assert result.returncode == 2 and "no store at" in result.stderr, result.stderr
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()  # a database, but not ldrt's
    result = run_ldrt(
        ["fsck"], tmp_path, {"LDRT_HOME": str(world.home), "LDRT_DB_URL": f"sqlite:///{empty}"}
    )
    assert result.returncode == 2 and "has no ldrt schema" in result.stderr, result.stderr


# ------------------------------------------------------------------------------ S3


@pytest.mark.integration
def test_the_same_checks_on_s3(world: World, s3_env: dict[str, str]) -> None:
    s3 = open_store(load_settings(s3_env))
    for key in world.store.list(""):
        with world.store.open(key) as stream:
            s3.put(key, stream)
    assert check(world.engine, s3).ok

    pdf = one(world.engine, Document.store_key)
    image = one(world.engine, Pair.image_key)
    orphan = s3.put_content(b"stray", namespace="figures")
    s3.put(pdf, b"%PDF-1.7 replaced\n%%EOF", overwrite=True)
    s3.delete(image)
    client = s3._client  # type: ignore[attr-defined]
    client.put_object(s3.bucket, "prefect-results/abc123", io.BytesIO(b"{}"), 2)  # type: ignore[attr-defined]
    report = check(world.engine, s3)
    assert found(report) == {
        ("size_mismatch", pdf),
        ("hash_mismatch", pdf),
        ("missing", image),
        ("orphan", orphan),
    }
    assert report.cached == len(list(s3.list("qa/"))) + 3  # answers/, judgements/, Prefect's
    assert found(check(world.engine, s3, verify_hashes=False)) == {
        ("size_mismatch", pdf),
        ("missing", image),
        ("orphan", orphan),
    }


# ------------------------------------------------------------------------------ real stages


@pytest.mark.slow
def test_a_store_the_demo_wrote_is_consistent(tmp_path: Path) -> None:
    demo = run_ldrt(
        ["demo", "--papers", "5", "--steps", "3", "--questions", "2"], tmp_path, timeout=600
    )
    assert demo.returncode == 0, demo.stderr[-3000:]
    result = run_ldrt(["fsck", "--json"], tmp_path)
    report = json.loads(result.stdout)
    assert result.returncode == 0 and report["problems"] == [], report["problems"]
    assert report["rows"]["training_runs"] == 2 and report["rows"]["evaluation_runs"] == 2
    assert report["cached"] > 0  # QA conversations and answers
    with db.connect(load_settings({"LDRT_HOME": str(tmp_path / ".ldrt")})).connect() as conn:
        outputs = conn.execute(select(TrainingRun.outputs)).scalars().all()
        assert conn.execute(select(DatasetVersion.id)).all()
    assert all(key.startswith("runs/") for run in outputs for key in run.values())
