"""Evaluation metrics on hand-computed cases: tokens, ROUGE, hedges, summaries, agreement and
the bootstrap.

Every expected number is worked out in a comment next to it, not copied from a run.
"""

from __future__ import annotations

import math

import pytest
from rouge_score import rouge_scorer, tokenizers  # type: ignore[import-untyped]

from ldrt_core.evaluate.metrics import (
    DEFAULT_HEDGES,
    Summary,
    bootstrap_difference,
    by_category,
    hedge_counts,
    hedges_per_answer,
    length_ratio,
    paired,
    quadratic_weighted_kappa,
    rouge,
    spearman,
    summarize,
    tokenize,
)

pytestmark = pytest.mark.unit


# --- tokenize ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("0.5 Gy", ["0.5", "gy"]),
        ("0.5Gy", ["0.5", "gy"]),  # a unit written against its number: the same tokens
        ("μGy", ["μgy"]),
        ("µGy", ["μgy"]),  # the micro sign U+00B5 and Greek mu U+03BC are one letter after NFKC
        ("IL-6", ["il-6"]),
        ("TGF-β1", ["tgf-β1"]),
        ("p<0.05", ["p", "<", "0.05"]),
        ("95%", ["95", "%"]),
        ("≥2", ["≥", "2"]),
        ("1,451 answers", ["1451", "answers"]),  # thousands separator dropped
        ("Fig. 2, 24h later.", ["fig", "2", "24", "h", "later"]),  # a dot after letters ends it
        ("5-fold (n = 3)", ["5-fold", "n", "=", "3"]),  # brackets are separators, = is a sign
        ("\N{GREEK SMALL LETTER GAMMA}-H2AX foci", ["\N{GREEK SMALL LETTER GAMMA}-h2ax", "foci"]),
        ("... , ; !", []),  # punctuation alone is no token
    ],
)
def test_tokenize_keeps_units_and_non_ascii(text: str, tokens: list[str]) -> None:
    assert tokenize(text) == tokens


def test_rouge_score_default_tokenizer_loses_greek_letters_ours_does_not() -> None:
    # rouge_score keeps [a-z0-9] only: "μGy" -> "gy", so 20 μGy and 20 Gy look identical to it.
    assert tokenizers.DefaultTokenizer().tokenize("20 μGy") == ["20", "gy"]
    default = rouge_scorer.RougeScorer(["rouge1"]).score("dose of 20 Gy", "dose of 20 μGy")
    assert default["rouge1"].fmeasure == pytest.approx(1.0)
    # Ours: [dose, of, 20, μgy] vs [dose, of, 20, gy]: 3 of 4 unigrams shared, P = R = 3/4,
    # F = 0.75.
    assert rouge("dose of 20 μGy", "dose of 20 Gy")["rouge1"] == pytest.approx(0.75)
    # The brief's pair: μgy vs mgy differ as well, same 3/4.
    assert rouge("dose of 20 μGy", "dose of 20 mGy")["rouge1"] == pytest.approx(0.75)


# --- rouge, length_ratio -----------------------------------------------------------------------


