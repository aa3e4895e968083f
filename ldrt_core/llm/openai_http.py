"""The LLM backend for OpenAI-compatible HTTP servers (what `vllm serve` exposes).

Input: `Request`s and a server (base URL ending in /v1, model name, optional API key).
Output: one `Completion` or `Failure` per request, in order. Requests run concurrently (asyncio,
at most `concurrency` in flight) over the official `openai` package with its own retries off, so
this policy applies:

- 429, 408, 5xx, timeouts, connection errors, bodies that are not JSON: exponential backoff with
  jitter, at least what Retry-After asks, up to `max_retries` retries;
- an answer that is not valid JSON for the request's schema: asked again, with the reason, up to
  `max_invalid_retries` times (counted apart from the above);
- any other 4xx (bad request, bad key, unknown model): a `Failure` at once, saying what to fix.

The schema is sent as `response_format` json_schema (vLLM's structured output) and the answer is
always validated here too. The API key never appears in an error or a log line.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import email.utils
import json
import logging
import random
import re
import ssl
import time
import traceback
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import openai
from jsonschema.protocols import Validator
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam

from ldrt_core.llm.base import (
    Completion,
    Failure,
    InvalidOutputError,
    LLMClient,
    LLMConfigError,
    LLMError,
    Message,
    Request,
    compile_schema,
    cut_off,
    validate_json,
)

__all__ = ["OpenAIHTTPClient"]

MAX_RETRY_AFTER_S = 120.0  # a server asking for longer is waited on this long, then retried
_MAX_MESSAGE = 300  # characters of a server's error message kept in a Failure
_PNG = b"\x89PNG\r\n\x1a\n"
_JPEG = b"\xff\xd8\xff"
_RETRY_STATUS = frozenset({408, 409, 429})
_SCHEMA_NAME = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True)
class _Transient:
    """A failure worth retrying after a wait."""

    reason: str
    retry_after: float | None = None


class _Schemas:
    """The validators of one batch, each schema checked once (checking costs ~4 ms)."""

    def __init__(self) -> None:
        self._seen: dict[str, Validator | LLMConfigError] = {}

    def get(self, schema: Mapping[str, Any]) -> Validator:
        key = json.dumps(schema, sort_keys=True, default=str)
        if key not in self._seen:
            try:
                self._seen[key] = compile_schema(schema)
            except LLMConfigError as exc:
                self._seen[key] = exc
        found = self._seen[key]
        if isinstance(found, LLMConfigError):
            raise LLMConfigError(str(found))
        return found


class OpenAIHTTPClient(LLMClient):
    """Chat completions from an OpenAI-compatible server; see the module docstring."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None,
        concurrency: int = 8,
        timeout_s: float = 120,
        max_retries: int = 4,
        backoff_s: float = 1.0,
        max_invalid_retries: int = 2,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise LLMConfigError(
                f"expected an http(s):// base URL such as http://localhost:8000/v1, "
                f"got {base_url.split('@')[-1]!r}"
            )
        if parts.username or parts.password:
            raise LLMConfigError(
                "expected no credentials in the LLM base URL: put the key in LDRT_LLM_API_KEY"
            )
        if not model.strip():
            raise LLMConfigError("expected a model name (the id `GET /v1/models` lists)")
        limits = {"concurrency": concurrency, "timeout_s": timeout_s, "backoff_s": backoff_s}
        for name, value in limits.items():
            if not value > 0:
                raise LLMConfigError(f"expected {name} > 0, got {value}")
        if max_retries < 0 or max_invalid_retries < 0:
            raise LLMConfigError("expected max_retries and max_invalid_retries >= 0")
        self.model_id = model
        self.base_url = base_url.rstrip("/")
        self.concurrency = concurrency
        self.timeout_s = float(timeout_s)
        self.max_retries = max_retries
        self.backoff_s = float(backoff_s)
        self.max_invalid_retries = max_invalid_retries
        self._api_key = api_key or None
        # Built once: a fresh context per batch costs ~40 ms (loading the CA store).
        self._ssl = ssl.create_default_context()
        self._random = random.Random()
        self._log = logging.getLogger(__name__)
        self._closed = False

    def __repr__(self) -> str:
        return f"OpenAIHTTPClient(base_url={self.base_url!r}, model={self.model_id!r})"

    def close(self) -> None:
        self._closed = True

    def complete_batch(self, requests: Sequence[Request]) -> list[Completion | Failure]:
        if self._closed:
            raise LLMError("this OpenAIHTTPClient is closed; build a new one")
        if not requests:
            return []
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._batch(requests))
        # Called from async code (a notebook, a server): run our loop on a thread of its own.
        with concurrent.futures.ThreadPoolExecutor(1, "ldrt-llm") as pool:
            return pool.submit(asyncio.run, self._batch(requests)).result()

    # ------------------------------------------------------------------------ the batch

    async def _batch(self, requests: Sequence[Request]) -> list[Completion | Failure]:
        schemas = _Schemas()
        api = openai.AsyncOpenAI(
            # vLLM without --api-key accepts any key; an explicit one keeps the SDK from reading
            # OPENAI_API_KEY (and sending a real OpenAI key to this server).
            api_key=self._api_key or "EMPTY",
            base_url=self.base_url,
            timeout=self.timeout_s,
            max_retries=0,
            http_client=openai.DefaultAsyncHttpxClient(verify=self._ssl, timeout=self.timeout_s),
        )
        gate = asyncio.Semaphore(self.concurrency)
        try:
            return list(
                await asyncio.gather(*(self._guarded(api, gate, schemas, r) for r in requests))
            )
        finally:
            await api.close()

    async def _guarded(
        self,
        api: openai.AsyncOpenAI,
        gate: asyncio.Semaphore,
        schemas: _Schemas,
        request: Request,
    ) -> Completion | Failure:
        try:
            return await self._one(api, gate, schemas, request)
        except Exception as exc:  # one bad item must never sink the batch
            trace = "".join(traceback.format_exception(exc))
            self._log.error("LLM request crashed: %s", self._scrub(trace))
            return Failure(self._scrub(f"unexpected {type(exc).__name__}: {exc}"), 0)

    async def _one(
        self,
        api: openai.AsyncOpenAI,
        gate: asyncio.Semaphore,
        schemas: _Schemas,
        request: Request,
    ) -> Completion | Failure:
        try:
            schema = request.json_schema
            validator = None if schema is None or not request.check_json else schemas.get(schema)
            messages = [_message(i, m) for i, m in enumerate(request.messages)]
        except LLMError as exc:
            return Failure(str(exc), 0)
        params = self._params(request)
        asked = messages
        usage: Counter[str] = Counter()
        attempts = transient = invalid = 0
        while True:
            attempts += 1
            async with gate:
                outcome = await self._call(api, params, asked)
            if isinstance(outcome, Failure):
                return Failure(outcome.error, attempts)
            if isinstance(outcome, ChatCompletion):
                text, finish = _answer(outcome, usage)
                if validator is None:
                    return Completion(text, None, finish, dict(usage), attempts)
                try:
                    parsed = validate_json(text, validator)
                except InvalidOutputError as exc:
                    invalid += 1
                    reason = str(exc)
                    if finish == "length":
                        return Failure(cut_off(request.max_tokens, reason), attempts)
                    if invalid > self.max_invalid_retries:
                        return Failure(
                            f"invalid answer after {attempts} attempts "
                            f"({self.max_invalid_retries} re-asks): {reason}",
                            attempts,
                        )
                    self._log.info("re-asking %s: %s", self.model_id, reason)
                    asked = [*messages, *_reask(text, reason)]
                    continue
                return Completion(text, parsed, finish, dict(usage), attempts)
            transient += 1
            if transient > self.max_retries:
                return Failure(
                    f"gave up after {attempts} attempts ({self.max_retries} retries) on "
                    f"{self.base_url}: {outcome.reason}",
                    attempts,
                )
            delay = self._delay(transient, outcome.retry_after)
            self._log.info("retrying in %.2f s: %s", delay, outcome.reason)
            await asyncio.sleep(delay)

    def _params(self, request: Request) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": self.model_id,
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
        }
        if request.seed is not None:
            params["seed"] = request.seed
        if request.json_schema is not None:
            title = request.json_schema.get("title")
            name = _SCHEMA_NAME.sub("_", title)[:64] if isinstance(title, str) else ""
            params["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": name or "answer",
                    "schema": dict(request.json_schema),
                    "strict": True,
                },
            }
        return params

    async def _call(
        self,
        api: openai.AsyncOpenAI,
        params: Mapping[str, Any],
        messages: list[ChatCompletionMessageParam],
    ) -> ChatCompletion | _Transient | Failure:
        """One HTTP call: the answer, a retryable problem, or a `Failure` (attempts unset)."""
        started = time.monotonic()
        try:
            response = await api.chat.completions.create(messages=messages, **params)
        except openai.APITimeoutError:
            return _Transient(f"no answer within {self.timeout_s:g} s (LDRT_LLM_TIMEOUT_S)")
        except openai.APIConnectionError as exc:
            cause = exc.__cause__ or exc
            return _Transient(self._scrub(f"cannot connect: {type(cause).__name__}: {cause}"))
        except openai.APIStatusError as exc:
            return self._status_outcome(exc)
        except (json.JSONDecodeError, openai.APIResponseValidationError) as exc:
            return _Transient(f"the server's answer is not a chat completion: {exc}")
        if not isinstance(response, ChatCompletion) or not response.choices:
            return _Transient("the server's answer has no choices")
        self._log.debug("%s answered in %.3f s", self.model_id, time.monotonic() - started)
        return response

    def _status_outcome(self, exc: openai.APIStatusError) -> _Transient | Failure:
        code = exc.status_code
        said = self._scrub(_server_message(exc))
        if code in _RETRY_STATUS or code >= 500:
            return _Transient(f"HTTP {code}: {said}", _retry_after(exc.response.headers))
        if code in (401, 403):
            sent = "the API key it was sent" if self._api_key else "requests without an API key"
            return Failure(
                f"the LLM server at {self.base_url} refused {sent} (HTTP {code}): set "
                f"LDRT_LLM_API_KEY to a key it accepts (server said: {said})",
                0,
            )
        if code == 404:
            return Failure(
                f"HTTP 404 from {self.base_url}: is model {self.model_id!r} served there? "
                f"Check LDRT_LLM_MODEL and LDRT_LLM_BASE_URL (ends in /v1) (server said: {said})",
                0,
            )
        return Failure(f"the LLM server rejected the request (HTTP {code}): {said}", 0)

    def _delay(self, retry: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter (half to full), never shorter than Retry-After."""
        ceiling = self.backoff_s * 2 ** (retry - 1)
        jittered = self._random.uniform(ceiling / 2, ceiling)
        if retry_after is None:
            return jittered
        return max(jittered, min(retry_after, MAX_RETRY_AFTER_S))

    def _scrub(self, text: str) -> str:
        if self._api_key:
            text = text.replace(self._api_key, "***")
        return text


# ---------------------------------------------------------------------------------- helpers


def _message(index: int, message: Message) -> ChatCompletionMessageParam:
    if not message.images:
        return cast(ChatCompletionMessageParam, {"role": message.role, "content": message.content})
    if message.role != "user":
        raise LLMConfigError(f"message {index}: only user messages may carry images")
    parts: list[dict[str, Any]] = []
    for n, image in enumerate(message.images):
        if image.startswith(_PNG):
            mime = "image/png"
        elif image.startswith(_JPEG):
            mime = "image/jpeg"
        else:
            raise LLMConfigError(f"message {index}, image {n}: expected PNG or JPEG bytes")
        url = f"data:{mime};base64,{base64.b64encode(image).decode('ascii')}"
        parts.append({"type": "image_url", "image_url": {"url": url}})
    if message.content:
        parts.append({"type": "text", "text": message.content})
    return cast(ChatCompletionMessageParam, {"role": "user", "content": parts})


def _reask(bad_answer: str, reason: str) -> list[ChatCompletionMessageParam]:
    return [
        {"role": "assistant", "content": bad_answer},
        {
            "role": "user",
            "content": f"That answer is not valid: {reason}. Reply again with only the JSON "
            "that satisfies the schema, no other text.",
        },
    ]


def _answer(response: ChatCompletion, usage: Counter[str]) -> tuple[str, str | None]:
    if response.usage is not None:
        usage["prompt_tokens"] += response.usage.prompt_tokens
        usage["completion_tokens"] += response.usage.completion_tokens
        usage["total_tokens"] += response.usage.total_tokens
    choice = response.choices[0]
    return choice.message.content or "", choice.finish_reason


def _server_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, Mapping) else inner
        text = str(message) if message else json.dumps(body)[:_MAX_MESSAGE]
    elif isinstance(body, str | bytes) and body:
        text = body.decode(errors="replace") if isinstance(body, bytes) else body
    else:
        text = exc.response.reason_phrase or "no message"
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asked us to wait: retry-after-ms, or Retry-After (seconds or a date)."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
