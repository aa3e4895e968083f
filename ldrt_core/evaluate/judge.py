"""LLM judges: grade a model's answers about a figure against reference answers, 0 to 10.

Input: `JudgeItem`s (a question about one figure, the reference answer, the answer to grade, and
the figure's caption and citing sentences as context: the judge never sees the image) and an
`LLMClient` serving the judge model (Qwen2-72B, Llama-3.1-70B as in arXiv 2501.15370).
Output: one `Verdict` per item, in order: a score in [0, 10], the judge's reason and raw text, or
score None and an error when the request failed or the answer held no usable score. An
unparsable verdict is never a 0: averaging it in would punish the graded model for the judge.

Pairwise mode: `PairItem`s (two answers to one question) give `PairVerdict`s. Each pair is asked
in both orders (A/B, then B/A) and only a winner both orders agree on counts; a disagreement is
a tie marked inconsistent (MT-Bench's answer to position bias).

The prompts follow MT-Bench's reference-guided templates ("single-v1-ref", "pair-v2-ref"),
adapted to scientific figures, and ask for JSON. The JSON schema travels with each request so
that vLLM's structured output can enforce it, but the text is parsed here all the same, with
MT-Bench's `[[7]]` / `[[A]]` markers as a fallback, for backends that enforce nothing.
Bump JUDGE_PROMPT_VERSION whenever a prompt, a schema or the parsing changes: cached verdicts are
keyed by it (through `Judge.model_id`).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from ldrt_core.llm import (
    Completion,
    Failure,
    LLMClient,
    LLMConfigError,
    LLMError,
    Message,
    Request,
)

__all__ = [
    "JUDGE_PROMPT_VERSION",
    "PAIR_SCHEMA",
    "PAIR_SYSTEM",
    "PAIR_USER",
    "SCORE_SCHEMA",
    "SINGLE_SYSTEM",
    "SINGLE_USER",
    "Judge",
    "JudgeItem",
    "PairItem",
    "PairVerdict",
    "Verdict",
    "parse_pair_verdict",
    "parse_verdict",
    "summarize_pairwise",
]

JUDGE_PROMPT_VERSION: Final = "judge-v1"
MAX_SCORE: Final = 10

_MAX_RAW = 2000  # characters of the judge's text kept on a verdict: enough to audit a grade
# A verdict cut off mid-sentence may still hold score-like phrases ("a score of 10 would need"),
# which would read as a grade: none is taken from it.
CUT_OFF = "the judge's answer was cut off at its max_tokens: no score taken from it"
_MAX_REASON = 600  # characters of a reason taken from prose (no JSON reason to quote)
_MAX_DECODE_TRIES = 200  # `{` positions tried when digging JSON objects out of prose

Winner = Literal["a", "b", "tie"]
Choice = Literal["A", "B", "tie"]


# ---------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class JudgeItem:
    """One answer to grade. `caption` and `mentions` (citing sentences) stand in for the image."""

    item_id: str
    category: str  # conversation / detailed_description / complex_reasoning: for reports only
    question: str
    reference: str  # the reference answer
    answer: str  # the graded model's answer
    caption: str
    mentions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Verdict:
    """A grade: `score` in [0, 10], or None with `error` set. `raw` is the judge's text, cut."""

    score: float | None
    reason: str
    raw: str
    error: str | None = None


@dataclass(frozen=True)
class PairItem:
    """Two answers to one question; the judge says which is better."""

    item_id: str
    category: str
    question: str
    reference: str
    caption: str
    mentions: tuple[str, ...]
    answer_a: str
    answer_b: str


@dataclass(frozen=True)
class PairVerdict:
    """The outcome of both orders, un-swapped.

    `winner`: "a", "b", "tie" (also when the orders disagree: then `consistent` is False), or
    None when either order failed or could not be parsed (then `error` says why). `first` and
    `second` are the judge's raw texts for the A/B and the B/A order.
    """

    item_id: str
    winner: Winner | None
    consistent: bool
    first: str
    second: str
    error: str | None = None


# ---------------------------------------------------------------------------------- prompts