def test_rouge_identical_is_one() -> None:
    text = "TGF-β1 rose after 0.5 Gy (p<0.05)."
    assert rouge(text, text) == pytest.approx({"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0})


def test_rouge_hand_computed() -> None:
    # prediction [the, dose, was, 0.5, gy] (5), reference [the, total, dose, was, 1.5, gy] (6).
    # ROUGE-1: shared the, dose, was, gy = 4; P = 4/5, R = 4/6; F = 2PR/(P+R) = 8/11.
    # ROUGE-2: bigrams 4 vs 5, shared only (dose, was); P = 1/4, R = 1/5; F = 2/9.
    # ROUGE-L: LCS = the dose was gy = 4, so as ROUGE-1: 8/11.
    scores = rouge("the dose was 0.5 gy", "the total dose was 1.5 gy")
    assert scores == pytest.approx({"rouge1": 8 / 11, "rouge2": 2 / 9, "rougeL": 8 / 11})


def test_rouge_l_follows_order() -> None:
    # [gy, was, the, dose] vs [the, dose, was, gy]: every unigram shared, ROUGE-1 = 1.
    # Bigrams (gy was)(was the)(the dose) vs (the dose)(dose was)(was gy): 1 of 3 each, F = 1/3.
    # LCS = "the dose" (after "was" the prediction has no "gy"): 2/4 each side, F = 1/2.
    scores = rouge("gy was the dose", "the dose was gy")
    assert scores == pytest.approx({"rouge1": 1.0, "rouge2": 1 / 3, "rougeL": 0.5})


@pytest.mark.parametrize(
    ("prediction", "reference"),
    [("apoptosis increased", "fibrosis fell"), ("", "the dose"), ("the dose", ""), ("", "")],
)
def test_rouge_disjoint_or_empty_is_zero(prediction: str, reference: str) -> None:
    assert rouge(prediction, reference) == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}


def test_length_ratio() -> None:
    # 5 tokens (the dose was 0.5 gy) over 6 (the total dose was 1.5 gy).
    assert length_ratio("the dose was 0.5 gy", "the total dose was 1.5 gy") == pytest.approx(5 / 6)
    # p, <, 0.05 = 3 tokens over "significant" = 1.
    assert length_ratio("p<0.05", "significant") == pytest.approx(3.0)
    assert length_ratio("", "the dose") == 0.0
    assert length_ratio("the dose", "") is None
    assert length_ratio("the dose", " ... ") is None  # punctuation only: no tokens


# --- hedges ------------------------------------------------------------------------------------


def test_hedge_counts_whole_words_case_insensitive() -> None:
    texts = [
        "It appears that the mayor may resign.",
        "APPEARS twice: appears. Its appearance MAY matter; perhaps.",
    ]
    counts = hedge_counts(texts)
    assert list(counts) == list(DEFAULT_HEDGES)  # every entry, zeros included, in lexicon order
    # appears: 1 (text 1) + 2 (APPEARS, appears; not "appearance") = 3.
    # may: 1 (not "mayor") + 1 (MAY) = 2. perhaps: 1. "appear" is not inside "appears": 0.
    assert counts["appears"] == 3
    assert counts["may"] == 2
    assert counts["perhaps"] == 1
    assert counts["appear"] == 0
    assert counts["might"] == 0
    assert sum(counts.values()) == 6
    # Per answer: text 1 = appears + may = 2; text 2 = 2 appears + may + perhaps = 4.
    assert hedges_per_answer(texts) == [2, 4]


def test_hedge_counts_custom_lexicon_with_phrase() -> None:
    texts = ["It is  possible that it\nis possible.", "Possible, but impossible it is."]
    counts = hedge_counts(texts, ["it is possible", "possible"])
    # "It is  possible" and "it\nis possible" match the phrase (any whitespace): 2.
    # "possible" alone: 2 in text 1, "Possible" in text 2; "impossible" is not a whole word: 3.
    assert counts == {"it is possible": 2, "possible": 3}
    assert hedges_per_answer(texts, ["it is possible", "possible"]) == [4, 1]


def test_hedge_counts_rejects_empty_entry() -> None:
    with pytest.raises(ValueError, match="no words"):
        hedge_counts(["text"], ["may", "  "])


# --- summaries ---------------------------------------------------------------------------------


def test_summarize_mean_and_sample_std() -> None:
    # mean 2.5; squared deviations 2.25 + 0.25 + 0.25 + 2.25 = 5; / (n - 1) = 5/3; std = √(5/3).
    summary = summarize([1, 2, 3, 4])
    assert summary.n == 4
    assert summary.mean == pytest.approx(2.5)
    assert summary.std == pytest.approx(math.sqrt(5 / 3))
    assert summary.std == pytest.approx(1.2910, abs=1e-4)
    assert summary.missing == 0
    assert str(summary) == "2.50 ± 1.29 (n=4)"


def test_summarize_counts_none_as_missing_not_zero() -> None:
    summary = summarize([1.0, None, 3.0, float("nan")])
    # Only 1 and 3 count: mean 2, std √((1 + 1) / 1) = √2.
    assert (summary.n, summary.missing) == (2, 2)
    assert summary.mean == pytest.approx(2.0)
    assert summary.std == pytest.approx(math.sqrt(2))
    assert str(summary) == "2.00 ± 1.41 (n=2, 2 missing)"
    assert summary.as_dict() == {
        "n": 2,
        "mean": 2.0,
        "std": pytest.approx(math.sqrt(2)),
        "missing": 2,
    }


def test_summarize_one_and_none() -> None:
    assert summarize([7.0]) == Summary(n=1, mean=7.0, std=0.0, missing=0)
    assert summarize([]) == Summary(n=0, mean=None, std=None, missing=0)
    assert summarize([None]) == Summary(n=0, mean=None, std=None, missing=1)
    assert str(summarize([])) == "n/a (n=0)"


def test_summary_str_format() -> None:
    assert str(Summary(n=1574, mean=5.2649, std=2.5312)) == "5.26 ± 2.53 (n=1574)"


def test_by_category_with_overall_last() -> None:
    rows = [("reasoning", 8.0), ("conversation", 4.0), ("reasoning", 6.0), ("conversation", None)]
    result = by_category(rows)
    assert list(result) == ["conversation", "reasoning", "overall"]
    # conversation: [4] (one missing); reasoning: [8, 6] mean 7, std √2;
    # overall: [4, 8, 6] mean 6, deviations 4 + 4 + 0 = 8, / 2 = 4, std 2.
    assert result["conversation"] == Summary(n=1, mean=4.0, std=0.0, missing=1)
    assert result["reasoning"].mean == pytest.approx(7.0)
    assert result["reasoning"].std == pytest.approx(math.sqrt(2))
    assert result["overall"].n == 3
    assert result["overall"].missing == 1
    assert result["overall"].mean == pytest.approx(6.0)
    assert result["overall"].std == pytest.approx(2.0)


def test_by_category_reserves_overall() -> None:
    with pytest.raises(ValueError, match="overall"):
        by_category([("overall", 1.0)])


# --- agreement ---------------------------------------------------------------------------------


def test_paired_drops_missing_on_either_side() -> None:
    assert paired([1.0, None, 3.0, 4.0], [2.0, 5.0, None, 6.0]) == ([1.0, 4.0], [2.0, 6.0])
    with pytest.raises(ValueError, match="equal lengths"):
        paired([1.0], [1.0, 2.0])


def test_spearman_monotone_reversed_and_ties() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 400]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [9, 7, 5, 1]) == pytest.approx(-1.0)
    # a = [1, 2, 2, 3] -> ranks [1, 2.5, 2.5, 4]; b = [1, 3, 2, 4] -> ranks [1, 3, 2, 4].
    # Deviations from 2.5: [-1.5, 0, 0, 1.5] and [-1.5, 0.5, -0.5, 1.5].
    # Σ products = 2.25 + 2.25 = 4.5; Σ squares 4.5 and 5; rho = 4.5 / √(4.5 · 5) = √0.9.
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(math.sqrt(0.9))


