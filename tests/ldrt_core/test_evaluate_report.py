"""The evaluation report on small hand-made results: its numbers, its markdown, its plots."""

# Greek letters in the answers below are meant: the report must carry them through JSON.
# ruff: noqa: RUF001

from __future__ import annotations

import base64
import json
import re
import statistics
from dataclasses import replace

import pytest

from ldrt_core.evaluate.records import ItemResult, JudgeScore, ModelResult
from ldrt_core.evaluate.report import Report, ReportError, build_report, inline_plots

pytestmark = pytest.mark.unit

JUDGES = ["judge-a", "judge-b"]
NOTE = "set LDRT_JUDGES=name@url or pass --judge MODEL@URL"
CONV, REASON = "conversation", "complex_reasoning"


def item(
    item_id: str,
    category: str,
    a: float | None,
    b: float | None,
    answer: str = "A bar chart of cell counts.",
    rouge1: float = 0.3,
    length_ratio: float | None = 1.0,
) -> ItemResult:
    judges = {
        "judge-a": JudgeScore(a, error=None if a is not None else "no score in: 'great answer'"),
        "judge-b": JudgeScore(b),
    }
    return ItemResult(
        item_id=item_id,
        category=category,
        answer=answer,
        reference="The bar chart shows cell counts.",
        rouge={"rouge1": rouge1, "rouge2": rouge1 / 2, "rougeL": rouge1 * 0.8},
        length_ratio=length_ratio,
        hedges=0,
        judges=judges,
    )


def base_result() -> ModelResult:
    return ModelResult(
        label="base",
        model="llava-hf/llava-1.5-7b-hf",
        items=[
            item("q1", CONV, 2, 3, "It appears to be a chart; it may show doses.", 0.10, 2.0),
            item("q2", CONV, 4, 5, "The image appears to show mice.", 0.20, 3.0),
            item("q3", CONV, 6, 6, "Cells.", 0.30, None),
            # judge-a's verdict could not be parsed: counted, never a 0.
            item("q4", REASON, None, 4, "This appears possibly to be a blot.", 0.40, 2.5),
            item("q5", REASON, 3, 2, "A western blot.", 0.20, 1.5),
            item("q6", REASON, 5, 5, "Tumour volume over time.", 0.30, 1.0),
        ],
    )


def tuned_result() -> ModelResult:
    return ModelResult(
        label="tuned",
        model="run-7",
        # Another order, and q7 which the baseline never answered: pairing is by item_id.
        items=[
            item("q7", CONV, 10, 10, "TNF-α fell after 0.5 Gy.", 0.90, 1.0),
            item("q6", REASON, 4, 5, "Tumour volume fell after 0.5 Gy.", 0.50, 1.1),
            item("q5", REASON, 9, 8, "IL-6 fell; the blot appears faint.", 0.40, 0.9),
            item("q4", REASON, 5, 6, "A western blot of IL-1β.", 0.60, 1.0),
            item("q3", CONV, 7, 9, "Macrophages in the synovium.", 0.30, 1.2),
            item("q2", CONV, 8, 8, "Knee swelling by dose group.", 0.40, 0.8),
            item("q1", CONV, 6, 7, "Cytokines by dose.", 0.30, 1.0),
        ],
    )


@pytest.fixture(scope="module")
def report() -> Report:
    return build_report(base_result(), tuned_result(), judges=JUDGES, seed=3)


@pytest.fixture(scope="module")
def unjudged() -> Report:
    return build_report(base_result(), tuned_result(), judges=[], judging_note=NOTE)


def stats(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values)


def test_table_one_numbers_are_means_and_stds_of_the_scored_answers(report: Report) -> None:
    scores = report.data["models"]["base"]["scores"]["judge-a"]
    for category, values in {
        CONV: [2, 4, 6],
        REASON: [3, 5],
        "overall": [2, 4, 6, 3, 5],
    }.items():
        mean, std = stats(values)
        assert scores[category]["mean"] == pytest.approx(mean)
        assert scores[category]["std"] == pytest.approx(std)
        assert scores[category]["n"] == len(values)
    tuned = report.data["models"]["tuned"]["scores"]["judge-b"]["overall"]
    assert (tuned["mean"], tuned["std"]) == pytest.approx(stats([10, 5, 8, 6, 9, 8, 7]))
    assert report.data["categories"] == [CONV, REASON, "overall"]


