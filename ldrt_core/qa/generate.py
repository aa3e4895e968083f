"""QA generation: a curated dataset version in, instruction conversations and derived versions out.

Input: a curated dataset version (its pairs: image key, caption, mentions, paper title) and a
generator (an LLM through `LLMClient`, or the deterministic template). Output: per pair, LLaVA
conversations in three categories (multi-turn conversation, detailed description, complex
reasoning) with the `<image>` token in the first human turn, cached in the store under a key of
(pair content, prompt version, model id, sampling parameters) so nothing is generated twice; a
pair whose output stays invalid is recorded as a failure, never lost silently. Two derived
dataset versions: "instruct" (the conversations) and "align" (stage 1: a brief-description
instruction from a fixed list answered by the caption).
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select

from ldrt_core.curate.dataset import find_version
from ldrt_core.db import session_scope
from ldrt_core.db.models import DatasetMember, DatasetVersion, Pair
from ldrt_core.errors import LdrtError
from ldrt_core.extract.labels import caption_body, split_sentences
from ldrt_core.llm import Completion, LLMClient, Message, Request
from ldrt_core.qa.clean import CLEAN_VERSION, clean_turn
from ldrt_core.qa.prompts import (
    ALIGN_VERSION,
    BRIEF_INSTRUCTIONS,
    CATEGORIES,
    PROMPT_VERSION,
    SCHEMA,
    SYSTEM,
    USER,
)
from ldrt_core.store import ArtifactStore

Turn = tuple[str, str]  # (question, answer)


@dataclass(frozen=True)
class QAInput:
    pair_sha256: str
    image: str  # store key
    caption: str
    mentions: tuple[str, ...]
    title: str
    split: str


@dataclass
class QAResult:
    """The conversations of one pair, by category; or why none could be made."""

    conversations: dict[str, list[Turn]] = field(default_factory=dict)
    dropped_turns: list[str] = field(default_factory=list)
    error: str | None = None


class QAGenerator(ABC):
    model_id: str
    sampling: dict[str, Any]

    @abstractmethod
    def generate(self, items: Sequence[QAInput]) -> list[QAResult]:
        """One result per item, in order; a bad item is a result with an error."""

    def cache_key(self, item: QAInput) -> str:
        """Everything the cached conversations depend on: the pair (image and caption), what the
        prompt adds (title, citing sentences), the prompt, the cleaning rules, model, sampling."""
        spec = json.dumps(
            [
                item.pair_sha256,
                item.title,
                list(item.mentions),
                PROMPT_VERSION,
                CLEAN_VERSION,
                self.model_id,
                self.sampling,
            ],
            sort_keys=True,
        )
        return hashlib.sha256(spec.encode()).hexdigest()


class LLMQAGenerator(QAGenerator):
    """Asks an LLM for the three categories as JSON (validated against SCHEMA)."""

    def __init__(self, client: LLMClient, temperature: float = 0.7, max_tokens: int = 1500) -> None:
        self.client = client
        self.model_id = client.model_id
        self.sampling = {"temperature": temperature, "max_tokens": max_tokens}

    def generate(self, items: Sequence[QAInput]) -> list[QAResult]:
        requests = [
            Request(
                messages=(
                    Message("system", SYSTEM),
                    Message(
                        "user",
                        USER.format(
                            title=item.title,
                            caption=item.caption,
                            mentions="\n".join(f"- {m}" for m in item.mentions) or "(none)",
                        ),
                    ),
                ),
                json_schema=SCHEMA,
                temperature=self.sampling["temperature"],
                max_tokens=self.sampling["max_tokens"],
            )
            for item in items
        ]
        results = []
        for item, outcome in zip(items, self.client.complete_batch(requests), strict=True):
            if isinstance(outcome, Completion):
                results.append(_from_json(outcome.parsed, item.caption))
            else:
                results.append(
                    QAResult(error=f"after {outcome.attempts} attempts: {outcome.error}")
                )
        return results


class TemplateQAGenerator(QAGenerator):
    """No LLM: questions from fixed lists, answers from the caption and the citing sentences.

    Deterministic for a pair, so the pipeline runs end to end with no model at all.
    """

    def __init__(self) -> None:
        self.model_id = "template"
        self.sampling: dict[str, Any] = {}

    def generate(self, items: Sequence[QAInput]) -> list[QAResult]:
        return [self._one(item) for item in items]

    def _one(self, item: QAInput) -> QAResult:
        body = caption_body(item.caption)
        sentences = split_sentences(body) or [body]
        title, *details = sentences
        context = [m for m in item.mentions if m][:2]
        pick = int(item.pair_sha256[:8], 16)
        conversation: list[Turn] = [
            (_choose(_WHAT, pick), title),
            (
                _choose(_DETAIL, pick >> 4),
                " ".join(details) if details else f"It shows {title[0].lower()}{title[1:]}",
            ),
        ]
        if context:
            conversation.append((_choose(_WHY, pick >> 8), " ".join(context)))
        result = QAResult()
        result.conversations = {
            "conversation": conversation,
            "detailed_description": [(_choose(_DESCRIBE, pick >> 12), " ".join(sentences))],
            "complex_reasoning": [
                (
                    "What does this figure suggest about the effect of low-dose radiation?",
                    " ".join([*context, title]) if context else title,
                )
            ],
        }
        return result


_WHAT = (
    "What does this figure show?",
    "What is shown in this figure?",
    "What is the main finding shown here?",
)
_DETAIL = (
    "What details can you see?",
    "What else does the figure show?",
    "Can you describe the panels?",
)
_WHY = ("Why does this matter for the study?", "How does this fit the study's findings?")
_DESCRIBE = ("Describe the figure in detail.", "Give a detailed description of this figure.")


def _choose(options: Sequence[str], seed: int) -> str:
    return options[seed % len(options)]


def _from_json(parsed: Any, caption: str) -> QAResult:
    result = QAResult()
    for category in CATEGORIES:
        raw = parsed[category]
        turns = raw if isinstance(raw, list) else [raw]
        kept: list[Turn] = []
        for turn in turns:
            cleaned = clean_turn(turn["question"], turn["answer"], caption)
            if isinstance(cleaned, str):
                result.dropped_turns.append(f"{category}: {cleaned}")
            else:
                kept.append(cleaned)
        if kept:
            result.conversations[category] = kept
    if not result.conversations:
        result.error = "every turn leaked: " + "; ".join(result.dropped_turns[:3])
    return result


def llava_records(item: QAInput, result: QAResult) -> list[dict[str, Any]]:
    """One LLaVA record per category; `<image>` opens the first human turn."""
    records = []
    for category, turns in result.conversations.items():
        conversation = []
        for index, (question, answer) in enumerate(turns):
            conversation.append(
                {"from": "human", "value": f"<image>\n{question}" if index == 0 else question}
            )
            conversation.append({"from": "gpt", "value": answer})
        records.append(
            {
                "id": f"{item.pair_sha256[:16]}-{category}",
                "image": item.image,
                "category": category,
                "conversations": conversation,
            }
        )
    return records


def alignment_record(item: QAInput) -> dict[str, Any]:
    """Stage 1: a brief-description instruction (fixed list, picked by the pair) and the caption."""
    instruction = BRIEF_INSTRUCTIONS[int(item.pair_sha256[:8], 16) % len(BRIEF_INSTRUCTIONS)]
    return {
        "id": f"{item.pair_sha256[:16]}-align",
        "image": item.image,
        "conversations": [
            {"from": "human", "value": f"<image>\n{instruction}"},
            {"from": "gpt", "value": caption_body(item.caption)},
        ],
    }


# ---------------------------------------------------------------------------- the stage


@dataclass
class GenerationSummary:
    parent: str
    instruct_id: str
    align_id: str
    pairs: int
    generated: int  # this run
    cached: int
    failed: int
    dropped_turns: int
    records: dict[str, int]
    failures: dict[str, str]


def load_inputs(engine: Engine, store: ArtifactStore, version: str) -> tuple[str, list[QAInput]]:
    row = find_version(engine, version)
    if row.kind != "curated":
        raise LdrtError(f"dataset {row.id[:12]} is a {row.kind!r} version; give a curated one")
    manifest = json.loads(store.get(row.manifest_key))
    records = {}
    for split in ("train", "eval"):
        for line in store.get(f"datasets/{row.id}/{split}.jsonl").decode().splitlines():
            record = json.loads(line)
            records[record["id"]] = record
    items = []
    for member in manifest["members"]:
        record = records[member["pair"][:16]]
        items.append(
            QAInput(
                pair_sha256=member["pair"],
                image=record["image"],
                caption=record["caption"],
                mentions=tuple(record.get("mentions") or ()),
                title=record.get("paper_title", ""),
                split=member["split"],
            )
        )
    return row.id, items


def generate_for_dataset(
    engine: Engine,
    store: ArtifactStore,
    version: str,
    generator: QAGenerator,
    *,
    batch_size: int = 64,
    flow_run_id: str | None = None,
) -> GenerationSummary:
    parent, items = load_inputs(engine, store, version)
    results: dict[str, QAResult] = {}
    todo = []
    for item in items:
        key = _cache_key_path(generator, item)
        if store.exists(key):
            cached = json.loads(store.get(key))
            results[item.pair_sha256] = QAResult(
                {c: [tuple(t) for t in turns] for c, turns in cached["conversations"].items()},
                cached["dropped_turns"],
            )
        else:
            todo.append(item)
    cached_count = len(results)
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        for item, result in zip(batch, generator.generate(batch), strict=True):
            results[item.pair_sha256] = result
            if result.error is None:  # failures are not cached: a later run tries again
                payload = {
                    "conversations": result.conversations,
                    "dropped_turns": result.dropped_turns,
                    "prompt_version": PROMPT_VERSION,
                    "model_id": generator.model_id,
                    "sampling": generator.sampling,
                }
                store.put(
                    _cache_key_path(generator, item), json.dumps(payload).encode(), overwrite=True
                )
    failures = {sha[:16]: str(r.error) for sha, r in results.items() if r.error}
    if items and len(failures) == len(items):  # an outage, not bad pairs: no empty version
        first = next(iter(failures.values()))
        raise LdrtError(
            f"no conversation could be generated: all {len(items)} pairs failed (the first: "
            f"{first}); no dataset version was stored, run it again once that is fixed"
        )
    files: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        result = results[item.pair_sha256]
        files.setdefault(f"align_{item.split}.json", []).append(alignment_record(item))
        if result.error is None:
            files.setdefault(f"llava_instruct_{item.split}.json", []).extend(
                llava_records(item, result)
            )
    instruct_id = _derive(
        engine, store, parent, "instruct", items, results, files, generator, flow_run_id
    )
    align_id = _derive(engine, store, parent, "align", items, results, files, None, flow_run_id)
    return GenerationSummary(
        parent=parent,
        instruct_id=instruct_id,
        align_id=align_id,
        pairs=len(items),
        generated=len(todo) - sum(1 for i in todo if results[i.pair_sha256].error),
        cached=cached_count,
        failed=len(failures),
        dropped_turns=sum(len(r.dropped_turns) for r in results.values()),
        records={name: len(rows) for name, rows in sorted(files.items())},
        failures=failures,
    )


def _cache_key_path(generator: QAGenerator, item: QAInput) -> str:
    key = generator.cache_key(item)
    return f"qa/{key[:2]}/{key}.json"


def _derive(
    engine: Engine,
    store: ArtifactStore,
    parent: str,
    kind: str,
    items: Sequence[QAInput],
    results: dict[str, QAResult],
    files: dict[str, list[dict[str, Any]]],
    generator: QAGenerator | None,
    flow_run_id: str | None,
) -> str:
    prefix = "llava_instruct_" if kind == "instruct" else "align_"
    members = [
        {"pair": i.pair_sha256, "split": i.split}
        for i in items
        if kind == "align" or results[i.pair_sha256].error is None
    ]
    spec: dict[str, Any] = {"kind": kind, "parent": parent}
    if generator is not None:
        spec |= {
            "prompt_version": PROMPT_VERSION,
            "model_id": generator.model_id,
            "sampling": generator.sampling,
        }
    else:
        spec["align_version"] = ALIGN_VERSION
    body = {name: rows for name, rows in files.items() if name.startswith(prefix)}
    digest_input = json.dumps({**spec, "members": members, "files": body}, sort_keys=True).encode()
    version = hashlib.sha256(digest_input).hexdigest()
    manifest = {**spec, "members": members, "files": sorted(body)}
    manifest_key = store.put(
        f"datasets/{version}/manifest.json", json.dumps(manifest, indent=1).encode(), overwrite=True
    ).key
    for name, rows in body.items():
        store.put(
            f"datasets/{version}/{name}",
            json.dumps(rows, ensure_ascii=False, indent=1).encode(),
            overwrite=True,
        )
    with session_scope(engine) as session:
        if session.get(DatasetVersion, version) is None:
            session.add(
                DatasetVersion(
                    id=version,
                    kind=kind,
                    parent_id=parent,
                    config_hash=hashlib.sha256(
                        json.dumps(spec, sort_keys=True).encode()
                    ).hexdigest(),
                    manifest_key=manifest_key,
                    stats={"records": {n: len(r) for n, r in body.items()}, "pairs": len(members)},
                    flow_run_id=flow_run_id,
                )
            )
            # Result has keys(): dict(result) would take it for a mapping.
            pair_ids = {
                sha: pair_id
                for sha, pair_id in session.execute(
                    select(Pair.content_sha256, Pair.id).where(
                        Pair.content_sha256.in_([m["pair"] for m in members])
                    )
                )
            }
            for member in members:
                session.add(
                    DatasetMember(
                        dataset_id=version,
                        pair_id=pair_ids[member["pair"]],
                        split=member["split"],
                        content_sha256=member["pair"],
                    )
                )
    return version
