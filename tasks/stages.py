"""Prefect tasks over the `ldrt_core` stages: one core call each, with retries, timeouts, tags and
a cache policy. Tasks take the `Settings` and small ids or keys, and return the core's small
summary records (ids, counts, store keys), never payloads.

Cache policy, task by task. The lineage database is the source of truth for what is done: the
core functions skip finished work themselves (a downloaded paper, an extracted document, a QA
answer cached per pair in the store), and the flows only hand tasks the items the database says
are still to do. A Prefect cache is added where it saves real work and its key names everything
the result depends on, and never the flow-run id, so it holds across runs:

- extract-document: content-addressed key (PDF sha256, extractor version, extraction options,
  target database/store). A flow-run retry shows the done documents as Cached.
- train-stage: key (training data version, which is a content hash, base model, full training
  config, parent run, target). The same data and config do not train twice: a pipeline retried
  after a failed evaluation reuses its training runs. The parent run must be a full run id (the
  train flow resolves 'latest' and prefixes first): the words would name other runs later.
- everything else has NO_CACHE, because its result depends on state that is not in its inputs:
  discover-papers (the source and the refresh cursor move on), download-paper (a paper row id
  whose outcome depends on the network), build-dataset (reads every extracted figure; it is
  content-addressed itself), generate-qa (per-pair cache in the store, which also retries pairs
  that failed) and evaluate-run (each call is a new evaluation; answers and verdicts are cached
  in the store).

The target fingerprint in each key (database URL without password, store URL) keeps one
database's results from being reused against another. A cached result outlives a database
that is wiped in place; clear Prefect's result storage then, or bump the stage version.

Lookups that only read the database (which documents are pending, which dataset version a
training stage takes) are no tasks: the flows call them, as they open the engine. A task run
costs its flow a few milliseconds of its own and the server three state events to record, and
these showed nothing in the UI that the stage's table does not.

A bad item (a PDF that is refused or cannot be extracted) is recorded by the core function in
the database and then raised here as `ItemFailed`, so its task run fails; `ItemFailed` is not
retried (the same bytes fail the same way), other errors are.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE, CachePolicy
from prefect.client.schemas.objects import State, TaskRun
from prefect.context import TaskRunContext
from prefect.runtime import flow_run
from prefect.tasks import Task

from ldrt_core.config import Settings
from ldrt_core.curate.dataset import BuiltDataset, CurationConfig, build_dataset
from ldrt_core.errors import LdrtError
from ldrt_core.evaluate.answer import Sampling
from ldrt_core.evaluate.stage import EvaluationSummary, evaluate_run, open_judges
from ldrt_core.extract import EXTRACTOR_VERSION
from ldrt_core.extract.stage import (
    ExtractionOutcome,
    extract_document,
    options_from_settings,
)
from ldrt_core.qa import (
    GenerationSummary,
    LLMQAGenerator,
    QAGenerator,
    TemplateQAGenerator,
    generate_for_dataset,
)
from ldrt_core.refresh import Discovery, DownloadOutcome, discover, download_paper
from ldrt_core.sources import open_source
from ldrt_core.train.loop import TrainConfig
from ldrt_core.train.runs import RunSummary, train_stage
from tasks.progress import ProgressArtifact
from tasks.resources import artifact_store, extraction_pool, lineage, target_fingerprint

HOUR = 3600


class ItemFailed(LdrtError):
    """One item (a paper, a document) failed; its reason is recorded in the database."""


def _not_item_failure(_task: Task[..., Any], _run: TaskRun, state: State[Any]) -> bool:
    return not isinstance(state.data, ItemFailed)


def _flow_run_id() -> str | None:
    return flow_run.get_id()


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


# ----------------------------------------------------------------------------- refresh


@task(
    name="discover-papers",
    tags={"ldrt", "ldrt-refresh"},
    cache_policy=NO_CACHE,
    retries=1,
    retry_delay_seconds=60,
    timeout_seconds=2 * HOUR,
)
def discover_papers(
    settings: Settings,
    source: str,
    query: str,
    since: dt.date | None = None,
    max_papers: int | None = None,
    retry_failed: bool = False,
) -> Discovery:
    """Search the source from the cursor, upsert the papers; the ids of those needing a PDF."""
    paper_source = open_source(settings, source)
    try:
        return discover(
            lineage(settings),
            paper_source,
            query,
            since=since,
            max_papers=max_papers,
            overlap_days=settings.refresh_overlap_days,
            retry_failed=retry_failed,
            flow_run_id=_flow_run_id(),
        )
    finally:
        paper_source.close()


@task(
    name="download-paper",
    task_run_name="download-{paper_id}",
    tags={"ldrt", "ldrt-download"},
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[10, 60],
    retry_condition_fn=_not_item_failure,
    # No Prefect timeout: this task runs in a worker thread, where Prefect cannot interrupt it
    # (it only warns); the download's own connect/read timeouts and size cap bound it.
)
def download_paper_task(settings: Settings, paper_id: int, source: str) -> DownloadOutcome:
    """One paper's PDF into the store. A refused or broken PDF fails this run (ItemFailed)."""
    paper_source = open_source(settings, source)
    try:
        outcome = download_paper(
            lineage(settings),
            artifact_store(settings),
            paper_source,
            paper_id,
            retries=settings.download_retries,
            backoff_s=settings.download_backoff_s,
            flow_run_id=_flow_run_id(),
        )
    finally:
        paper_source.close()
    if outcome.status == "failed":
        raise ItemFailed(f"paper {outcome.external_id}: {outcome.error}")
    return outcome


