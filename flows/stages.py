"""One Prefect flow per stage: refresh, extract, curate, qa, train, evaluate.

Each flow loads the settings from the environment once (they are never a flow parameter, so no
secret reaches the Prefect API), migrates the lineage database, runs its tasks and passes them
ids and store keys. At the end it publishes table artifacts: its counts, and for refresh,
extract and qa (whose items can fail) the failed items with their reasons, or a row saying none
failed; evaluate adds the report as markdown. Run inline by `pipeline` or `prepare`, a stage's
counts and failed items are rows of that flow's two tables instead (`stage_table`).

Per-item stages (the downloads of refresh, extract) run one task per paper or document, at most
LDRT_DOWNLOAD_WORKERS / LDRT_EXTRACT_WORKERS at a time, on the task runner LDRT_TASK_RUNNER
names (threads, or Dask: `flows.runners`). A bad item fails its own task run (its
reason recorded in the database) while the others finish; the flow then raises `ItemsFailed`
and ends Failed. Retrying the flow run (UI or `prefect flow-run retry`) retries the failed items
only: the done ones are no longer pending in the database.

Stage flows never persist their results (`persist_result=False`). A retried `pipeline` would
otherwise reuse each stage that completed the first time, with its old result, and an
extraction or a dataset built before the failed item was fixed would never see it. Instead each
stage runs again and finds in the database what is still to do: the items done the first time
are skipped, the failed ones are tried again, and the stages after them (curate, QA, train,
evaluate) run on the data that now includes them (training is Cached when its data is
unchanged). The tasks whose cache saves real work (extract-document, train-stage) persist
their results themselves.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Annotated, Any

from prefect import Flow, flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.futures import PrefectFuture, as_completed
from prefect.runtime import flow_run
from pydantic import Field

from flows.runners import task_runner
from ldrt_core.config import Settings, load_settings
from ldrt_core.errors import LdrtError
from ldrt_core.evaluate.answer import Sampling
from ldrt_core.evaluate.report import inline_plots
from ldrt_core.extract.stage import pending_documents
from ldrt_core.train.runs import find_run, resolve_dataset, stage_configs
from tasks.progress import FLUSH_ARTIFACTS, ProgressArtifact, publish
from tasks.resources import artifact_store, migrated_lineage
from tasks.stages import (
    build_dataset_task,
    discover_papers,
    download_paper_task,
    evaluate_run_task,
    extract_document_task,
    generate_qa_task,
    train_stage_task,
)

# Bounds of flow parameters, the ones `ldrt` enforces: Prefect checks them when a run is created
# (UI, API, a deployment's trigger) and when the flow is called, before the flow does anything.
Positive = Annotated[int, Field(ge=1)]
NonNegative = Annotated[int, Field(ge=0)]

MAX_FAILURES_SHOWN = 200  # rows of the failures table; the database keeps them all
REPORT_LINK_DAYS = 7  # S3's longest presigned expiry
NONE_FAILED = {"item": "none", "reason": ""}  # the failures table of a run where none did


class ItemsFailed(LdrtError):
    """Some items of a stage failed (each recorded with its reason); the rest are done.

    `summary` is what the stage returns when nothing fails, so a pipeline can carry on."""

    def __init__(self, stage: str, failures: Sequence[tuple[str, str]], summary: Any) -> None:
        shown = "; ".join(f"{item}: {reason}" for item, reason in list(failures)[:3])
        more = f" (and {len(failures) - 3} more)" if len(failures) > 3 else ""
        super().__init__(f"{stage}: {len(failures)} item(s) failed: {shown}{more}")
        self.stage, self.failures, self.summary = stage, list(failures), summary

    def __reduce__(self) -> tuple[Any, ...]:  # results may be pickled: keep the fields
        return (type(self), (self.stage, self.failures, self.summary))


# ----------------------------------------------------------------------------- helpers


@dataclass
class ItemResults:
    done: list[Any] = field(default_factory=list)  # results of the task runs that completed
    failures: list[tuple[str, str]] = field(default_factory=list)  # (item, reason)


def run_items(
    items: Iterable[Hashable],
    submit: Callable[[Any], PrefectFuture[Any]],
    *,
    limit: int,
    what: str,
    progress_every_s: float,
) -> ItemResults:
    """One task run per item, at most `limit` running at once (the others wait unsubmitted, so
    the UI shows them as not started rather than as running), with a progress artifact."""
    waiting = deque(items)
    total = len(waiting)
    running: dict[PrefectFuture[Any], Hashable] = {}
    results = ItemResults()
    progress = ProgressArtifact(what, progress_every_s)
    if total:
        progress(0, total)  # the work starts: the bar's clock with it
    while waiting or running:
        while waiting and len(running) < limit:
            item = waiting.popleft()
            running[submit(item)] = item
        future = next(as_completed(list(running)))
        item = running.pop(future)
        future.wait()  # sets the final state locally; `state` alone may ask the API, which lags
        state = future.state
        if state.is_completed():
            results.done.append(future.result())
        else:
            error = state.result(raise_on_failure=False)
            reason = str(error) if isinstance(error, BaseException) else str(state.message)
            results.failures.append((str(item), reason))
        progress(len(results.done) + len(results.failures), total)
    return results


def publish_summary(
    stage: str,
    settings: Settings,
    counts: dict[str, Any],
    failures: Sequence[tuple[str, str]] | None = None,
) -> None:
    """The table artifacts the UI shows at the end of a stage: counts, and, for a stage whose
    items can fail (`failures` not None), the failed items with their reasons (secrets
    scrubbed). Inside `stage_table` (a flow running stages inline), both are rows of that
    flow's tables instead of tables of their own."""
    scrubbed = [(settings.scrub(item), settings.scrub(reason)) for item, reason in failures or ()]
    table = _stage_table.get()
    if table is not None:
        table.counts(stage, counts)
        table.item_failures.extend((f"{stage} {item}", reason) for item, reason in scrubbed)
        return
    publish(
        create_table_artifact,
        [{"metric": name, "value": str(value)} for name, value in counts.items()],
        key=f"ldrt-{stage}-summary",
        description=f"{stage}: counts",
    )
    if failures is not None:
        publish_failures(stage, scrubbed)


