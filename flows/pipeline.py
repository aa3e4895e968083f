"""`pipeline`: the end-to-end DAG, the six stages in order, in one flow run.

    refresh -> extract -> curate -> qa -> train (align, instruct) -> evaluate

Each stage is its flow's body run inline (`StageTable.run`), not a subflow: its tasks and
artifacts are the pipeline run's own, so the run's graph in the UI is the whole task DAG, and a
retry makes no new flow runs. The stage flows stay deployable and runnable on their own.

Stages pass ids: curate's dataset version to qa, qa's instruct version to train, train's
instruct run to evaluate. When some items of refresh, extract or qa fail (`ItemsFailed`), the
pipeline goes on with the rest and ends Failed at the end, naming them; any other failure stops
it there. Retrying the pipeline's flow run retries the failed items (the stage flows see it as
a retry through `retry_failed`).

Its table artifact `ldrt-pipeline-summary` has each stage's outcome and counts, and
`ldrt-pipeline-failures` every stage's failed items (or a row saying none failed), also when a
stage stopped it (`stage_table`); what curation's filters dropped, the training runs and the
evaluation report have artifacts of their own.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.runners import task_runner
from flows.stages import (
    NonNegative,
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
from tasks.progress import FLUSH_ARTIFACTS


@flow(name="pipeline", task_runner=task_runner(), **FLUSH_ARTIFACTS)
def pipeline(
    source: str = "s2",
    query: str | None = None,
    max_papers: Positive | None = None,
    curation: dict[str, Any] | None = None,
    qa_backend: str | None = None,
    base_model: str | None = None,
    epochs: Positive | None = None,
    max_steps: Positive | None = None,
    lora_r: Positive | None = None,
    lora_alpha: Positive | None = None,
    align_lr: float | None = None,
    instruct_lr: float | None = None,
    checkpoint_every: NonNegative | None = None,
    judges: list[str] | None = None,
    eval_limit: Positive | None = None,
    max_new_tokens: Positive = 512,
) -> dict[str, Any]:
    """Refresh the corpus, extract, curate, generate QA, train both stages, evaluate.

    A parameter left empty takes the stage's default or its LDRT_* setting; see each stage's
    flow for what it means."""
    retry = is_retry()
    done: dict[str, Any] = {}
    with stage_table("pipeline", "pipeline: each stage's outcome and counts") as stages:
        done["refresh"] = stages.run(
            refresh_flow, source=source, query=query, max_papers=max_papers, retry_failed=retry
        )
        done["extract"] = stages.run(extract_flow, retry_failed=retry)
        done["curate"] = stages.run(curate_flow, config=curation)
        done["qa"] = stages.run(qa_flow, dataset=done["curate"], backend=qa_backend)
        done["train"] = stages.run(
            train_flow,
            dataset=done["qa"]["instruct"],
            base_model=base_model,
            epochs=epochs,
            max_steps=max_steps,
            lora_r=lora_r,
            lora_alpha=lora_alpha,
            align_lr=align_lr,
            instruct_lr=instruct_lr,
            checkpoint_every=checkpoint_every,
        )
        done["evaluate"] = stages.run(
            evaluate_flow,
            run=done["train"]["instruct"],
            judges=judges,
            limit=eval_limit,
            max_new_tokens=max_new_tokens,
        )
    stages.raise_failures("pipeline", done)
    return done
