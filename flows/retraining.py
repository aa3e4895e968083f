"""The two halves of the weekly cycle, each one deployment (see `deployments.deploy`):

    prepare: refresh -> extract -> curate -> qa, then the `ldrt.dataset.new-pairs` event
    retrain: train (align, instruct) -> evaluate, started by that event

`prepare` counts the training pairs of the new curated version that the model has not been
trained on yet: those missing from the curated version behind the latest completed training run
(all of them before the first training). So pairs accumulate from one weekly refresh to the next
until a retrain uses them, and the count drops back once it has. The event carries the count in
its payload and, for the deployment trigger to compare it with the threshold, as a zero-padded
resource label (`ldrt.new-pairs`); Prefect matches labels with globs, not payload numbers.

Event: name `ldrt.dataset.new-pairs`; resource `ldrt.dataset.<instruct version id>`; payload
{"new_pairs": N, "dataset": <curated id>, "instruct": <instruct id>, "added": M}, where M counts
the train pairs not in the previous curated version (what this refresh alone brought).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE, CachePolicy
from prefect.context import TaskRunContext
from prefect.events import emit_event
from prefect.runtime import flow_run

from flows.stages import (
    Positive,
    curate_flow,
    evaluate_flow,
    extract_flow,
    is_retry,
    qa_flow,
    refresh_flow,
    stage_table,
    train_flow,
)
from ldrt_core.config import Settings, load_settings
from ldrt_core.train.runs import count_new_pairs
from tasks.progress import FLUSH_ARTIFACTS
from tasks.resources import lineage, migrated_lineage

NEW_PAIRS_EVENT = "ldrt.dataset.new-pairs"
NEW_PAIRS_LABEL = "ldrt.new-pairs"  # the count, zero-padded to COUNT_WIDTH digits
COUNT_WIDTH = 9  # up to 999,999,999 pairs; more show as that


def count_label(new_pairs: int) -> str:
    """The count as the event's resource label: zero-padded, so globs can compare it."""
    return f"{min(max(new_pairs, 0), 10**COUNT_WIDTH - 1):0{COUNT_WIDTH}d}"


def at_least_globs(threshold: int) -> list[str]:
    """Glob patterns that match `count_label(n)` exactly when n >= threshold.

    A number is at least T when it equals T, or when, at the first digit where they differ, its
    digit is the larger one: one pattern per digit of T below 9 ("0000005[1-9]?" and so on)."""
    if threshold <= 0:
        return ["*"]
    digits = count_label(threshold)
    patterns = [digits]
    for i, d in enumerate(digits):
        if d != "9":
            rest = "?" * (COUNT_WIDTH - i - 1)
            low = int(d) + 1
            patterns.append(f"{digits[:i]}[{low}-9]{rest}" if low < 9 else f"{digits[:i]}9{rest}")
    return patterns


# ----------------------------------------------------------------------------- counting


@task(name="count-new-pairs", tags={"ldrt"}, cache_policy=NO_CACHE, retries=1)
def count_new_pairs_task(settings: Settings, dataset: str) -> dict[str, int]:
    """Train pairs of a curated version not yet trained on, and new since the one before."""
    return count_new_pairs(lineage(settings), dataset)


def _once_per_run(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    payload = parameters["payload"]
    return f"new-pairs:{flow_run.get_id()}:{payload['instruct']}:{payload['new_pairs']}"


@task(
    name="announce-new-pairs",
    tags={"ldrt"},
    # Keyed by the flow run on purpose: a retried `prepare` whose data came out the same shows
    # this Cached and sends nothing, so it starts no second retrain of the same version; new
    # data (the retry fixed an item) is announced, and each week's run announces its own.
    cache_policy=CachePolicy.from_cache_key_fn(_once_per_run),
    persist_result=True,
)
def announce_new_pairs(payload: dict[str, Any]) -> None:
    emit_event(
        event=NEW_PAIRS_EVENT,
        resource={
            "prefect.resource.id": f"ldrt.dataset.{payload['instruct']}",
            "prefect.resource.name": f"instruct dataset {payload['instruct'][:12]}",
            NEW_PAIRS_LABEL: count_label(payload["new_pairs"]),
        },
        payload=payload,
    )


# ----------------------------------------------------------------------------- flows


@flow(name="prepare", **FLUSH_ARTIFACTS)
def prepare(
    source: str = "s2",
    query: str | None = None,
    max_papers: Positive | None = None,
    curation: dict[str, Any] | None = None,
    qa_backend: str | None = None,
) -> dict[str, Any]:
    """Refresh the corpus, extract, curate and generate QA, then announce the training pairs
    not yet trained on (event `ldrt.dataset.new-pairs`); returns the event's payload.

    Items that fail in refresh, extract or qa do not stop it: the event is still sent for the
    rest, and the run then ends Failed naming them. Retrying the run sends the event again only
    when the data came out different (`announce_new_pairs`)."""
    settings = load_settings()
    migrated_lineage(settings)
    retry = is_retry()
    with stage_table(
        "prepare", "prepare: each stage's outcome and counts, the event sent"
    ) as stages:
        stages.run(
            refresh_flow, source=source, query=query, max_papers=max_papers, retry_failed=retry
        )
        stages.run(extract_flow, retry_failed=retry)
        dataset = stages.run(curate_flow, config=curation)
        versions = stages.run(qa_flow, dataset=dataset, backend=qa_backend)
        counts = count_new_pairs_task(settings, dataset)
        payload: dict[str, Any] = {
            "new_pairs": counts["new_pairs"],
            "added": counts["added"],
            "dataset": dataset,
            "instruct": versions["instruct"],
        }
        sent = announce_new_pairs(payload, return_state=True)
        if not sent.is_completed():
            sent.result()  # raises what failed
        stages.counts(NEW_PAIRS_EVENT, {**payload, **counts})
        stages.outcome(NEW_PAIRS_EVENT, "sent before" if sent.name == "Cached" else "sent")
    stages.raise_failures("prepare", payload)
    return payload


@flow(name="retrain", **FLUSH_ARTIFACTS)
def retrain(
    dataset: str = "latest",
    base_model: str | None = None,
    max_steps: Positive | None = None,
    judges: list[str] | None = None,
    eval_limit: Positive | None = None,
    max_new_tokens: Positive = 512,
) -> dict[str, Any]:
    """Train both stages on a dataset version (the instruct version the new-pairs event names),
    then evaluate the tuned run against the base model."""
    runs = train_flow(dataset=dataset, base_model=base_model, max_steps=max_steps)
    report = evaluate_flow(
        run=runs["instruct"],
        judges=judges,
        limit=eval_limit,
        max_new_tokens=max_new_tokens,
        base_model=base_model,
    )
    return {"train": runs, "evaluate": report}