def test_an_unparsable_verdict_is_counted_and_left_out_not_scored_zero(report: Report) -> None:
    base = report.data["models"]["base"]
    assert base["verdicts"]["judge-a"] == {
        "scored": 5,
        "unscored": 1,
        "missing": 0,
        "errors": {"no score in: 'great answer'": 1},
    }
    assert base["verdicts"]["judge-b"]["unscored"] == 0
    overall = base["scores"]["judge-a"]["overall"]
    assert (overall["n"], overall["missing"], overall["mean"]) == (5, 1, pytest.approx(4.0))
    assert base["score_histograms"]["judge-a"] == [0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0]
    assert "| judge-a | base | 5 | 1 | 0 | no score in: 'great answer' |" in report.markdown


def test_differences_are_tuned_minus_base_on_items_both_have(report: Report) -> None:
    diffs = report.data["differences"]
    assert diffs["direction"] == "tuned - base"
    # judge-a: q4 unscored for base, q7 unanswered by base; the other five pair up.
    a = diffs["scores"]["judge-a"]
    assert a["n"] == 5
    assert a["estimate"] == pytest.approx(statistics.mean([6 - 2, 8 - 4, 7 - 6, 9 - 3, 4 - 5]))
    assert a["low"] <= a["estimate"] <= a["high"]
    b = diffs["scores"]["judge-b"]
    assert (b["n"], b["estimate"]) == (6, pytest.approx((7 + 8 + 9 + 6 + 8 + 5 - 25) / 6))
    rouge1 = diffs["text"]["rouge1"]
    base_r1, tuned_r1 = [0.1, 0.2, 0.3, 0.4, 0.2, 0.3], [0.3, 0.4, 0.3, 0.6, 0.4, 0.5]
    assert rouge1["n"] == 6
    assert rouge1["estimate"] == pytest.approx(statistics.mean(tuned_r1) - statistics.mean(base_r1))
    assert {"rouge2", "rougeL"} <= diffs["text"].keys()
    # q3's base length ratio is missing, so that pair drops out.
    assert diffs["text"]["length_ratio"]["n"] == 5
    assert report.data["items"] == {
        "baseline": 6,
        "tuned": 7,
        "paired": 6,
        "baseline_only": 0,
        "tuned_only": 1,
    }


def test_differences_resample_whole_figures() -> None:
    """Three turns about one figure are one figure's evidence: 6 figures, not 18 items. With
    fewer than 5 figures there is no interval, only the difference."""

    def result(label: str, figures: list[str], scores: list[float]) -> ModelResult:
        ids = [f"{figure}-conversation#{turn}" for figure in figures for turn in range(3)]
        per_item = [score for score in scores for _ in range(3)]
        return ModelResult(
            label, label, [item(i, CONV, s, s) for i, s in zip(ids, per_item, strict=True)]
        )

    six = [f"f{i}" for i in range(6)]
    base, tuned = [1, 1, 1, 5, 5, 5], [2, 3, 2, 9, 6, 9]  # figure differences 1, 2, 1, 4, 1, 4
    built = build_report(result("base", six, base), result("tuned", six, tuned), judges=JUDGES)
    a = built.data["differences"]["scores"]["judge-a"]
    assert (a["n"], a["figures"], a["estimate"]) == (18, 6, pytest.approx(13 / 6))
    # Any resample of whole figures averages figure differences: between the least and most.
    assert 1.0 <= a["low"] < a["estimate"] < a["high"] <= 4.0
    assert "resampling whole figures" in built.markdown
    assert "| judge-a | +2.17 |" in built.markdown and "| 18 | 6 |" in built.markdown

    two = build_report(
        result("base", six[:2], base[:2]), result("tuned", six[:2], tuned[:2]), judges=JUDGES
    )
    few = two.data["differences"]["scores"]["judge-a"]
    assert (few["figures"], few["estimate"], few["low"], few["high"]) == (2, 1.5, None, None)


def test_judge_agreement_per_model_on_items_both_judges_scored(report: Report) -> None:
    [pair] = report.data["models"]["base"]["agreement"]
    assert pair["judges"] == JUDGES
    assert pair["n"] == 5
    assert -1 <= pair["spearman"] <= 1
    assert pair["kappa"] is not None
    assert report.data["models"]["tuned"]["agreement"][0]["n"] == 7
    assert "| base | judge-a vs judge-b |" in report.markdown


