"""The evaluation stage: a training run in, both models' answers, scores and a report out.

Input: a completed training run, a baseline ("base": the base model it was trained from, or
another run), judges (`Judge`s over any `LLMClient`; none is fine) and sampling settings. Output:
an `evaluation_runs` row per model with an `evaluation_scores` row per item and metric (ROUGE-1/2/L,
length ratio, hedging words, each judge's 0-10; an unparsable verdict is a null value with its
error, never a 0) and the report (markdown, JSON, plots) in the store under
`reports/<evaluation id>/`.

Answers and verdicts are cached in the store, so evaluating again (more judges, a new report)
only asks what is new.
"""

from __future__ import annotations

import gc
import hashlib
import importlib.util
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from sqlalchemy import Engine

from ldrt_core.config import Settings
from ldrt_core.db import session_scope
from ldrt_core.db.models import EvaluationRun, EvaluationScore, Pair, TrainingRun
from ldrt_core.errors import LdrtError
from ldrt_core.evaluate.answer import (
    ANSWER_PROMPT_VERSION,
    Answerer,
    Sampling,
    TransformersAnswerer,
    answer_items,
    answerer_for_run,
    load_eval_items,
)
from ldrt_core.evaluate.judge import (
    JUDGE_PROMPT_VERSION,
    Judge,
    JudgeItem,
    PairItem,
    summarize_pairwise,
)
from ldrt_core.evaluate.metrics import DEFAULT_HEDGES, hedges_per_answer, length_ratio, rouge
from ldrt_core.evaluate.records import EvalItem, ItemResult, JudgeScore, ModelResult
from ldrt_core.evaluate.report import build_report
from ldrt_core.store import ArtifactStore
from ldrt_core.train.runs import find_run

__all__ = ["NO_JUDGE_NOTE", "EvaluationSummary", "evaluate_run", "latest_report", "open_judges"]

NO_JUDGE_NOTE = (
    "set LDRT_JUDGES to one or more OpenAI-compatible models, e.g. "
    "`LDRT_JUDGES=Qwen/Qwen2-72B-Instruct@http://judge:8000/v1` (served by `vllm serve`), or "
    "pass `--judge MODEL[@URL]` to `ldrt evaluate`."
)

Progress = Callable[[str, int, int], None]  # (what, done, total)


@dataclass
class EvaluationSummary:
    evaluations: dict[str, str]  # model label -> evaluation run id
    report_prefix: str
    items: int
    judges: list[str]
    data: dict[str, Any] = field(default_factory=dict)


