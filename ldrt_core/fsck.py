"""Consistency check between the lineage database and the artifact store (`ldrt fsck`).

Input: the database and the store. Output: an `FsckReport` listing every problem found:

    missing         a row records a key the store does not hold
    size_mismatch   the object's size is not the one its row records
    hash_mismatch   the object's bytes do not hash to the sha256 its key or row records
    unreadable      the object is listed but reading it failed (the error says why)
    orphan          a stored object that no row references and no cache owns

What rows reference (see `_read_references`): each document's PDF, markdown and extraction
JSON; each figure's and pair's image; each dataset version's manifest and the files written
beside it; each completed training run's outputs; each completed evaluation's report folder.
A training run or evaluation still `running` owns its whole folder (`runs/<id>/`,
`reports/<id>/`): it writes there before its row records the keys; a failed training run keeps
its checkpoints there for `ldrt train --resume`.

The database is read before the store is listed, so every key a row records was written before
the listing began (no false `missing`). An object written by a stage whose row is committed
while the store is being listed would look like an orphan; the references are read again
before orphans are reported, so only objects still unreferenced then are. Run it while no
pipeline is writing for an exact answer.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Engine, select

from ldrt_core.db.models import DatasetVersion, Document, EvaluationRun, Figure, Pair, TrainingRun
from ldrt_core.errors import ObjectNotFoundError, StoreError, StoreUnavailableError
from ldrt_core.store import ArtifactStore
from ldrt_core.store.base import CHUNK

ProblemKind = Literal["missing", "size_mismatch", "hash_mismatch", "unreadable", "orphan"]
Progress = Callable[[str, int, int | None], None]  # (what, done, total or None when unknown)

# Store prefixes that no row references by design; nothing under them is an orphan. LocalStore's
# own staging folder (`.ldrt-tmp`) needs no entry: it is never listed.
NOT_ORPHANS = (
    "qa/",  # QA generation's per-pair cache (ldrt_core/qa/generate.py, `_cache_key_path`)
    "answers/",  # evaluation answers per model, dataset, prompt and sampling (evaluate/answer.py)
    "judgements/",  # judges' verdicts per question and answer (evaluate/stage.py, `_judge`)
    "prefect-results/",  # Prefect's task results with an S3 store (deployments/deploy.py)
)

# The files a curated dataset version writes beside its manifest (curate/dataset.py).
CURATED_FILES = ("llava_train.json", "llava_eval.json", "train.jsonl", "eval.jsonl")

ROWS_PER_FETCH = 2000
VERIFY_BATCH = 256  # objects handed to the worker threads at a time (bounds pending futures)
_CONTENT_KEY = re.compile(r"(?:^|/)([0-9a-f]{2})/([0-9a-f]{64})$")


@dataclass(frozen=True, slots=True)
class Problem:
    kind: ProblemKind
    key: str
    detail: str


@dataclass(frozen=True)
class FsckReport:
    problems: tuple[Problem, ...]
    rows: Mapping[str, int]  # rows read per table
    references: int  # distinct keys the rows record
    objects: int  # objects listed in the store
    verified: int  # referenced objects whose size or hash was checked
    bytes_hashed: int
    cached: int  # objects under NOT_ORPHANS
    hashed: bool  # False with verify_hashes=False: only sizes were compared

    @property
    def ok(self) -> bool:
        return not self.problems

    def counts(self) -> dict[str, int]:
        return dict(Counter(p.kind for p in self.problems))

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "hashed": self.hashed,
            "rows": dict(self.rows),
            "references": self.references,
            "objects": self.objects,
            "verified": self.verified,
            "bytes_hashed": self.bytes_hashed,
            "cached": self.cached,
            "counts": self.counts(),
            "problems": [{"kind": p.kind, "key": p.key, "detail": p.detail} for p in self.problems],
        }


def check(
    engine: Engine,
    store: ArtifactStore,
    *,
    verify_hashes: bool = True,
    workers: int = 4,
    progress: Progress | None = None,
) -> FsckReport:
    """Check every key the database records against the store, and the store for orphans.

    `verify_hashes=False` compares recorded sizes only (no object is read). `workers` threads
    read and hash objects; each object is streamed, never held in memory whole."""
    note = progress or (lambda what, done, total: None)
    refs = _read_references(engine, note)
    problems = list(refs.problems)
    listed: set[str] = set()
    for key in store.list(""):
        listed.add(key)
        if len(listed) % 1000 == 0:
            note("listing the store", len(listed), None)
    note("listing the store", len(listed), len(listed))

    todo = []
    for key, expected in refs.keys.items():
        if key not in listed:
            problems.append(Problem("missing", key, f"recorded by {expected.source}"))
        elif expected.size is not None or (verify_hashes and expected.sha256 is not None):
            todo.append((key, expected))
    verified, hashed_bytes = 0, 0
    for outcome in _verify_all(store, todo, verify_hashes, workers, note):
        verified += 1
        hashed_bytes += outcome.bytes_hashed
        problems.extend(outcome.problems)

    cached = sum(1 for key in listed if key.startswith(NOT_ORPHANS))
    candidates = sorted(k for k in listed if not refs.covers(k) and not k.startswith(NOT_ORPHANS))
    if candidates:  # rows committed while we listed may reference some of them now
        again = _read_references(engine, None)
        candidates = [k for k in candidates if not again.covers(k)]
    problems += [Problem("orphan", k, "no row references it") for k in candidates]
    return FsckReport(
        problems=tuple(sorted(problems, key=lambda p: (p.kind, p.key))),
        rows=refs.rows,
        references=len(refs.keys),
        objects=len(listed),
        verified=verified,
        bytes_hashed=hashed_bytes,
        cached=cached,
        hashed=verify_hashes,
    )


# ------------------------------------------------------------------------------ references


@dataclass(slots=True)
class _Expected:
    source: str  # the first row that records the key, for messages
    size: int | None = None
    sha256: str | None = None


@dataclass
class _References:
    keys: dict[str, _Expected] = field(default_factory=dict)
    folders: set[str] = field(default_factory=set)  # "runs/<id>/": everything under it is owned
    rows: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)  # rows that contradict their own keys

    def add(
        self, key: str | None, source: str, *, size: int | None = None, sha: str | None = None
    ) -> None:
        if not key:
            return
        named = content_sha256(key)
        if sha is not None and named is not None and sha != named:
            detail = f"{source} records sha256 {sha}, but the key names {named}"
            self.problems.append(Problem("hash_mismatch", key, detail))
        expected = self.keys.get(key)
        if expected is None:
            self.keys[key] = _Expected(source, size, named or sha)
        elif expected.size is None and size is not None:
            expected.size = size

    def covers(self, key: str) -> bool:
        if key in self.keys:
            return True
        parts = key.split("/")
        return any("/".join(parts[:n]) + "/" in self.folders for n in range(1, len(parts)))


def content_sha256(key: str) -> str | None:
    """The sha256 a content-addressed key (`<namespace>/ab/abcd...`) names, else None."""
    match = _CONTENT_KEY.search(key)
    if match is None or not match.group(2).startswith(match.group(1)):
        return None
    return match.group(2)


def _read_references(engine: Engine, note: Progress | None) -> _References:
    refs = _References()
    with engine.connect() as conn:
        conn = conn.execution_options(yield_per=ROWS_PER_FETCH)

        def rows(table: str, query: Any) -> Iterator[Any]:
            refs.rows[table] = 0
            for row in conn.execute(query):
                refs.rows[table] += 1
                if note is not None and refs.rows[table] % ROWS_PER_FETCH == 0:
                    note(f"reading {table}", refs.rows[table], None)
                yield row
            if note is not None:
                note(f"reading {table}", refs.rows[table], refs.rows[table])

        query: Any = select(
            Document.sha256,
            Document.store_key,
            Document.size,
            Document.markdown_key,
            Document.extraction_key,
        )
        for sha, store_key, size, markdown, extraction in rows("documents", query):
            refs.add(store_key, f"documents {sha[:12]} store_key", size=size, sha=sha)
            refs.add(markdown, f"documents {sha[:12]} markdown_key")
            refs.add(extraction, f"documents {sha[:12]} extraction_key")
        query = select(Figure.id, Figure.image_key, Figure.image_sha256)
        for figure_id, image_key, image_sha in rows("figures", query):
            refs.add(image_key, f"figures {figure_id} image_key", sha=image_sha)
        for pair_id, image_key in rows("pairs", select(Pair.id, Pair.image_key)):
            refs.add(image_key, f"pairs {pair_id} image_key")
        query = select(
            DatasetVersion.id,
            DatasetVersion.kind,
            DatasetVersion.manifest_key,
            DatasetVersion.stats,
        )
        for version, kind, manifest, stats in rows("dataset_versions", query):
            _dataset_references(refs, version, kind, manifest, stats or {})
        query = select(TrainingRun.id, TrainingRun.status, TrainingRun.outputs)
        for run_id, status, outputs in rows("training_runs", query):
            if status != "completed":  # checkpoints, or outputs written before the row says so
                refs.folders.add(f"runs/{run_id}/")
            for name, key in sorted((outputs or {}).items()):
                refs.add(key, f"training_runs {run_id[:12]} outputs[{name!r}]")
        query = select(EvaluationRun.id, EvaluationRun.status, EvaluationRun.report_key)
        for evaluation_id, status, report_key in rows("evaluation_runs", query):
            if status == "running":  # the report is written before the row records it
                refs.folders.add(f"reports/{evaluation_id}/")
            if report_key and "/" in report_key:
                source = f"evaluation_runs {evaluation_id[:12]} report_key"
                folder = report_key.rpartition("/")[0]
                refs.add(report_key, source)
                refs.add(f"{folder}/report.json", f"{source} (beside it)")
                refs.folders.add(f"{folder}/")  # and the plots, whichever were drawn
    return refs


def _dataset_references(
    refs: _References, version: str, kind: str, manifest: str, stats: Mapping[str, Any]
) -> None:
    source = f"dataset_versions {version[:12]}"
    # A curated version is named by its manifest's sha256 (curate/dataset.py).
    refs.add(manifest, f"{source} manifest_key", sha=version if kind == "curated" else None)
    folder = manifest.rpartition("/")[0]
    if kind == "curated":
        names: Iterable[str] = CURATED_FILES
    elif isinstance(stats.get("records"), Mapping):
        names = stats["records"]  # a derived version: file name -> records (qa/generate.py)
    else:  # a row that does not say which files it wrote: its folder is its own
        refs.folders.add(f"{folder}/")
        return
    for name in names:
        refs.add(f"{folder}/{name}", f"{source} (beside its manifest)")


# ------------------------------------------------------------------------------ objects


@dataclass(slots=True)
class _Outcome:
    problems: list[Problem]
    bytes_hashed: int = 0


def _verify_all(
    store: ArtifactStore,
    todo: list[tuple[str, _Expected]],
    verify_hashes: bool,
    workers: int,
    note: Progress,
) -> Iterator[_Outcome]:
    what = "hashing objects" if verify_hashes else "checking sizes"
    note(what, 0, len(todo))
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for start in range(0, len(todo), VERIFY_BATCH):
            batch = todo[start : start + VERIFY_BATCH]
            yield from pool.map(lambda item: _verify(store, item[0], item[1], verify_hashes), batch)
            note(what, start + len(batch), len(todo))


def _verify(store: ArtifactStore, key: str, expected: _Expected, verify_hashes: bool) -> _Outcome:
    problems: list[Problem] = []
    hashed = 0
    try:
        if verify_hashes and expected.sha256 is not None:
            size, sha = _hash(store, key)
            hashed = size
            if sha != expected.sha256:
                detail = f"sha256 {sha}, {expected.source} expects {expected.sha256}"
                problems.append(Problem("hash_mismatch", key, detail))
        else:
            size = store.size(key)  # a stat, not a read
    except ObjectNotFoundError:  # deleted since the listing
        return _Outcome([Problem("missing", key, f"recorded by {expected.source}")])
    except StoreUnavailableError:
        raise  # the store is down: nothing more can be checked
    except (StoreError, OSError) as exc:
        return _Outcome([Problem("unreadable", key, f"{type(exc).__name__}: {exc}")])
    if expected.size is not None and size != expected.size:
        detail = f"{size} bytes, {expected.source} records {expected.size}"
        problems.insert(0, Problem("size_mismatch", key, detail))
    return _Outcome(problems, hashed)


def _hash(store: ArtifactStore, key: str) -> tuple[int, str]:
    """Size and sha256 of the stored bytes, read in chunks (on S3, `stat` only reports the hash
    recorded at write time, not that of the bytes)."""
    digest, size = hashlib.sha256(), 0
    with store.open(key) as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()
