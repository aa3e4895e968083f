"""A tiny random chat model in Hugging Face format, built offline, for tests and the CPU demo.

Input: an output directory and a seed. Output: that directory holding a 2-layer Llama causal LM
(hidden size 32, random weights, `model.safetensors`) and its tokenizer: a byte-level BPE trained
in well under a second on a short built-in text about low-dose radiation therapy, so it encodes any
text (Greek letters, "μGy", emoji), with `<s>`/`</s>`/`<pad>` and a Jinja chat template, so that
`apply_chat_template` works. Nothing is downloaded; the same seed writes the same files.

The model's answers are garbage: it exists so `HFLocalClient` (and anything built on it) runs end
to end without a model hub or a GPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import LlamaConfig, PreTrainedTokenizerFast

__all__ = ["CHAT_TEMPLATE", "build_tiny_causal_lm"]

BOS, EOS, PAD = "<s>", "</s>", "<pad>"

# One line per turn, each closed by EOS: a model trained on it would learn to stop there.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}{{ eos_token }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

_VOCAB_SIZE = 512  # at most: 256 bytes, 3 special tokens, merges learned from _CORPUS (~125)
_CORPUS = """\
Low-dose radiation therapy (LDRT) delivers a total of 0.5 to 1.5 Gy, often in fractions of
0.5 Gy, far below the 40 to 70 Gy used against tumours. At these doses radiation is
anti-inflammatory: it lowers TNF-α, IL-1β and IL-6, raises TGF-β1, reduces leukocyte adhesion to
endothelial cells and shifts macrophages from the M1 towards the M2 phenotype.
LDRT is used for osteoarthritis of the knee and the hand, plantar fasciitis, heel spurs,
epicondylitis, Dupuytren's disease and, in recent trials, COVID-19 pneumonia and Alzheimer's
disease. Background exposure is about 2.4 mSv per year; a chest X-ray gives about 20 μGy to 0.1 mGy.
The dose-response curve is often U-shaped or biphasic (hormesis): the effect peaks near 0.5 Gy.
Figures show dose-response curves, Kaplan-Meier survival plots, bar charts of cytokine levels,
flow cytometry scatter plots, dosimetry diagrams, treatment field photographs and histology.
Tables report the number of patients (n = 24), the pain score (VAS 0-10), p < 0.05 and 95% CI.
{"label": "plot", "confidence": 0.9} {"label": "diagram"} [1, 2, 3] {"dose_gy": 0.5}
"""  # noqa: RUF001 (the Greek letters are the point)


def build_tiny_causal_lm(out_dir: Path, seed: int = 0) -> Path:
    """Write the tiny random Llama and its tokenizer into `out_dir` (created); return it.

    Deterministic: the same `seed` gives the same weights and the same files. The global torch
    random state is left as it was.
    """
    import torch
    from transformers import LlamaForCausalLM

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = _build_tokenizer()
    config = tiny_llama_config(tokenizer, tie_word_embeddings=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.save_pretrained(out_dir)  # safetensors is the default (and only) format written
    tokenizer.save_pretrained(out_dir)
    return out_dir


def tiny_llama_config(tokenizer: PreTrainedTokenizerFast, **overrides: Any) -> LlamaConfig:
    """The tiny Llama shape every CPU test model shares, sized to `tokenizer`."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **overrides,
    )


def _build_tokenizer() -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_VOCAB_SIZE,
        min_frequency=2,
        special_tokens=[PAD, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte: any text encodes
        show_progress=False,
    )
    core.train_from_iterator(_CORPUS.splitlines(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        padding_side="left",
        clean_up_tokenization_spaces=False,
        model_max_length=4096,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
