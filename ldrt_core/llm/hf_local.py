"""The LLM backend that runs a local Hugging Face causal LM in this process (transformers).

Input: `Request`s and a model directory (what `save_pretrained` writes: config.json, safetensors
weights, tokenizer files with a chat template). Output: one `Completion` or `Failure` per request,
in order.

Text only: message images are ignored (a vision-language model needs another backend). Each
request's messages go through the tokenizer's chat template; prompts are left-padded and generated
in batches of `batch_size` (requests with the same max_tokens, temperature and seed share a batch).
Temperature 0 is greedy decoding; above 0 it samples, and a request's `seed` seeds torch first, so
the same batch gives the same answers (the global torch random state is left as it was).

An answer that is not valid JSON for the request's schema is asked again, with the reason, up to
`max_invalid_retries` times, then becomes a `Failure`. Weights load from safetensors only (never a
pickle), from the directory only (never a model hub), with no remote code.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jsonschema.protocols import Validator

from ldrt_core.llm.base import (
    Completion,
    Failure,
    InvalidOutputError,
    LLMClient,
    LLMConfigError,
    LLMError,
    Request,
    compile_schema,
    cut_off,
    model_fingerprint,
    validate_json,
)

if TYPE_CHECKING:
    import torch

__all__ = ["HFLocalClient"]

_MODEL_DIR_HELP = (
    "a model directory must hold config.json, the weights as model.safetensors (or sharded "
    "*.safetensors with model.safetensors.index.json) and the tokenizer files (tokenizer.json, "
    "tokenizer_config.json, with a chat template), as `save_pretrained` writes them"
)
_MAX_MESSAGE = 300  # characters of an exception's message kept in a Failure


@dataclass
class _Item:
    """One request in flight: its conversation so far (re-asks appended) and what it cost."""

    request: Request
    validator: Validator | None
    conversation: list[dict[str, str]]
    usage: Counter[str] = field(default_factory=Counter)
    attempts: int = 0


@dataclass(frozen=True)
class _Output:
    """One generated answer."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class _Prompt:
    """A rendered prompt, and the generation settings that decide which batch it may join."""

    index: int  # position in the list handed to `_generate`
    text: str
    max_tokens: int
    temperature: float  # 0 means greedy
    seed: int | None  # None when greedy (the seed cannot matter)