def test_spearman_undefined() -> None:
    assert spearman([5, 5, 5], [1, 2, 3]) is None  # a constant side has no ranks to correlate
    assert spearman([1], [2]) is None
    assert spearman([], []) is None


def test_kappa_identical_is_one() -> None:
    assert quadratic_weighted_kappa([0, 3, 7, 10, 5], [0, 3, 7, 10, 5]) == pytest.approx(1.0)


def test_kappa_hand_computed() -> None:
    # Scale 0..2, k = 3, W_ij = (i - j)² / 4: W = [[0, .25, 1], [.25, 0, .25], [1, .25, 0]].
    # Pairs (0,0) (1,2) (2,2) (2,1): O has ones at [0,0], [1,2], [2,2], [2,1].
    # Σ W·O = 0 + 0.25 + 0 + 0.25 = 0.5.
    # Marginals a = b = [1, 1, 2], N = 4; E_ij = a_i b_j / 4:
    # E = [[.25, .25, .5], [.25, .25, .5], [.5, .5, 1]].
    # Σ W·E = (.0625 + .5) + (.0625 + .125) + (.5 + .125) = 1.375.
    # kappa = 1 - 0.5 / 1.375 = 1 - 4/11 = 7/11.
    kappa = quadratic_weighted_kappa([0, 1, 2, 2], [0, 2, 2, 1], low=0, high=2)
    assert kappa == pytest.approx(7 / 11)


