"""LLM judges: verdict parsing, and grading / pairwise comparison over real HTTP.

Input: judge answers as text (JSON, fenced, in prose, MT-Bench markers, garbage), and judges
scripted on the loopback OpenAI-compatible replay server (scores decided from the answer text,
garbage, HTTP 500s, a position-biased judge). Output: assertions on the verdicts, on what the
server was sent (context, schema, temperature, both orders of each pair) and on the counts.
"""

# ruff: noqa: RUF001 (Greek letters, as real captions have them)

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from ldrt_core.evaluate.judge import (
    JUDGE_PROMPT_VERSION,
    PAIR_SCHEMA,
    PAIR_SYSTEM,
    SCORE_SCHEMA,
    SINGLE_SYSTEM,
    Judge,
    JudgeItem,
    PairItem,
    PairVerdict,
    parse_pair_verdict,
    parse_verdict,
    summarize_pairwise,
)
from ldrt_core.llm import Completion, Failure, LLMClient, LLMConfigError, Request
from ldrt_core.llm.openai_http import OpenAIHTTPClient
from tests.support.openai_replay import Answer, OpenAIReplay, Reply, Status

pytestmark = pytest.mark.unit

KEY = "0.5 Gy"  # the reference's key fact: the scripted judges reward answers that state it
CAPTION = (
    "Figure 3. TNF-α release by LPS-stimulated macrophages 24 h after 0, 0.5, 1 and 2 Gy; "
    "release is lowest after 0.5 Gy."
)
MENTIONS = ("TNF-α fell most after a single 0.5 Gy fraction (Fig. 3).",)
QUESTION = "After which dose is TNF-α release lowest?"
REFERENCE = "After 0.5 Gy: release is lower there than after 0, 1 or 2 Gy."
GOOD_ANSWER = "It is lowest after 0.5 Gy, a U-shaped dose response."
BAD_ANSWER = "Release keeps rising with dose and is lowest without irradiation."
JUDGE_NAME = "qwen-judge-label"


def item(item_id: str, answer: str) -> JudgeItem:
    return JudgeItem(item_id, "conversation", QUESTION, REFERENCE, answer, CAPTION, MENTIONS)


def pair(item_id: str, answer_a: str, answer_b: str) -> PairItem:
    return PairItem(
        item_id, "complex_reasoning", QUESTION, REFERENCE, CAPTION, MENTIONS, answer_a, answer_b
    )


def http_client(url: str) -> OpenAIHTTPClient:
    return OpenAIHTTPClient(
        url, "judge-model", api_key=None, timeout_s=5.0, backoff_s=0.01, max_retries=2,
        max_invalid_retries=1,
    )  # fmt: skip


def user_prompt(body: dict[str, Any]) -> str:
    # The first user message carries the item; a re-ask appends turns after it.
    content = body["messages"][1]["content"]
    assert isinstance(content, str)
    return content


def block(text: str, name: str) -> str:
    return text.split(f"[The Start of {name}]\n", 1)[1].split(f"\n[The End of {name}]", 1)[0]


# ------------------------------------------------------------------------------ parse_verdict


@pytest.mark.parametrize(
    ("text", "score", "reason"),
    [
        ('{"score": 7, "reason": "Right dose, no detail."}', 7, "Right dose, no detail."),
        ('{"reason": "Close.", "score": 8.5}', 8.5, "Close."),
        ('```json\n{"score": 6, "reason": "Partly."}\n```', 6, "Partly."),
        ('Here is my verdict: {"score": 9, "reason": "Matches."} Hope it helps', 9, "Matches."),
        ('{"score": "7/10", "reason": "ok"}', 7, "ok"),
        ('{"Score": "3", "Reason": "Vague."}', 3, "Vague."),
        ('{"score": 0, "reason": "Refuses."}', 0, "Refuses."),
        ('{"score": 6, "reason": "Not a [[9]]."} Rating: [[9]]', 6, "Not a [[9]]."),  # JSON first
        ("The answer names the dose but not the trend. Rating: [[7]]", 7, "The answer names"),
        ("[[8.5]]", 8.5, ""),
        ("Good. [[7/10]] Again: [[7]]", 7, "Good."),
        ("Score: 7/10. It names the dose.", 7, "Score: 7/10"),
        ("I give it a score of 4.", 4, "score of 4"),
        ("The score is 10 out of 10.", 10, "The score"),
    ],
)
def test_a_verdict_is_read_from_json_fences_prose_or_markers(
    text: str, score: float, reason: str
) -> None:
    verdict = parse_verdict(text)
    assert (verdict.score, verdict.error) == (score, None)
    assert reason in verdict.reason and verdict.raw == text


