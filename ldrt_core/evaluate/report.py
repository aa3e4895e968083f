"""The evaluation report: a baseline and a tuned `ModelResult` in, numbers, prose and plots out.

Input: the two models' results on the evaluation split (answers with their text metrics and
every judge's verdicts) and the judges to report. Output: a `Report` holding `data` (a
JSON-serialisable summary: Table-1-style judge scores per category, ROUGE, length ratio,
hedging, verdicts that could not be scored, judge agreement, tuned - baseline differences with
paired bootstrap intervals), `markdown` (the same, for people, with links to the plots) and
`plots` (PNG bytes). `Report.files()` is what the store keeps.

A verdict without a score is counted and left out of every mean, never read as 0. Differences
pair the models by `item_id`: only items both models answered, and for a judge only items it
scored for both.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import math
import re
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ldrt_core.errors import LdrtError
from ldrt_core.evaluate.metrics import (
    DEFAULT_HEDGES,
    bootstrap_difference,
    by_category,
    hedge_counts,
    hedges_per_answer,
    paired,
    quadratic_weighted_kappa,
    spearman,
    summarize,
)
from ldrt_core.evaluate.records import ItemResult, ModelResult

__all__ = ["PAPER_TABLE_1", "Report", "ReportError", "build_report"]

SCHEMA = 1
OVERALL = "overall"
# LLaVA-Med's question types, in the order its tables (and the paper's) use; others follow sorted.
CATEGORY_ORDER = ("conversation", "detailed_description", "complex_reasoning")
# (key in the data, column heading, decimals). ROUGE is an F-measure in [0, 1]: three decimals.
TEXT_METRICS = (
    ("rouge1", "ROUGE-1", 3),
    ("rouge2", "ROUGE-2", 3),
    ("rougeL", "ROUGE-L", 3),
    ("length_ratio", "Length ratio", 2),
    ("hedges_per_answer", "Hedges per answer", 2),
)
SCORE_DIGITS = 2
MAX_SCORE = 10  # judges score 0..10
CONFIDENCE = 0.95
MIN_FIGURES = 5  # fewer figures get no interval: too few clusters to resample
TOP_HEDGES = 10
PLOT_DPI = 100
# The reproduced paper's Table 1 and hedging count, for readers to hold our numbers against.
PAPER_TABLE_1 = (
    "For comparison, the paper (arXiv 2501.15370, Table 1) reports LLaVA v1.5 at 3.46 ± 2.53 "
    "(Qwen2-72B judge) / 4.48 ± 2.07 (Llama-3.1-70B judge) and its tuned model at 5.26 / 6.69."
)
PAPER_HEDGING = (
    'For comparison, the paper counts "appears" 1,451 times in LLaVA v1.5\'s answers '
    "and 49 times in its tuned model's."
)


class ReportError(LdrtError, ValueError):
    """The two results cannot be reported side by side (same label, repeated item ids)."""


@dataclass(frozen=True)
class Report:
    data: dict[str, Any]  # JSON-serialisable
    markdown: str
    plots: dict[str, bytes]  # file name -> PNG

    def files(self) -> dict[str, bytes]:
        """Everything to store, by file name: report.md, report.json and the plots."""
        return {
            "report.md": self.markdown.encode(),
            "report.json": json.dumps(self.data, indent=2, ensure_ascii=False).encode(),
            **self.plots,
        }


def build_report(
    baseline: ModelResult,
    tuned: ModelResult,
    *,
    judges: Sequence[str],
    judging_note: str | None = None,
    lexicon: Sequence[str] = DEFAULT_HEDGES,
    seed: int = 0,
    pairwise: Mapping[str, Mapping[str, int]] | None = None,
) -> Report:
    """Compare `tuned` against `baseline`. `judges` names the verdicts (keys of
    `ItemResult.judges`) to report; empty means judging was skipped, and `judging_note` (how
    to configure a judge) is shown in its place. `pairwise`: per judge, the counts of
    `summarize_pairwise` with the baseline as "a" and the tuned model as "b"."""
    check_results(baseline, tuned)
    judges = list(dict.fromkeys(judges))
    models = (baseline, tuned)
    categories = ordered_categories(item.category for model in models for item in model.items)
    data: dict[str, Any] = {
        "schema": SCHEMA,
        "compared": {
            "baseline": {"label": baseline.label, "model": baseline.model},
            "tuned": {"label": tuned.label, "model": tuned.model},
        },
        "judging": "done" if judges else "skipped",
        "judges": judges,
        "categories": [*categories, OVERALL],
        "hedge_lexicon": list(lexicon),
        "bootstrap_seed": seed,
        "items": item_counts(baseline, tuned),
        "models": {model.label: model_data(model, judges, lexicon, categories) for model in models},
        "differences": differences(baseline, tuned, judges, lexicon, seed),
    }
    if not judges:
        data["judging_note"] = judging_note
    if pairwise:
        data["pairwise"] = {judge: dict(counts) for judge, counts in pairwise.items()}
    data = finite(data)
    plots = draw_plots(data)
    return Report(data=data, markdown=render_markdown(data, plots), plots=plots)


# Data -----------------------------------------------------------------------------------------


def check_results(baseline: ModelResult, tuned: ModelResult) -> None:
    if baseline.label == tuned.label:
        raise ReportError(
            f"both results are labelled {baseline.label!r}; give the baseline and the tuned "
            "model different labels so the report can tell them apart"
        )
    for model in (baseline, tuned):
        if any(item.category == OVERALL for item in model.items):
            raise ReportError(
                f'{model.label!r} has items in a category named "{OVERALL}", which the report '
                "keeps for the summary over all categories; rename that category"
            )
        repeated = [i for i, n in Counter(it.item_id for it in model.items).items() if n > 1]
        if repeated:
            raise ReportError(
                f"{model.label!r} has more than one answer for item(s) {sorted(repeated)[:5]}; "
                "evaluate each item once (re-run the evaluation of that model)"
            )


def ordered_categories(categories: Iterable[str]) -> list[str]:
    seen = set(categories) - {OVERALL}
    known = [c for c in CATEGORY_ORDER if c in seen]
    return known + sorted(seen - set(known))


def item_counts(baseline: ModelResult, tuned: ModelResult) -> dict[str, int]:
    base_ids = {item.item_id for item in baseline.items}
    tuned_ids = {item.item_id for item in tuned.items}
    return {
        "baseline": len(base_ids),
        "tuned": len(tuned_ids),
        "paired": len(base_ids & tuned_ids),
        "baseline_only": len(base_ids - tuned_ids),
        "tuned_only": len(tuned_ids - base_ids),
    }


def judge_score(item: ItemResult, judge: str) -> float | None:
    verdict = item.judges.get(judge)
    return None if verdict is None else verdict.score


def text_values(
    items: Sequence[ItemResult], lexicon: Sequence[str]
) -> dict[str, list[float | None]]:
    """Each text metric's value per item, in item order (None where it could not be had)."""
    values: dict[str, list[float | None]] = {
        key: [item.rouge.get(key) for item in items] for key in ("rouge1", "rouge2", "rougeL")
    }
    values["length_ratio"] = [item.length_ratio for item in items]
    # Counted with the report's lexicon rather than read from `ItemResult.hedges`, so that the
    # per-answer figure and the per-word table always agree.
    values["hedges_per_answer"] = [
        float(n) for n in hedges_per_answer([item.answer for item in items], lexicon)
    ]
    return values