def evaluate_run(
    engine: Engine,
    store: ArtifactStore,
    *,
    run: str,
    baseline: str = "base",
    judges: Sequence[Judge] = (),
    dataset: str | None = None,
    limit: int | None = None,
    sampling: Sampling | None = None,
    base_model: str | None = None,
    batch_size: int = 8,
    backend: str = "transformers",
    work_dir: Path | None = None,
    pairwise: bool = False,
    progress: Progress | None = None,
    flow_run_id: str | None = None,
) -> EvaluationSummary:
    """Answer, score and report `run` against `baseline` on the eval split of its dataset.

    `backend`: "transformers" (here, CPU or GPU) or "vllm" (in-process on a CUDA host; each run
    is written once to `work_dir/models/<run>-vllm` with its projector and its adapter kept
    unmerged, applied per request with a `LoRARequest`). `pairwise`: each judge also compares
    the two answers to every question, in both orders (an inconsistent pair is a tie)."""
    sampling = sampling or Sampling()
    if backend not in ("transformers", "vllm"):
        raise LdrtError(f"answering backend {backend!r}: use transformers or vllm")
    if backend == "vllm" and importlib.util.find_spec("vllm") is None:
        raise LdrtError(
            "the vllm backend needs vllm (pip install -e '.[gpu]' on a CUDA host); "
            "answer with --backend transformers instead"
        )
    tuned_row = find_run(engine, run)
    if tuned_row.status != "completed":
        raise LdrtError(f"run {tuned_row.id[:12]} is {tuned_row.status}: evaluate a completed run")
    version, items = load_eval_items(engine, store, dataset or tuned_row.dataset_id, limit=limit)
    names = [judge.name for judge in judges]
    if len(set(names)) != len(names):
        raise LdrtError(f"two judges share a name: {names}")
    config = {
        "sampling": asdict(sampling),
        "answer_prompt": ANSWER_PROMPT_VERSION,
        "judge_prompt": JUDGE_PROMPT_VERSION,
        "judges": {judge.name: judge.model_id for judge in judges},
        "limit": limit,
        "baseline": baseline,
    }
    base_row = None if baseline == "base" else find_run(engine, baseline)
    plan = [
        ("base" if base_row is None else f"baseline {base_row.id[:8]}", base_row),
        (f"tuned {tuned_row.id[:8]}", tuned_row),
    ]
    results: list[ModelResult] = []
    evaluations: dict[str, str] = {}
    for label, row in plan:
        evaluation_id = str(uuid.uuid4())
        evaluations[label] = evaluation_id
        with session_scope(engine) as session:
            session.add(
                EvaluationRun(
                    id=evaluation_id,
                    training_run_id=row.id if row is not None else None,
                    dataset_id=version.id,
                    model_label=label,
                    status="running",
                    config=config,
                    flow_run_id=flow_run_id,
                )
            )
        try:
            model = base_model or tuned_row.base_model
            answerer = _answerer(
                engine, store, backend, model, row, sampling, base_model, work_dir or Path(".")
            )
            answers = answer_items(
                store,
                answerer,
                items,
                dataset_id=version.id,
                sampling=sampling,
                batch_size=batch_size,
                progress=_labelled(progress, f"{label}: answers"),
            )
            del answerer
            _free()
            result = _score(
                store, label, model if row is None else row.id, items, answers, judges, progress
            )
            _record_scores(engine, evaluation_id, version.id, items, result)
            results.append(result)
        except BaseException as exc:
            _finish(engine, evaluations.values(), None, exc)
            raise
    duels: dict[str, dict[str, int]] = {}
    if pairwise and judges:
        try:
            duels = _pairwise(engine, evaluations[plan[1][0]], judges, items, results, progress)
        except BaseException as exc:
            _finish(engine, evaluations.values(), None, exc)
            raise
    report = build_report(
        results[0],
        results[1],
        judges=names,
        judging_note=None if judges else NO_JUDGE_NOTE,
        pairwise=duels or None,
    )
    prefix = f"reports/{evaluations[plan[1][0]]}"
    for name, payload in report.files().items():
        store.put(f"{prefix}/{name}", payload, overwrite=True)
    _finish(engine, evaluations.values(), f"{prefix}/report.md", None)
    return EvaluationSummary(evaluations, prefix, len(items), names, report.data)


def _answerer(
    engine: Engine,
    store: ArtifactStore,
    backend: str,
    model: str,
    row: TrainingRun | None,
    sampling: Sampling,
    base_model: str | None,
    work_dir: Path,
) -> Answerer:
    if backend == "transformers":
        if row is None:
            return TransformersAnswerer(model, sampling=sampling)
        return answerer_for_run(engine, store, row.id, sampling, base_model)
    from ldrt_core.evaluate.answer import VLLMAnswerer
    from ldrt_core.train.runs import merge_run

    if row is None:
        return VLLMAnswerer(Path(model), lora=False, sampling=sampling)
    # Merged onto the run's own base model, or onto the one given: each its own folder.
    other = f"-{hashlib.sha256(base_model.encode()).hexdigest()[:8]}" if base_model else ""
    served = work_dir / "models" / f"{row.id}{other}-vllm"
    if not (served / "config.json").is_file():
        merge_run(engine, store, row.id, served, base_model=base_model, keep_adapter=True)
    return VLLMAnswerer(served, lora=(served / "adapter").is_dir(), sampling=sampling)