class HFLocalClient(LLMClient):
    """Chat completions from a local transformers causal LM; see the module docstring."""

    def __init__(
        self,
        model_dir: Path | str,
        device: str = "cpu",
        batch_size: int = 4,
        max_invalid_retries: int = 1,
    ) -> None:
        path = Path(model_dir).expanduser()
        if not path.is_dir():
            raise LLMConfigError(f"no model directory at {path}: {_MODEL_DIR_HELP}")
        config_file = path / "config.json"
        if not config_file.is_file():
            raise LLMConfigError(f"{path} has no config.json: {_MODEL_DIR_HELP}")
        if batch_size < 1:
            raise LLMConfigError(f"expected batch_size >= 1, got {batch_size}")
        if max_invalid_retries < 0:
            raise LLMConfigError(f"expected max_invalid_retries >= 0, got {max_invalid_retries}")
        self.model_dir = path
        self.batch_size = batch_size
        self.max_invalid_retries = max_invalid_retries
        self.model_id = f"{path.name}@{model_fingerprint(path)[:12]}"  # weights, not only config
        self._log = logging.getLogger(__name__)
        self._device = _device(device)
        self._tokenizer = self._load_tokenizer()
        self._model: Any = self._load_model()
        self._eos_ids = _eos_ids(self._model.generation_config.eos_token_id)
        if self._tokenizer.eos_token_id is not None:
            self._eos_ids.add(int(self._tokenizer.eos_token_id))

    def __repr__(self) -> str:
        return f"HFLocalClient(model_dir={str(self.model_dir)!r}, device={str(self._device)!r})"

    def _load_tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir), local_files_only=True)
        except Exception as exc:  # OSError, ValueError, a tokenizers parse error...
            raise LLMConfigError(
                f"cannot load the tokenizer from {self.model_dir}: {_short(exc)}; {_MODEL_DIR_HELP}"
            ) from exc
        if not getattr(tokenizer, "chat_template", None):
            raise LLMConfigError(
                f"the tokenizer in {self.model_dir} has no chat template: expected a chat "
                "(instruction-tuned) model"
            )
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            if tokenizer.eos_token_id is None:
                raise LLMConfigError(
                    f"the tokenizer in {self.model_dir} has neither a pad nor an eos token"
                )
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer

    def _load_model(self) -> Any:
        from transformers import AutoModelForCausalLM

        try:
            model: Any = AutoModelForCausalLM.from_pretrained(
                str(self.model_dir), local_files_only=True, use_safetensors=True
            )
        except Exception as exc:  # no safetensors, a bad config, an unknown architecture...
            raise LLMConfigError(
                f"cannot load a causal LM from {self.model_dir}: {_short(exc)}; {_MODEL_DIR_HELP}"
            ) from exc
        model.to(self._device)
        model.eval()
        return model

    def close(self) -> None:
        if self._model is None:
            return
        self._model = None
        if self._device.type == "cuda":
            import torch

            torch.cuda.empty_cache()

    # ------------------------------------------------------------------------ the batch

    def complete_batch(self, requests: Sequence[Request]) -> list[Completion | Failure]:
        """Answer every request, in order; images in the messages are ignored (text only)."""
        if self._model is None:
            raise LLMError("this HFLocalClient is closed; build a new one")
        results: list[Completion | Failure | None] = [None] * len(requests)
        items: dict[int, _Item] = {}
        validators: dict[str, Validator | LLMConfigError] = {}
        for i, request in enumerate(requests):
            started = _start(request, validators)
            if isinstance(started, Failure):
                results[i] = started
            else:
                items[i] = started
        while items:  # one round per attempt; each round ends or re-asks every item in it
            indices = list(items)
            outputs = self._generate([items[i] for i in indices])
            for i, output in zip(indices, outputs, strict=True):
                item = items[i]
                item.attempts += 1
                result = self._settle(item, output)
                if result is not None:
                    results[i] = result
                    del items[i]
        return [r if r is not None else Failure("not answered", 0) for r in results]

    def _settle(self, item: _Item, output: _Output | str) -> Completion | Failure | None:
        """The item's result after this attempt, or None when it is to be asked again."""
        if isinstance(output, str):
            return Failure(output, item.attempts)
        item.usage["prompt_tokens"] += output.prompt_tokens
        item.usage["completion_tokens"] += output.completion_tokens
        item.usage["total_tokens"] += output.prompt_tokens + output.completion_tokens
        usage = dict(item.usage)
        if item.validator is None:
            return Completion(output.text, None, output.finish_reason, usage, item.attempts)
        try:
            parsed = validate_json(output.text, item.validator)
        except InvalidOutputError as exc:
            reason = str(exc)
            if output.finish_reason == "length":
                return Failure(cut_off(item.request.max_tokens, reason), item.attempts)
            if item.attempts > self.max_invalid_retries:
                return Failure(
                    f"invalid answer after {item.attempts} attempts "
                    f"({self.max_invalid_retries} re-asks): {reason}",
                    item.attempts,
                )
            self._log.info("re-asking %s: %s", self.model_id, reason)
            item.conversation += _reask(output.text, reason)
            return None
        return Completion(output.text, parsed, output.finish_reason, usage, item.attempts)

    # ------------------------------------------------------------------------ generation

    def _generate(self, items: Sequence[_Item]) -> list[_Output | str]:
        """One answer (or why there is none) per item, in order; never raises."""
        outputs: list[_Output | str] = ["not generated"] * len(items)
        groups: dict[tuple[int, float, int | None], list[_Prompt]] = {}
        for i, item in enumerate(items):
            try:
                prompt = self._render(i, item)
            except Exception as exc:  # a template that rejects these roles, say
                outputs[i] = f"cannot apply the chat template: {_short(exc)}"
                continue
            key = (prompt.max_tokens, prompt.temperature, prompt.seed)
            groups.setdefault(key, []).append(prompt)
        for group in groups.values():
            for start in range(0, len(group), self.batch_size):
                chunk = group[start : start + self.batch_size]
                for prompt, output in zip(chunk, self._run_or_split(chunk), strict=True):
                    outputs[prompt.index] = output
        return outputs

    def _render(self, index: int, item: _Item) -> _Prompt:
        text = self._tokenizer.apply_chat_template(
            item.conversation, tokenize=False, add_generation_prompt=True
        )
        if not isinstance(text, str):
            raise TypeError(f"the chat template gave {type(text).__name__}, expected str")
        request = item.request
        greedy = request.temperature <= 0
        return _Prompt(
            index=index,
            text=text,
            max_tokens=request.max_tokens,
            temperature=0.0 if greedy else float(request.temperature),
            seed=None if greedy else request.seed,
        )

    def _run_or_split(self, chunk: Sequence[_Prompt]) -> list[_Output | str]:
        """Generate a chunk; if that fails, each prompt alone, so one bad prompt fails alone."""
        try:
            return list(self._run(chunk))
        except Exception as exc:
            if len(chunk) > 1:
                self._log.info("a batch of %d failed (%s); one at a time", len(chunk), exc)
                return [out for prompt in chunk for out in self._run_or_split([prompt])]
            self._log.warning("generation failed: %s", exc, exc_info=True)
            return [f"generation failed: {type(exc).__name__}: {_short(exc)}"]

    def _run(self, chunk: Sequence[_Prompt]) -> list[_Output]:
        """One `generate` call; all prompts in `chunk` share max_tokens, temperature and seed."""
        import torch

        first = chunk[0]
        encoded = self._tokenizer(
            [p.text for p in chunk],
            return_tensors="pt",
            padding=True,
            add_special_tokens=False,  # the chat template writes BOS itself
        ).to(self._device)
        settings: dict[str, Any] = {
            "max_new_tokens": first.max_tokens,
            "do_sample": first.temperature > 0,
            "pad_token_id": self._tokenizer.pad_token_id,
        }
        if first.temperature > 0:
            settings["temperature"] = first.temperature
        with torch.inference_mode(), self._seeded(first.seed):
            generated = self._model.generate(**encoded, **settings)
        width = encoded["input_ids"].shape[1]
        prompt_lengths = encoded["attention_mask"].sum(dim=1).tolist()
        outputs = []
        for row, prompt_tokens in zip(generated[:, width:].tolist(), prompt_lengths, strict=True):
            stop = next((n for n, token in enumerate(row) if token in self._eos_ids), None)
            new = row if stop is None else row[:stop]
            text = self._tokenizer.decode(new, skip_special_tokens=True)
            outputs.append(
                _Output(
                    text=text,
                    finish_reason="length" if stop is None else "stop",
                    prompt_tokens=int(prompt_tokens),
                    completion_tokens=len(row) if stop is None else stop + 1,
                )
            )
        return outputs

    def _seeded(self, seed: int | None) -> AbstractContextManager[None]:
        """A context that seeds torch with `seed` and restores the global random state after."""
        return nullcontext() if seed is None else _fork_and_seed(self._device, seed)