def category_summaries(
    items: Sequence[ItemResult], values: Sequence[float | None], categories: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Every category (also those this model has no items in) and "overall", last."""
    summaries = by_category([(item.category, v) for item, v in zip(items, values, strict=True)])
    return {
        category: summaries.get(category, summarize([])).as_dict()
        for category in [*categories, OVERALL]
    }


def score_histogram(scores: Iterable[float | None]) -> list[int]:
    """How many answers got each whole score 0..10 (fractional scores round to the nearest)."""
    counts = [0] * (MAX_SCORE + 1)
    for score in scores:
        if score is not None and math.isfinite(score):
            counts[min(MAX_SCORE, max(0, round(score)))] += 1
    return counts


def verdict_counts(items: Sequence[ItemResult], judge: str) -> dict[str, Any]:
    scored = unscored = missing = 0
    errors: Counter[str] = Counter()
    for item in items:
        verdict = item.judges.get(judge)
        if verdict is None:
            missing += 1
        elif verdict.score is None:
            unscored += 1
            errors[verdict.error or "no score in the verdict"] += 1
        else:
            scored += 1
    return {
        "scored": scored,
        "unscored": unscored,  # a verdict came back without a usable score
        "missing": missing,  # no verdict recorded at all
        "errors": dict(errors.most_common(5)),
    }


def agreement(items: Sequence[ItemResult], judges: Sequence[str]) -> list[dict[str, Any]]:
    """Spearman and quadratic-weighted kappa for every pair of judges, on items both scored."""
    pairs = []
    for first, second in itertools.combinations(judges, 2):
        a, b = paired(
            [judge_score(item, first) for item in items],
            [judge_score(item, second) for item in items],
        )
        pairs.append(
            {
                "judges": [first, second],
                "n": len(a),
                "spearman": spearman(a, b),
                "kappa": quadratic_weighted_kappa(a, b),
            }
        )
    return pairs


def model_data(
    model: ModelResult, judges: Sequence[str], lexicon: Sequence[str], categories: Sequence[str]
) -> dict[str, Any]:
    items = model.items
    counts = hedge_counts([item.answer for item in items], lexicon)
    return {
        "model": model.model,
        "items": len(items),
        "items_by_category": {c: sum(i.category == c for i in items) for c in categories},
        "scores": {
            judge: category_summaries(items, [judge_score(i, judge) for i in items], categories)
            for judge in judges
        },
        "text": {
            key: category_summaries(items, values, categories)
            for key, values in text_values(items, lexicon).items()
        },
        "hedges": {
            "counts": dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))),
            "total": sum(counts.values()),
            "answers": len(items),
        },
        "score_histograms": {
            judge: score_histogram(judge_score(i, judge) for i in items) for judge in judges
        },
        "verdicts": {judge: verdict_counts(items, judge) for judge in judges},
        "agreement": agreement(items, judges),
    }


def difference(
    tuned: Sequence[float | None],
    baseline: Sequence[float | None],
    figures: Sequence[str],
    seed: int,
) -> dict[str, Any]:
    """tuned - baseline over the pairs where both have a value, with a bootstrap interval that
    resamples whole figures (`figures[i]`: the figure item i asks about)."""
    kept = [
        (b, t, f)
        for b, t, f in zip(baseline, tuned, figures, strict=True)
        if b is not None and t is not None
    ]
    figures_seen = {f for _, _, f in kept}
    out: dict[str, Any] = {
        "n": len(kept),
        "figures": len(figures_seen),
        "estimate": None,
        "low": None,
        "high": None,
    }
    if kept:
        out["estimate"] = statistics.fmean(t - b for b, t, _ in kept)
    if len(figures_seen) >= MIN_FIGURES:
        # mean(second) - mean(first), resampling the same figures on both sides.
        diff = bootstrap_difference(
            [b for b, _, _ in kept],
            [t for _, t, _ in kept],
            paired=True,
            groups=[f for _, _, f in kept],
            confidence=CONFIDENCE,
            seed=seed,
        )
        out.update(estimate=diff.estimate, low=diff.low, high=diff.high, resamples=diff.resamples)
    return out


def figure_of(item_id: str) -> str:
    """The figure an item asks about: "<pair>-<category>#<turn>" up to the first '-'."""
    return item_id.rsplit("#", 1)[0].split("-", 1)[0]


def differences(
    baseline: ModelResult,
    tuned: ModelResult,
    judges: Sequence[str],
    lexicon: Sequence[str],
    seed: int,
) -> dict[str, Any]:
    tuned_by_id = {item.item_id: item for item in tuned.items}
    ids = sorted(item.item_id for item in baseline.items if item.item_id in tuned_by_id)
    base_by_id = {item.item_id: item for item in baseline.items}
    base_items = [base_by_id[i] for i in ids]
    tuned_items = [tuned_by_id[i] for i in ids]
    base_text, tuned_text = text_values(base_items, lexicon), text_values(tuned_items, lexicon)
    figures = [figure_of(i) for i in ids]
    return {
        "direction": f"{tuned.label} - {baseline.label}",
        "confidence": CONFIDENCE,
        "scores": {
            judge: difference(
                [judge_score(i, judge) for i in tuned_items],
                [judge_score(i, judge) for i in base_items],
                figures,
                seed,
            )
            for judge in judges
        },
        "text": {
            key: difference(tuned_text[key], base_text[key], figures, seed) for key in base_text
        },
    }


def finite(value: Any) -> Any:
    """NaN and infinities become None: JSON has no spelling for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


# Markdown -------------------------------------------------------------------------------------


def number(value: Any, digits: int, sign: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def mean_std(summary: Mapping[str, Any], digits: int) -> str:
    if not summary.get("n") or summary.get("mean") is None:
        return "—"
    std = summary.get("std")
    mean = number(summary["mean"], digits)
    return mean if std is None else f"{mean} ± {number(std, digits)}"


def cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(cell(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return lines


def image(plots: Mapping[str, bytes], name: str, alt: str) -> list[str]:
    return [f"![{alt}]({name})", ""] if name in plots else []


PLOT_LINK = re.compile(r"!\[([^\]]*)\]\(([\w.-]+\.png)\)")


def inline_plots(markdown: str, read: Callable[[str], bytes]) -> str:
    """The report with each plot it links (`![alt](name.png)`, read by name) embedded as a
    data URI, for viewers that cannot follow its relative links (a Prefect markdown artifact)."""

    def embed(link: re.Match[str]) -> str:
        encoded = base64.b64encode(read(link.group(2))).decode("ascii")
        return f"![{link.group(1)}](data:image/png;base64,{encoded})"

    return PLOT_LINK.sub(embed, markdown)


def render_markdown(data: Mapping[str, Any], plots: Mapping[str, bytes]) -> str:
    sections: list[Callable[[Mapping[str, Any], Mapping[str, bytes]], list[str]]] = [
        md_header,
        md_scores,
        md_text,
        md_differences,
        md_hedging,
        md_agreement,
        md_pairwise,
        md_verdicts,
    ]
    lines: list[str] = []
    for section in sections:
        body = section(data, plots)
        while body and not body[-1]:
            body.pop()
        lines += [*body, ""]
    return "\n".join(lines).rstrip() + "\n"


def labels(data: Mapping[str, Any]) -> tuple[str, str]:
    compared = data["compared"]
    return compared["baseline"]["label"], compared["tuned"]["label"]


def md_header(data: Mapping[str, Any], plots: Mapping[str, bytes]) -> list[str]:
    base, tuned = labels(data)
    counts = data["items"]
    compared = data["compared"]
    judges = ", ".join(f"`{j}`" for j in data["judges"]) or "none (judging skipped)"
    return [
        f"# Evaluation report: {tuned} vs {base}",
        "",
        f"- Baseline **{base}**: `{compared['baseline']['model']}`, {counts['baseline']} items",
        f"- Tuned **{tuned}**: `{compared['tuned']['model']}`, {counts['tuned']} items",
        f"- Paired by item: {counts['paired']} items answered by both "
        f"({counts['baseline_only']} only by {base}, {counts['tuned_only']} only by {tuned})",
        f"- Judges: {judges}",
        "",
        PAPER_TABLE_1,
    ]


def md_scores(data: Mapping[str, Any], plots: Mapping[str, bytes]) -> list[str]:
    lines = ["## Judge scores (0-10)", ""]
    if not data["judges"]:
        note = data.get("judging_note")
        lines.append("Judging was skipped: no judge is configured, so there are no judge scores.")
        lines.append(f"To judge the answers: {note}" if note else "")
        return lines
    categories = data["categories"]
    rows = []
    for judge in data["judges"]:
        for label, model in data["models"].items():
            summaries = model["scores"][judge]
            verdicts = model["verdicts"][judge]
            rows.append(
                [
                    judge,
                    label,
                    *(mean_std(summaries[c], SCORE_DIGITS) for c in categories),
                    f"{verdicts['scored']}/{model['items']}",
                ]
            )
    lines += table(["Judge", "Model", *categories, "Scored"], rows)
    lines += ["", "Cells are mean ± standard deviation over the answers the judge scored.", ""]
    lines += image(plots, "scores.png", "Score distributions")
    lines += image(plots, "categories.png", "Mean score per category")
    return lines


def md_text(data: Mapping[str, Any], plots: Mapping[str, bytes]) -> list[str]:
    rows = [
        [label, *(mean_std(model["text"][key][OVERALL], d) for key, _, d in TEXT_METRICS)]
        for label, model in data["models"].items()
    ]
    return [
        "## Text metrics",
        "",
        *table(["Model", *(heading for _, heading, _ in TEXT_METRICS)], rows),
        "",
        "Overall mean ± standard deviation against the reference answers; ROUGE is the "
        "F-measure, length ratio is answer tokens / reference tokens.",
        "",
        *image(plots, "metrics.png", "Text metrics"),
        # Without a judge the per-category plot shows ROUGE-L, so it belongs here.
        *([] if data["judges"] else image(plots, "categories.png", "ROUGE-L per category")),
    ]


def md_differences(data: Mapping[str, Any], plots: Mapping[str, bytes]) -> list[str]:
    diffs = data["differences"]
    percent = round(100 * diffs["confidence"])
    rows = []
    named = [(judge, diff, SCORE_DIGITS) for judge, diff in diffs["scores"].items()]
    headings = {key: (heading, digits) for key, heading, digits in TEXT_METRICS}
    named += [(headings[key][0], diff, headings[key][1]) for key, diff in diffs["text"].items()]
    for name, diff, digits in named:
        low, high = number(diff["low"], digits, True), number(diff["high"], digits, True)
        interval = "—" if diff["low"] is None else f"[{low}, {high}]"
        estimate = number(diff["estimate"], digits, True)
        rows.append([name, estimate, interval, diff["n"], diff.get("figures", "")])
    return [
        f"## Differences ({diffs['direction']})",
        "",
        *table(["Metric", "Difference", f"{percent}% CI", "Paired items", "Figures"], rows),
        "",
        f"Paired bootstrap over items both models answered ({percent}% percentile interval), "
        "resampling whole figures: the turns of a conversation about one figure are not "
        f"independent evidence. No interval (—) on fewer than {MIN_FIGURES} figures: resampling "
        "so few says more about the resampling than about the models. For a judge, only items "
        "it scored for both.",
    ]


def md_hedging(data: Mapping[str, Any], plots: Mapping[str, bytes]) -> list[str]:
    models = data["models"]
    words = top_hedges(data)
    rows: list[list[Any]] = [
        [w, *(m["hedges"]["counts"].get(w, 0) for m in models.values())] for w in words
    ]
    rows.append(["**all hedging words**", *(m["hedges"]["total"] for m in models.values())])
    rows.append(
        [
            "per answer",
            *(mean_std(m["text"]["hedges_per_answer"][OVERALL], 2) for m in models.values()),
        ]
    )
    return [
        "## Hedging",
        "",
        *table(["Word", *models], rows),
        "",
        PAPER_HEDGING,
        "",
        *image(plots, "hedging.png", "Hedging words"),
    ]


def top_hedges(data: Mapping[str, Any], limit: int = TOP_HEDGES) -> list[str]:
    """The most used hedging words over both models; words no answer used are left out."""
    total: Counter[str] = Counter()
    for model in data["models"].values():
        total.update(model["hedges"]["counts"])
    return [w for w, n in sorted(total.items(), key=lambda kv: (-kv[1], kv[0])) if n][:limit]


def md_agreement(data: Mapping[str, Any], plots: Mapping[str, bytes]) -> list[str]:
    lines = ["## Judge agreement", ""]
    rows = [
        [
            label,
            " vs ".join(pair["judges"]),
            number(pair["spearman"], 2),
            number(pair["kappa"], 2),
            pair["n"],
        ]
        for label, model in data["models"].items()
        for pair in model["agreement"]
    ]
    if not rows:
        count = len(data["judges"])
        return [*lines, f"Needs two judges; {count} configured."]
    return [
        *lines,
        *table(["Model", "Judges", "Spearman", "Quadratic-weighted κ", "Items"], rows),
        "",
        "On the items both judges scored.",
    ]


def md_pairwise(data: Mapping[str, Any], plots: Mapping[str, bytes]) -> list[str]:
    duels = data.get("pairwise")
    if not duels:
        return []
    base, tuned = data["compared"]["baseline"]["label"], data["compared"]["tuned"]["label"]
    rows = [
        [
            judge,
            c.get("wins_b", 0),
            c.get("wins_a", 0),
            c.get("ties", 0),
            c.get("inconsistent", 0),
            c.get("unparsable", 0),
            c.get("total", 0),
        ]
        for judge, c in duels.items()
    ]
    header = ["Judge", f"{tuned} better", f"{base} better", "Ties", "Of which inconsistent"]
    return [
        f"## Pairwise ({base} vs {tuned})",
        "",
        *table([*header, "Unparsable", "Questions"], rows),
        "",
        "Each pair was asked in both orders; a verdict that changed with the order counts as a tie "
        "(the judge's position bias).",
    ]


def md_verdicts(data: Mapping[str, Any], plots: Mapping[str, bytes]) -> list[str]:
    lines = ["## Unparsable verdicts", ""]
    if not data["judges"]:
        return [*lines, "No judge ran."]
    rows = []
    for judge in data["judges"]:
        for label, model in data["models"].items():
            counts = model["verdicts"][judge]
            errors = counts["errors"]
            common = next(iter(errors), "")
            rows.append(
                [judge, label, counts["scored"], counts["unscored"], counts["missing"], common[:80]]
            )
    return [
        *lines,
        *table(["Judge", "Model", "Scored", "Unparsable", "No verdict", "Most common error"], rows),
        "",
        "Unparsable and missing verdicts are left out of the means, never counted as 0.",
    ]


# Plots ----------------------------------------------------------------------------------------


def png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    # No "Software" chunk and no timestamp: the same numbers give the same bytes.
    figure.savefig(buffer, format="png", dpi=PLOT_DPI, metadata={"Software": None})
    return buffer.getvalue()


def grouped_bars(
    axes: Axes,
    groups: Sequence[str],
    series: Mapping[str, Sequence[float]],
    errors: Mapping[str, Sequence[float]] | None = None,
) -> None:
    """One cluster per group, one bar per series (model) in it."""
    width = 0.8 / max(1, len(series))
    for index, (name, values) in enumerate(series.items()):
        positions = [g + (index - (len(series) - 1) / 2) * width for g in range(len(groups))]
        error = errors[name] if errors else None
        axes.bar(positions, values, width, yerr=error, capsize=3 if error else 0, label=name)
    axes.set_xticks(range(len(groups)), groups)
    axes.legend(fontsize="small")


def mean_of(summary: Mapping[str, Any]) -> float:
    mean = summary.get("mean")
    return float(mean) if summary.get("n") and mean is not None else 0.0


def std_of(summary: Mapping[str, Any]) -> float:
    std = summary.get("std")
    return float(std) if summary.get("n") and std is not None else 0.0


def draw_plots(data: Mapping[str, Any]) -> dict[str, bytes]:
    plots = {}
    if data["judges"]:
        plots["scores.png"] = plot_scores(data)
    plots["categories.png"] = plot_categories(data)
    plots["hedging.png"] = plot_hedging(data)
    plots["metrics.png"] = plot_metrics(data)
    return plots


def plot_scores(data: Mapping[str, Any]) -> bytes:
    """Share of scored answers at each score, per judge, one bar colour per model."""
    judges = data["judges"]
    figure = Figure(figsize=(4.5 * len(judges), 3.2), layout="constrained")
    for axes, judge in zip(figure.subplots(1, len(judges), squeeze=False)[0], judges, strict=True):
        series = {}
        for label, model in data["models"].items():
            counts = model["score_histograms"][judge]
            total = sum(counts) or 1
            series[label] = [c / total for c in counts]
        grouped_bars(axes, [str(s) for s in range(MAX_SCORE + 1)], series)
        axes.set_title(judge, fontsize="medium")
        axes.set_xlabel("score")
        axes.set_ylabel("share of scored answers")
    return png(figure)


def plot_categories(data: Mapping[str, Any]) -> bytes:
    judges = data["judges"]
    categories = data["categories"]
    if judges:
        title, section, name, top = f"Mean score ({judges[0]})", "scores", judges[0], MAX_SCORE
    else:
        title, section, name, top = "ROUGE-L (no judge configured)", "text", "rougeL", 1
    summaries = {label: m[section][name] for label, m in data["models"].items()}
    figure = Figure(figsize=(1.3 * len(categories) + 2.5, 3.2), layout="constrained")
    axes = figure.subplots()
    grouped_bars(
        axes,
        [c.replace("_", "\n") for c in categories],
        {label: [mean_of(s[c]) for c in categories] for label, s in summaries.items()},
        {label: [std_of(s[c]) for c in categories] for label, s in summaries.items()},
    )
    axes.set_ylim(0, top)
    axes.set_title(title, fontsize="medium")
    return png(figure)


def plot_hedging(data: Mapping[str, Any]) -> bytes:
    words = top_hedges(data) or ["(none)"]
    figure = Figure(figsize=(max(4.0, 0.7 * len(words) + 2), 3.2), layout="constrained")
    axes = figure.subplots()
    grouped_bars(
        axes,
        words,
        {
            label: [m["hedges"]["counts"].get(w, 0) for w in words]
            for label, m in data["models"].items()
        },
    )
    axes.tick_params(axis="x", labelrotation=45)
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel("occurrences in all answers")
    axes.set_title("Hedging words", fontsize="medium")
    return png(figure)


def plot_metrics(data: Mapping[str, Any]) -> bytes:
    models = data["models"]
    figure = Figure(figsize=(7.0, 3.2), layout="constrained")
    rouge_axes, ratio_axes = figure.subplots(1, 2, width_ratios=[3, 1.4])
    rouge = [(key, heading) for key, heading, _ in TEXT_METRICS if key.startswith("rouge")]

    def overall(model: Mapping[str, Any], key: str) -> Mapping[str, Any]:
        summary: Mapping[str, Any] = model["text"][key][OVERALL]
        return summary

    grouped_bars(
        rouge_axes,
        [heading for _, heading in rouge],
        {label: [mean_of(overall(m, key)) for key, _ in rouge] for label, m in models.items()},
        {label: [std_of(overall(m, key)) for key, _ in rouge] for label, m in models.items()},
    )
    rouge_axes.set_ylim(0, 1)
    rouge_axes.set_title("ROUGE F-measure", fontsize="medium")
    grouped_bars(
        ratio_axes,
        ["length ratio"],
        {label: [mean_of(overall(m, "length_ratio"))] for label, m in models.items()},
        {label: [std_of(overall(m, "length_ratio"))] for label, m in models.items()},
    )
    ratio_axes.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    ratio_axes.set_title("answer / reference", fontsize="medium")
    return png(figure)
