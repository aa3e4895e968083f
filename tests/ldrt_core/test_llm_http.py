"""OpenAIHTTPClient over real HTTP against the scripted OpenAI-compatible replay server.

Input: scripted replies (good JSON, fenced JSON, schema violations, 429/5xx/401, timeouts, bodies
that are not JSON). Output: assertions on the Completions/Failures, the attempts counted and what
the server received (response_format, data-URL images, headers).
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from ldrt_core.llm import (
    Completion,
    Failure,
    InvalidOutputError,
    LLMConfigError,
    LLMRequestError,
    Message,
    Request,
    validate_json,
)
from ldrt_core.llm.openai_http import OpenAIHTTPClient, _retry_after
from tests.support.openai_replay import Answer, Malformed, OpenAIReplay, Reply, Sleep, Status

pytestmark = pytest.mark.unit

SCHEMA: dict[str, Any] = {
    "title": "figure label",
    "type": "object",
    "properties": {"label": {"enum": ["plot", "diagram"]}, "confidence": {"type": "number"}},
    "required": ["label"],
    "additionalProperties": False,
}
GOOD = '{"label": "plot", "confidence": 0.9}'
VIOLATION = '{"label": "photo"}'
SECRET = "sk-test-0123456789abcdef"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def client(url: str, **kwargs: Any) -> OpenAIHTTPClient:
    options: dict[str, Any] = {
        "api_key": None,
        "timeout_s": 5.0,
        "backoff_s": 0.01,
        "max_retries": 3,
        "max_invalid_retries": 2,
    }
    return OpenAIHTTPClient(url, "replay-model", **(options | kwargs))


def ask(text: str = "What kind of figure is this?", schema: bool = True, **kw: Any) -> Request:
    return Request(
        messages=(Message("system", "You label figures."), Message("user", text)),
        json_schema=SCHEMA if schema else None,
        **kw,
    )


def run(script: list[Reply], request: Request | None = None, **kwargs: Any) -> Completion | Failure:
    with OpenAIReplay(script) as server:
        return client(server.url, **kwargs).complete_batch([request or ask()])[0]


# ------------------------------------------------------------------------------- good answers


def test_good_json_is_parsed_validated_and_the_schema_sent() -> None:
    with OpenAIReplay([GOOD]) as server:
        result = client(server.url).complete(ask(seed=7, max_tokens=64))
    assert result.parsed == {"label": "plot", "confidence": 0.9}
    assert result.text == GOOD and result.attempts == 1 and result.finish_reason == "stop"
    assert (
        result.usage["total_tokens"]
        == (result.usage["prompt_tokens"] + result.usage["completion_tokens"])
        > 0
    )
    (body,) = server.requests
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "figure_label", "schema": SCHEMA, "strict": True},
    }
    assert body["model"] == "replay-model"
    assert (body["seed"], body["max_tokens"], body["temperature"]) == (7, 64, 0.2)
    assert [m["role"] for m in body["messages"]] == ["system", "user"]


def test_without_a_schema_the_text_comes_back_unparsed() -> None:
    with OpenAIReplay(["just prose"]) as server:
        result = client(server.url).complete(ask(schema=False))
    assert (result.text, result.parsed) == ("just prose", None)
    assert "response_format" not in server.requests[0] and "seed" not in server.requests[0]


def test_check_json_off_sends_the_schema_but_returns_any_text_unasked() -> None:
    with OpenAIReplay(["Rating: [[7]]", GOOD]) as server:
        result = client(server.url).complete(ask(check_json=False))
    assert (result.text, result.parsed, result.attempts) == ("Rating: [[7]]", None, 1)
    (body,) = server.requests  # not asked again
    assert body["response_format"]["json_schema"]["schema"] == SCHEMA


@pytest.mark.parametrize(
    "answer",
    [
        f"```json\n{GOOD}\n```",
        f"```\n{GOOD}\n```",
        f"Sure! Here is the label:\n{GOOD}\nHope this {{helps}}.",
        f"  {GOOD}  \n",
    ],
    ids=["json-fence", "bare-fence", "prose", "whitespace"],
)
def test_fenced_and_prose_wrapped_json_is_accepted(answer: str) -> None:
    result = run([answer])
    assert isinstance(result, Completion) and result.attempts == 1
    assert result.parsed == {"label": "plot", "confidence": 0.9}


# ------------------------------------------------------------------------- invalid answers


def test_malformed_json_is_asked_again_with_the_reason() -> None:
    with OpenAIReplay(['{"label": "plot",', GOOD]) as server:
        result = client(server.url).complete(ask())
    assert result.parsed == {"label": "plot", "confidence": 0.9} and result.attempts == 2
    retry = server.requests[1]["messages"]
    assert retry[-2] == {"role": "assistant", "content": '{"label": "plot",'}
    assert retry[-1]["role"] == "user" and "not valid" in retry[-1]["content"]
    assert retry[:2] == server.requests[0]["messages"]
    assert result.usage["completion_tokens"] >= 2  # both attempts counted


def test_a_schema_violation_is_asked_again() -> None:
    with OpenAIReplay([VIOLATION, GOOD]) as server:
        result = client(server.url).complete(ask())
    assert result.parsed == {"label": "plot", "confidence": 0.9} and result.attempts == 2
    assert "label" in server.requests[1]["messages"][-1]["content"]


def test_a_schema_violation_forever_is_a_failure_after_max_invalid_retries() -> None:
    with OpenAIReplay(lambda body: VIOLATION) as server:
        result = client(server.url, max_invalid_retries=2).complete_batch([ask()])[0]
    assert isinstance(result, Failure)
    assert result.attempts == 3 and server.chat_hits == 3
    assert "schema violation at label" in result.error and "photo" in result.error


def test_a_truncated_answer_fails_at_once_and_says_so() -> None:
    """Asked again at the same max_tokens, with a longer prompt, it would be cut again."""
    cut = Answer('{"label": "pl', finish_reason="length")
    with OpenAIReplay([cut, cut, cut]) as server:
        [result] = client(server.url, max_invalid_retries=2).complete_batch([ask()])
    assert isinstance(result, Failure) and result.attempts == 1 and server.chat_hits == 1
    assert "cut off at max_tokens=1024" in result.error and "raise max_tokens" in result.error


# ------------------------------------------------------------------------- transient errors


def test_a_500_is_retried() -> None:
    with OpenAIReplay([Status(500), GOOD]) as server:
        result = client(server.url).complete(ask())
    assert result.attempts == 2 and server.chat_hits == 2


def test_a_body_that_is_not_json_is_retried() -> None:
    result = run([Malformed(), Malformed(b"<html>502 Bad Gateway</html>"), GOOD])
    assert isinstance(result, Completion) and result.attempts == 3


def test_a_429_waits_for_retry_after_then_succeeds() -> None:
    started = time.monotonic()
    result = run([Status(429, retry_after=0.3), GOOD], backoff_s=0.01)
    assert isinstance(result, Completion) and result.attempts == 2
    assert time.monotonic() - started >= 0.3


def test_a_timeout_is_retried() -> None:
    with OpenAIReplay([Sleep(2.0, then=GOOD), GOOD]) as server:
        started = time.monotonic()
        result = client(server.url, timeout_s=0.3).complete(ask())
    assert result.attempts == 2 and server.chat_hits == 2
    assert time.monotonic() - started < 1.5


def test_errors_that_persist_become_a_failure_after_max_retries() -> None:
    with OpenAIReplay(lambda body: Status(503)) as server:
        result = client(server.url, max_retries=2).complete_batch([ask()])[0]
    assert isinstance(result, Failure) and result.attempts == 3 and server.chat_hits == 3
    assert "HTTP 503" in result.error and "2 retries" in result.error


def test_a_server_that_is_down_is_a_failure() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    result = client(url, max_retries=1).complete_batch([ask()])[0]
    assert isinstance(result, Failure) and result.attempts == 2
    assert "cannot connect" in result.error


# ------------------------------------------------------------------------- permanent errors


def test_a_401_fails_at_once_naming_the_setting_and_hiding_the_key() -> None:
    echo = Status(401, {"error": {"message": f"Incorrect API key provided: {SECRET}"}})
    with OpenAIReplay([echo, echo]) as server:
        c = client(server.url, api_key=SECRET)
        result = c.complete_batch([ask()])[0]
        with pytest.raises(LLMRequestError) as raised:
            c.complete(ask())
    assert isinstance(result, Failure) and result.attempts == 1 and server.chat_hits == 2
    assert "LDRT_LLM_API_KEY" in result.error and "401" in result.error
    for text in (result.error, str(raised.value), repr(c)):
        assert SECRET not in text
    assert server.headers[0]["authorization"] == f"Bearer {SECRET}"


def test_a_400_fails_at_once_with_the_server_message() -> None:
    too_long = Status(400, {"message": "This model's maximum context length is 4096 tokens"})
    with OpenAIReplay([too_long]) as server:
        result = client(server.url).complete_batch([ask()])[0]
    assert isinstance(result, Failure) and server.chat_hits == 1
    assert "HTTP 400" in result.error and "maximum context length" in result.error


def test_an_unknown_model_names_the_settings() -> None:
    result = run([Status(404, {"message": "The model `x` does not exist."})])
    assert isinstance(result, Failure) and "LDRT_LLM_MODEL" in result.error


# ------------------------------------------------------------------------------------ batches


def test_a_batch_keeps_order_and_records_failures_without_raising() -> None:
    bad: dict[int, Reply] = {3: Status(400), 9: Status(500), 15: VIOLATION}

    def script(body: dict[str, Any]) -> Reply:
        i = int(body["messages"][1]["content"].split()[-1])
        return bad.get(i, json.dumps({"label": "plot", "confidence": i / 100}))

    with OpenAIReplay(script) as server:
        results = client(server.url, max_retries=1, max_invalid_retries=1).complete_batch(
            [ask(f"item {i}") for i in range(20)]
        )
    assert len(results) == 20
    failed = [i for i, r in enumerate(results) if isinstance(r, Failure)]
    assert failed == [3, 9, 15]
    for i, r in enumerate(results):
        if isinstance(r, Completion):
            assert r.parsed == {"label": "plot", "confidence": i / 100}
    assert server.chat_hits == 17 + 1 + 2 + 2


def test_a_batch_runs_concurrently_within_the_limit() -> None:
    with OpenAIReplay(lambda body: Sleep(0.2, then=GOOD)) as server:
        c = client(server.url, concurrency=4)
        started = time.monotonic()
        results = c.complete_batch([ask() for _ in range(8)])
        elapsed = time.monotonic() - started
    assert all(isinstance(r, Completion) for r in results)
    assert elapsed < 1.2  # one at a time would take 1.6 s; four at a time about 0.4 s
    assert 2 <= server.max_in_flight <= 4


def test_an_empty_batch_makes_no_call() -> None:
    with OpenAIReplay([]) as server:
        assert client(server.url).complete_batch([]) == []
    assert server.chat_hits == 0


def test_complete_works_inside_a_running_event_loop() -> None:
    with OpenAIReplay([GOOD]) as server:
        c = client(server.url)

        async def inside() -> Completion:
            return c.complete(ask())

        assert asyncio.run(inside()).parsed == {"label": "plot", "confidence": 0.9}


def test_batches_may_run_from_several_threads_at_once() -> None:
    with OpenAIReplay(lambda body: Sleep(0.05, then=GOOD)) as server:
        c = client(server.url, concurrency=2)
        with ThreadPoolExecutor(3) as pool:
            batches = list(pool.map(c.complete_batch, [[ask()] * 4] * 3))
    assert all(isinstance(r, Completion) for batch in batches for r in batch)
    assert server.chat_hits == 12


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),  # in the past
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_is_read_in_its_forms(headers: dict[str, str], seconds: float | None) -> None:
    assert _retry_after(headers) == seconds


# ------------------------------------------------------------------------------------- images


def test_images_arrive_as_data_urls_before_the_text() -> None:
    jpeg = b"\xff\xd8\xff\xe0" + b"jfif"
    request = Request(messages=(Message("user", "Describe.", images=(PNG, jpeg)),))
    with OpenAIReplay(["a plot"]) as server:
        assert client(server.url).complete(request).text == "a plot"
    parts = server.requests[0]["messages"][0]["content"]
    assert [p["type"] for p in parts] == ["image_url", "image_url", "text"]
    png_url = parts[0]["image_url"]["url"]
    assert png_url.startswith("data:image/png;base64,")
    assert base64.b64decode(png_url.split(",", 1)[1]) == PNG
    assert parts[1]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert parts[2] == {"type": "text", "text": "Describe."}


def test_an_image_that_is_not_png_is_a_failure_without_a_call() -> None:
    request = Request(messages=(Message("user", "Describe.", images=(b"GIF89a...",)),))
    with OpenAIReplay([]) as server:
        result = client(server.url).complete_batch([request])[0]
    assert isinstance(result, Failure) and "PNG" in result.error and server.chat_hits == 0


# --------------------------------------------------------------------------- settings, schema


@pytest.mark.parametrize(
    ("url", "kwargs", "says"),
    [
        ("localhost:8000/v1", {}, "http(s)://"),
        ("http://user:pw@localhost:8000/v1", {}, "LDRT_LLM_API_KEY"),
        ("http://localhost:8000/v1", {"concurrency": 0}, "concurrency"),
        ("http://localhost:8000/v1", {"max_retries": -1}, "max_retries"),
    ],
)
def test_bad_settings_are_refused(url: str, kwargs: dict[str, Any], says: str) -> None:
    with pytest.raises(LLMConfigError, match=says.replace("(", r"\(").replace(")", r"\)")):
        client(url, **kwargs)


def test_an_invalid_schema_is_a_failure_without_a_call() -> None:
    request = Request(messages=(Message("user", "x"),), json_schema={"type": "nonsense"})
    with OpenAIReplay([]) as server:
        result = client(server.url).complete_batch([request])[0]
    assert isinstance(result, Failure) and "schema is invalid" in result.error
    assert server.chat_hits == 0


def test_the_models_endpoint_is_served() -> None:
    import urllib.request

    with OpenAIReplay([]) as server, urllib.request.urlopen(f"{server.url}/models") as resp:
        assert json.load(resp)["data"][0]["id"] == "replay-model"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("no json here", "no JSON object"),
        ('{"label": "plot"} and also {"label": "diagram"}', "2 JSON values"),
        ('{"label": "plot", "extra": 1}', "schema violation"),
        ('["plot"]', "schema violation"),
        ('{"label": ' + "[" * 5000, "nests too deeply"),  # a runaway answer
    ],
)
def test_validate_json_gives_short_reasons(text: str, reason: str) -> None:
    with pytest.raises(InvalidOutputError, match=reason):
        validate_json(text, SCHEMA)


def test_validate_json_takes_the_outermost_value() -> None:
    nested = {"type": "object", "properties": {"inner": {"type": "object"}}}
    text = 'Answer [final]: {"inner": {"a": [1, {"b": 2}]}} -- done'
    assert validate_json(text, nested) == {"inner": {"a": [1, {"b": 2}]}}
    assert validate_json("Items: [1, 2] end", {"type": "array"}) == [1, 2]
