"""Named filters over figure-caption pairs, configured by name and chained.

Input: `PairCandidate`s (caption, rendered PNG, paper title, mentions) and a chain config, a
sequence of mappings `{"name": <filter name>, **params}`. Output: a `ChainResult`: the pairs every
filter kept, the filter and reason that dropped each other pair, and per-filter counts.

A filter is a frozen dataclass whose fields are its parameters, registered under a unique name
(`@register`); `build_filter` makes one from a name and parameters, refusing unknown names and
unknown or ill-typed parameters. `apply` sees a whole batch and returns one `Decision` per pair in
order, so the dedupe filters can compare pairs; in a chain each filter sees only what the filters
before it kept, and a duplicate is dropped in favour of its first occurrence in that order.

Reasons read "<kind>: <detail>" ("low relevance: score 0.50 < 1"). `ChainResult.dropped` keeps
the whole reason per pair; `FilterStats.reasons` counts the kinds, so the stats stay small when
every detail (a score, the pair_key a duplicate copies) is different.

The text and image heuristics are cheap and tuned to be conservative; each filter's docstring
says what it looks at and what it misses.
"""

# Dashes in the patterns below are meant.
# ruff: noqa: RUF001, RUF002

from __future__ import annotations

import dataclasses
import difflib
import io
import math
import re
from abc import ABC, abstractmethod
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, TypeVar

import numpy as np
import numpy.typing as npt
from PIL import Image

from ldrt_core.curate.imagehash import MAX_PIXEL_DIFFERENCE, NearCopies, phash
from ldrt_core.curate.records import Decision, PairCandidate
from ldrt_core.extract.labels import caption_body

# --- registry -------------------------------------------------------------------------------


class PairFilter(ABC):
    """A filter over a batch of pairs. Subclasses are frozen dataclasses of their parameters."""

    name: ClassVar[str]

    @abstractmethod
    def apply(self, pairs: Sequence[PairCandidate]) -> list[Decision]:
        """One decision per pair, in the order of `pairs`."""

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, spec.name)
            default = spec.default
            if isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, int):
                ok = isinstance(value, int) and not isinstance(value, bool)
            elif isinstance(default, float):
                ok = isinstance(value, int | float) and not isinstance(value, bool)
                if ok:
                    object.__setattr__(self, spec.name, float(value))
            else:
                continue  # checked by the filter's `validate`
            if not ok:
                kind = {"bool": "true or false", "int": "an integer", "float": "a number"}
                raise self._invalid(
                    spec.name, f"must be {kind[type(default).__name__]}, got {value!r}"
                )
        self.validate()

    def validate(self) -> None:  # noqa: B027 - optional hook, most filters need no checks
        """Check parameter values; raise `self._invalid(...)` for a bad one."""

    def _invalid(self, param: str, problem: str) -> ValueError:
        return ValueError(f"filter {self.name!r}: parameter {param!r} {problem}")


_PF = TypeVar("_PF", bound=type[PairFilter])

_REGISTRY: dict[str, type[PairFilter]] = {}


