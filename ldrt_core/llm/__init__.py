"""LLM backends behind one interface.

Input: `Request`s (messages, PNG images, an optional JSON Schema). Output: per request, in order, a
`Completion` (text and validated JSON) or a `Failure`. `OpenAIHTTPClient` talks to any
OpenAI-compatible server (`vllm serve`); it is imported on first use, as `openai` is slow to load.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ldrt_core.llm.base import (
    Completion,
    Failure,
    InvalidOutputError,
    LLMClient,
    LLMConfigError,
    LLMError,
    LLMRequestError,
    Message,
    Request,
    compile_schema,
    validate_json,
)

if TYPE_CHECKING:
    from ldrt_core.llm.openai_http import OpenAIHTTPClient

__all__ = [
    "Completion",
    "Failure",
    "InvalidOutputError",
    "LLMClient",
    "LLMConfigError",
    "LLMError",
    "LLMRequestError",
    "Message",
    "OpenAIHTTPClient",
    "Request",
    "compile_schema",
    "validate_json",
]


def __getattr__(name: str) -> Any:
    if name == "OpenAIHTTPClient":
        from ldrt_core.llm.openai_http import OpenAIHTTPClient

        return OpenAIHTTPClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