def test_braces_and_quotes_inside_the_reason_do_not_confuse_the_parser() -> None:
    reason = 'It says "{0.5 Gy}" and {IL-6} "falls", then } and {.'
    for text in (
        json.dumps({"score": 7, "reason": reason}),
        f"Verdict {{draft}}:\n```json\n{json.dumps({'reason': reason, 'score': 7})}\n``` {{end",
    ):
        verdict = parse_verdict(text)
        assert (verdict.score, verdict.reason, verdict.error) == (7, reason, None)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('{"score": 11, "reason": "Great."}', "outside 0..10"),
        ('{"score": -1, "reason": "Awful."}', "outside 0..10"),
        ("Rating: [[11]]", "outside 0..10"),
        ("Rating: [[-1]]", "outside 0..10"),
        ("Score: 12/10", "outside 0..10"),
        ('{"score": NaN, "reason": "?"}', "finite"),
        ('{"score": Infinity}', "finite"),
        ('{"score": 1e999}', "finite"),
        ('{"score": true, "reason": "yes"}', "not a number"),
        ('{"score": "high", "reason": "Good."}', "not a number"),
        ('{"score": null}', "not a number"),
        ('{"score": 4, "reason": "a"} and then {"score": 6, "reason": "b"}', "different scores"),
        ("Rating: [[7]]. On reflection, [[3]].", "conflicting [[n]] markers"),
        ("It would score 10 for the dose, but the score is 4.", "conflicting score phrases"),
        ("", "empty"),
        ("   \n ", "empty"),
        ("I cannot grade this answer without the image.", "no score"),
        ("Score: 7/100", "no score"),  # not read as 7
        ('{"reason": "I forgot the number."}', "no score"),
        ("{'score'", "no score"),
    ],
)
def test_an_unusable_verdict_has_no_score_and_says_why(text: str, error: str) -> None:
    verdict = parse_verdict(text)
    assert verdict.score is None  # never a 0 that would drag a model's mean down
    assert verdict.error is not None and error in verdict.error
    assert verdict.raw == text


def test_the_raw_text_kept_is_bounded() -> None:
    text = json.dumps({"score": 5, "reason": "x" * 50}) + " padding" * 1000
    verdict = parse_verdict(text)
    assert verdict.score == 5 and 1000 < len(verdict.raw) <= 2000


# ------------------------------------------------------------------------- parse_pair_verdict


@pytest.mark.parametrize(
    ("text", "winner"),
    [
        ('{"reason": "A names the dose.", "winner": "A"}', "A"),
        ('```json\n{"winner": "b", "reason": "x"}\n```', "B"),
        ('Verdict: {"winner": "Assistant B", "reason": "x"} Done.', "B"),
        ('{"winner": "tie", "reason": "Both right."}', "tie"),
        ('{"winner": "C"}', "tie"),
        ("A is more specific. [[A]]", "A"),
        ("Final verdict: [[B]]", "B"),
        ("Neither is better: [[C]]", "tie"),
        ("[[A]] ... yes, [[A]]", "A"),
        ("Both are fine, I think.", None),
        ("[[A]] or rather [[B]]", None),
        ('{"winner": "both", "reason": "x"}', None),
        ('{"winner": "A"} {"winner": "B"}', None),
        ("", None),
    ],
)
def test_a_pair_verdict_is_read_from_json_or_markers(text: str, winner: str | None) -> None:
    assert parse_pair_verdict(text) == winner


def test_summarize_pairwise_counts_inconsistent_as_ties() -> None:
    verdicts = [
        PairVerdict("1", "a", True, "", ""),
        PairVerdict("2", "a", True, "", ""),
        PairVerdict("3", "b", True, "", ""),
        PairVerdict("4", "tie", True, "", ""),
        PairVerdict("5", "tie", False, "", ""),
        PairVerdict("6", None, False, "", "", "A/B: no winner"),
    ]
    assert summarize_pairwise(verdicts) == {
        "wins_a": 2,
        "wins_b": 1,
        "ties": 2,
        "inconsistent": 1,
        "unparsable": 1,
        "total": 6,
    }


# ---------------------------------------------------------------------- a judge in memory


class ScriptedClient(LLMClient):
    """Answers with fixed texts and enforces no schema: the judge's own parsing must cope."""

    model_id = "scripted-model"

    def __init__(self, answer: Callable[[Request], Completion | Failure]) -> None:
        self.answer = answer
        self.batches: list[list[Request]] = []

    def complete_batch(self, requests: Sequence[Request]) -> list[Completion | Failure]:
        self.batches.append(list(requests))
        return [self.answer(r) for r in requests]