# The reason comes first so that the model states it before committing to a number (MT-Bench's
# "explanation, then rating"); parsing does not care about the order of the keys.
SCORE_SCHEMA: Final[dict[str, Any]] = {
    "title": "judge score",
    "type": "object",
    "properties": {
        "reason": {"type": "string"},
        # An enum, not minimum/maximum: every structured-output backend of vLLM supports enums.
        "score": {"type": "integer", "enum": list(range(MAX_SCORE + 1))},
    },
    "required": ["reason", "score"],
    "additionalProperties": False,
}
PAIR_SCHEMA: Final[dict[str, Any]] = {
    "title": "judge pair",
    "type": "object",
    "properties": {
        "reason": {"type": "string"},
        "winner": {"type": "string", "enum": ["A", "B", "tie"]},
    },
    "required": ["reason", "winner"],
    "additionalProperties": False,
}

_CONTEXT: Final = """\
You cannot see the figure. You are given its caption and the sentences of the paper that cite \
it, the question asked about the figure, and a reference answer written from the same \
material. Treat the reference answer and the caption as the truth about the figure."""

_CRITERIA: Final = """\
Judge, in this order:
1. Correctness: does it agree with the reference answer and the caption (what is plotted or \
imaged, doses and their units, groups, time points, the direction and size of effects)? A claim \
that contradicts them is a serious error.
2. Completeness: does it cover the points the reference answer makes?
3. Specificity: does it say what this figure shows rather than what figures like it usually \
show?
Penalise hedging that avoids answering (saying the image cannot be seen, that it depends, \
listing possibilities without choosing) and invented details about the figure (numbers, panels, \
groups or results that neither the caption, the citing sentences nor the reference support). \
Reasoning that goes beyond the figure is welcome when the question asks for it and it is sound. \
Length alone earns nothing: a longer answer is better only if what it adds is correct and \
relevant."""

SINGLE_SYSTEM: Final = f"""\
You are an impartial judge. You grade an AI assistant's answer to a question about one figure \
from a scientific paper on low-dose radiation therapy.

{_CONTEXT}

{_CRITERIA}

Score from 0 to 10:
- 10: correct, complete and specific; as good as the reference answer.
- 5: partly right: the main point is correct, but key details are missing, vague or wrong.
- 0: wrong, off-topic, a refusal, or no answer at all.
Use the whole scale; be strict and objective.

Reply with only this JSON object, no other text:
{{"reason": "<one or two sentences>", "score": <integer 0-10>}}"""

_GIVEN: Final = """\
[Caption]
{caption}

[Sentences citing the figure]
{mentions}

[Question]
{question}

[The Start of Reference Answer]
{reference}
[The End of Reference Answer]
"""

SINGLE_USER: Final = (
    _GIVEN
    + """
[The Start of Assistant's Answer]
{answer}
[The End of Assistant's Answer]

Grade the assistant's answer. Reply with only the JSON object."""
)

PAIR_SYSTEM: Final = f"""\
You are an impartial judge. You compare the answers of two AI assistants, A and B, to a \
question about one figure from a scientific paper on low-dose radiation therapy, and say which \
answer is better.

{_CONTEXT}

{_CRITERIA}

The order in which the answers are shown must not influence you, nor the assistants' names. \
Choose "tie" only when neither answer is better.

Reply with only this JSON object, no other text:
{{"reason": "<one or two sentences>", "winner": "A" | "B" | "tie"}}"""

PAIR_USER: Final = (
    _GIVEN
    + """
[The Start of Assistant A's Answer]
{answer_a}
[The End of Assistant A's Answer]

[The Start of Assistant B's Answer]
{answer_b}
[The End of Assistant B's Answer]

Which answer is better? Reply with only the JSON object."""
)


# ---------------------------------------------------------------------------------- the judge