def publish_failures(name: str, failures: Sequence[tuple[str, str]]) -> None:
    """`ldrt-<name>-failures`: the items that failed and why, or one row saying none did.

    Published also when none failed: the UI shows a key's latest version, which would otherwise
    go on listing the failures of an earlier run that a later one has fixed."""
    rows = [{"item": item, "reason": reason} for item, reason in failures[:MAX_FAILURES_SHOWN]]
    publish(
        create_table_artifact,
        rows or [NONE_FAILED],
        key=f"ldrt-{name}-failures",
        description=f"{name}: {len(failures)} failed" if failures else f"{name}: none failed",
    )


class StageTable:
    """The stages a flow runs inline (`run`), kept as one table: for each stage in turn, its
    outcome, then its counts (or, for a stage without counts, what it returned); and the
    stages whose items failed (`raise_failures`)."""

    def __init__(self) -> None:
        self._stages: dict[str, tuple[str | None, list[tuple[str, str]]]] = {}
        self.failed: list[ItemsFailed] = []
        self.item_failures: list[tuple[str, str]] = []  # ("<stage> <item>", reason), scrubbed

    def run(self, stage: Flow[..., Any], **parameters: Any) -> Any:
        """Run a stage flow's body inside the current flow run (the pipeline's) and note its
        outcome; some failed items (ItemsFailed) let the cycle go on with the rest.

        Its tasks become the pipeline run's own, on the pipeline's task runner, and its
        artifacts the pipeline run's. A subflow run per stage cost the pipeline about 0.3 s
        each in API calls (create the run and its parent task run, set Pending, Running,
        Completed, each orchestrated by the server) and as much again in server CPU, which
        `bench/orchestration.py` counts; and a retried pipeline ran six new subflow runs where
        only the failed task needed to run again."""
        try:
            output = stage.fn(**parameters)
        except ItemsFailed as error:
            self.failed.append(error)
            self.outcome(stage.name, f"{len(error.failures)} item(s) failed", error.summary)
            return error.summary
        except Exception as error:
            self.outcome(stage.name, f"failed: {type(error).__name__} (see the run's logs)")
            raise
        self.outcome(stage.name, "ok", output)
        return output

    def raise_failures(self, flow_name: str, summary: Any) -> None:
        """End the flow Failed, naming every item that failed in its stages, if any did."""
        if self.failed:
            failures = [
                (f"{error.stage} {item}", reason)
                for error in self.failed
                for item, reason in error.failures
            ]
            raise ItemsFailed(flow_name, failures, summary)

    def counts(self, stage: str, counts: dict[str, Any]) -> None:
        _, rows = self._stages.setdefault(stage, (None, []))
        rows.extend((name, str(value)) for name, value in counts.items())

    def outcome(self, stage: str, outcome: str, output: Any = None) -> None:
        _, rows = self._stages.get(stage, (None, []))
        if not rows and output is not None:
            rows = [("output", _brief(output))]
        self._stages[stage] = (outcome, rows)

    def rows(self) -> list[dict[str, str]]:
        return [
            {"stage": stage, "metric": metric, "value": value}
            for stage, (outcome, rows) in self._stages.items()
            for metric, value in [("outcome", outcome or "did not end"), *rows]
        ]