def test_a_backend_that_enforces_no_schema_still_gets_graded() -> None:
    replies: dict[str, Completion | Failure] = {
        "m": Completion("Names the dose, misses the trend. Rating: [[7]]", None, "stop"),
        "j": Completion('```json\n{"reason": "Right.", "score": 9}\n```', None, "stop"),
        "g": Completion("As an AI I cannot judge.", None, "stop"),
        "f": Failure("the LLM server rejected the request (HTTP 400): context too long", 1),
    }

    def answer(request: Request) -> Completion | Failure:
        return replies[block(request.messages[1].content, "Assistant's Answer")]

    client = ScriptedClient(answer)
    judge = Judge("local", client)
    verdicts = judge.grade([item(k, k) for k in replies])
    assert [v.score for v in verdicts] == [7, 9, None, None]
    assert verdicts[2].error is not None and "no score" in verdicts[2].error
    assert verdicts[2].raw == "As an AI I cannot judge."
    assert verdicts[3].error is not None and "HTTP 400" in verdicts[3].error
    assert verdicts[3].raw == ""
    assert len(client.batches) == 1  # one batch: the client does the concurrency
    assert judge.grade([]) == [] and len(client.batches) == 1


def test_model_id_keys_every_setting_a_verdict_depends_on() -> None:
    client = ScriptedClient(lambda r: Failure("unused", 0))
    judge = Judge("qwen2-72b", client)
    for part in ("qwen2-72b", "scripted-model", JUDGE_PROMPT_VERSION, "0.0", "400"):
        assert part in judge.model_id
    others = {
        Judge("llama-3.1-70b", client).model_id,
        Judge("qwen2-72b", client, temperature=0.2).model_id,
        Judge("qwen2-72b", client, max_tokens=300).model_id,
    }
    assert judge.model_id not in others and len(others) == 3
    with pytest.raises(LLMConfigError, match="name"):
        Judge("  ", client)
    with pytest.raises(LLMConfigError, match="temperature"):
        Judge("x", client, temperature=-0.1)
    with pytest.raises(LLMConfigError, match="max_tokens"):
        Judge("x", client, max_tokens=0)


# ----------------------------------------------------------------------- judges over HTTP


def score_by_key_fact(body: dict[str, Any]) -> Reply:
    """A judge that gives 9 to answers stating the key dose, 2 to others; faults on request."""
    answer = block(user_prompt(body), "Assistant's Answer")
    if "GARBAGE" in answer:
        return "I would rather not grade this one."
    if "BOOM" in answer:
        return Status(500)
    if "CHATTY" in answer:
        return 'Sure! ```json\n{"reason": "Half right.", "score": 6}\n``` Hope it helps.'
    if "MARKER" in answer:
        return "The answer is mostly right. Rating: [[7]]"
    score = 9 if KEY in answer else 2
    return json.dumps(
        {"reason": f"{'States' if score == 9 else 'Misses'} the dose.", "score": score}
    )


def test_grading_over_http_scores_each_item_and_isolates_failures() -> None:
    items = [
        item("good", GOOD_ANSWER),
        item("bad", BAD_ANSWER),
        item("chatty", f"CHATTY {GOOD_ANSWER}"),
        item("garbage", "GARBAGE answer"),
        item("boom", "BOOM answer"),
        item("marker", "MARKER answer"),
    ]
    with OpenAIReplay(score_by_key_fact) as server:
        verdicts = Judge(JUDGE_NAME, http_client(server.url)).grade(items)
    # Not JSON, yet graded: the client leaves parsing to the judge (MT-Bench's [[n]] fallback).
    assert [v.score for v in verdicts] == [9, 2, 6, None, None, 7]
    assert [v.reason for v in verdicts[:3]] == [
        "States the dose.",
        "Misses the dose.",
        "Half right.",
    ]
    assert all(v.error is None for v in verdicts[:3])
    garbage, boom = verdicts[3:5]
    assert garbage.error is not None and "no score" in garbage.error
    assert boom.error is not None and "HTTP 500" in boom.error

    asked = Counter(block(user_prompt(b), "Assistant's Answer") for b in server.requests)
    assert asked["GARBAGE answer"] == 1  # not re-asked: an unparsable verdict is recorded
    assert asked["BOOM answer"] == 3  # two retries (max_retries=2)
    assert asked[GOOD_ANSWER] == asked[BAD_ANSWER] == 1

    # Requests run concurrently: pick the good answer's by its answer block, not by order.
    body = next(
        b for b in server.requests if block(user_prompt(b), "Assistant's Answer") == GOOD_ANSWER
    )
    prompt = user_prompt(body)
    assert body["messages"][0] == {"role": "system", "content": SINGLE_SYSTEM}
    for context in (CAPTION, MENTIONS[0], QUESTION):
        assert context in prompt
    assert block(prompt, "Reference Answer") == REFERENCE
    assert block(prompt, "Assistant's Answer") == GOOD_ANSWER
    assert body["response_format"]["json_schema"]["schema"] == SCORE_SCHEMA
    assert (body["model"], body["temperature"], body["max_tokens"]) == ("judge-model", 0, 400)
    assert all(JUDGE_NAME not in json.dumps(b) for b in server.requests)