class Judge:
    """A judge model behind an `LLMClient`: `grade` for 0-10 scores, `compare` for pairs.

    `name` labels results and cache keys (e.g. "qwen2-72b"); it is never sent to the server.
    The client does the concurrency and the retries; a failed item becomes a verdict with an
    error, never an exception.
    """

    def __init__(
        self,
        name: str,
        client: LLMClient,
        *,
        temperature: float = 0.0,
        max_tokens: int = 400,
    ) -> None:
        if not name.strip():
            raise LLMConfigError("expected a judge name (e.g. 'qwen2-72b'); got an empty one")
        if not (math.isfinite(temperature) and temperature >= 0):
            raise LLMConfigError(f"expected a judge temperature >= 0, got {temperature}")
        if max_tokens < 1:
            raise LLMConfigError(f"expected a judge max_tokens >= 1, got {max_tokens}")
        self.name = name.strip()
        self.client = client
        self.temperature = float(temperature)
        self.max_tokens = max_tokens
        self._log = logging.getLogger(__name__)

    def __repr__(self) -> str:
        return f"Judge({self.name!r}, model={self.client.model_id!r})"

    @property
    def model_id(self) -> str:
        """What a cached verdict depends on: judge, served model, prompts, sampling."""
        return (
            f"{self.name}/{self.client.model_id}|{JUDGE_PROMPT_VERSION}"
            f"|temperature={self.temperature!r}|max_tokens={self.max_tokens}"
        )

    def grade(self, items: Sequence[JudgeItem]) -> list[Verdict]:
        """One verdict per item, in order, from one batch."""
        if not items:
            return []
        requests = [
            self._request(
                SINGLE_SYSTEM,
                SINGLE_USER.format(
                    caption=item.caption,
                    mentions=_bullets(item.mentions),
                    question=item.question,
                    reference=item.reference,
                    answer=item.answer,
                ),
                SCORE_SCHEMA,
            )
            for item in items
        ]
        verdicts = []
        for outcome in self._ask(requests):
            if isinstance(outcome, Completion) and outcome.finish_reason == "length":
                verdicts.append(Verdict(None, "", _cut(outcome.text), CUT_OFF))
            elif isinstance(outcome, Completion):
                verdicts.append(parse_verdict(outcome.text))
            else:
                verdicts.append(Verdict(None, "", "", f"judge request failed: {outcome.error}"))
        self._report("graded", [v.error for v in verdicts])
        return verdicts

    def compare(self, items: Sequence[PairItem]) -> list[PairVerdict]:
        """One verdict per pair, in order; each pair is asked twice (A/B, then swapped)."""
        if not items:
            return []
        requests = []
        for item in items:
            for first, second in ((item.answer_a, item.answer_b), (item.answer_b, item.answer_a)):
                user = PAIR_USER.format(
                    caption=item.caption,
                    mentions=_bullets(item.mentions),
                    question=item.question,
                    reference=item.reference,
                    answer_a=first,
                    answer_b=second,
                )
                requests.append(self._request(PAIR_SYSTEM, user, PAIR_SCHEMA))
        readings: list[tuple[str, Choice | None, str | None]] = []
        for outcome in self._ask(requests):
            if isinstance(outcome, Completion) and outcome.finish_reason == "length":
                readings.append((_cut(outcome.text), None, CUT_OFF))
            elif isinstance(outcome, Completion):
                readings.append((_cut(outcome.text), *_read_pair(outcome.text)))
            else:
                readings.append(("", None, f"judge request failed: {outcome.error}"))
        verdicts = [
            _combine(item.item_id, readings[2 * i], readings[2 * i + 1])
            for i, item in enumerate(items)
        ]
        self._report("compared", [v.error for v in verdicts])
        return verdicts

    def _ask(self, requests: Sequence[Request]) -> list[Completion | Failure]:
        outcomes = self.client.complete_batch(requests)
        if len(outcomes) != len(requests):  # a broken backend: zip would pair the wrong items
            raise LLMError(
                f"{self.client!r} answered {len(outcomes)} of {len(requests)} judge requests"
            )
        return outcomes

    def _request(self, system: str, user: str, schema: Mapping[str, Any]) -> Request:
        return Request(
            messages=(Message("system", system), Message("user", user)),
            json_schema=schema,  # asked of the server (structured output) ...
            check_json=False,  # ... but parsed here, with the [[n]] fallback, never re-asked
            temperature=self.temperature,
            max_tokens=self.max_tokens,
        )

    def _report(self, what: str, errors: Sequence[str | None]) -> None:
        failed = [e for e in errors if e is not None]
        if failed:
            self._log.warning(
                "judge %s %s %d items, %d without a verdict (first: %s)",
                self.name,
                what,
                len(errors),
                len(failed),
                failed[0],
            )


def _bullets(mentions: Sequence[str]) -> str:
    return "\n".join(f"- {m}" for m in mentions if m.strip()) or "(none)"


# ---------------------------------------------------------------------------------- parsing

