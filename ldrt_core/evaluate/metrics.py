"""Text metrics and statistics for the evaluation report: pure functions, no I/O.

Input: answers and reference answers (strings), judge scores (floats, None where a verdict could
not be had). Output: ROUGE-1/2/L F-measures, length ratios and hedge counts per answer; mean ± std
per category; agreement between two judges (Spearman, quadratic-weighted kappa); a bootstrap
interval for the tuned-minus-base difference. The metrics follow arXiv 2501.15370.

Tokens (`tokenize`) are what ROUGE and the length ratio count. rouge_score's own tokenizer keeps
only [a-z0-9], so "μGy" becomes "gy" (the same token as "Gy") and "TGF-β1" becomes "tgf", "1";
here, after NFKC normalisation (the micro sign µ becomes the Greek μ, "cm²" becomes "cm2") and
lower-casing:
- a word is a run of Unicode letters and digits; hyphens join words ("il-6", "tgf-β1",
  "5-fold"), a dot between digits is a decimal point ("0.5"), and a comma followed by exactly
  three digits is a thousands separator and dropped ("1,451" -> "1451");
- a number written against its unit is split from it, so "0.5Gy" and "0.5 Gy" both give
  "0.5", "gy" (and "24h" gives "24", "h");
- the signs < > ≤ ≥ = ± ≈ % are tokens of their own ("p<0.05" -> "p", "<", "0.05";
  "95%" -> "95", "%"); any other punctuation is a separator and never a token.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any, Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "DEFAULT_HEDGES",
    "Difference",
    "Summary",
    "bootstrap_difference",
    "by_category",
    "hedge_counts",
    "hedges_per_answer",
    "length_ratio",
    "paired",
    "quadratic_weighted_kappa",
    "rouge",
    "spearman",
    "summarize",
    "tokenize",
]

_TOKEN: Final = re.compile(
    r"[^\W_]+(?:(?:-|(?<=\d)\.(?=\d)|(?<=\d),(?=\d{3}(?!\d)))[^\W_]+)*"  # words and numbers
    r"|[<>≤≥=±≈%]"  # signs that change what a number means
)
_NUMBER_THEN_UNIT: Final = re.compile(r"(\d+(?:\.\d+)?)([^\W\d_].*)")
_THOUSANDS: Final = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")

ROUGE_TYPES: Final = ("rouge1", "rouge2", "rougeL")

# Hedging words, each counted as a whole word. The paper saw "appears" fall from 1,451 to 49
# answers after tuning. "indicate(s)" and "suggested" are left out: in captions they report a
# finding ("the data indicate") rather than hedge one.
DEFAULT_HEDGES: Final[tuple[str, ...]] = (
    "appears",
    "appear",
    "appeared",
    "seems",
    "seem",
    "seemed",
    "likely",
    "unlikely",
    "possibly",
    "possible",
    "perhaps",
    "may",
    "might",
    "could",
    "suggests",
    "suggest",
    "suggesting",
    "probably",
    "apparently",
    "presumably",
    "potentially",
)


def tokenize(text: str) -> list[str]:
    """Lower-cased tokens that keep units, Greek letters and decimals whole (see module doc)."""
    tokens: list[str] = []
    for match in _TOKEN.finditer(unicodedata.normalize("NFKC", text).lower()):
        token = _THOUSANDS.sub("", match.group(0))
        split = _NUMBER_THEN_UNIT.fullmatch(token)
        tokens.extend(split.groups() if split else (token,))
    return tokens


class _Tokenizer:
    """The object rouge_score's `RougeScorer` calls `.tokenize(text)` on."""

    def tokenize(self, text: str) -> list[str]:
        return tokenize(text)


@cache
def _scorer() -> Any:
    # Imported here: rouge_score pulls in nltk and absl, which only scoring needs.
    from rouge_score import rouge_scorer  # type: ignore[import-untyped]

    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), tokenizer=_Tokenizer())