def test_a_verdict_cut_off_at_max_tokens_gives_no_score() -> None:
    """Half a reason can hold a score-like phrase; it is no grade."""
    cut = '{"reason": "A score of 10 would need the doses and units; this answer gets the trend'
    with OpenAIReplay(lambda body: Answer(cut, finish_reason="length")) as server:
        [verdict] = Judge(JUDGE_NAME, http_client(server.url)).grade([item("cut", GOOD_ANSWER)])
        [pair_verdict] = Judge(JUDGE_NAME, http_client(server.url)).compare(PAIRS[:1])
    assert verdict.score is None and verdict.error is not None and "cut off" in verdict.error
    assert verdict.raw.startswith('{"reason": "A score of 10')
    assert pair_verdict.winner is None and "cut off" in (pair_verdict.error or "")


def pick_by_key_fact(body: dict[str, Any]) -> Reply:
    """A fair judge: the answer stating the key dose wins, wherever it stands."""
    prompt = user_prompt(body)
    shown_a = block(prompt, "Assistant A's Answer")
    shown_b = block(prompt, "Assistant B's Answer")
    if "BOOM" in shown_a:
        return Status(500)
    right_a, right_b = KEY in shown_a, KEY in shown_b
    winner = "A" if right_a and not right_b else "B" if right_b and not right_a else "tie"
    return json.dumps({"reason": "The dose decides.", "winner": winner})


def always_first(body: dict[str, Any]) -> Reply:
    """A position-biased judge: whatever it is shown first wins."""
    return json.dumps({"reason": "A is more thorough.", "winner": "A"})


PAIRS = [
    pair("a-better", f"{GOOD_ANSWER} (1)", f"{BAD_ANSWER} (1)"),
    pair("b-better", f"{BAD_ANSWER} (2)", f"{GOOD_ANSWER} (2)"),
    pair("both-right", f"{GOOD_ANSWER} (3)", "It is 0.5 Gy. (3)"),
]


def test_pairwise_asks_both_orders_and_a_fair_judge_gives_consistent_wins() -> None:
    failing = pair("fails-once", f"{GOOD_ANSWER} (4)", "BOOM (4)")
    with OpenAIReplay(pick_by_key_fact) as server:
        verdicts = Judge(JUDGE_NAME, http_client(server.url)).compare([*PAIRS, failing])
    assert [(v.item_id, v.winner, v.consistent) for v in verdicts[:3]] == [
        ("a-better", "a", True),
        ("b-better", "b", True),
        ("both-right", "tie", True),
    ]
    assert all(v.error is None and v.first and v.second for v in verdicts[:3])
    broken = verdicts[3]
    assert (broken.winner, broken.consistent) == (None, False)
    assert broken.error is not None and broken.error.startswith("B/A: judge request failed")
    assert "HTTP 500" in broken.error and broken.first and broken.second == ""

    shown = Counter(
        (
            block(user_prompt(b), "Assistant A's Answer"),
            block(user_prompt(b), "Assistant B's Answer"),
        )
        for b in server.requests
    )
    expected = Counter([(p.answer_a, p.answer_b) for p in [*PAIRS, failing]])
    expected += Counter([(p.answer_b, p.answer_a) for p in PAIRS])
    expected[(failing.answer_b, failing.answer_a)] = 3  # the 500, retried twice
    assert shown == expected
    body = server.requests[0]
    assert body["messages"][0] == {"role": "system", "content": PAIR_SYSTEM}
    assert body["response_format"]["json_schema"]["schema"] == PAIR_SCHEMA
    assert body["temperature"] == 0 and CAPTION in user_prompt(body)
    assert block(user_prompt(body), "Reference Answer") == REFERENCE
    assert summarize_pairwise(verdicts) == {
        "wins_a": 1,
        "wins_b": 1,
        "ties": 1,
        "inconsistent": 0,
        "unparsable": 1,
        "total": 4,
    }


def test_a_position_biased_judge_yields_inconsistent_ties() -> None:
    with OpenAIReplay(always_first) as server:
        verdicts = Judge(JUDGE_NAME, http_client(server.url)).compare(PAIRS)
    assert server.chat_hits == 2 * len(PAIRS)
    assert [(v.winner, v.consistent, v.error) for v in verdicts] == [("tie", False, None)] * 3
    assert summarize_pairwise(verdicts)["inconsistent"] == 3
