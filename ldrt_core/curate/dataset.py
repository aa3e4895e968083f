"""Dataset versions: extracted figures in, a filtered, split, content-identified dataset out.

Input: the figures the extraction stage recorded (with their papers and rendered images) and a
`CurationConfig`. Output: a manifest (members with content hashes, the config, what each filter
dropped and why, split sizes) identified by its own sha256, so the same inputs and config give
the same id; the dataset in LLaVA's JSON format (images by store key) and as JSON Lines that
Hugging Face `datasets` loads; rows for the version, its members and their pairs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Engine, select

from ldrt_core.curate.filters import DEFAULT_CHAIN, ChainResult, build_chain, run_chain
from ldrt_core.curate.records import PairCandidate
from ldrt_core.curate.split import SPLIT_SALT, split_pairs
from ldrt_core.db import session_scope
from ldrt_core.db.models import DatasetMember, DatasetVersion, Document, Figure, Pair, Paper
from ldrt_core.errors import ConfigError, LdrtError
from ldrt_core.extract import EXTRACTOR_VERSION
from ldrt_core.extract.labels import caption_body
from ldrt_core.store import ArtifactStore, content_key

# The stage-1 style instruction each curated pair carries until QA generation adds conversations.
DESCRIBE = "<image>\nDescribe this figure."


@dataclass(frozen=True)
class CurationConfig:
    filters: tuple[Mapping[str, Any], ...] = DEFAULT_CHAIN
    eval_share: float = 0.03  # share of papers held out for evaluation
    near_duplicate_distance: int = 4  # phash bits: eval images this close to a train image leak
    split_salt: str = SPLIT_SALT

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> CurationConfig:
        known = {"filters", "eval_share", "near_duplicate_distance", "split_salt"}
        unknown = set(raw) - known
        if unknown:
            raise ConfigError(
                f"unknown curation settings {sorted(unknown)}; known: {sorted(known)}"
            )
        config = cls(**{**raw, "filters": tuple(raw.get("filters", DEFAULT_CHAIN))})
        if not 0 <= config.eval_share < 1:
            raise ConfigError(f"eval_share must be in [0, 1), got {config.eval_share}")
        return config

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "filters": [dict(f) for f in self.filters]}


@dataclass
class BuiltDataset:
    id: str
    created: bool  # False when this exact version existed already
    stats: dict[str, Any] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)  # file name -> store key


def load_candidates(engine: Engine, store: ArtifactStore) -> list[PairCandidate]:
    """Every figure of this extractor version with a rendered image, with its paper."""
    with session_scope(engine) as session:
        rows = session.execute(
            select(Figure, Document, Paper)
            .join(Document, Figure.document_sha256 == Document.sha256)
            .join(Paper, Paper.document_sha256 == Document.sha256)
            .where(Figure.extractor_version == EXTRACTOR_VERSION, Figure.image_key.is_not(None))
            .order_by(Figure.document_sha256, Figure.ordinal, Paper.id)
        ).all()
        seen: set[str] = set()
        candidates = []
        for figure, document, paper in rows:
            key = f"{document.sha256}:{figure.ordinal}"
            if key in seen:  # two papers share one PDF: the first paper owns its figures
                continue
            seen.add(key)
            candidates.append(
                PairCandidate(
                    pair_key=key,
                    paper_id=paper.external_id,
                    paper_title=paper.title,
                    label=figure.label,
                    caption=figure.caption,
                    image=store.get(str(figure.image_key)),
                    image_sha256=str(figure.image_sha256),
                    mentions=tuple(figure.mentions or ()),
                )
            )
    return candidates


def pair_sha256(pair: PairCandidate) -> str:
    """A pair's content: its image bytes and its caption."""
    return hashlib.sha256(f"{pair.image_sha256}\n{pair.caption}".encode()).hexdigest()


def build_dataset(
    engine: Engine,
    store: ArtifactStore,
    config: CurationConfig | None = None,
    *,
    flow_run_id: str | None = None,
) -> BuiltDataset:
    config = config or CurationConfig()
    try:
        chain = build_chain(config.filters)
    except ValueError as exc:
        raise ConfigError(f"curation filters: {exc}") from None
    candidates = load_candidates(engine, store)
    if not candidates:
        raise LdrtError(
            "no extracted figures to curate: run `ldrt refresh` and `ldrt extract --pending` first"
        )
    filtered = run_chain(candidates, chain)
    split = split_pairs(
        filtered.kept, config.eval_share, config.near_duplicate_distance, config.split_salt
    )
    files = _data_files(split.train, split.eval)
    manifest = _manifest(config, len(candidates), filtered, split.train, split.eval, split.leaked)
    # The version names every byte written under it: a paper's corrected title or a new mention
    # of a figure is a new version, never a conflict with the files of the old one.
    manifest["files"] = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    manifest_bytes = _canonical(manifest)
    version = hashlib.sha256(manifest_bytes).hexdigest()
    keys = _write_files(store, version, {"manifest.json": manifest_bytes, **files})
    stats = manifest["stats"]
    created = _record(engine, version, config, keys, stats, split.train, split.eval, flow_run_id)
    return BuiltDataset(version, created, stats, keys)


