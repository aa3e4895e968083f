"""What Prefect costs: the pipeline on the sample corpus under Prefect, and the same core calls
without it.

Input: a generated sample corpus (`--papers`, default 8) copied into two fresh embedded homes
(SQLite + local store). Output: the wall time of (a) the `pipeline` flow (refresh, extract,
curate, QA with the template backend, both training stages of the tiny random LLaVA for
`--steps` steps, evaluation without judges) against the Prefect API (PREFECT_API_URL, else a
temporary local server started before the clock starts) and (b) the same `ldrt_core` calls in
the same order in one process, and their ratio. Target: Prefect adds under 10%.

    python bench/orchestration.py [--papers 8] [--steps 10] [--questions 8]

Both runs do the same work on the same bytes; the difference is Prefect's task and flow
bookkeeping (API calls, state changes, artifacts, result persistence). The first run in a
process pays for imports: a warm-up run of the core path goes first, untimed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CURATION = {"eval_share": 0.35}


def core_path(home: Path, corpus: Path, steps: int, questions: int) -> None:
    """The pipeline's stages as plain calls, with the pipeline's parameters."""
    from ldrt_core import db
    from ldrt_core.config import load_settings
    from ldrt_core.curate.dataset import CurationConfig, build_dataset
    from ldrt_core.evaluate.answer import Sampling
    from ldrt_core.evaluate.stage import evaluate_run
    from ldrt_core.extract.isolation import IsolatedPool
    from ldrt_core.extract.stage import extract_document, options_from_settings, pending_documents
    from ldrt_core.qa import TemplateQAGenerator, generate_for_dataset
    from ldrt_core.refresh import refresh
    from ldrt_core.sources import open_source
    from ldrt_core.store import open_store
    from ldrt_core.train.loop import TrainConfig
    from ldrt_core.train.runs import train_stage

    settings = load_settings({"LDRT_HOME": str(home)})
    engine = db.connect(settings)
    db.upgrade(engine)
    store = open_store(settings)
    refresh(engine, store, open_source(settings, f"folder:{corpus}"), settings.refresh_query)
    with IsolatedPool(settings.extract_workers, options_from_settings(settings)) as pool:
        for sha in pending_documents(engine):
            extract_document(engine, store, sha, pool=pool)
    curated = build_dataset(engine, store, CurationConfig.from_mapping(CURATION)).id
    qa = generate_for_dataset(engine, store, curated, TemplateQAGenerator())
    parent = None
    for stage in ("align", "instruct"):
        config = TrainConfig.for_stage(
            stage, max_steps=steps, checkpoint_every=settings.train_checkpoint_every
        )
        run = train_stage(
            engine,
            store,
            settings.home,
            dataset=qa.instruct_id,
            base_model=settings.base_model,
            config=config,
            parent_run=parent,
        )
        parent = run.run_id
    assert parent is not None
    evaluate_run(
        engine,
        store,
        run=parent,
        limit=questions,
        sampling=Sampling(max_new_tokens=64),
        work_dir=settings.home,
    )


def prefect_path(home: Path, corpus: Path, steps: int, questions: int) -> None:
    from flows.pipeline import pipeline

    os.environ["LDRT_HOME"] = str(home)
    try:
        pipeline(
            source=f"folder:{corpus}",
            curation=CURATION,
            max_steps=steps,
            eval_limit=questions,
            max_new_tokens=64,
        )
    finally:
        del os.environ["LDRT_HOME"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--papers", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10, help="training steps per stage")
    parser.add_argument("--questions", type=int, default=8, help="held-out conversations")
    args = parser.parse_args()

    from ldrt_core.samples import write_sample_corpus

    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ldrt-bench-")))
        corpus = work / "corpus"
        write_sample_corpus(corpus, papers=args.papers, seed=0)
        core_path(work / "warm-up", corpus, args.steps, args.questions)  # imports, caches
        shutil.rmtree(work / "warm-up")

        if not os.environ.get("PREFECT_API_URL"):
            from prefect.testing.utilities import prefect_test_harness

            started = time.perf_counter()
            stack.enter_context(prefect_test_harness(server_startup_timeout=120))
            print(f"temporary Prefect server started in {time.perf_counter() - started:.1f} s")

        started = time.perf_counter()
        core_path(work / "core", corpus, args.steps, args.questions)
        core = time.perf_counter() - started

        started = time.perf_counter()
        prefect_path(work / "prefect", corpus, args.steps, args.questions)
        flows = time.perf_counter() - started

    print(
        f"\npapers {args.papers}, training steps {args.steps} per stage, "
        f"questions {args.questions}\n"
        f"core calls     {core:7.1f} s\n"
        f"under Prefect  {flows:7.1f} s\n"
        f"overhead       {flows - core:+7.1f} s ({(flows / core - 1) * 100:+.1f}%; target < +10%)"
    )


if __name__ == "__main__":
    main()