_stage_table: ContextVar[StageTable | None] = ContextVar("ldrt_stage_table", default=None)


@contextmanager
def stage_table(flow_name: str, description: str) -> Iterator[StageTable]:
    """The block's stages (`StageTable.run`) and their counts go into one table artifact,
    `ldrt-<flow_name>-summary`, and their failed items into one more,
    `ldrt-<flow_name>-failures` (saying none when none did), both published when the block
    ends, also when a stage stops it.

    Two tables in place of two per stage: what the pipeline did reads in one place, and each
    artifact costs the server 7 to 10 ms of CPU on the work's machine."""
    table = StageTable()
    token = _stage_table.set(table)
    try:
        yield table
    finally:
        _stage_table.reset(token)
        publish(
            create_table_artifact,
            table.rows(),
            key=f"ldrt-{flow_name}-summary",
            description=description,
        )
        publish_failures(flow_name, table.item_failures)


def _brief(output: Any) -> str:
    if isinstance(output, dict):
        return ", ".join(f"{k}: {v}" for k, v in output.items() if not isinstance(v, dict))
    return str(output)


def is_retry() -> bool:
    """True when this flow run is being retried: then failed items are tried again."""
    return flow_run.get_run_count() > 1


# ----------------------------------------------------------------------------- flows


@flow(name="refresh", task_runner=task_runner(), persist_result=False, **FLUSH_ARTIFACTS)
def refresh_flow(
    source: str = "s2",
    query: str | None = None,
    since: dt.date | None = None,
    max_papers: Positive | None = None,
    retry_failed: bool = False,
) -> dict[str, Any]:
    """Find papers new since the last refresh and store each PDF once (one task per paper).

    source: 's2' (Semantic Scholar) or 'folder:PATH'; query: default LDRT_REFRESH_QUERY;
    since: search from this date instead of the cursor; retry_failed: download again the papers
    that failed before (always on when the flow run is retried)."""
    settings = load_settings()
    migrated_lineage(settings)
    found = discover_papers(
        settings,
        source,
        query or settings.refresh_query,
        since=since,
        max_papers=max_papers,
        retry_failed=retry_failed or is_retry(),
    )
    results = run_items(
        found.to_download,
        lambda paper_id: download_paper_task.submit(settings, paper_id, source),
        limit=settings.download_workers,
        what="downloading PDFs",
        progress_every_s=settings.progress_every_s,
    )
    counts: dict[str, Any] = {
        "source": found.source,
        "since": found.since.isoformat() if found.since else "the beginning",
        "found": found.found,
        "new": found.new,
        "without an open PDF": found.no_pdf,
        "to download": len(found.to_download),
        "downloaded": len(results.done),
        "already stored": sum(not o.stored for o in results.done),
        "failed": len(results.failures),
    }
    publish_summary("refresh", settings, counts, results.failures)
    if results.failures:
        raise ItemsFailed("refresh", results.failures, counts)
    return counts


