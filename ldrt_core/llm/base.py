"""One interface to every LLM backend, and the JSON validation all of them share.

Input: `Request`s (chat messages, PNG images, an optional JSON Schema for the answer).
Output: for each request, in order, a `Completion` (the text, and the validated JSON when a schema
was given) or a `Failure` (why it failed for good). A batch never raises for one bad item;
`LLMClient.complete` raises `LLMRequestError` for a single one.
"""

from __future__ import annotations

import hashlib
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jsonschema
from jsonschema.exceptions import best_match
from jsonschema.protocols import Validator

from ldrt_core.errors import LdrtError

__all__ = [
    "Completion",
    "Failure",
    "InvalidOutputError",
    "LLMClient",
    "LLMConfigError",
    "LLMError",
    "LLMRequestError",
    "Message",
    "Request",
    "compile_schema",
    "validate_json",
]

Role = Literal["system", "user", "assistant"]

_MAX_REASON = 300  # characters of a validation reason: enough to fix, short enough to log
_MAX_DECODE_TRIES = 200  # start positions tried when digging JSON out of prose


class LLMError(LdrtError):
    """An LLM backend failed or was misused."""


class LLMRequestError(LLMError):
    """One request failed for good (after the retries its kind of failure allows)."""


class LLMConfigError(LLMError):
    """A backend's settings (URL, model, limits) or a request's schema cannot be used."""


class InvalidOutputError(LLMError):
    """The model's answer is not one JSON value that satisfies the schema."""


@dataclass(frozen=True)
class Message:
    """A chat message. `images` are PNG (or JPEG) bytes, sent before the text."""

    role: Role
    content: str
    images: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class Request:
    """One chat completion. With `json_schema`, the answer must be JSON valid against it:
    the server is asked for it (structured output) and the client checks it, re-asking when it is
    not. `check_json=False` leaves the checking to the caller (a judge with its own fallback
    parser): the schema is still sent, and any text comes back as it is."""

    messages: tuple[Message, ...]
    json_schema: Mapping[str, Any] | None = None
    check_json: bool = True
    temperature: float = 0.2
    max_tokens: int = 1024
    seed: int | None = None


@dataclass(frozen=True)
class Completion:
    """A successful answer. `parsed` is the validated JSON when the request had a schema.

    `usage` sums the token counts of every attempt; `attempts` counts HTTP calls made.
    """

    text: str
    parsed: Any | None
    finish_reason: str | None
    usage: dict[str, int] = field(default_factory=dict)
    attempts: int = 1


@dataclass(frozen=True)
class Failure:
    """A request that failed for good: recorded by the caller, never raised through a batch."""

    error: str
    attempts: int


class LLMClient(ABC):
    """A chat backend. Subclasses set `model_id` (it goes into cache keys)."""

    model_id: str

    @abstractmethod
    def complete_batch(self, requests: Sequence[Request]) -> list[Completion | Failure]:
        """Answer every request; same order; a bad item becomes a `Failure`, never an exception."""

    def complete(self, request: Request) -> Completion:
        """Answer one request; raise `LLMRequestError` if it failed for good."""
        (result,) = self.complete_batch([request])
        if isinstance(result, Failure):
            raise LLMRequestError(result.error)
        return result

    def close(self) -> None:  # noqa: B027 (optional hook: most backends hold nothing)
        """Release what the backend holds (connections, processes). Default: nothing."""

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------- validation


def compile_schema(schema: Mapping[str, Any]) -> Validator:
    """A validator for `schema` (its `$schema` draft, else the latest); `LLMConfigError` if bad."""
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(dict(schema))
    except jsonschema.SchemaError as exc:
        raise LLMConfigError(f"the JSON schema is invalid: {_short(exc.message)}") from None
    validator: Validator = cls(dict(schema))
    return validator


def validate_json(text: str, schema: Mapping[str, Any] | Validator) -> Any:
    """Parse the one JSON value in `text` and validate it against `schema`; return it.

    Tolerates ```json fences and prose around ONE JSON object or array. Raises
    `InvalidOutputError` with a short reason; `LLMConfigError` if the schema itself is invalid.
    """
    validator = compile_schema(schema) if isinstance(schema, Mapping) else schema
    try:
        value = _extract_json(text, _wanted_kind(validator.schema))
        error = best_match(validator.iter_errors(value))
    except RecursionError:  # a runaway answer, "[[[[..." thousands deep
        raise InvalidOutputError("the answer nests too deeply to be the JSON asked for") from None
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        raise InvalidOutputError(f"schema violation at {where}: {_short(error.message)}")
    return value


_WEIGHTS = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_SMALL = 10 * 2**20  # config, tokenizer and index files under this are hashed whole
_EDGE = 2**20  # of a weight file: its first and last MiB


def model_fingerprint(model: str | Path) -> str:
    """A digest of a local model folder's content, cheap on tens of GB: each small file whole
    (config, tokenizer), and of each weight file its name, size and first and last MiB; weights
    trained again differ throughout, so these differ. Anything else (a hub name, "tiny-random")
    is its name. Caches of what a model answered key on this, not on its folder's name."""
    path = Path(model).expanduser()
    digest = hashlib.sha256()
    if not path.is_dir():
        digest.update(str(model).encode())
        return digest.hexdigest()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        size = file.stat().st_size
        digest.update(f"{file.relative_to(path).as_posix()}\0{size}\0".encode())
        with file.open("rb") as stream:
            if file.suffix in _WEIGHTS and size > 2 * _EDGE:
                digest.update(stream.read(_EDGE))
                stream.seek(size - _EDGE)
                digest.update(stream.read(_EDGE))
            elif size <= _SMALL or file.suffix in _WEIGHTS:
                digest.update(stream.read())
    return digest.hexdigest()


def cut_off(max_tokens: int, reason: str) -> str:
    """Why an answer cut off at `max_tokens` before its JSON was whole fails at once: asked
    again at the same limit, with the longer prompt a re-ask makes, it would be cut again."""
    return (
        f"the answer was cut off at max_tokens={max_tokens} before it was whole ({reason}); "
        "raise max_tokens"
    )


def _wanted_kind(schema: Any) -> tuple[type, ...]:
    kind = schema.get("type") if isinstance(schema, Mapping) else None
    if kind == "object":
        return (dict,)
    if kind == "array":
        return (list,)
    return (dict, list)


def _extract_json(text: str, kinds: tuple[type, ...]) -> Any:
    stripped = text.strip()
    if not stripped:
        raise InvalidOutputError("the answer is empty; expected JSON")
    try:
        return json.loads(stripped)
    except ValueError:
        pass
    openers = "".join(c for c, k in (("{", dict), ("[", list)) if k in kinds)
    decoder = json.JSONDecoder()
    found: list[Any] = []
    pos, tries = 0, 0
    starts = re.compile(f"[{re.escape(openers)}]")
    while tries < _MAX_DECODE_TRIES and (m := starts.search(stripped, pos)):
        tries += 1
        try:
            value, end = decoder.raw_decode(stripped, m.start())
        except ValueError:
            pos = m.start() + 1
            continue
        found.append(value)
        pos = end
    if len(found) == 1:
        return found[0]
    what = " or ".join({"{": "object", "[": "array"}[c] for c in openers)
    if not found:
        raise InvalidOutputError(f"no JSON {what} in the answer: {_short(stripped, 80)!r}")
    raise InvalidOutputError(f"{len(found)} JSON values in the answer; expected one {what}")


def _short(text: str, limit: int = _MAX_REASON) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