def _pairwise(
    engine: Engine,
    evaluation_id: str,
    judges: Sequence[Judge],
    items: Sequence[EvalItem],
    results: Sequence[ModelResult],
    progress: Progress | None,
) -> dict[str, dict[str, int]]:
    """Each judge's baseline-vs-tuned verdicts: counted for the report, and recorded on the tuned
    evaluation as `pairwise:<judge>` (1 tuned better, 0 baseline better, 0.5 tie, null none)."""
    baseline, tuned = results
    pairs = [
        PairItem(
            item_id=item.item_id,
            category=item.category,
            question=item.question,
            reference=item.reference,
            caption=item.caption,
            mentions=item.mentions,
            answer_a=a.answer,
            answer_b=b.answer,
        )
        for item, a, b in zip(items, baseline.items, tuned.items, strict=True)
    ]
    counts: dict[str, dict[str, int]] = {}
    value = {"a": 0.0, "b": 1.0, "tie": 0.5}
    for judge in judges:
        verdicts = judge.compare(pairs)
        counts[judge.name] = summarize_pairwise(verdicts)
        with session_scope(engine) as session:
            for item, verdict in zip(items, verdicts, strict=True):
                session.add(
                    EvaluationScore(
                        evaluation_run_id=evaluation_id,
                        item_id=item.item_id[:128],
                        category=item.category[:32],
                        metric=f"pairwise:{judge.name}"[:128],
                        value=value.get(verdict.winner) if verdict.winner else None,
                        detail={"consistent": verdict.consistent, "error": verdict.error},
                    )
                )
        if progress is not None:
            progress(f"pairwise: judge {judge.name}", len(pairs), len(pairs))
    return counts


def _labelled(progress: Progress | None, what: str) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    report = progress
    return lambda done, total: report(what, done, total)


def _score(
    store: ArtifactStore,
    label: str,
    model: str,
    items: Sequence[EvalItem],
    answers: Sequence[str],
    judges: Sequence[Judge],
    progress: Progress | None,
) -> ModelResult:
    hedges = hedges_per_answer(answers, DEFAULT_HEDGES)
    result = ModelResult(label=label, model=model)
    for item, answer, hedge in zip(items, answers, hedges, strict=True):
        result.items.append(
            ItemResult(
                item_id=item.item_id,
                category=item.category,
                answer=answer,
                reference=item.reference,
                rouge=rouge(answer, item.reference),
                length_ratio=length_ratio(answer, item.reference),
                hedges=hedge,
            )
        )
    for judge in judges:
        verdicts = _judge(store, judge, items, answers)
        for item_result, verdict in zip(result.items, verdicts, strict=True):
            item_result.judges[judge.name] = verdict
        if progress is not None:
            progress(f"{label}: judge {judge.name}", len(items), len(items))
    return result


def _judge(
    store: ArtifactStore, judge: Judge, items: Sequence[EvalItem], answers: Sequence[str]
) -> list[JudgeScore]:
    """Verdicts, cached per (judge, and what its prompt shows: caption, citing sentences,
    question, reference, answer); failures are asked again."""
    keys = [
        hashlib.sha256(
            json.dumps(
                [judge.model_id, i.item_id, i.caption, list(i.mentions), i.question, i.reference, a]
            ).encode()
        ).hexdigest()
        for i, a in zip(items, answers, strict=True)
    ]
    paths = [f"judgements/{k[:2]}/{k}.json" for k in keys]
    scores: dict[int, JudgeScore] = {}
    todo: list[int] = []
    for index, path in enumerate(paths):
        if store.exists(path):
            scores[index] = JudgeScore(**json.loads(store.get(path)))
        else:
            todo.append(index)
    asked = [
        JudgeItem(
            item_id=items[i].item_id,
            category=items[i].category,
            question=items[i].question,
            reference=items[i].reference,
            answer=answers[i],
            caption=items[i].caption,
            mentions=items[i].mentions,
        )
        for i in todo
    ]
    for index, verdict in zip(todo, judge.grade(asked) if asked else [], strict=True):
        score = JudgeScore(score=verdict.score, reason=verdict.reason, error=verdict.error)
        scores[index] = score
        if score.score is not None:
            store.put(paths[index], json.dumps(asdict(score)).encode(), overwrite=True)
    return [scores[i] for i in range(len(items))]