# ----------------------------------------------------------------------------- extract


def _extract_key(_context: TaskRunContext, parameters: dict[str, Any]) -> str:
    settings: Settings = parameters["settings"]
    options = asdict(options_from_settings(settings))
    digest = _key(target_fingerprint(settings), EXTRACTOR_VERSION, options)
    return f"ldrt-extract-{parameters['sha256']}-{digest[:16]}"


@task(
    name="extract-document",
    task_run_name="extract-{sha256:.12}",
    tags={"ldrt", "ldrt-extract"},
    cache_policy=CachePolicy.from_cache_key_fn(_extract_key),
    persist_result=True,  # the cache needs it, whatever the flow persists
    retries=1,
    retry_delay_seconds=30,
    retry_condition_fn=_not_item_failure,
    # No Prefect timeout: this task runs in a worker thread, where Prefect cannot interrupt it
    # (it only warns); the isolated worker process stops a PDF after LDRT_EXTRACT_TIMEOUT_S.
)
def extract_document_task(
    settings: Settings, sha256: str, force: bool = False
) -> ExtractionOutcome:
    """Figures, captions and markdown of one stored PDF, in an isolated worker process."""
    options = options_from_settings(settings)
    outcome = extract_document(
        lineage(settings),
        artifact_store(settings),
        sha256,
        pool=extraction_pool(settings.extract_workers, options),
        flow_run_id=_flow_run_id(),
        force=force,
    )
    if outcome.status == "failed":
        raise ItemFailed(f"document {sha256[:12]}: {outcome.error}")
    return outcome


# ----------------------------------------------------------------------------- curate, QA


@task(
    name="build-dataset",
    tags={"ldrt", "ldrt-curate"},
    cache_policy=NO_CACHE,
    retries=1,
    retry_delay_seconds=30,
    timeout_seconds=4 * HOUR,
)
def build_dataset_task(settings: Settings, config: Mapping[str, Any] | None = None) -> BuiltDataset:
    """Filter, split and version every extracted figure (same inputs, same version id)."""
    curation = CurationConfig.from_mapping(config) if config else CurationConfig()
    return build_dataset(
        lineage(settings), artifact_store(settings), curation, flow_run_id=_flow_run_id()
    )