# ---------------------------------------------------------------------------------- helpers


def _device(name: str) -> torch.device:
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise LLMConfigError(
            f"expected a torch device such as cpu or cuda:0, got {name!r}"
        ) from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LLMConfigError(f"device {name!r} asked for, but torch sees no CUDA device here")
    return device


@contextmanager
def _fork_and_seed(device: torch.device, seed: int) -> Iterator[None]:
    import torch

    accelerated = device.type != "cpu"
    devices: list[int] | None = None if accelerated else []
    device_type = device.type if accelerated else "cuda"
    with torch.random.fork_rng(devices=devices, device_type=device_type):
        torch.manual_seed(seed)
        yield


def _start(request: Request, validators: dict[str, Validator | LLMConfigError]) -> _Item | Failure:
    """The request ready to generate, or a `Failure` for settings that cannot work."""
    if request.max_tokens < 1:
        return Failure(f"expected max_tokens >= 1, got {request.max_tokens}", 0)
    if request.temperature < 0:
        return Failure(f"expected temperature >= 0, got {request.temperature}", 0)
    if not request.messages:
        return Failure("expected at least one message", 0)
    validator = None
    if request.json_schema is not None and request.check_json:
        found = _validator(request.json_schema, validators)
        if isinstance(found, LLMConfigError):
            return Failure(str(found), 0)
        validator = found
    # Images are dropped: this backend is text only.
    conversation = [{"role": m.role, "content": m.content} for m in request.messages]
    return _Item(request, validator, conversation)


def _validator(
    schema: Mapping[str, Any], seen: dict[str, Validator | LLMConfigError]
) -> Validator | LLMConfigError:
    """The schema's validator, checked once per batch (checking costs ~4 ms)."""
    key = json.dumps(schema, sort_keys=True, default=str)
    if key not in seen:
        try:
            seen[key] = compile_schema(schema)
        except LLMConfigError as exc:
            seen[key] = exc
    return seen[key]


def _eos_ids(value: object) -> set[int]:
    if isinstance(value, int):
        return {value}
    if isinstance(value, list | tuple):
        return {int(v) for v in value if isinstance(v, int)}
    return set()


def _reask(bad_answer: str, reason: str) -> list[dict[str, str]]:
    return [
        {"role": "assistant", "content": bad_answer},
        {
            "role": "user",
            "content": f"That answer is not valid: {reason}. Reply again with only the JSON "
            "that satisfies the schema, no other text.",
        },
    ]


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"