def _record_scores(
    engine: Engine,
    evaluation_id: str,
    dataset_id: str,
    items: Sequence[EvalItem],
    result: ModelResult,
) -> None:
    from sqlalchemy import select

    with session_scope(engine) as session:
        pairs = {
            sha[:16]: pair_id
            for pair_id, sha in session.execute(select(Pair.id, Pair.content_sha256))
        }
        for item, scored in zip(items, result.items, strict=True):
            pair_id = pairs.get(item.record_id.split("-", 1)[0])
            values: dict[str, tuple[float | None, dict[str, Any]]] = {
                **{name: (value, {}) for name, value in scored.rouge.items()},
                "length_ratio": (scored.length_ratio, {}),
                "hedges": (float(scored.hedges), {}),
            }
            for name, verdict in scored.judges.items():
                values[f"judge:{name}"] = (
                    verdict.score,
                    {"reason": verdict.reason, "error": verdict.error},
                )
            for metric, (value, detail) in values.items():
                session.add(
                    EvaluationScore(
                        evaluation_run_id=evaluation_id,
                        pair_id=pair_id,
                        item_id=item.item_id[:128],
                        category=item.category[:32],
                        metric=metric[:128],
                        value=value,
                        detail=detail,
                    )
                )


def _finish(
    engine: Engine, evaluation_ids: Any, report_key: str | None, exc: BaseException | None
) -> None:
    with session_scope(engine) as session:
        for evaluation_id in list(evaluation_ids):
            row = session.get(EvaluationRun, evaluation_id)
            if row is None or row.status != "running":
                continue
            row.finished_at = datetime.now(UTC)
            if exc is None:
                row.status, row.report_key = "completed", report_key
            else:
                row.status, row.error = "failed", f"{type(exc).__name__}: {exc}"[:4000]


def _free() -> None:
    """Give a model's GPU memory back before the next one loads (on CPU, dropping the last
    reference already frees it; a full collection there costs seconds in a big process)."""
    if torch.cuda.is_available():
        gc.collect()
        torch.cuda.empty_cache()


def latest_report(engine: Engine, run: str) -> EvaluationRun:
    """The newest completed evaluation of `run` (the tuned side) that has a report."""
    from sqlalchemy import select

    row = find_run(engine, run)
    with session_scope(engine) as session:
        found = session.scalars(
            select(EvaluationRun)
            .where(
                EvaluationRun.training_run_id == row.id,
                EvaluationRun.status == "completed",
                EvaluationRun.report_key.is_not(None),
                EvaluationRun.model_label.startswith("tuned"),
            )
            .order_by(EvaluationRun.created_at.desc())
        ).first()
    if found is None:
        raise LdrtError(f"run {row.id[:12]} has no evaluation report yet: run `ldrt evaluate`")
    return found


def open_judges(settings: Settings, specs: Sequence[str] | None = None) -> list[Judge]:
    """Judges from `specs` (None: LDRT_JUDGES; an empty list: none): each `MODEL[@BASE_URL]`,
    an OpenAI-compatible endpoint (LDRT_LLM_BASE_URL when no URL is given; LDRT_LLM_API_KEY),
    or `hf:DIR`, a local transformers model. Named by the model's last path part."""
    from ldrt_core.llm.factory import open_llm

    if specs is None:
        specs = [e.strip() for e in settings.judges.split(",") if e.strip()]
    entries = list(specs)
    judges: list[Judge] = []
    try:
        for entry in entries:
            if entry.startswith("hf:"):
                model, client = entry[3:], open_llm(settings, "hf", entry[3:])
            else:
                model, _, url = entry.partition("@")
                if not model:
                    raise LdrtError(f"judge {entry!r}: expected MODEL[@BASE_URL] or hf:DIR")
                client = open_llm(settings, "openai", model, url or None)
            judges.append(Judge(model.rstrip("/").rsplit("/", 1)[-1], client))
    except BaseException:
        for judge in judges:  # those opened before the one that failed (a model in memory)
            judge.client.close()
        raise
    return judges