@task(
    name="generate-qa",
    tags={"ldrt", "ldrt-qa"},
    cache_policy=NO_CACHE,
    retries=1,
    retry_delay_seconds=60,
    timeout_seconds=48 * HOUR,
)
def generate_qa_task(
    settings: Settings, dataset: str, backend: str | None = None, model: str | None = None
) -> GenerationSummary:
    """Conversations for every pair of a curated dataset; a pair whose generation failed is
    counted in the summary (and tried again next time), not raised."""
    from ldrt_core.llm.factory import open_llm

    chosen = backend or settings.llm_backend
    client = None if chosen == "template" else open_llm(settings, chosen, model)
    generator: QAGenerator = TemplateQAGenerator() if client is None else LLMQAGenerator(client)
    try:
        return generate_for_dataset(
            lineage(settings),
            artifact_store(settings),
            dataset,
            generator,
            flow_run_id=_flow_run_id(),
        )
    finally:
        if client is not None:
            client.close()


# ----------------------------------------------------------------------------- train


def _train_key(_context: TaskRunContext, parameters: dict[str, Any]) -> str:
    settings: Settings = parameters["settings"]
    config: TrainConfig = parameters["config"]
    digest = _key(
        target_fingerprint(settings),
        parameters["dataset"],
        parameters["base_model"],
        config.as_dict(),
        parameters.get("parent_run"),
    )
    return f"ldrt-train-{config.stage}-{digest[:32]}"


@task(
    name="train-stage",
    task_run_name="train-{config.stage}",
    tags={"ldrt", "ldrt-train"},
    cache_policy=CachePolicy.from_cache_key_fn(_train_key),
    persist_result=True,  # the cache needs it, whatever the flow persists
    retries=0,  # a failed run is recorded; a retry of the flow run resumes it (train_stage)
    timeout_seconds=72 * HOUR,
)
def train_stage_task(
    settings: Settings,
    dataset: str,
    base_model: str,
    config: TrainConfig,
    parent_run: str | None = None,
) -> RunSummary:
    """One training stage of LLaVA; the step progress shows as a progress artifact."""
    progress = ProgressArtifact(f"training {config.stage}: steps", settings.progress_every_s)
    return train_stage(
        lineage(settings),
        artifact_store(settings),
        settings.home,
        dataset=dataset,
        base_model=base_model,
        config=config,
        parent_run=parent_run,
        on_step=lambda report: progress(report.step, report.total_steps),
        flow_run_id=_flow_run_id(),
        root_flow_run_id=flow_run.get_root_flow_run_id(),  # the same in every retry
    )


# ----------------------------------------------------------------------------- evaluate


@task(
    name="evaluate-run",
    tags={"ldrt", "ldrt-evaluate"},
    cache_policy=NO_CACHE,
    retries=1,  # answers and verdicts already made are cached in the store
    retry_delay_seconds=60,
    timeout_seconds=48 * HOUR,
)
def evaluate_run_task(
    settings: Settings,
    run: str,
    baseline: str = "base",
    judges: Sequence[str] | None = None,
    dataset: str | None = None,
    limit: int | None = None,
    sampling: Sampling | None = None,
    base_model: str | None = None,
    backend: str = "transformers",
    pairwise: bool = False,
) -> EvaluationSummary:
    """Answer the held-out questions with the baseline and the tuned model, score, report."""
    opened = open_judges(settings, judges)
    bars: dict[str, ProgressArtifact] = {}

    def progress(what: str, done: int, total: int) -> None:
        if what not in bars:
            bars[what] = ProgressArtifact(what, settings.progress_every_s)
        bars[what](done, total)

    try:
        return evaluate_run(
            lineage(settings),
            artifact_store(settings),
            run=run,
            baseline=baseline,
            judges=opened,
            dataset=dataset,
            limit=limit,
            sampling=sampling,
            base_model=base_model,
            backend=backend,
            work_dir=settings.home,
            pairwise=pairwise,
            progress=progress,
            flow_run_id=_flow_run_id(),
        )
    finally:
        for judge in opened:
            judge.client.close()


__all__ = [
    "ItemFailed",
    "build_dataset_task",
    "discover_papers",
    "download_paper_task",
    "evaluate_run_task",
    "extract_document_task",
    "generate_qa_task",
    "train_stage_task",
]