def register(cls: _PF) -> _PF:
    """Class decorator: make a filter buildable by its `name`. A taken name is a ValueError."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"filter {cls.__name__} must be a dataclass of its parameters")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"filter {cls.__name__} needs a class attribute `name`")
    if name in _REGISTRY:
        taken = _REGISTRY[name]
        raise ValueError(
            f"a filter named {name!r} is already registered ({taken.__module__}.{taken.__name__})"
        )
    _REGISTRY[name] = cls
    return cls


def filter_names() -> list[str]:
    """The registered filter names, sorted."""
    return sorted(_REGISTRY)


def build_filter(name: str, params: Mapping[str, Any]) -> PairFilter:
    """The filter registered as `name`, with `params` over its defaults."""
    cls = _REGISTRY.get(name)
    if cls is None:
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        raise ValueError(f"unknown filter {name!r}; {hint}known filters: {filter_names()}")
    known = [spec.name for spec in dataclasses.fields(cls)]  # type: ignore[arg-type]
    for param in params:
        if param not in known:
            close = difflib.get_close_matches(str(param), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(
                f"filter {name!r} has no parameter {param!r}{hint}; its parameters: {known}"
            )
    return cls(**params)


def build_chain(config: Sequence[Mapping[str, Any]]) -> list[PairFilter]:
    """Filters from config items `{"name": ..., **params}`, in order."""
    chain = []
    for position, item in enumerate(config):
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise ValueError(
                f"filter chain item {position} must be a mapping with a string 'name', got {item!r}"
            )
        params = {key: value for key, value in item.items() if key != "name"}
        chain.append(build_filter(item["name"], params))
    return chain


# Cheap text filters first, then image reads, the batch-wide image dedupe last.
DEFAULT_CHAIN: Final[tuple[dict[str, Any], ...]] = (
    {"name": "panel_label_only"},
    {"name": "caption_length", "min_words": 5, "max_words": 500},
    {"name": "english", "min_share": 0.5},
    {"name": "relevance", "threshold": 1.0},
    {"name": "duplicate_captions", "min_similarity": 0.9},
    {"name": "image_size", "min_side": 64, "max_side": 10000, "max_aspect": 6.0},
    {"name": "table_like"},
    {"name": "equation_like"},
    {"name": "duplicate_images", "max_distance": 4},
)


# --- running a chain ------------------------------------------------------------------------


@dataclass
class FilterStats:
    name: str
    params: dict[str, Any]
    seen: int
    kept: int
    dropped: int
    reasons: Counter[str] = field(default_factory=Counter)  # reason kind -> pairs dropped


@dataclass
class ChainResult:
    kept: list[PairCandidate]
    dropped: dict[str, tuple[str, str]]  # pair_key -> (filter name, reason)
    stats: list[FilterStats]


def run_chain(pairs: Sequence[PairCandidate], chain: Sequence[PairFilter]) -> ChainResult:
    """Apply the filters in order; each sees only the pairs the filters before it kept."""
    current = list(pairs)
    dropped: dict[str, tuple[str, str]] = {}
    stats = []
    for pair_filter in chain:
        decisions = pair_filter.apply(current)
        if len(decisions) != len(current):
            raise RuntimeError(
                f"filter {pair_filter.name!r} returned {len(decisions)} decisions "
                f"for {len(current)} pairs"
            )
        kept = []
        reasons: Counter[str] = Counter()
        for pair, decision in zip(current, decisions, strict=True):
            if decision.kept:
                kept.append(pair)
                continue
            reason = decision.reason or "dropped"
            dropped[pair.pair_key] = (pair_filter.name, reason)
            reasons[reason_kind(reason)] += 1
        stats.append(
            FilterStats(
                name=pair_filter.name,
                params=dataclasses.asdict(pair_filter),  # type: ignore[call-overload]
                seen=len(current),
                kept=len(kept),
                dropped=len(current) - len(kept),
                reasons=reasons,
            )
        )
        current = kept
    return ChainResult(kept=current, dropped=dropped, stats=stats)


def reason_kind(reason: str) -> str:
    """The part of a reason before its first ": " ("low relevance" of "low relevance: 0.5 < 1")."""
    return reason.split(": ", 1)[0]


# --- caption text ---------------------------------------------------------------------------

_WORD: Final = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")  # letters and digits, inner ' and -
_LETTERS: Final = re.compile(r"[^\W\d_]+")


def _word_count(text: str) -> int:
    return len(_WORD.findall(text))


@register
@dataclass(frozen=True)
class CaptionLength(PairFilter):
    """Drops captions whose body (label stripped) has too few or too many words."""

    name: ClassVar[str] = "caption_length"
    min_words: int = 5
    max_words: int = 500

    def validate(self) -> None:
        if self.min_words < 0:
            raise self._invalid("min_words", f"must be >= 0, got {self.min_words}")
        if self.max_words < self.min_words:
            raise self._invalid("max_words", f"must be >= min_words, got {self.max_words}")

    def apply(self, pairs: Sequence[PairCandidate]) -> list[Decision]:
        decisions = []
        for pair in pairs:
            words = _word_count(caption_body(pair.caption))
            if words < self.min_words:
                decisions.append(
                    Decision.drop(f"caption too short: {words} words < {self.min_words}")
                )
            elif words > self.max_words:
                decisions.append(
                    Decision.drop(f"caption too long: {words} words > {self.max_words}")
                )
            else:
                decisions.append(Decision.keep())
        return decisions


# Tokens that label or point but say nothing: "(A)", "a)", "B.", "ii", "1", "Fig.", "Figure 3".
_MARKER_ITEM = r"(?:[a-z]|[ivx]{1,4}|\d{1,3}[a-z]?|[a-z][-–,][a-z])"
_PANEL_MARKER: Final = re.compile(
    rf"(?:[(\[]{_MARKER_ITEM}[)\]][.:,;]*)+|{_MARKER_ITEM}[)\].:,;]*", re.IGNORECASE
)
# fmt: off
_LABEL_WORDS: Final = frozenset((
    "figure", "figures", "fig", "figs", "panel", "panels", "supplementary", "supplemental",
    "suppl", "extended", "data", "and", "to", "continued", "cont", "scheme", "plate", "inset",
))
# fmt: on


@register
@dataclass(frozen=True)
class PanelLabelOnly(PairFilter):
    """Drops captions that are only panel markers and labels: "(A)", "(a) (b)", "Figure 3", "".

    A real word has two or more letters and is neither a marker (a letter, a short roman
    numeral like ii or viii, a number, bracketed or not) nor a label word (figure, panel,
    supplementary, continued, ...).
    """

    name: ClassVar[str] = "panel_label_only"
    min_real_words: int = 1  # fewer real words than this and the caption is only labels

    def validate(self) -> None:
        if self.min_real_words < 1:
            raise self._invalid("min_real_words", f"must be >= 1, got {self.min_real_words}")

    def apply(self, pairs: Sequence[PairCandidate]) -> list[Decision]:
        decisions = []
        for pair in pairs:
            real = _real_words(caption_body(pair.caption))
            if real < self.min_real_words:
                decisions.append(Decision.drop(f"caption is only labels: {real} real words"))
            else:
                decisions.append(Decision.keep())
        return decisions


def _real_words(body: str) -> int:
    real = 0
    for token in body.split():
        if _PANEL_MARKER.fullmatch(token):
            continue
        letters = "".join(_LETTERS.findall(token)).lower()
        if len(letters) >= 2 and letters not in _LABEL_WORDS:
            real += 1
    return real


# Function words. Sentence-level English evidence, and a count against other languages' own.
# fmt: off
_ENGLISH_WORDS: Final = frozenset((
    "the", "of", "and", "in", "with", "to", "for", "is", "are", "was", "were", "by", "from",
    "at", "after", "on",
))
# fmt: on
# Words that are also common in English captions ("et al.", "SE", "un-irradiated", "para-")
# are left out.
# fmt: off
_FOREIGN_WORDS: Final = frozenset((
    # German
    "der", "die", "das", "und", "mit", "von", "den", "dem", "des", "ist", "sind", "wurde",
    "wurden", "nach", "bei", "zu", "auf", "ein", "eine", "einer", "nicht", "zur", "zum",
    "für", "über", "unter",
    # French
    "le", "la", "les", "du", "est", "sont", "une", "avec", "dans", "pour", "par", "sur",
    "aux", "été", "entre",
    # Spanish, Portuguese
    "el", "los", "las", "del", "con", "por", "una", "son", "fue", "que", "en", "al", "dos",
    "da", "em", "com",
))
# fmt: on
_SENTENCE_END: Final = re.compile(r"(?<=[.!?;])\s+(?=[(\[]?[A-Z0-9])")
_JUDGED_SENTENCE_WORDS = 4  # shorter sentences ("(B) 0.5 Gy.") are not judged


@register
@dataclass(frozen=True)
class English(PairFilter):
    """Keeps English captions; drops German, French, Spanish, Chinese, ... ones.

    A heuristic, not a language model. The caption body's letter tokens (two letters or more,
    lowercased) are read three ways, and the caption is dropped when any says "not English":
    (1) the share of tokens with non-ASCII letters must be below `max_non_ascii` (CJK, Cyrillic,
    accented text fail; the odd "μGy" or "TNF-α" does not); (2) German/French/Spanish function
    words must not outnumber English ones; (3) of the sentences with at least four words, at
    least `min_share` must hold an English function word (the, of, and, in, with, to, ...).
    A caption too short to judge by (3) passes on (1) and (2). Misses: English captions written
    as bare keyword lists can fail (3); a foreign caption full of English loan words can pass.
    """

    name: ClassVar[str] = "english"
    min_share: float = 0.5  # of judged sentences holding an English function word
    max_non_ascii: float = 0.3  # share of letter tokens with a non-ASCII letter

    def validate(self) -> None:
        for param in ("min_share", "max_non_ascii"):
            value = getattr(self, param)
            if not 0.0 <= value <= 1.0:
                raise self._invalid(param, f"must be in [0, 1], got {value}")

    def apply(self, pairs: Sequence[PairCandidate]) -> list[Decision]:
        return [self._decide(caption_body(pair.caption)) for pair in pairs]

    def _decide(self, body: str) -> Decision:
        tokens = [token.lower() for token in _LETTERS.findall(body)]
        tokens = [token for token in tokens if len(token) >= 2]
        if not tokens:
            return Decision.keep()  # nothing to judge; other filters drop empty captions
        non_ascii = sum(not token.isascii() for token in tokens) / len(tokens)
        if non_ascii >= self.max_non_ascii:
            return Decision.drop(f"not English: {non_ascii:.0%} of words have non-ASCII letters")
        english = sum(token in _ENGLISH_WORDS for token in tokens)
        foreign = sum(token in _FOREIGN_WORDS for token in tokens)
        if foreign > english:
            return Decision.drop(
                f"not English: {foreign} non-English function words, {english} English"
            )
        judged = with_function_word = 0
        for sentence in _SENTENCE_END.split(body):
            words = {token.lower() for token in _LETTERS.findall(sentence)}
            if len(words) < _JUDGED_SENTENCE_WORDS:
                continue
            judged += 1
            with_function_word += bool(words & _ENGLISH_WORDS)
        if judged and with_function_word / judged < self.min_share:
            return Decision.drop(
                f"not English: {with_function_word} of {judged} sentences "
                "hold an English function word"
            )
        return Decision.keep()


# --- relevance ------------------------------------------------------------------------------

LDRT_LEXICON: Final[Mapping[str, float]] = {
    "low-dose radiation": 3.0,
    "low dose radiation": 3.0,
    "low-dose radiotherapy": 3.0,
    "low dose radiotherapy": 3.0,
    "low-dose irradiation": 3.0,
    "low dose irradiation": 3.0,
    "ldrt": 3.0,
    "ldir": 3.0,
    "hormesis": 2.0,
    "hormetic": 2.0,
    "radioadaptive": 2.0,
    "adaptive response": 1.0,
    "radiotherapy": 2.0,
    "radiation therapy": 2.0,
    "irradiation": 2.0,
    "irradiated": 1.5,
    "radiation": 1.5,
    "gy": 1.0,  # the unit: "0.5 Gy", "0.5Gy"
    "cgy": 1.0,
    "mgy": 1.0,
    "dose": 1.0,
    "x-ray": 1.0,
    "osteoarthritis": 1.0,
    "arthritis": 1.0,
    "plantar fasciitis": 1.0,
    "epicondylitis": 1.0,
    "tendinopathy": 1.0,
    "benign disease": 1.0,
    "inflammation": 1.0,
    "inflammatory": 1.0,
    "cytokine": 1.0,
    "macrophage": 1.0,
    "lymphocyte": 1.0,
    "pneumonia": 1.0,
    "covid-19": 1.0,
    "alzheimer": 1.0,
    "amyloid": 1.0,
    "dna damage": 1.0,
    "abscopal": 1.0,
}


def _term_pattern(term: str) -> str:
    # Not inside a longer word ("mgy" holds no "gy"), but after a digit ("0.5Gy"); plurals count.
    body = r"[\s-]+".join(re.escape(part) for part in term.split())
    return rf"(?<![^\W\d_]){body}(?:s|es)?(?![^\W_])"


@register
@dataclass(frozen=True)
class Relevance(PairFilter):
    """Drops pairs whose text does not look like it is about low-dose radiation therapy.

    Score = sum over sources of (source weight x sum of the weights of the distinct lexicon terms
    found in that source): caption 1.0, mentions 0.5, paper title 0.5. Terms match whole words,
    case-insensitively, plurals included. A keyword score: it cannot tell "we did not irradiate"
    from "we irradiated", and terms overlap ("low-dose radiation" also scores "radiation").
    """

    name: ClassVar[str] = "relevance"
    threshold: float = 1.0
    lexicon: Mapping[str, float] | None = None  # term -> weight; None: the built-in LDRT_LEXICON
    caption_weight: float = 1.0
    mention_weight: float = 0.5
    title_weight: float = 0.5

    def validate(self) -> None:
        for param in ("threshold", "caption_weight", "mention_weight", "title_weight"):
            if getattr(self, param) < 0:
                raise self._invalid(param, f"must be >= 0, got {getattr(self, param)}")
        if self.lexicon is None:
            return
        if not isinstance(self.lexicon, Mapping) or not self.lexicon:
            raise self._invalid("lexicon", f"must be a non-empty mapping, got {self.lexicon!r}")
        for term, weight in self.lexicon.items():
            if not isinstance(term, str) or not term.strip():
                raise self._invalid("lexicon", f"has a term that is not a word: {term!r}")
            if isinstance(weight, bool) or not isinstance(weight, int | float) or weight <= 0:
                raise self._invalid("lexicon", f"weight of {term!r} must be > 0, got {weight!r}")
        object.__setattr__(self, "lexicon", {term: float(w) for term, w in self.lexicon.items()})

    def apply(self, pairs: Sequence[PairCandidate]) -> list[Decision]:
        lexicon = LDRT_LEXICON if self.lexicon is None else self.lexicon
        patterns = [
            (re.compile(_term_pattern(term.lower()), re.IGNORECASE), weight)
            for term, weight in lexicon.items()
        ]
        decisions = []
        for pair in pairs:
            score = self.score(pair, patterns)
            if score < self.threshold:
                decisions.append(
                    Decision.drop(f"low relevance: score {score:.2f} < {self.threshold:g}")
                )
            else:
                decisions.append(Decision.keep())
        return decisions

    def score(
        self, pair: PairCandidate, patterns: Sequence[tuple[re.Pattern[str], float]]
    ) -> float:
        sources = (
            (caption_body(pair.caption), self.caption_weight),
            (" \n ".join(pair.mentions), self.mention_weight),
            (pair.paper_title, self.title_weight),
        )
        total = 0.0
        for text, source_weight in sources:
            if text and source_weight:
                found = sum(weight for pattern, weight in patterns if pattern.search(text))
                total += source_weight * found
        return total


# --- images ---------------------------------------------------------------------------------


class UnreadableImageError(ValueError):
    """The pair's image bytes are not an image PIL can read."""