_NUMBER = r"[-+]?\d+(?:\.\d+)?"
_OUT_OF_TEN = r"(?:/|out\s+of)\s*10(?:\.0+)?(?!\d|\.\d)"
# MT-Bench's single-answer marker, also as [[7/10]].
_SCORE_MARKER = re.compile(rf"\[\[\s*({_NUMBER})\s*(?:{_OUT_OF_TEN}\s*)?\]\]", re.IGNORECASE)
# Last resort: "Score: 7/10", "score of 7", "Rating = 8.5", "'score': 6". The lookahead refuses
# a number that goes on ("7/100", "7 out of 5", "75" read as "7").
_SCORE_PHRASE = re.compile(
    rf"\b(?:score|rating|grade)\b[\"']?\s*(?:[:=]|is|of)?\s*[\"']?({_NUMBER})"
    rf"(?:\s*{_OUT_OF_TEN})?(?!\s*(?:/|out\s+of)|\d|\.\d)",
    re.IGNORECASE,
)
_SCORE_TEXT = re.compile(rf"\s*({_NUMBER})\s*(?:{_OUT_OF_TEN})?\s*", re.IGNORECASE)
_PAIR_MARKER = re.compile(r"\[\[\s*(A|B|C|tie)\s*\]\]", re.IGNORECASE)
_PAIR_WORDS: Final[dict[str, Choice]] = {
    "a": "A",
    "b": "B",
    "tie": "tie",
    "c": "tie",  # MT-Bench's [[C]]
    "draw": "tie",
    "equal": "tie",
}
_AS_SHOWN: Final[dict[Choice, Winner]] = {"A": "a", "B": "b", "tie": "tie"}
_SWAPPED: Final[dict[Choice, Winner]] = {"A": "b", "B": "a", "tie": "tie"}  # answer_b shown as A
_PAIR_PREFIX = re.compile(r"^(?:assistant|answer|response)\s+", re.IGNORECASE)


def parse_verdict(text: str) -> Verdict:
    """The score and reason in a judge's answer; score None with an error when there is none.

    Precedence (the first that finds anything decides; later ones are not consulted):
    1. JSON objects with a "score" key (the whole text, inside ```json fences, or embedded in
       prose). The score may be an int, a float or a string such as "7" or "7/10".
    2. MT-Bench markers: "[[7]]", "[[8.5]]", "[[7/10]]".
    3. Phrases: "Score: 7/10", "score of 7", "rating is 8".
    A score outside 0..10 (never clamped), not finite, or several different scores at the level
    that decided, is an error.
    """
    raw = _cut(text)
    if not text.strip():
        return Verdict(None, "", raw, "the judge's answer is empty")
    objects = [o for o in _json_objects(text) if _key(o, "score") is not None]
    if objects:
        scores = []
        for obj in objects:
            score, error = _score_value(obj[_key(obj, "score") or "score"])
            if error is not None:
                return Verdict(None, _json_reason(obj), raw, error)
            scores.append(score)
        if len(set(scores)) > 1:
            return Verdict(None, "", raw, f"{len(scores)} JSON verdicts with different scores")
        return Verdict(scores[0], _json_reason(objects[0]), raw)
    for pattern, what in ((_SCORE_MARKER, "[[n]] markers"), (_SCORE_PHRASE, "score phrases")):
        found = pattern.findall(text)
        if not found:
            continue
        values = {float(n) for n in found}
        if len(values) > 1:
            listed = ", ".join(f"{v:g}" for v in sorted(values))
            return Verdict(None, "", raw, f"conflicting {what} in the answer: {listed}")
        score, error = _in_range(values.pop())
        reason = _short(_SCORE_MARKER.sub(" ", text), _MAX_REASON)
        return Verdict(score, reason if error is None else "", raw, error)
    return Verdict(None, "", raw, f"no score in the judge's answer: {_short(text, 80)!r}")


def parse_pair_verdict(text: str) -> Choice | None:
    """The winner a pairwise answer names: "A", "B" or "tie"; None when it names none.

    Precedence: JSON objects with a "winner" key ("A", "b", "Assistant A", "tie", "C"), else
    MT-Bench's markers [[A]], [[B]], [[C]] (a tie). Several different winners: None.
    """
    return _read_pair(text)[0]


