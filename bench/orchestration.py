"""What Prefect costs: the pipeline on the sample corpus under Prefect, and the same core calls
without it.

Input: a generated sample corpus and `ldrt demo`'s configuration (8 papers, 20 training steps a
stage, LoRA r 16, 12 held-out conversations, 64 new tokens), each run in a fresh embedded home
(SQLite + local store). Output: the wall time of (a) the `pipeline` flow (refresh, extract,
curate, QA with the template backend, both training stages of the tiny random LLaVA,
evaluation without judges) against the Prefect API (PREFECT_API_URL, else a temporary local
server started before the clock starts; start your own with `flows/server.py`'s settings) and
(b) the same `ldrt_core` calls in the same order in one process; the median of `--repeat`
interleaved rounds of each and their ratio, and the median of the rounds' own ratios (each
round's two runs are seconds apart, so a machine that drifts slower or faster between rounds
shifts both) with a 95% bootstrap interval over the rounds. Target: Prefect adds under 10%; the
verdict says "met" when the whole interval is under 10%, "not met" when it is all above, and
otherwise that more rounds are needed to tell; with fewer than 5 rounds it gives none.

    python bench/orchestration.py [--papers 8] [--steps 20] [--questions 12] [--repeat 8]
    python bench/orchestration.py --corpus ../shared/corpus/pdfs   # real PDFs instead

With `--corpus`, a folder of real PDFs replaces the generated papers; they need not be about
LDRT, so the curation's relevance filter is left out.

Both runs do the same work on the same bytes; the difference is Prefect's task and flow
bookkeeping (API calls, state changes, artifacts, result persistence). Imports happen before
the clock, and a warm-up round of both paths goes first, untimed. Rounds alternate which path
goes first, and each run starts on an idle machine after a full garbage collection. On a
two-core machine the Prefect server (when local) competes with the work for the cores while the
run lasts, and that is counted.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CURATION: dict[str, Any] = {"eval_share": 0.35}  # as `ldrt demo`: a small corpus holds out more
LORA = {"lora_r": 16, "lora_alpha": 32}  # and the rest of the demo's training configuration
EPOCHS = 100  # as `ldrt demo`: enough that --steps decides (one epoch of 8 papers is 4 steps)
LR = 1e-2
NEW_TOKENS = 64
TARGET = 0.10  # Prefect adds under 10%
MIN_ROUNDS = 5  # fewer, and no verdict


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
    from ldrt_core.train.runs import stage_configs, train_stage

    settings = load_settings({"LDRT_HOME": str(home)})
    engine = db.connect(settings)
    db.upgrade(engine)
    store = open_store(settings)
    refresh(engine, store, open_source(settings, f"folder:{corpus}"), settings.refresh_query)
    with (  # as `ldrt extract --pending` and the extract flow: LDRT_EXTRACT_WORKERS at a time
        IsolatedPool(settings.extract_workers, options_from_settings(settings)) as pool,
        ThreadPoolExecutor(settings.extract_workers) as threads,
    ):
        todo = pending_documents(engine)
        for future in [threads.submit(extract_document, engine, store, s, pool=pool) for s in todo]:
            future.result()
    curated = build_dataset(engine, store, CurationConfig.from_mapping(CURATION)).id
    qa = generate_for_dataset(engine, store, curated, TemplateQAGenerator())
    parent = None
    configs = stage_configs(
        settings,
        "both",
        epochs=EPOCHS,
        max_steps=steps,
        align_lr=LR,
        instruct_lr=LR,
        checkpoint_every=0,
        **LORA,
    )
    for config in configs:
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
        sampling=Sampling(max_new_tokens=NEW_TOKENS),
        work_dir=settings.home,
    )


def prefect_path(home: Path, corpus: Path, steps: int, questions: int) -> None:
    from flows.pipeline import pipeline
    from tasks.resources import close_extraction_pools

    os.environ["LDRT_HOME"] = str(home)
    try:
        pipeline(
            source=f"folder:{corpus}",
            curation=CURATION,
            epochs=EPOCHS,
            max_steps=steps,
            align_lr=LR,
            instruct_lr=LR,
            checkpoint_every=0,
            eval_limit=questions,
            max_new_tokens=NEW_TOKENS,
            **LORA,
        )
    finally:
        del os.environ["LDRT_HOME"]
        # A worker runs each flow run in a new process, which starts its extraction pool, as
        # the core path does: no pool warmed by an earlier round.
        close_extraction_pools()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--papers", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20, help="training steps per stage")
    parser.add_argument("--questions", type=int, default=12, help="held-out conversations")
    parser.add_argument("--repeat", type=int, default=8, help="timed rounds of each path")
    parser.add_argument("--corpus", type=Path, help="a folder of real PDFs to use instead")
    args = parser.parse_args()

    import flows.pipeline  # imports before the clock, like the core path's warm-up
    from ldrt_core.samples import write_sample_corpus

    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ldrt-bench-")))
        if args.corpus:
            from ldrt_core.curate.filters import DEFAULT_CHAIN

            corpus = args.corpus.resolve()
            papers = f"{len(list(corpus.glob('*.pdf')))} real PDFs"
            CURATION["filters"] = [f for f in DEFAULT_CHAIN if f["name"] != "relevance"]
        else:
            corpus = work / "corpus"
            write_sample_corpus(corpus, papers=args.papers, seed=0)
            papers = f"{args.papers} sample papers"
        if not os.environ.get("PREFECT_API_URL"):
            from flows.server import temporary_server

            started = time.perf_counter()
            stack.enter_context(temporary_server())
            print(f"temporary Prefect server started in {time.perf_counter() - started:.1f} s")

        paths: dict[str, Callable[[Path, Path, int, int], None]] = {
            "core calls": core_path,
            "under Prefect": prefect_path,
        }
        times: dict[str, list[float]] = {name: [] for name in paths}
        for round_ in range(args.repeat + 1):  # round 0 warms up: imports, caches, the server
            # Alternate which path goes first, and start each on an idle machine: a server still
            # recording the last Prefect run would otherwise slow the run after it.
            for name in sorted(paths, reverse=round_ % 2 == 1):
                home = work / f"{round_}-{name.replace(' ', '-')}"
                _settle()
                started = time.perf_counter()
                paths[name](home, corpus, args.steps, args.questions)
                took = time.perf_counter() - started
                shutil.rmtree(home)
                if round_:
                    times[name].append(took)
                print(f"round {round_}{' (warm-up)' if not round_ else ''}: {name} {took:.1f} s")

    core, flows = (statistics.median(times[name]) for name in paths)
    ratios = [p / c - 1 for c, p in zip(*times.values(), strict=True)]
    paired = statistics.median(ratios)
    low, high = _interval(ratios)
    verdict = "met" if high < TARGET else "not met" if low > TARGET else "too close to tell"
    if args.repeat < MIN_ROUNDS:  # a bootstrap over so few ratios says next to nothing
        verdict = f"not judged: too few rounds (--repeat {MIN_ROUNDS} or more)"
    print(
        f"\n{papers}, training steps {args.steps} per stage, "
        f"questions {args.questions}, median of {args.repeat}\n"
        f"core calls     {core:7.1f} s  {_spread(times['core calls'])}\n"
        f"under Prefect  {flows:7.1f} s  {_spread(times['under Prefect'])}\n"
        f"overhead       {flows - core:+7.1f} s ({(flows / core - 1) * 100:+.1f}%; target < +10%)\n"
        f"  round by round, median {paired * 100:+.1f}% "
        f"(95% interval {low * 100:+.1f}% to {high * 100:+.1f}%): target {verdict}"
    )


def _interval(ratios: list[float], draws: int = 5000, seed: int = 0) -> tuple[float, float]:
    """A 95% percentile-bootstrap interval of the median of the rounds' ratios."""
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(draws))
    return medians[int(0.025 * draws)], medians[int(0.975 * draws) - 1]


def _settle(idle: float = 0.85, timeout_s: float = 20.0) -> None:
    """Collect garbage, then wait (at most timeout_s) until the machine's cores are `idle` idle
    over half a second. A full collection of what earlier rounds left takes 0.2 to 0.5 s, and
    without one here it fell at random into one run in four, of either path."""
    gc.collect()

    def ticks() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        return fields[3] + fields[4], sum(fields)  # idle + iowait, all

    if not Path("/proc/stat").exists():
        time.sleep(2)
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        idle0, all0 = ticks()
        time.sleep(0.5)
        idle1, all1 = ticks()
        if (idle1 - idle0) >= idle * max(1, all1 - all0):
            return


def _spread(values: list[float]) -> str:
    return f"(runs: {', '.join(f'{v:.1f}' for v in values)})"


if __name__ == "__main__":
    main()