def _open(png: bytes) -> Image.Image:
    try:
        return Image.open(io.BytesIO(png))
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise UnreadableImageError(f"unreadable image: {error}") from error


def _flat_rgb(image: Image.Image) -> Image.Image:
    """RGB with transparency over white, as the page shows it."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        flat.alpha_composite(rgba)
        return flat.convert("RGB")
    return image.convert("RGB")


@dataclass(frozen=True)
class _Page:
    """Two downscaled grey copies of an image, for the layout heuristics. `grey`: at most 300
    columns (averaged) by at most 1000 rows (the darkest of each block of rows), so a 1 px
    horizontal rule stays as dark as drawn; `upright`: the same with rows and columns swapped."""

    width: int  # of the original
    height: int
    grey: npt.NDArray[np.float64]  # rows x columns, 0 black .. 255 white
    upright: npt.NDArray[np.float64]  # columns x rows of the image: vertical lines as rows
    colour: float  # share of clearly coloured (saturated, not near-white) pixels

    @classmethod
    def read(cls, png: bytes) -> _Page:
        with _open(png) as image:
            width, height = image.size
            try:
                rgb = _flat_rgb(image)
            except (OSError, ValueError) as error:
                raise UnreadableImageError(f"unreadable image: {error}") from error
        narrow = rgb.resize((min(width, _ANALYSIS_SIDE), height), Image.Resampling.BOX)
        pixels = np.asarray(narrow, dtype=np.float64)
        spread = pixels.max(axis=2) - pixels.min(axis=2)
        grey_full = pixels @ np.array([0.299, 0.587, 0.114])
        colour = float(np.mean((spread > 60) & (grey_full < 235)))
        flat = rgb.convert("L").resize((width, min(height, _ANALYSIS_SIDE)), Image.Resampling.BOX)
        upright = np.asarray(flat, dtype=np.float64).T
        return cls(width, height, _min_pool(grey_full), _min_pool(upright), colour)

    def share_white(self, level: float = 220.0) -> float:
        return float(np.mean(self.grey >= level))

    def share_ink(self, level: float = 128.0) -> float:
        return float(np.mean(self.grey < level))

    def rules(self, min_span: float) -> int:
        """Thin horizontal lines with an unbroken dark run over `min_span` of the width."""
        return _thin_lines(self.grey < _LINE_LEVEL, min_span)

    def verticals(self, min_span: float) -> int:
        """Thin vertical lines with an unbroken dark run over `min_span` of the height."""
        return _thin_lines(self.upright < _LINE_LEVEL, min_span)


_ANALYSIS_SIDE = 300  # pixels kept across the lines looked for (averaged)
_ANALYSIS_ROWS = 1000  # pixels kept along them, each the darkest of its block
# Darker than this is a line: black and dark grey rules, not a plot's default light-grey grid
# (matplotlib #b0b0b0 is 176).
_LINE_LEVEL = 150.0


def _min_pool(grey: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """At most 1000 rows, each the darkest of a block of rows: thin lines survive."""
    rows = grey.shape[0]
    factor = math.ceil(rows / _ANALYSIS_ROWS)
    if factor <= 1:
        return grey
    padded = np.full((math.ceil(rows / factor) * factor, grey.shape[1]), 255.0)
    padded[:rows] = grey
    pooled: npt.NDArray[np.float64] = padded.reshape(-1, factor, grey.shape[1]).min(axis=1)
    return pooled


def _thin_lines(dark: npt.NDArray[np.bool_], min_span: float) -> int:
    """Bands of rows with one unbroken dark run over `min_span` of the row, each no thicker
    than 2% of the rows (3 rows at least)."""
    rows, columns = dark.shape
    is_line = _longest_runs(dark) >= max(2, math.ceil(min_span * columns))
    thickest = max(3, math.ceil(0.02 * rows))
    lines = 0
    run = 0
    for flag in [*is_line.tolist(), False]:
        if flag:
            run += 1
            continue
        if 0 < run <= thickest:
            lines += 1
        run = 0
    return lines


def _longest_runs(dark: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """The longest run of True in each row."""
    rows, columns = dark.shape
    padded = np.zeros((rows, columns + 2), dtype=np.int8)
    padded[:, 1:-1] = dark
    edges = np.diff(padded, axis=1)
    longest = np.zeros(rows, dtype=np.int64)
    starts_r, starts_c = np.nonzero(edges == 1)
    _, ends_c = np.nonzero(edges == -1)  # same row order as the starts: runs alternate
    if starts_r.size:
        np.maximum.at(longest, starts_r, ends_c - starts_c)
    return longest


def _image_decisions(
    pairs: Sequence[PairCandidate], judge: Callable[[PairCandidate], Decision]
) -> list[Decision]:
    decisions = []
    for pair in pairs:
        try:
            decisions.append(judge(pair))
        except UnreadableImageError as error:
            decisions.append(Decision.drop(str(error)))
    return decisions


@register
@dataclass(frozen=True)
class ImageSize(PairFilter):
    """Drops images too small, too large or too elongated. Reads the size from the header only."""

    name: ClassVar[str] = "image_size"
    min_side: int = 64  # px; the shorter side
    max_side: int = 10000  # px; the longer side
    max_aspect: float = 6.0  # longer side / shorter side

    def validate(self) -> None:
        if self.min_side < 1:
            raise self._invalid("min_side", f"must be >= 1, got {self.min_side}")
        if self.max_side < self.min_side:
            raise self._invalid("max_side", f"must be >= min_side, got {self.max_side}")
        if self.max_aspect < 1:
            raise self._invalid("max_aspect", f"must be >= 1, got {self.max_aspect}")

    def apply(self, pairs: Sequence[PairCandidate]) -> list[Decision]:
        return _image_decisions(pairs, self._judge)

    def _judge(self, pair: PairCandidate) -> Decision:
        with _open(pair.image) as image:
            width, height = image.size
        short, long = sorted((width, height))
        if short < self.min_side:
            return Decision.drop(f"image too small: {width}x{height} px, min side {self.min_side}")
        if long > self.max_side:
            return Decision.drop(f"image too large: {width}x{height} px, max side {self.max_side}")
        if long / short > self.max_aspect:
            return Decision.drop(
                f"image too elongated: {width}x{height} px, aspect {long / short:.1f} "
                f"> {self.max_aspect:g}"
            )
        return Decision.keep()


_TABLE_CAPTION: Final = re.compile(r"tables?\b", re.IGNORECASE)


@register
@dataclass(frozen=True)
class TableLike(PairFilter):
    """Drops tables: a caption body starting with "Table", or an image that looks like one.

    An image looks like a table when it is mostly near-white, has almost no colour, and at least
    `min_rules` thin horizontal lines each run unbroken over `min_rule_span` of the width; if it
    also has a long vertical line (a plot's axis or frame, or a grid), it needs `grid_min_rules`.
    Misses: tables drawn without rules, gridded tables of few rows, tables with coloured
    shading. Can mistake a black-and-white plot without a y-axis line but with three long
    horizontal lines (a top and bottom frame, a reference line) for a table.
    """

    name: ClassVar[str] = "table_like"
    min_white: float = 0.85  # share of near-white pixels
    min_rules: int = 3  # booktabs tables have three; a plot's x-axis and frame make two
    grid_min_rules: int = 5  # rules needed when a long vertical line is there too
    min_rule_span: float = 0.7  # a rule's unbroken dark run, as a share of the width
    max_colour: float = 0.02  # share of saturated pixels; charts are usually coloured

    def validate(self) -> None:
        for param in ("min_white", "min_rule_span", "max_colour"):
            value = getattr(self, param)
            if not 0.0 <= value <= 1.0:
                raise self._invalid(param, f"must be in [0, 1], got {value}")
        for param in ("min_rules", "grid_min_rules"):
            if getattr(self, param) < 1:
                raise self._invalid(param, f"must be >= 1, got {getattr(self, param)}")

    def apply(self, pairs: Sequence[PairCandidate]) -> list[Decision]:
        return _image_decisions(pairs, self._judge)

    def _judge(self, pair: PairCandidate) -> Decision:
        if _TABLE_CAPTION.match(caption_body(pair.caption)):
            return Decision.drop("table: the caption starts with 'Table'")
        page = _Page.read(pair.image)
        white = page.share_white()
        if white < self.min_white or page.colour > self.max_colour:
            return Decision.keep()
        rules = page.rules(self.min_rule_span)
        needed = self.grid_min_rules if page.verticals(0.5) else self.min_rules
        if rules >= needed:
            return Decision.drop(f"table: {rules} horizontal rules, {white:.0%} white, no colour")
        return Decision.keep()


_EQUATION_CAPTION: Final = re.compile(
    r"(?:equations?|eqn?s?\.?)\s*\(?\d{1,3}[a-z]?\)?\s*[.:]?", re.IGNORECASE
)


@register
@dataclass(frozen=True)
class EquationLike(PairFilter):
    """Drops typeset equations: a caption that is only "Equation 1" / "Eq. (2)", or an image
    much wider than high, almost all white, with sparse dark ink, no colour and no axis line.

    Conservative: any colour, or any thin dark line over 70% of the width (an x-axis) or of the
    height (a y-axis), keeps the image, so wide charts stay. Misses: equations in colour, under
    a long fraction bar or with tall brackets, and equation images not wider than `min_aspect`.
    """

    name: ClassVar[str] = "equation_like"
    min_aspect: float = 4.0  # width / height
    max_ink: float = 0.08  # share of dark (< 128) pixels
    min_white: float = 0.85  # share of near-white pixels
    max_colour: float = 0.01

    def validate(self) -> None:
        if self.min_aspect < 1:
            raise self._invalid("min_aspect", f"must be >= 1, got {self.min_aspect}")
        for param in ("max_ink", "min_white", "max_colour"):
            value = getattr(self, param)
            if not 0.0 <= value <= 1.0:
                raise self._invalid(param, f"must be in [0, 1], got {value}")

    def apply(self, pairs: Sequence[PairCandidate]) -> list[Decision]:
        return _image_decisions(pairs, self._judge)

    def _judge(self, pair: PairCandidate) -> Decision:
        if _EQUATION_CAPTION.fullmatch(caption_body(pair.caption)):
            return Decision.drop("equation: the caption only names an equation")
        with _open(pair.image) as image:
            width, height = image.size
        if width < self.min_aspect * height:
            return Decision.keep()
        page = _Page.read(pair.image)
        ink = page.share_ink()
        if (
            ink < self.max_ink
            and page.share_white() >= self.min_white
            and page.colour <= self.max_colour
            and not page.rules(0.7)
            and not page.verticals(0.7)
        ):
            return Decision.drop(
                f"equation: {width}x{height} px strip, {ink:.1%} ink, no colour or axis"
            )
        return Decision.keep()


# --- duplicates -----------------------------------------------------------------------------


@register
@dataclass(frozen=True)
class DuplicateImages(PairFilter):
    """Drops images the batch already holds: the same bytes (sha256), or a near copy of an
    earlier kept image: a phash within `max_distance` bits, confirmed on the pixels (thumbnails
    within `max_pixel_difference` grey levels; `imagehash.NearCopies`), since pHash alone puts
    charts drawn on one template with different data within 2 to 4 bits. The first occurrence
    stays.

    Compares each image with every kept one (numpy over 64-bit hashes): 10k images take seconds.
    Near duplicates are judged against kept images only, so in a chain A ~ B ~ C where A and C
    are far apart, B goes and C stays.
    """

    name: ClassVar[str] = "duplicate_images"
    max_distance: int = 4  # phash bits
    max_pixel_difference: float = MAX_PIXEL_DIFFERENCE  # grey levels, 0-255

    def validate(self) -> None:
        if not 0 <= self.max_distance <= 64:
            raise self._invalid("max_distance", f"must be in [0, 64], got {self.max_distance}")
        if not 0 <= self.max_pixel_difference <= 255:
            raise self._invalid(
                "max_pixel_difference", f"must be in [0, 255], got {self.max_pixel_difference}"
            )

    def apply(self, pairs: Sequence[PairCandidate]) -> list[Decision]:
        by_sha: dict[str, str] = {}
        kept = NearCopies(self.max_distance, self.max_pixel_difference)
        decisions = []
        for pair in pairs:
            twin = by_sha.get(pair.image_sha256)
            if twin is not None:
                decisions.append(Decision.drop(f"duplicate image: same bytes as {twin}"))
                continue
            try:
                with _open(pair.image) as image:
                    value = phash(image)
                near = kept.find(pair.image, value)
            except (OSError, ValueError) as error:
                decisions.append(Decision.drop(f"unreadable image: {error}"))
                continue
            if near is not None:
                decisions.append(
                    Decision.drop(
                        f"duplicate image: near copy of {near[0]} (phash distance {near[1]})"
                    )
                )
                continue
            by_sha[pair.image_sha256] = pair.pair_key
            kept.add(pair.pair_key, pair.image, value)
            decisions.append(Decision.keep())
        return decisions


_NOT_WORD: Final = re.compile(r"[^\w\s]|_")
_SHINGLE = 3  # words per shingle


def normalize_for_dedupe(caption: str) -> str:
    """Caption body, lowercased, punctuation gone, whitespace collapsed."""
    return " ".join(_NOT_WORD.sub(" ", caption_body(caption).lower()).split())


def _shingles(text: str) -> frozenset[str]:
    words = text.split()
    if len(words) < _SHINGLE:
        return frozenset({text})
    return frozenset(" ".join(words[i : i + _SHINGLE]) for i in range(len(words) - _SHINGLE + 1))


@register
@dataclass(frozen=True)
class DuplicateCaptions(PairFilter):
    """Drops captions the batch already holds: the same normalised body, or a Jaccard
    similarity of word 3-gram sets of at least `min_similarity`. The first occurrence stays.

    Exact copies by a dict; near copies by prefix filtering: with shingles ordered rarest first,
    two sets that reach the threshold must share one of their first |S| - ceil(t|S|) + 1
    shingles, so each caption is compared only with kept captions sharing a rare shingle (exact,
    not sampled like MinHash). Captions with no words are left to the other filters.
    """

    name: ClassVar[str] = "duplicate_captions"
    min_similarity: float = 0.9  # Jaccard of word 3-gram sets

    def validate(self) -> None:
        if not 0.0 < self.min_similarity <= 1.0:
            raise self._invalid("min_similarity", f"must be in (0, 1], got {self.min_similarity}")

    def apply(self, pairs: Sequence[PairCandidate]) -> list[Decision]:
        texts = [normalize_for_dedupe(pair.caption) for pair in pairs]
        sets = [_shingles(text) if text else frozenset[str]() for text in texts]
        frequency: Counter[str] = Counter(s for shingles in sets for s in shingles)
        threshold = self.min_similarity
        exact: dict[str, int] = {}
        index: defaultdict[str, list[int]] = defaultdict(list)  # prefix shingle -> kept pairs
        decisions = []
        for position, (text, shingles) in enumerate(zip(texts, sets, strict=True)):
            if not text:
                decisions.append(Decision.keep())
                continue
            if text in exact:
                twin = pairs[exact[text]].pair_key
                decisions.append(Decision.drop(f"duplicate caption: same text as {twin}"))
                continue
            ordered = sorted(shingles, key=lambda s: (frequency[s], s))
            prefix = ordered[: len(ordered) - math.ceil(threshold * len(ordered) - 1e-9) + 1]
            best, best_similarity = -1, 0.0
            seen: set[int] = set()
            for shingle in prefix:
                for other in index[shingle]:
                    if other in seen:
                        continue
                    seen.add(other)
                    other_set = sets[other]
                    similarity = len(shingles & other_set) / len(shingles | other_set)
                    if similarity > best_similarity:
                        best, best_similarity = other, similarity
            if best >= 0 and best_similarity >= threshold:
                decisions.append(
                    Decision.drop(
                        f"duplicate caption: near copy of {pairs[best].pair_key} "
                        f"(Jaccard {best_similarity:.2f})"
                    )
                )
                continue
            exact[text] = position
            for shingle in prefix:
                index[shingle].append(position)
            decisions.append(Decision.keep())
        return decisions
