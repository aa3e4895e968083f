"""Figure/caption extraction: speed per core and quality against ground truth.

    python bench/extract.py [--samples 30] [--seed 0] [--real/--no-real] [--dpi 150]
                            [--no-render] [--show-failures]

Generates N sample papers into a temp folder (in a child process, so that its memory does not
count), then runs `extract_pdf` on each, one paper at a time in this process pinned to one core,
and on the real corpus when present (the folder LDRT_TEST_CORPUS names, else `shared/corpus`
beside the checkout). Prints pages/s per core (pages / CPU seconds of extraction) and per wall
second, figures/s, this process's peak RSS, and per corpus precision, recall, F1, caption
exactness and similarity, and false figures on figure-less papers, each beside its target. Real
papers get one line each; --show-failures prints what failed to match and the two caption texts
of inexact captions.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.extract_truth import (  # noqa: E402
    NO_CORPUS,
    PaperScore,
    PaperTruth,
    aggregate,
    caption_body,
    iou,
    label_key,
    load_real_truth,
    load_sample_corpus,
    normalize,
    score_paper,
)

if TYPE_CHECKING:  # imported in main(): ldrt_core.extract may not import yet
    from ldrt_core.extract import ExtractedDocument, ExtractOptions

# metric -> (comparison, target); "false_figures_on_empty" must be at most its target.
TARGETS: dict[str, dict[str, tuple[str, float]]] = {
    "generated": {"f1": (">=", 0.97), "caption_exact": (">=", 0.95)},
    "real": {
        "precision": (">=", 0.95),
        "recall": (">=", 0.95),
        "caption_similarity": (">=", 0.95),
        "false_figures_on_empty": ("<=", 0),
    },
}
QUALITY_ROWS = (
    "precision",
    "recall",
    "f1",
    "caption_exact",
    "caption_similarity",
    "mention_recall",
    "false_figures_on_empty",
)
PAGES_PER_CORE_TARGET = 20.0
PEAK_RSS_TARGET_MB = 1024.0


@dataclass
class Run:
    corpus: str
    scores: list[PaperScore] = field(default_factory=list)
    pages: list[int] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    cpu_s: float = 0.0
    wall_s: float = 0.0


def generate_samples(folder: Path, papers: int, seed: int) -> None:
    code = (
        "import sys; from pathlib import Path; from ldrt_core.samples import write_sample_corpus;"
        "write_sample_corpus(Path(sys.argv[1]), papers=int(sys.argv[2]), seed=int(sys.argv[3]))"
    )
    cmd = [sys.executable, "-c", code, str(folder), str(papers), str(seed)]
    subprocess.run(cmd, check=True, cwd=REPO)


def extract_all(
    corpus: str,
    papers: list[PaperTruth],
    extract: Callable[[bytes, ExtractOptions], ExtractedDocument],
    options: ExtractOptions,
    nothing: ExtractedDocument,
) -> Run:
    run = Run(corpus)
    for truth in papers:
        pdf = truth.pdf_path.read_bytes()
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            doc = extract(pdf, options)
        except Exception as exc:  # a failure is a result here: score it as nothing found
            run.errors[truth.name] = f"{type(exc).__name__}: {exc}"
            doc = nothing
        run.cpu_s += time.process_time() - cpu
        run.wall_s += time.perf_counter() - wall
        run.pages.append(doc.pages)
        run.scores.append(score_paper(truth, doc))
    return run


def verdict(value: float, target: tuple[str, float]) -> str:
    op, limit = target
    ok = {">=": value >= limit, "<=": value <= limit, "<": value < limit}[op]
    return f"{op} {limit:g}  {'ok' if ok else 'MISSED'}"


def print_speed(runs: list[Run]) -> None:
    pages = sum(sum(r.pages) for r in runs)
    figures = sum(len(s.matched) + len(s.extra) for r in runs for s in r.scores)
    cpu, wall = sum(r.cpu_s for r in runs), sum(r.wall_s for r in runs)
    per_core = pages / cpu if cpu else 0.0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print("\nspeed (all corpora, one core)")
    print(f"  papers            {sum(len(r.scores) for r in runs)}")
    print(f"  pages             {pages}")
    print(f"  CPU s / wall s    {cpu:.2f} / {wall:.2f}")
    print(
        f"  pages/s per core  {per_core:8.1f}   {verdict(per_core, ('>=', PAGES_PER_CORE_TARGET))}"
    )
    print(f"  pages/s wall      {pages / wall if wall else 0.0:8.1f}")
    print(f"  figures/s (CPU)   {figures / cpu if cpu else 0.0:8.1f}")
    print(f"  peak RSS MB       {peak_mb:8.0f}   {verdict(peak_mb, ('<', PEAK_RSS_TARGET_MB))}")


def print_quality(run: Run) -> None:
    totals = aggregate(run.scores)
    targets = TARGETS["generated" if run.corpus == "generated" else "real"]
    print(f"\nquality: {run.corpus} ({len(run.scores)} papers, {sum(run.pages)} pages, ", end="")
    print(f"{totals['truth_figures']:.0f} truth figures, {totals['tp'] + totals['fp']:.0f} found)")
    for key in QUALITY_ROWS:
        value = totals[key]
        shown = f"{value:8.0f}" if key == "false_figures_on_empty" else f"{value:8.3f}"
        if key == "mention_recall" and not totals["truth_mentions"]:
            shown = f"{'n/a':>8}"  # no mentions in this truth
        print(f"  {key:24}{shown}   {verdict(value, targets[key]) if key in targets else ''}")
    print(f"  papers that raised      {len(run.errors):8d}")


def print_papers(run: Run) -> None:
    print(f"\n{run.corpus} papers: TP/FP/FN, mean caption similarity")
    for score, pages in zip(run.scores, run.pages, strict=True):
        error = run.errors.get(score.name, "")
        line = f"  {score.name:32} {pages:3d} pp  {score.tp:2d}/{score.fp:2d}/{score.fn:2d}"
        empty = "no figures in truth" if not score.truth_figures else ""
        print(f"{line}  sim {score.mean_caption_sim:.3f}  {empty}{error}".rstrip())


def print_failures(run: Run) -> None:
    key = normalize if run.corpus == "generated" else caption_body
    how = "whole" if key is normalize else "without their labels"
    print(f"\n{run.corpus} failures (captions compared {how})")
    for score in run.scores:
        lines = [f"    missed {t.label} (page {t.page}, box {t.bbox})" for t in score.missed]
        for p in score.extra:
            same = [t.bbox for t in score.missed if t.label == label_key(p.label) and t.bbox]
            near = f", IoU {iou(same[0], p.bbox):.2f} with the missed one" if same else ""
            lines.append(f"    extra  {p.label} (page {p.page}, box {p.bbox}{near})")
        for truth, pred in score.matched:
            got, want = key(pred.caption), key(truth.caption)
            if got != want:
                pairs = enumerate(zip(got, want, strict=False))
                at = next((i for i, (a, b) in pairs if a != b), min(len(got), len(want)))
                lines.append(f"    caption {truth.label} (differs from character {at}):")
                lines += [f"      truth: {want}", f"      found: {got}"]
        if lines or score.name in run.errors:
            print(f"  {score.name} {run.errors.get(score.name, '')}".rstrip())
            print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=30, help="generated papers (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--real", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--dpi", type=int, default=150)
    parser.add_argument("--no-render", action="store_true", help="skip figure PNGs")
    parser.add_argument("--show-failures", action="store_true")
    args = parser.parse_args()
    sys.stdout.reconfigure(errors="backslashreplace")  # type: ignore[attr-defined]  # lone surrogates

    try:
        from ldrt_core.extract import ExtractedDocument, ExtractOptions, extract_pdf
    except ImportError as exc:
        sys.exit(f"ldrt_core.extract.extract_pdf is not available yet: {exc}")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, threads included
    options = ExtractOptions(dpi=args.dpi, render=not args.no_render)
    nothing = ExtractedDocument(pages=0, figures=[], tables=[], markdown="")
    real = load_real_truth() if args.real else []
    if args.real and not real:
        print(f"{NO_CORPUS}: skipped")

    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="ldrt-bench-extract-") as tmp:
        if args.samples > 0:
            started = time.perf_counter()
            generate_samples(Path(tmp), args.samples, args.seed)
            print(f"generated {args.samples} papers in {time.perf_counter() - started:.1f} s")
            runs.append(
                extract_all(
                    "generated", load_sample_corpus(Path(tmp)), extract_pdf, options, nothing
                )
            )
        if real:
            runs.append(extract_all("real", real, extract_pdf, options, nothing))
    if not runs:
        sys.exit("nothing to run: --samples 0 and no real corpus")

    print(f"\nextract_pdf, dpi {args.dpi}, render {not args.no_render}, seed {args.seed}")
    print_speed(runs)
    for run in runs:
        print_quality(run)
    for run in runs:
        if run.corpus == "real":
            print_papers(run)
        if args.show_failures:
            print_failures(run)


if __name__ == "__main__":
    main()