def test_markdown_has_table_one_text_metrics_hedging_and_plots(report: Report) -> None:
    md = report.markdown
    # judge x model rows; columns conversation, complex_reasoning, overall, scored.
    assert "| judge-a | base | 4.00 ± 2.00 | 4.00 ± 1.41 | 4.00 ± 1.58 | 5/6 |" in md
    conv, reason, overall = stats([10, 7, 8, 6]), stats([4, 9, 5]), stats([10, 4, 9, 5, 7, 8, 6])
    row = " | ".join(f"{m:.2f} ± {s:.2f}" for m, s in (conv, reason, overall))
    assert f"| judge-a | tuned | {row} | 7/7 |" in md
    assert "| base | 0.250 ± 0.105 |" in md  # ROUGE-1 with three decimals
    # "appears": three times in base answers, once in tuned's, like the paper's row.
    assert "| appears | 3 | 1 |" in md
    assert "3.46 ± 2.53" in md  # the paper's numbers, for comparison
    for name in ("scores.png", "categories.png", "hedging.png", "metrics.png"):
        assert f"]({name})" in md
    for heading in ("Judge scores", "Text metrics", "Differences", "Hedging", "Judge agreement"):
        assert f"## {heading}" in md
    assert "| judge-b | +3.00 | [" in md


def test_plots_are_small_pngs(report: Report) -> None:
    assert set(report.plots) == {"scores.png", "categories.png", "hedging.png", "metrics.png"}
    for name, data in report.plots.items():
        assert data.startswith(b"\x89PNG\r\n\x1a\n"), name
        assert 5_000 < len(data) < 500_000, name


def test_without_judges_the_report_says_judging_was_skipped(unjudged: Report) -> None:
    md = unjudged.markdown
    assert "Judging was skipped" in md
    assert NOTE in md
    assert unjudged.data["judging"] == "skipped"
    assert unjudged.data["judging_note"] == NOTE
    assert "scores.png" not in unjudged.plots
    assert "(scores.png)" not in md
    assert {"categories.png", "hedging.png", "metrics.png"} <= unjudged.plots.keys()
    assert "## Text metrics" in md and "| appears | 3 | 1 |" in md
    assert "| ROUGE-1 |" in md  # differences still reported
    assert "± " not in md.split("## Judge scores")[1].split("## Text metrics")[0]
    assert unjudged.data["models"]["base"]["scores"] == {}


def test_files_hold_markdown_json_that_round_trips_and_plots(report: Report) -> None:
    files = report.files()
    assert set(files) == {"report.md", "report.json", *report.plots}
    assert json.loads(files["report.json"]) == report.data
    assert files["report.md"].decode() == report.markdown


def test_inline_plots_embeds_every_linked_plot_and_nothing_else(report: Report) -> None:
    inlined = inline_plots(report.markdown, report.plots.__getitem__)
    assert not re.search(r"\]\([\w.-]+\.png\)", inlined)  # no relative link left
    embedded = re.findall(r"!\[([^\]]*)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", inlined)
    linked = re.findall(r"!\[[^\]]*\]\(([\w.-]+\.png)\)", report.markdown)
    assert len(embedded) == len(linked) >= 3
    assert [base64.b64decode(data) for _, data in embedded] == [report.plots[n] for n in linked]
    text = re.compile(r"!\[[^\]]*\]\([^)]*\)")
    assert text.sub("", inlined) == text.sub("", report.markdown)  # the prose is untouched


def test_the_same_results_give_the_same_report(unjudged: Report) -> None:
    # Without a judge: three plots to draw instead of four, and the same PNG path.
    again = build_report(base_result(), tuned_result(), judges=[], judging_note=NOTE)
    assert again.files() == unjudged.files()


def test_a_model_with_no_answers_still_gives_a_report() -> None:
    empty = ModelResult(label="tuned", model="run-8")
    report = build_report(base_result(), empty, judges=JUDGES)
    assert report.data["differences"]["scores"]["judge-a"] == {
        "n": 0,
        "figures": 0,
        "estimate": None,
        "low": None,
        "high": None,
    }
    assert "| judge-a | tuned | — | — | — | 0/0 |" in report.markdown
    json.loads(report.files()["report.json"])


def test_results_that_cannot_be_told_apart_are_refused() -> None:
    with pytest.raises(ReportError, match="labelled 'base'"):
        build_report(base_result(), base_result(), judges=JUDGES)
    tuned = tuned_result()
    tuned.items.append(replace(tuned.items[0]))
    with pytest.raises(ReportError, match="q7"):
        build_report(base_result(), tuned, judges=JUDGES)