def test_kappa_clips_and_rounds() -> None:
    # -3 -> 0 and 12 -> 10: the same ratings as the other rater.
    assert quadratic_weighted_kappa([-3, 12], [0, 10]) == pytest.approx(1.0)
    # 6.6 -> 7, 2.4 -> 2, 4.5 -> 5 (half up, not half to even).
    assert quadratic_weighted_kappa([6.6, 2.4, 4.5], [7, 2, 5]) == pytest.approx(1.0)


def test_kappa_undefined_and_bad_scale() -> None:
    assert quadratic_weighted_kappa([], []) is None
    # Both raters always say 5: E puts all its mass on the diagonal, Σ W·E = 0.
    assert quadratic_weighted_kappa([5, 5, 5], [5, 5, 5]) is None
    with pytest.raises(ValueError, match="low < high"):
        quadratic_weighted_kappa([1], [1], low=3, high=3)


# --- bootstrap ---------------------------------------------------------------------------------

BASE = [3.0, 5.0, 4.0, 6.0, 2.0, 7.0, 5.0, 4.0, 6.0, 3.0]
TUNED = [5.0, 6.0, 6.0, 7.0, 4.0, 8.0, 5.0, 6.0, 7.0, 5.0]


def test_bootstrap_interval_contains_estimate() -> None:
    # mean(BASE) = 45/10 = 4.5; mean(TUNED) = 59/10 = 5.9; difference 1.4.
    difference = bootstrap_difference(BASE, TUNED, seed=1)
    assert difference.estimate == pytest.approx(1.4)
    assert difference.low <= difference.estimate <= difference.high
    assert difference.low > 0  # every per-question difference is 0, 1 or 2
    assert (difference.resamples, difference.confidence) == (2000, 0.95)


def test_bootstrap_constant_shift_is_exact() -> None:
    # b = a + 1 on every question: every paired resample has mean difference exactly 1.
    shifted = [value + 1 for value in BASE]
    difference = bootstrap_difference(BASE, shifted)
    assert (difference.estimate, difference.low, difference.high) == (1.0, 1.0, 1.0)


def test_bootstrap_deterministic_for_a_seed() -> None:
    first = bootstrap_difference(BASE, TUNED, seed=7, resamples=500)
    assert bootstrap_difference(BASE, TUNED, seed=7, resamples=500) == first
    assert bootstrap_difference(BASE, TUNED, seed=8, resamples=500) != first


def test_bootstrap_paired_needs_equal_lengths_unpaired_does_not() -> None:
    with pytest.raises(ValueError, match="equal lengths"):
        bootstrap_difference(BASE, TUNED[:-1])
    # Unpaired: mean(TUNED[:-1]) = 54/9 = 6; 6 - 4.5 = 1.5.
    difference = bootstrap_difference(BASE, TUNED[:-1], paired=False)
    assert difference.estimate == pytest.approx(1.5)
    assert difference.low <= 1.5 <= difference.high


def test_bootstrap_over_groups_counts_a_group_once() -> None:
    """Each question asked 5 times over (5 turns about one figure, all scored alike) is one
    figure's evidence: resampling figures gives the interval of the 10 figures, while resampling
    the 50 items as if independent narrows it by about sqrt(5)."""
    base5, tuned5 = [v for v in BASE for _ in range(5)], [v for v in TUNED for _ in range(5)]
    figures = [f"fig{i:02d}" for i in range(10) for _ in range(5)]
    grouped = bootstrap_difference(base5, tuned5, groups=figures, seed=3)
    alone = bootstrap_difference(BASE, TUNED, seed=3)
    assert grouped == alone  # the same draws of figures, the same interval
    naive = bootstrap_difference(base5, tuned5, seed=3)
    assert naive.estimate == grouped.estimate == pytest.approx(1.4)
    assert (naive.high - naive.low) < 0.6 * (grouped.high - grouped.low)


def test_bootstrap_groups_must_match_and_be_paired() -> None:
    with pytest.raises(ValueError, match="9 groups for 10"):
        bootstrap_difference(BASE, TUNED, groups=["g"] * 9)
    with pytest.raises(ValueError, match="paired bootstrap only"):
        bootstrap_difference(BASE, TUNED, paired=False, groups=["g"] * 10)


def test_bootstrap_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="both sides"):
        bootstrap_difference([], [1.0])
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_difference(BASE, TUNED, confidence=1.0)
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_difference(BASE, TUNED, resamples=0)
