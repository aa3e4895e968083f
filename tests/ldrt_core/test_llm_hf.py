"""HFLocalClient and the tiny offline model: loading, batching, determinism, schema failures.

Input: the tiny random Llama `build_tiny_causal_lm` writes (built once per module; nothing is
downloaded). Output: assertions on the files written, the Completions/Failures, their attempts and
token usage, and the errors a bad model directory gives.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ldrt_core.llm import Completion, Failure, LLMConfigError, LLMError, Message, Request
from ldrt_core.llm.base import model_fingerprint
from ldrt_core.llm.hf_local import HFLocalClient
from ldrt_core.llm.tiny import build_tiny_causal_lm

pytestmark = pytest.mark.unit

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"label": {"enum": ["plot", "diagram"]}},
    "required": ["label"],
}
ANY_TEXT = "0.5 Gy, 20 μGy, TNF-α, IL-1β 🙂"  # noqa: RUF001 (Greek letters on purpose)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)


def ask(text: str, **kwargs: Any) -> Request:
    options: dict[str, Any] = {"temperature": 0, "max_tokens": 8, "seed": 7}
    options.update(kwargs)
    messages = (Message("system", "You label figures."), Message("user", text))
    return Request(messages, **options)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_causal_lm(tmp_path_factory.mktemp("models") / "tiny-llama", seed=0)


@pytest.fixture(scope="module")
def client(tiny_dir: Path) -> HFLocalClient:
    return HFLocalClient(tiny_dir, batch_size=2, max_invalid_retries=1)


# ---------------------------------------------------------------------------------- the model


def test_tiny_model_is_saved_as_safetensors_only(tiny_dir: Path) -> None:
    names = {p.name for p in tiny_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
    pickles = [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))]
    assert pickles == []


def test_tiny_model_is_deterministic_for_a_seed(tiny_dir: Path, tmp_path: Path) -> None:
    again = build_tiny_causal_lm(tmp_path / "again", seed=0)
    other = build_tiny_causal_lm(tmp_path / "other", seed=1)
    weights = (tiny_dir / "model.safetensors").read_bytes()
    assert (again / "model.safetensors").read_bytes() == weights
    assert (again / "tokenizer.json").read_bytes() == (tiny_dir / "tokenizer.json").read_bytes()
    assert (other / "model.safetensors").read_bytes() != weights


def test_tiny_tokenizer_encodes_any_text_and_has_a_chat_template(client: HFLocalClient) -> None:
    tokenizer = client._tokenizer
    text = ANY_TEXT
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt.startswith("<s>") and prompt.endswith("<|assistant|>\n")


# ---------------------------------------------------------------------------------- the client


def test_complete_batch_answers_every_request_with_usage(client: HFLocalClient) -> None:
    requests = [ask(f"question {i}: {ANY_TEXT}") for i in range(3)]
    results = client.complete_batch(requests)
    assert len(results) == 3
    for result in results:
        assert isinstance(result, Completion), result
        assert isinstance(result.text, str)
        assert result.parsed is None and result.attempts == 1
        assert result.finish_reason in ("stop", "length")
        usage = result.usage
        assert usage["prompt_tokens"] > 0 and 1 <= usage["completion_tokens"] <= 8
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_greedy_and_seeded_sampling_are_reproducible(client: HFLocalClient) -> None:
    greedy = [ask("same question")]
    first = client.complete_batch(greedy)
    assert client.complete_batch(greedy) == first
    sampled = [ask("same question", temperature=1.0, seed=3, max_tokens=16)]
    drawn = client.complete_batch(sampled)
    assert isinstance(drawn[0], Completion)
    assert client.complete_batch(sampled) == drawn


def test_seeding_leaves_the_global_torch_random_state_alone(client: HFLocalClient) -> None:
    import torch

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    client.complete_batch([ask("q", temperature=1.0, seed=5)])
    assert torch.equal(torch.rand(3), expected)


def test_invalid_json_from_the_random_model_ends_as_a_failure(client: HFLocalClient) -> None:
    """The random model never ends its answer: cut off at max_tokens, it fails at once (asked
    again at the same limit, it would be cut again)."""
    results = client.complete_batch([ask("label this figure", json_schema=SCHEMA), ask("plain")])
    failure, plain = results
    assert isinstance(failure, Failure) and failure.attempts == 1
    assert "cut off at max_tokens=8 before it was whole" in failure.error
    assert "raise max_tokens" in failure.error
    assert isinstance(plain, Completion)


def test_a_model_folder_is_known_by_its_weights_not_its_name(tmp_path: Path) -> None:
    """Caches of what a model said key on this: weights trained again and saved to the same
    folder (same names, same sizes) are another model."""
    folder = tmp_path / "judge"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama"}')
    weights = bytes(range(256)) * 20_000  # 5 MB: only its first and last MiB are read
    (folder / "model.safetensors").write_bytes(weights)
    first = model_fingerprint(folder)
    assert model_fingerprint(folder) == first
    (folder / "model.safetensors").write_bytes(weights[::-1])  # retrained: same size
    assert model_fingerprint(folder) != first
    assert model_fingerprint("llava-hf/llava-1.5-7b-hf") == model_fingerprint(
        "llava-hf/llava-1.5-7b-hf"
    )


def test_a_bad_item_fails_alone(client: HFLocalClient) -> None:
    bad_schema = {"type": "no-such-type"}
    results = client.complete_batch([ask("a", json_schema=bad_schema), ask("b", max_tokens=0)])
    assert [type(r) for r in results] == [Failure, Failure]
    assert all(isinstance(r, Failure) and r.attempts == 0 for r in results)
    assert isinstance(client.complete_batch([ask("c")])[0], Completion)


def test_images_are_ignored(client: HFLocalClient) -> None:
    with_image = Request(
        (Message("user", "what is this?", images=(PNG,)),), temperature=0, max_tokens=8
    )
    without = Request((Message("user", "what is this?"),), temperature=0, max_tokens=8)
    assert client.complete_batch([with_image, without])[0] == client.complete_batch([without])[0]


def test_model_id_is_the_directory_name_and_a_config_hash(
    client: HFLocalClient, tiny_dir: Path
) -> None:
    name, digest = client.model_id.split("@")
    assert name == "tiny-llama" and len(digest) == 12
    assert HFLocalClient(tiny_dir).model_id == client.model_id


def test_closed_client_refuses_work(tiny_dir: Path) -> None:
    with HFLocalClient(tiny_dir, max_invalid_retries=0) as closing:
        result = closing.complete_batch([ask("x", json_schema=SCHEMA)])[0]
        assert isinstance(result, Failure) and result.attempts == 1
    with pytest.raises(LLMError, match="closed"):
        closing.complete_batch([ask("y")])


# ---------------------------------------------------------------------------------- bad settings


def test_missing_model_directory_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(LLMConfigError, match=r"config\.json") as info:
        HFLocalClient(missing)
    assert str(missing) in str(info.value)


def test_directory_without_config_json_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(LLMConfigError, match=r"has no config\.json") as info:
        HFLocalClient(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_pickled_weights_are_not_loaded(tiny_dir: Path, tmp_path: Path) -> None:
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (tiny_dir / name).exists():
            (tmp_path / name).write_bytes((tiny_dir / name).read_bytes())
    (tmp_path / "pytorch_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(LLMConfigError, match=r"cannot load a causal LM.*model\.safetensors"):
        HFLocalClient(tmp_path)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"max_invalid_retries": -1}, "max_invalid_retries"),
        ({"device": "no-such-device"}, "torch device"),
    ],
)
def test_bad_settings_are_refused(tiny_dir: Path, options: dict[str, Any], match: str) -> None:
    with pytest.raises(LLMConfigError, match=match):
        HFLocalClient(tiny_dir, **options)


def test_importing_the_modules_loads_neither_torch_nor_transformers() -> None:
    code = (
        "import sys, ldrt_core.llm.hf_local, ldrt_core.llm.tiny\n"
        "print(sorted(n for n in ('torch', 'transformers') if n in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
