"""Choose an LLM backend by name: the settings say where it is, this builds the client."""

from __future__ import annotations

import importlib.util

from ldrt_core.config import Settings
from ldrt_core.llm.base import LLMClient, LLMConfigError

BACKENDS = ("openai", "hf", "vllm")


def open_llm(
    settings: Settings, backend: str, model: str | None = None, base_url: str | None = None
) -> LLMClient:
    """An `LLMClient` for `backend`; `model` overrides LDRT_LLM_MODEL, `base_url`
    LDRT_LLM_BASE_URL."""
    name = model or settings.llm_model
    if backend == "openai":
        from ldrt_core.llm.openai_http import OpenAIHTTPClient

        if not name:
            raise LLMConfigError("set LDRT_LLM_MODEL (or --model) to the model the endpoint serves")
        return OpenAIHTTPClient(
            base_url=base_url or settings.llm_base_url,
            model=name,
            api_key=settings.llm_api_key.get_secret_value() if settings.llm_api_key else None,
            concurrency=settings.llm_concurrency,
            timeout_s=settings.llm_timeout_s,
            max_retries=settings.llm_max_retries,
            backoff_s=settings.llm_backoff_s,
            max_invalid_retries=settings.llm_max_invalid_retries,
        )
    if backend == "hf":
        from ldrt_core.llm.hf_local import HFLocalClient

        if not name:
            raise LLMConfigError("set LDRT_LLM_MODEL (or --model) to a local model directory")
        return HFLocalClient(name, max_invalid_retries=settings.llm_max_invalid_retries)
    if backend == "vllm":
        if importlib.util.find_spec("vllm") is None:
            raise LLMConfigError(
                "vLLM is not installed: pip install 'ldrt[gpu]' on a CUDA host, or run "
                "`vllm serve MODEL` and use --backend openai with LDRT_LLM_BASE_URL"
            )
        raise LLMConfigError(
            "the in-process vLLM backend is not built yet: run `vllm serve MODEL` and use "
            "--backend openai with LDRT_LLM_BASE_URL pointing at it"
        )
    raise LLMConfigError(f"unknown LLM backend {backend!r}: expected one of {', '.join(BACKENDS)}")