@flow(name="extract", task_runner=task_runner(), persist_result=False, **FLUSH_ARTIFACTS)
def extract_flow(retry_failed: bool = False) -> dict[str, Any]:
    """Figures, captions and markdown from every stored document not yet extracted (one task
    per PDF, LDRT_EXTRACT_WORKERS at a time, each in an isolated worker process).

    retry_failed: try again the documents that failed before (on when the run is retried)."""
    settings = load_settings()
    engine = migrated_lineage(settings)
    retry = retry_failed or is_retry()
    todo = pending_documents(engine, retry_failed=retry)
    # A failed document is only redone when forced; new and outdated ones never need it.
    failed_before = set(todo) - set(pending_documents(engine)) if retry else set()
    results = run_items(
        todo,
        lambda sha: extract_document_task.submit(settings, sha, force=sha in failed_before),
        limit=settings.extract_workers,
        what="extracting PDFs",
        progress_every_s=settings.progress_every_s,
    )
    counts: dict[str, Any] = {
        "documents": len(todo),
        "extracted": sum(o.status == "ok" for o in results.done),
        "already done": sum(o.status == "skipped" for o in results.done),
        "failed": len(results.failures),
        "pages": sum(o.pages for o in results.done),
        "figures": sum(o.figures for o in results.done),
    }
    publish_summary("extract", settings, counts, results.failures)
    if results.failures:
        raise ItemsFailed("extract", results.failures, counts)
    return counts


@flow(name="curate", persist_result=False, **FLUSH_ARTIFACTS)
def curate_flow(config: dict[str, Any] | None = None) -> str:
    """Filter, split and version the extracted figure-caption pairs; returns the dataset id.

    config: curation settings (filters, eval_share, near_duplicate_distance, split_salt)."""
    settings = load_settings()
    migrated_lineage(settings)
    built = build_dataset_task(settings, config)
    stats = built.stats
    splits = stats.get("splits", {})
    counts: dict[str, Any] = {
        "dataset": built.id,
        "new version": built.created,
        "candidate pairs": stats.get("candidates"),
        "train pairs": splits.get("train"),
        "eval pairs": splits.get("eval"),
        "train papers": stats.get("train_papers"),
        "eval papers": stats.get("eval_papers"),
        "eval dropped as near duplicates": stats.get("eval_dropped_as_near_duplicates"),
    }
    publish_summary("curate", settings, counts)
    publish(
        create_table_artifact,
        [
            {
                "filter": step["name"],
                "seen": step["seen"],
                "kept": step["kept"],
                "dropped": step["dropped"],
                "reasons": ", ".join(f"{r} ({n})" for r, n in step["reasons"].items()),
            }
            for step in stats.get("filters", [])
        ],
        key="ldrt-curate-filters",
        description="curate: what each filter kept and dropped",
    )
    return built.id


@flow(name="qa", persist_result=False, **FLUSH_ARTIFACTS)
def qa_flow(
    dataset: str = "latest", backend: str | None = None, model: str | None = None
) -> dict[str, str]:
    """LLaVA conversations for every pair of a curated dataset (cached per pair).

    Returns the derived versions: {"instruct": id, "align": id}. backend: template, openai,
    hf or vllm (default LDRT_LLM_BACKEND); model: default LDRT_LLM_MODEL."""
    settings = load_settings()
    migrated_lineage(settings)
    summary = generate_qa_task(settings, dataset, backend, model)
    versions = {"instruct": summary.instruct_id, "align": summary.align_id}
    counts: dict[str, Any] = {
        "dataset": summary.parent,
        "pairs": summary.pairs,
        "generated": summary.generated,
        "from cache": summary.cached,
        "failed": summary.failed,
        "leaking turns dropped": summary.dropped_turns,
        **{f"{kind} version": version for kind, version in versions.items()},
        **{f"records in {name}": n for name, n in summary.records.items()},
    }
    failures = sorted(summary.failures.items())
    publish_summary("qa", settings, counts, failures)
    if failures:
        raise ItemsFailed("qa", failures, versions)
    return versions


