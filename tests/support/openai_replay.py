"""A loopback HTTP server that answers like an OpenAI-compatible chat API (`vllm serve`).

Input: a script of replies, either a list (the Nth chat request gets the Nth reply) or a function
of the request body. Output: `POST /v1/chat/completions` answers (a chat.completion JSON, an HTTP
error, a late answer, a body that is not JSON) and `GET /v1/models`, while recording every request
body and header set, counting hits and the most requests in flight at once.

The product talks to it through the official `openai` package over real HTTP, so tests exercise the
same code paths as production:

    with OpenAIReplay(['{"label": "bar"}', Status(500), Sleep(1.0, then="late")]) as server:
        client = OpenAIHTTPClient(server.url, "replay-model", api_key=None)
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeAlias
from urllib.parse import urlsplit

from tests.support.http import QuietHandler

__all__ = ["Answer", "Malformed", "OpenAIReplay", "Reply", "Sleep", "Status"]


@dataclass(frozen=True)
class Answer:
    """A 200 chat.completion whose message content is `content` (a plain `str` reply is this)."""

    content: str | None
    finish_reason: str = "stop"


@dataclass(frozen=True)
class Status:
    """An HTTP error. `body` None: an OpenAI/vLLM-style error JSON; `retry_after` as a header."""

    code: int
    body: str | Mapping[str, Any] | None = None
    retry_after: float | str | None = None


@dataclass(frozen=True)
class Sleep:
    """Wait `seconds` (to make the client time out), then send `then`."""

    seconds: float
    then: Reply


@dataclass(frozen=True)
class Malformed:
    """A 200 whose body is not JSON (a proxy's error page, a cut-off answer)."""

    body: bytes = b'{"id": "chatcmpl-cut", "choices": [{"message": {"content": "{\\"la'


Reply: TypeAlias = "str | Answer | Status | Sleep | Malformed"
Script: TypeAlias = "Callable[[dict[str, Any]], Reply] | list[Reply]"


class OpenAIReplay:
    """`with OpenAIReplay(script) as server: ... server.url ...` (the URL ends in /v1)."""

    def __init__(self, script: Script, model: str = "replay-model") -> None:
        self.model = model
        self._script = script
        self._next = 0
        self.requests: list[dict[str, Any]] = []  # chat request bodies, in arrival order
        self.headers: list[dict[str, str]] = []  # their headers (lower-case names)
        self.hits: Counter[str] = Counter()  # "chat", "models", "exhausted", "other"
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        # A short poll interval: shutdown() waits up to one interval (0.5 s by default).
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self) -> OpenAIReplay:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def chat_hits(self) -> int:
        return self.hits["chat"]

    # ------------------------------------------------------------------ script

    def _reply_for(self, body: dict[str, Any]) -> Reply:
        if callable(self._script):
            return self._script(body)
        with self._lock:
            index = self._next
            self._next += 1
        if index < len(self._script):
            return self._script[index]
        with self._lock:
            self.hits["exhausted"] += 1
        return Status(500, {"message": f"replay script exhausted after {len(self._script)}"})

    def _completion(self, body: dict[str, Any], answer: Answer) -> dict[str, Any]:
        with self._lock:
            n = self.hits["chat"]
        prompt = json.dumps(body.get("messages", []))
        completion_tokens = len((answer.content or "").split()) + 1
        prompt_tokens = len(prompt) // 4 + 1
        return {
            "id": f"chatcmpl-replay-{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", self.model),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer.content},
                    "finish_reason": answer.finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    # ------------------------------------------------------------------ handlers

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        replay = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                if urlsplit(self.path).path.rstrip("/") == "/v1/models":
                    with replay._lock:
                        replay.hits["models"] += 1
                    model = {"id": replay.model, "object": "model", "created": 0, "owned_by": "x"}
                    return self._json(200, {"object": "list", "data": [model]})
                return self._not_found()

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if urlsplit(self.path).path.rstrip("/") != "/v1/chat/completions":
                    return self._not_found()
                try:
                    body = json.loads(raw)
                except ValueError:
                    return self._json(400, _error(400, "request body is not JSON"))
                with replay._lock:
                    replay.hits["chat"] += 1
                    replay.requests.append(body)
                    replay.headers.append({k.lower(): v for k, v in self.headers.items()})
                    replay.in_flight += 1
                    replay.max_in_flight = max(replay.max_in_flight, replay.in_flight)
                try:
                    self._play(body, replay._reply_for(body))
                finally:
                    with replay._lock:
                        replay.in_flight -= 1

            def _play(self, body: dict[str, Any], reply: Reply) -> None:
                while isinstance(reply, Sleep):
                    time.sleep(reply.seconds)
                    reply = reply.then
                try:
                    if isinstance(reply, str):
                        reply = Answer(reply)
                    if isinstance(reply, Answer):
                        self._json(200, replay._completion(body, reply))
                    elif isinstance(reply, Status):
                        self._status(reply)
                    else:
                        self._send(200, reply.body)
                except OSError:  # the client gave up (timed out) and closed the connection
                    self.close_connection = True

            def _status(self, reply: Status) -> None:
                if reply.body is None:
                    payload = json.dumps(_error(reply.code, f"replayed HTTP {reply.code}"))
                elif isinstance(reply.body, str):
                    payload = reply.body
                else:
                    payload = json.dumps(reply.body)
                extra = {} if reply.retry_after is None else {"Retry-After": str(reply.retry_after)}
                self._send(reply.code, payload.encode(), extra)

            def _not_found(self) -> None:
                self._json(404, _error(404, f"no route {self.command} {self.path}"))

            def _json(self, status: int, payload: Mapping[str, Any]) -> None:
                self._send(status, json.dumps(payload).encode())

            def _send(
                self, status: int, body: bytes, extra: Mapping[str, str] | None = None
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in (extra or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

        return Handler


class _Server(ThreadingHTTPServer):
    # The default backlog of 5 drops connections under a concurrent batch: 1 s SYN retries.
    request_queue_size = 256


def _error(code: int, message: str) -> dict[str, Any]:
    kind = "BadRequestError" if code < 500 else "InternalServerError"
    return {"object": "error", "message": message, "type": kind, "param": None, "code": code}