def _read_pair(text: str) -> tuple[Choice | None, str | None]:
    """The choice and, when there is none, why."""
    if not text.strip():
        return None, "the judge's answer is empty"
    objects = [o for o in _json_objects(text) if _key(o, "winner") is not None]
    if objects:
        choices = {_choice(o[_key(o, "winner") or "winner"]) for o in objects}
        if None in choices:
            return None, "a JSON winner that is not A, B or tie"
        if len(choices) > 1:
            return None, "JSON verdicts naming different winners"
        return choices.pop(), None
    marked = {_choice(m) for m in _PAIR_MARKER.findall(text)}
    if len(marked) == 1:
        return marked.pop(), None
    if marked:
        return None, "conflicting [[A]]/[[B]]/[[C]] markers in the answer"
    return None, f"no winner in the judge's answer: {_short(text, 80)!r}"


def _choice(value: object) -> Choice | None:
    if not isinstance(value, str):
        return None
    word = _PAIR_PREFIX.sub("", value.strip().strip("[]\"'. ")).lower()
    return _PAIR_WORDS.get(word)


def _combine(
    item_id: str,
    first: tuple[str, Choice | None, str | None],
    second: tuple[str, Choice | None, str | None],
) -> PairVerdict:
    (raw1, choice1, error1), (raw2, choice2, error2) = first, second
    if choice1 is None or choice2 is None:
        errors = [f"{order}: {e}" for order, e in (("A/B", error1), ("B/A", error2)) if e]
        return PairVerdict(item_id, None, False, raw1, raw2, "; ".join(errors))
    winner1, winner2 = _AS_SHOWN[choice1], _SWAPPED[choice2]
    if winner1 == winner2:
        return PairVerdict(item_id, winner1, True, raw1, raw2)
    return PairVerdict(item_id, "tie", False, raw1, raw2)


def summarize_pairwise(verdicts: Iterable[PairVerdict]) -> dict[str, int]:
    """Counts: wins_a, wins_b, ties (inconsistent ones included), inconsistent, unparsable."""
    counts = Counter(
        {"wins_a": 0, "wins_b": 0, "ties": 0, "inconsistent": 0, "unparsable": 0, "total": 0}
    )
    for verdict in verdicts:
        counts["total"] += 1
        if verdict.winner is None:
            counts["unparsable"] += 1
            continue
        counts[{"a": "wins_a", "b": "wins_b", "tie": "ties"}[verdict.winner]] += 1
        if not verdict.consistent:
            counts["inconsistent"] += 1
    return dict(counts)


def _json_objects(text: str) -> list[dict[str, Any]]:
    """Every top-level JSON object in `text`: the whole of it, or found in fences and prose."""
    stripped = text.strip()
    try:
        whole = json.loads(stripped)
    except ValueError:
        pass
    else:
        return [whole] if isinstance(whole, dict) else []
    decoder = json.JSONDecoder()
    found: list[dict[str, Any]] = []
    pos = tries = 0
    while tries < _MAX_DECODE_TRIES and (start := stripped.find("{", pos)) >= 0:
        tries += 1
        try:
            value, end = decoder.raw_decode(stripped, start)
        except ValueError:
            pos = start + 1
            continue
        if isinstance(value, dict):
            found.append(value)
        pos = end
    return found


def _key(obj: Mapping[str, Any], name: str) -> str | None:
    """The key of `obj` that is `name` in any case ("Score"), or None."""
    return next((k for k in obj if isinstance(k, str) and k.strip().lower() == name), None)


def _json_reason(obj: Mapping[str, Any]) -> str:
    key = _key(obj, "reason") or _key(obj, "explanation")
    value = obj.get(key) if key is not None else None
    return _short(value, _MAX_RAW) if isinstance(value, str) else ""


def _score_value(value: object) -> tuple[float | None, str | None]:
    if isinstance(value, bool):  # an int to Python, never a score
        return None, f"the JSON score is not a number: {value!r}"
    if isinstance(value, int | float):
        try:
            return _in_range(float(value))
        except OverflowError:  # an int too large for a float
            return None, "the JSON score is not a finite number"
    if isinstance(value, str) and (m := _SCORE_TEXT.fullmatch(value)):
        return _in_range(float(m.group(1)))
    return None, f"the JSON score is not a number from 0 to 10: {_short(repr(value), 80)}"


def _in_range(score: float) -> tuple[float | None, str | None]:
    if not math.isfinite(score):
        return None, f"the score is not a finite number: {score}"
    if not 0 <= score <= MAX_SCORE:
        return None, f"the score {score:g} is outside 0..{MAX_SCORE}"
    return score, None


def _cut(text: str) -> str:
    return text if len(text) <= _MAX_RAW else text[: _MAX_RAW - 1] + "…"


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