@flow(name="train", persist_result=False, **FLUSH_ARTIFACTS)
def train_flow(
    dataset: str = "latest",
    base_model: str | None = None,
    stage: str = "both",
    from_run: str | None = None,
    epochs: Positive | None = None,
    max_steps: Positive | None = None,
    batch_size: Positive | None = None,
    grad_accum: Positive | None = None,
    align_lr: float | None = None,
    instruct_lr: float | None = None,
    projector_lr: float | None = None,
    lora_r: Positive | None = None,
    lora_alpha: Positive | None = None,
    max_length: Annotated[int, Field(ge=16)] | None = None,
    checkpoint_every: NonNegative | None = None,
    precision: str | None = None,
    seed: NonNegative | None = None,
) -> dict[str, str]:
    """Fine-tune LLaVA: stage 1 aligns the projector, stage 2 tunes LoRA; returns the run id of
    each stage. A parameter left empty takes the stage's default (see `ldrt train --help`);
    base_model: default LDRT_BASE_MODEL."""
    settings = load_settings()
    engine = migrated_lineage(settings)
    configs = stage_configs(
        settings,
        stage,
        from_run=from_run,
        align_lr=align_lr,
        instruct_lr=instruct_lr,
        projector_lr=projector_lr,
        checkpoint_every=checkpoint_every,
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        grad_accum=grad_accum,
        lora_r=lora_r,
        lora_alpha=lora_alpha,
        max_length=max_length,
        precision=precision,
        seed=seed,
    )
    runs: dict[str, str] = {}
    rows = []
    # The full id, not the words given: it is part of the training's cache key, where 'latest'
    # would still hit the run trained from an older stage-1 run, and a prefix miss the full id.
    parent = find_run(engine, from_run).id if from_run else None
    for config in configs:
        name = config.stage
        version = resolve_dataset(engine, dataset, name).id
        summary = train_stage_task(
            settings,
            version,
            base_model or settings.base_model,
            config,
            parent,
        )
        runs[name] = parent = summary.run_id
        metrics = summary.metrics
        rows.append(
            {
                "stage": name,
                "run": summary.run_id,
                "dataset": summary.dataset_id,
                "steps": metrics.get("steps"),
                "first loss": metrics.get("first_loss"),
                "final loss": metrics.get("final_loss"),
                "samples": summary.data.get("samples"),
                "seconds": metrics.get("seconds"),
                "outputs": len(summary.outputs),
            }
        )
    publish(create_table_artifact, rows, key="ldrt-train-summary", description="train: runs")
    return runs


@flow(name="evaluate", persist_result=False, **FLUSH_ARTIFACTS)
def evaluate_flow(
    run: str = "latest",
    baseline: str = "base",
    judges: list[str] | None = None,
    dataset: str | None = None,
    limit: Positive | None = None,
    temperature: Annotated[float, Field(ge=0)] = 0.2,
    max_new_tokens: Positive = 512,
    base_model: str | None = None,
    backend: str = "transformers",
    pairwise: bool = False,
) -> dict[str, Any]:
    """Answer the held-out questions with the baseline and the tuned run, score them (judges,
    ROUGE, length ratio, hedging) and publish the report as a markdown artifact.

    judges: MODEL[@BASE_URL] or hf:DIR each (left empty: LDRT_JUDGES; an empty list: none,
    metrics only)."""
    settings = load_settings()
    migrated_lineage(settings)
    summary = evaluate_run_task(
        settings,
        run,
        baseline=baseline,
        judges=judges,
        dataset=dataset,
        limit=limit,
        sampling=Sampling(temperature=temperature, max_new_tokens=max_new_tokens),
        base_model=base_model,
        backend=backend,
        pairwise=pairwise,
    )
    report_key = f"{summary.report_prefix}/report.md"
    store = artifact_store(settings)
    counts: dict[str, Any] = {
        "questions": summary.items,
        "judges": ", ".join(summary.judges) or "none",
        **{f"evaluation of {label}": eid for label, eid in summary.evaluations.items()},
        "report": report_key,
        # Presigned on S3 (the bucket is private): anyone with the link reads it until then.
        f"report link (valid {REPORT_LINK_DAYS} days)": store.url_for(
            report_key, expires=dt.timedelta(days=REPORT_LINK_DAYS)
        ),
    }
    publish_summary("evaluate", settings, counts)
    publish(
        create_markdown_artifact,
        inline_plots(
            store.get(report_key).decode(),
            lambda name: store.get(f"{summary.report_prefix}/{name}"),
        ),
        key="ldrt-evaluation-report",
        description=f"evaluation report ({report_key})",
    )
    return {"evaluations": summary.evaluations, "report": report_key, "items": summary.items}