def rouge(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-1, ROUGE-2 and ROUGE-L F-measures; all 0.0 when either side has no tokens."""
    if not tokenize(prediction) or not tokenize(reference):
        return dict.fromkeys(ROUGE_TYPES, 0.0)
    scores = _scorer().score(reference, prediction)  # rouge_score takes (target, prediction)
    return {name: float(scores[name].fmeasure) for name in ROUGE_TYPES}


def length_ratio(prediction: str, reference: str) -> float | None:
    """Prediction tokens over reference tokens; None when the reference has none."""
    reference_tokens = len(tokenize(reference))
    return len(tokenize(prediction)) / reference_tokens if reference_tokens else None


@lru_cache(maxsize=32)
def _hedge_patterns(lexicon: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    patterns = []
    for entry in lexicon:
        words = entry.split()
        if not words:
            raise ValueError(f"hedge lexicon entry {entry!r} has no words")
        # Whole words only ("mayor" is not "may"); a phrase matches across any whitespace.
        body = r"\s+".join(re.escape(word) for word in words)
        patterns.append(re.compile(rf"(?<!\w){body}(?!\w)", re.IGNORECASE))
    return tuple(patterns)


def hedge_counts(texts: Iterable[str], lexicon: Sequence[str] = DEFAULT_HEDGES) -> dict[str, int]:
    """Occurrences of each lexicon entry over all texts, zeros included, in lexicon order.

    Case-insensitive, whole words; entries are counted independently, so with both "possible"
    and "it is possible" in the lexicon, "it is possible" counts once for each.
    """
    patterns = _hedge_patterns(tuple(lexicon))
    counts = dict.fromkeys(lexicon, 0)
    for text in texts:
        for entry, pattern in zip(lexicon, patterns, strict=True):
            counts[entry] += len(pattern.findall(text))
    return counts


def hedges_per_answer(texts: Iterable[str], lexicon: Sequence[str] = DEFAULT_HEDGES) -> list[int]:
    """The number of hedges (all lexicon entries together) in each text."""
    patterns = _hedge_patterns(tuple(lexicon))
    return [sum(len(pattern.findall(text)) for pattern in patterns) for text in texts]


@dataclass(frozen=True)
class Summary:
    n: int  # values counted
    mean: float | None  # None when n == 0
    std: float | None  # sample std (ddof=1); 0.0 when n == 1, None when n == 0
    missing: int = 0  # None (or NaN) values left out: a verdict missing is not a 0

    def as_dict(self) -> dict[str, float | int | None]:
        return {"n": self.n, "mean": self.mean, "std": self.std, "missing": self.missing}

    def __str__(self) -> str:
        counts = f"n={self.n}" + (f", {self.missing} missing" if self.missing else "")
        if self.mean is None or self.std is None:
            return f"n/a ({counts})"
        return f"{self.mean:.2f} ± {self.std:.2f} ({counts})"


def summarize(values: Iterable[float | None]) -> Summary:
    """Mean and sample std of the values that are there; None and NaN count as missing."""
    present: list[float] = []
    missing = 0
    for value in values:
        if value is None or math.isnan(value):
            missing += 1
        else:
            present.append(float(value))
    if not present:
        return Summary(n=0, mean=None, std=None, missing=missing)
    array = np.asarray(present, dtype=np.float64)
    std = float(array.std(ddof=1)) if array.size > 1 else 0.0
    return Summary(n=int(array.size), mean=float(array.mean()), std=std, missing=missing)


def by_category(rows: Iterable[tuple[str, float | None]]) -> dict[str, Summary]:
    """A `Summary` per category, categories sorted, then "overall" over all rows."""
    grouped: dict[str, list[float | None]] = {}
    for category, value in rows:
        if category == "overall":
            raise ValueError('"overall" is reserved for the summary over all categories')
        grouped.setdefault(category, []).append(value)
    result = {category: summarize(grouped[category]) for category in sorted(grouped)}
    result["overall"] = summarize(value for values in grouped.values() for value in values)
    return result


def paired(a: Sequence[float | None], b: Sequence[float | None]) -> tuple[list[float], list[float]]:
    """The pairs where both sides have a value, as two lists (for `spearman` and the kappa)."""
    if len(a) != len(b):
        raise ValueError(f"paired scores need equal lengths, got {len(a)} and {len(b)}")
    kept = [(x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    return [x for x, _ in kept], [y for _, y in kept]


def _average_ranks(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    # Ranks from 1; tied values share the mean of the ranks they span.
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    first = np.cumsum(counts) - counts + 1
    mean_rank: npt.NDArray[np.float64] = first + (counts - 1) / 2.0
    return mean_rank[inverse]


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's rho (Pearson on average ranks); None with < 2 pairs or a constant side."""
    if len(a) != len(b):
        raise ValueError(f"paired scores need equal lengths, got {len(a)} and {len(b)}")
    if len(a) < 2:
        return None
    ranks_a = _average_ranks(np.asarray(a, dtype=np.float64))
    ranks_b = _average_ranks(np.asarray(b, dtype=np.float64))
    dev_a, dev_b = ranks_a - ranks_a.mean(), ranks_b - ranks_b.mean()
    spread = math.sqrt(float(dev_a @ dev_a) * float(dev_b @ dev_b))
    return float(dev_a @ dev_b) / spread if spread > 0 else None


def quadratic_weighted_kappa(
    a: Sequence[float], b: Sequence[float], low: int = 0, high: int = 10
) -> float | None:
    """Cohen's kappa with quadratic weights between two raters on the scale [low, high].

    Ratings are rounded half up (6.5 -> 7) and clipped into [low, high]. None when undefined:
    no pairs, or no disagreement expected by chance (both raters always give one same rating).
    """
    if len(a) != len(b):
        raise ValueError(f"paired scores need equal lengths, got {len(a)} and {len(b)}")
    if high <= low:
        raise ValueError(f"the rating scale needs low < high, got [{low}, {high}]")
    if not a:
        return None
    k = high - low + 1
    rated_a = _ratings(a, low, high)
    rated_b = _ratings(b, low, high)
    observed = np.zeros((k, k))
    np.add.at(observed, (rated_a, rated_b), 1.0)
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / len(a)
    grid = np.arange(k)
    weights = (grid[:, None] - grid[None, :]) ** 2 / (k - 1) ** 2
    chance = float((weights * expected).sum())
    return 1.0 - float((weights * observed).sum()) / chance if chance > 0 else None


def _ratings(values: Sequence[float], low: int, high: int) -> npt.NDArray[np.intp]:
    # np.round would send 6.5 to 6 (half to even); judges' half points should go up.
    rounded = np.floor(np.asarray(values, dtype=np.float64) + 0.5)
    return (np.clip(rounded, low, high) - low).astype(np.intp)


@dataclass(frozen=True)
class Difference:
    estimate: float  # mean(b) - mean(a): tuned minus base when b is the tuned model
    low: float  # percentile bootstrap interval
    high: float
    resamples: int
    confidence: float

    def __str__(self) -> str:
        return (
            f"{self.estimate:+.2f} [{self.low:+.2f}, {self.high:+.2f}] "
            f"({self.confidence:.0%} CI, {self.resamples} resamples)"
        )


def bootstrap_difference(
    a: Sequence[float],
    b: Sequence[float],
    *,
    paired: bool = True,
    groups: Sequence[Hashable] | None = None,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Difference:
    """mean(b) - mean(a) with a percentile bootstrap interval; the same for the same seed.

    Paired: a[i] and b[i] score the same question, so the same questions are resampled on both
    sides. Unpaired: each side is resampled on its own and the lengths may differ.
    `groups` (paired only): questions that are not independent of each other (the turns of one
    conversation, the questions about one figure) share a group, and whole groups are resampled,
    so the interval is not narrowed by counting one figure's questions as separate evidence.
    """
    if not a or not b:
        raise ValueError("bootstrap_difference needs values on both sides")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    values_a = np.asarray(a, dtype=np.float64)
    values_b = np.asarray(b, dtype=np.float64)
    rng = np.random.default_rng(seed)
    if paired:
        if values_a.size != values_b.size:
            raise ValueError(
                f"paired bootstrap needs equal lengths, got {values_a.size} and {values_b.size}"
            )
        differences = values_b - values_a
        estimate = float(differences.mean())
        if groups is None:
            index = rng.integers(0, differences.size, size=(resamples, differences.size))
            means = differences[index].mean(axis=1)
        else:
            if len(groups) != differences.size:
                raise ValueError(f"{len(groups)} groups for {differences.size} paired values")
            _, member = np.unique(np.asarray([str(g) for g in groups]), return_inverse=True)
            sums = np.bincount(member, weights=differences)
            counts = np.bincount(member).astype(np.float64)
            index = rng.integers(0, sums.size, size=(resamples, sums.size))
            means = sums[index].sum(axis=1) / counts[index].sum(axis=1)
    else:
        if groups is not None:
            raise ValueError("groups apply to a paired bootstrap only")
        estimate = float(values_b.mean() - values_a.mean())
        index_a = rng.integers(0, values_a.size, size=(resamples, values_a.size))
        index_b = rng.integers(0, values_b.size, size=(resamples, values_b.size))
        means = values_b[index_b].mean(axis=1) - values_a[index_a].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Difference(
        estimate=estimate,
        low=float(low),
        high=float(high),
        resamples=resamples,
        confidence=confidence,
    )