def _manifest(
    config: CurationConfig,
    candidates: int,
    filtered: ChainResult,
    train: Sequence[PairCandidate],
    evaluation: Sequence[PairCandidate],
    leaked: Mapping[str, str],
) -> dict[str, Any]:
    members = [
        {
            "pair": pair_sha256(p),
            "key": p.pair_key,
            "paper": p.paper_id,
            "label": p.label,
            "image_sha256": p.image_sha256,
            "split": split,
        }
        for split, pairs in (("train", train), ("eval", evaluation))
        for p in pairs
    ]
    members.sort(key=lambda m: (m["split"], m["pair"]))
    return {
        "kind": "curated",
        "extractor_version": EXTRACTOR_VERSION,
        "config": config.as_dict(),
        "members": members,
        "dropped": {key: list(why) for key, why in sorted(filtered.dropped.items())},
        "leaked_from_eval": dict(sorted(leaked.items())),
        "stats": {
            "candidates": candidates,
            "filters": [
                {
                    "name": s.name,
                    "seen": s.seen,
                    "kept": s.kept,
                    "dropped": s.dropped,
                    "reasons": dict(s.reasons.most_common()),
                }
                for s in filtered.stats
            ],
            "splits": {"train": len(train), "eval": len(evaluation)},
            "eval_papers": len({p.paper_id for p in evaluation}),
            "train_papers": len({p.paper_id for p in train}),
            "eval_dropped_as_near_duplicates": len(leaked),
        },
    }


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _records(
    pairs: Sequence[PairCandidate], split: str, image_keys: Mapping[str, str]
) -> list[dict[str, Any]]:
    return [
        {
            "id": pair_sha256(p)[:16],
            "image": image_keys[p.image_sha256],
            "conversations": [
                {"from": "human", "value": DESCRIBE},
                {"from": "gpt", "value": caption_body(p.caption)},
            ],
            "caption": p.caption,
            "label": p.label,
            "paper_id": p.paper_id,
            "paper_title": p.paper_title,
            "mentions": list(p.mentions),
            "split": split,
        }
        for p in pairs
    ]


def _data_files(
    train: Sequence[PairCandidate], evaluation: Sequence[PairCandidate]
) -> dict[str, bytes]:
    """The version's data files by name: LLaVA's JSON and our JSON lines, for each split."""
    image_keys = {
        p.image_sha256: content_key(p.image_sha256, "figures") for p in [*train, *evaluation]
    }
    files: dict[str, bytes] = {}
    for split, pairs in (("train", train), ("eval", evaluation)):
        records = _records(pairs, split, image_keys)
        llava = [{k: r[k] for k in ("id", "image", "conversations")} for r in records]
        files[f"llava_{split}.json"] = json.dumps(llava, ensure_ascii=False, indent=1).encode()
        files[f"{split}.jsonl"] = "".join(
            json.dumps(r, ensure_ascii=False) + "\n" for r in records
        ).encode()
    return files


def _write_files(store: ArtifactStore, version: str, files: Mapping[str, bytes]) -> dict[str, str]:
    base = f"datasets/{version}"
    keys = {}
    for name, data in files.items():
        content_type = "application/json" if name.endswith(".json") else "application/x-ndjson"
        keys[name] = store.put(f"{base}/{name}", data, content_type=content_type).key
    return keys


def _record(
    engine: Engine,
    version: str,
    config: CurationConfig,
    keys: Mapping[str, str],
    stats: Mapping[str, Any],
    train: Sequence[PairCandidate],
    evaluation: Sequence[PairCandidate],
    flow_run_id: str | None,
) -> bool:
    with session_scope(engine) as session:
        if session.get(DatasetVersion, version) is not None:
            return False
        figure_ids = {
            f"{sha}:{ordinal}": figure_id
            for figure_id, sha, ordinal in session.execute(
                select(Figure.id, Figure.document_sha256, Figure.ordinal).where(
                    Figure.extractor_version == EXTRACTOR_VERSION
                )
            )
        }
        session.add(
            DatasetVersion(
                id=version,
                kind="curated",
                config_hash=hashlib.sha256(_canonical(config.as_dict())).hexdigest(),
                manifest_key=keys["manifest.json"],
                stats=dict(stats),
                flow_run_id=flow_run_id,
            )
        )
        members: set[int] = set()
        for split, pairs in (("train", train), ("eval", evaluation)):
            for pair in pairs:
                content = pair_sha256(pair)
                row = session.scalar(select(Pair).where(Pair.content_sha256 == content))
                if row is None:
                    row = Pair(
                        figure_id=figure_ids[pair.pair_key],
                        content_sha256=content,
                        image_key=content_key(pair.image_sha256, "figures"),
                        caption=pair.caption,
                        flow_run_id=flow_run_id,
                    )
                    session.add(row)
                    session.flush()
                if row.id in members:  # identical bytes and caption twice: one member
                    continue
                members.add(row.id)
                session.add(
                    DatasetMember(
                        dataset_id=version, pair_id=row.id, split=split, content_sha256=content
                    )
                )
    return True


def find_version(engine: Engine, prefix: str) -> DatasetVersion:
    """A dataset version by its id or a unique prefix of it; 'latest': the newest curated one."""
    if prefix == "latest":
        with session_scope(engine) as session:
            newest = session.scalars(
                select(DatasetVersion)
                .where(DatasetVersion.kind == "curated")
                .order_by(DatasetVersion.created_at.desc(), DatasetVersion.id)
                .limit(1)
            ).first()
        if newest is None:
            raise LdrtError("no curated dataset yet: run `ldrt dataset build` first")
        return newest
    with session_scope(engine) as session:
        matches = list(
            session.scalars(
                select(DatasetVersion).where(DatasetVersion.id.startswith(prefix)).limit(2)
            )
        )
    if len(matches) != 1:
        what = "no dataset version" if not matches else "more than one dataset version"
        raise LdrtError(f"{what} starts with {prefix!r}: see `ldrt dataset list`")
    return matches[0]
