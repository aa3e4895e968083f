"""LLaVA LoRA fine-tuning throughput on one GPU: samples/s, tokens/s, MFU, HFU, peak memory.

    python bench/train_gpu.py [--shape 7b|13b|tiny] [--all] [--seq-len 2048] [--batch-size 1]
                              [--steps 10] [--warmup 3] [--dtype auto|bf16|fp32]
                              [--attention-flops causal|full] [--freeze-projector]
                              [--peak-tflops T] [--json PATH]

Builds LLaVA-1.5 with random weights straight on the device (nothing is downloaded): "7b" is
Llama-2-7B (hidden 4096, MLP 11008, 32 layers, 32 heads, vocabulary 32064), "13b" Llama-2-13B
(hidden 5120, MLP 13824, 40 layers, 40 heads), both behind the CLIP ViT-L/14-336 vision tower
(hidden 1024, MLP 4096, 24 layers, 16 heads, 336 px images, 14 px patches: 576 image tokens) and
the 2-layer GELU projector; "tiny" (2 layers, hidden 128, same vocabulary and 576 image tokens)
smoke-runs on a CPU. It then sets the model up exactly as `ldrt train` stage 2 does
(`ldrt_core.train.loop.prepare_model`): LoRA r=128, alpha=256, dropout 0.05 on the language
model's q/k/v/o/gate/up/down projections, the projector trainable too (lr 2e-5;
`--freeze-projector` freezes it), trainable weights in fp32, non-reentrant gradient checkpointing
with the input-embedding grad hooks removed (so the frozen vision tower runs forward only),
FlashAttention-2 when `flash_attn` imports on CUDA, else SDPA; torch AdamW (fused on CUDA; LoRA
lr 2e-4). The base weights are bf16 and the forward pass runs under bf16 autocast, as `ldrt
train` does on a GPU. On a CPU `--dtype auto` means fp32, no autocast.

Every sample is `--seq-len` random token ids whose first 576 (the shape's image_seq_length) are
the image token, so one random 336x336 image goes with each, and labels that ignore the image
positions. `--warmup` steps are left out of the timing; the timed steps are bracketed by
`torch.cuda.synchronize()`. Output: device, shape, parameters (total, trainable), attention
implementation, dtypes, samples/s, tokens/s (every position of the sequence counts, image ones
included), MFU, HFU and peak GPU memory (`torch.cuda.max_memory_allocated`); MFU, HFU and memory
read "n/a" on a CPU. `--all` runs 7b then 13b in one process (CUDA only; 2 warmup and 6 timed
steps unless given; a shape that runs out of memory is reported as OOM and the next one runs)
and ends with a table; `--json PATH` writes the figures. Exit status 1 when a shape failed.

FLOPs convention (matrix multiplications only; norms, activations, softmax, rotary, dropout and
the optimizer step are left out). Per step, for a batch of B samples of T tokens, L decoder
layers of hidden size h:

    N_lm    weights of the language model's linear layers (decoder layers and lm_head, not the
            embedding, which is a lookup); N_dec the decoder layers' part of it
    N_lora  LoRA weights (A and B of every adapted projection)
    N_vis   weights of the vision tower's linear layers (all 24 layers run, though the features
            are taken from the second last), L_v layers of size h_v; P = 577 positions per
            image (576 patches + CLS); N_conv the patch convolution's weights
    N_p1, N_p2  the projector's two linear layers, on I = 576 image tokens
    A       attention scores and values, per token and decoder layer, forward: 4*h*T for the full
            T x T matrix (PaLM's count, --attention-flops full), or 2*h*T counting the causal half
            only (the default: FlashAttention and SDPA skip the masked half)

    language model  T * (4*N_lm + 6*N_lora + 3*L*A)
                    forward 2*N_lm + 2*N_lora; backward 2*N_lm for the activation gradients
                    through the frozen base weights (no weight gradients for them) plus 4*N_lora
                    (activation and weight gradients of the adapters); attention backward is
                    twice its forward, since Q, K and V all need gradients
    vision tower    2*N_vis*P + 4*L_v*h_v*P^2 + 2*N_conv*I per image: forward only, since the
                    tower is frozen and its input (pixels) needs no gradient
    projector       trainable: 4*(N_p1 + N_p2)*I + 2*N_p2*I (forward, weight gradients, and the
                    activation gradient into linear_2; none needed into linear_1's input)
                    frozen: 2*(N_p1 + N_p2)*I
    model FLOPs     B * (language model + vision tower + projector)
    hardware FLOPs  model FLOPs + B*T*(2*N_dec + 2*N_lora + L*A), the forward pass of the decoder
                    layers that checkpointing runs again during backward; and, only where the
                    input-embedding grad hooks stay (not the default: they are removed, as
                    above), per image 4*N_vis*P + 12*L_v*h_v*P^2 (the tower's unneeded
                    activation gradients and its recompute) + 2*N_p1*I (+ 2*N_p2*I when the
                    projector is frozen)

MFU = model FLOPs per second / peak, HFU = hardware FLOPs per second / peak, with the dense bf16
peak of the card looked up by `torch.cuda.get_device_name()` (H100 SXM 989, H100 PCIe 756,
H100 NVL 835, H200 989, A100 312, A40 149.7, L40S 362 TFLOP/s) or given by `--peak-tflops`;
for an unknown card MFU reads "n/a (pass --peak-tflops)". FlashAttention's backward recomputes
the score matrix on top of this; that extra is counted in neither.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import json
import math
import sys
import time
import traceback
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from ldrt_core.train.loop import TrainConfig, parameter_groups, prepare_model
from ldrt_core.train.model import attention_implementation, projector_parameters

LORA_RANK = 128
LORA_ALPHA = 256
LORA_DROPOUT = 0.05
LORA_LR = 2e-4
PROJECTOR_LR = 2e-5
IMAGE_TOKEN_ID = 32000  # llava-hf LLaVA-1.5: "<image>" is 32000, "<pad>" 32001, vocabulary 32064
TEXT_TOKEN_IDS = 32000  # random text ids are drawn from [0, 32000)
DTYPE_NAMES = {torch.bfloat16: "bf16", torch.float32: "fp32", torch.float16: "fp16"}
CUDA_ONLY = "needs a CUDA GPU; use --shape tiny to smoke-run on CPU"
ALL_WARMUP = 2
ALL_STEPS = 6

# Dense bf16 tensor-core peaks (no sparsity), TFLOP/s; the first substring found in the
# lower-cased device name wins, so the more specific names come first.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("h100 pcie", 756.0),
    ("h100 nvl", 835.0),
    ("h100", 989.0),  # "NVIDIA H100 80GB HBM3" (SXM)
    ("h200 nvl", 835.0),
    ("h200", 989.0),  # also "GH200"
    ("a100", 312.0),
    ("l40s", 362.0),
    ("a40", 149.7),
)


@dataclass(frozen=True)
class Shape:
    name: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    vocab: int
    vision_hidden: int
    vision_intermediate: int
    vision_layers: int
    vision_heads: int
    image_size: int = 336
    patch_size: int = 14

    @property
    def image_tokens(self) -> int:
        """Image tokens in the text sequence: the patches ("default" drops CLS)."""
        return (self.image_size // self.patch_size) ** 2


SHAPES = {
    "7b": Shape("7b", 4096, 11008, 32, 32, 32064, 1024, 4096, 24, 16),
    "13b": Shape("13b", 5120, 13824, 40, 40, 32064, 1024, 4096, 24, 16),
    # Same layout, same 576 image tokens, small enough for a CPU.
    "tiny": Shape("tiny", 128, 344, 2, 4, 32064, 64, 256, 2, 4),
}


@dataclass(frozen=True)
class Counts:
    """Weights that take part in matrix multiplications, by part of the model."""

    lm: int  # decoder layers' linear layers + lm_head
    dec: int  # decoder layers' linear layers only
    lora: int
    vision: int  # vision tower's linear layers
    conv: int  # patch embedding
    proj1: int
    proj2: int


@dataclass
class Result:
    shape: str
    device: str
    status: str  # "ok", or why there are no figures
    attention: str = ""
    dtype: str = ""
    seq_len: int = 0
    batch_size: int = 0
    steps: int = 0
    warmup: int = 0
    params_total: int = 0
    params_trainable: int = 0
    params_lora: int = 0
    params_projector_trainable: int = 0
    build_s: float = 0.0
    step_s: float = 0.0
    samples_per_s: float = 0.0
    tokens_per_s: float = 0.0
    model_tflop_per_step: float = 0.0
    hardware_tflop_per_step: float = 0.0
    achieved_tflops: float = 0.0
    peak_tflops: float | None = None
    mfu: float | None = None
    hfu: float | None = None
    peak_memory_gib: float | None = None
    loss_first: float = 0.0
    loss_last: float = 0.0
    vision_backward: bool = False


def llava_config(shape: Shape) -> Any:
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    vision = CLIPVisionConfig(
        hidden_size=shape.vision_hidden,
        intermediate_size=shape.vision_intermediate,
        num_hidden_layers=shape.vision_layers,
        num_attention_heads=shape.vision_heads,
        image_size=shape.image_size,
        patch_size=shape.patch_size,
        projection_dim=768,
        hidden_act="quick_gelu",
    )
    text = LlamaConfig(
        vocab_size=shape.vocab,
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.heads,
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        pad_token_id=IMAGE_TOKEN_ID + 1,
        use_cache=False,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=IMAGE_TOKEN_ID,  # alias image_token_id
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_seq_length=shape.image_tokens,
        projector_hidden_act="gelu",
    )
    config.image_token_id = IMAGE_TOKEN_ID
    config.use_cache = False
    return config


def build_model(shape: Shape, device: torch.device, dtype: torch.dtype, attn: str) -> Any:
    """Random-weight LLaVA built directly on `device` in `dtype` (initialised there)."""
    from transformers import LlavaForConditionalGeneration

    with torch.device(device):
        model = LlavaForConditionalGeneration._from_config(  # type: ignore[no-untyped-call]
            llava_config(shape), dtype=dtype, attn_implementation=attn
        )
    return model


def linear_weights(module: torch.nn.Module) -> int:
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, torch.nn.Linear))


def count_weights(model: Any) -> tuple[int, int, int, int, int, int]:
    """(lm, dec, vision, conv, proj1, proj2) of the base model, before LoRA is applied."""
    inner = model.model
    dec = linear_weights(inner.language_model)
    lm = dec + model.lm_head.weight.numel()
    vision = linear_weights(inner.vision_tower)
    conv = sum(
        m.weight.numel() for m in inner.vision_tower.modules() if isinstance(m, torch.nn.Conv2d)
    )
    projector = inner.multi_modal_projector
    return (
        lm,
        dec,
        vision,
        conv,
        projector.linear_1.weight.numel(),
        projector.linear_2.weight.numel(),
    )


def step_flops(
    shape: Shape,
    counts: Counts,
    seq_len: int,
    batch: int,
    *,
    projector_trainable: bool,
    vision_backward: bool,
    attention_flops: str,
) -> tuple[float, float]:
    """(model FLOPs, hardware FLOPs) of one training step: the docstring's formulas."""
    t = seq_len
    attn = (4 if attention_flops == "full" else 2) * shape.hidden * t  # per token and layer
    language = t * (4 * counts.lm + 6 * counts.lora + 3 * shape.layers * attn)
    recompute = t * (2 * counts.dec + 2 * counts.lora + shape.layers * attn)
    i = shape.image_tokens
    p = i + 1
    vision_matmul = 2 * counts.vision * p
    vision_attn = 4 * shape.vision_layers * shape.vision_hidden * p * p
    vision = 2 * counts.conv * i + vision_matmul + vision_attn
    proj = counts.proj1 + counts.proj2
    projector = 2 * proj * i  # forward
    if projector_trainable:
        projector += 2 * proj * i + 2 * counts.proj2 * i  # weight and activation gradients
    extra = 0  # work that runs but that the step does not need
    if vision_backward:
        # activation gradients through the frozen tower (attention: twice its forward), the
        # tower's checkpointed layers run again, and the projector passes gradients down
        extra += vision_matmul + 2 * vision_attn + vision_matmul + vision_attn
        extra += 2 * counts.proj1 * i + (0 if projector_trainable else 2 * counts.proj2 * i)
    model = batch * (language + vision + projector)
    return float(model), float(model + batch * (recompute + extra))


def peak_tflops(device_name: str) -> float | None:
    lowered = device_name.lower()
    for key, tflops in PEAK_BF16_TFLOPS:
        if key in lowered:
            return tflops
    return None


def make_batch(
    shape: Shape, seq_len: int, batch: int, device: torch.device, dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    image = shape.image_tokens
    input_ids = torch.randint(0, TEXT_TOKEN_IDS, (batch, seq_len), device=device)
    input_ids[:, :image] = IMAGE_TOKEN_ID
    labels = input_ids.clone()
    labels[:, :image] = -100
    pixel_values = torch.randn(
        batch, 3, shape.image_size, shape.image_size, device=device, dtype=dtype
    )
    return {"input_ids": input_ids, "pixel_values": pixel_values, "labels": labels}


def run_shape(shape: Shape, args: argparse.Namespace, device: torch.device) -> Result:
    cuda = device.type == "cuda"
    name = (
        torch.cuda.get_device_name(device) if cuda else f"CPU ({torch.get_num_threads()} threads)"
    )
    dtype_name = args.dtype if args.dtype != "auto" else ("bf16" if cuda else "fp32")
    dtype = torch.bfloat16 if dtype_name == "bf16" else torch.float32
    attn = attention_implementation(device)
    if args.seq_len <= shape.image_tokens:
        sys.exit(f"--seq-len must exceed the {shape.image_tokens} image tokens")
    result = Result(shape=shape.name, device=name, status="ok", attention=attn)
    result.seq_len, result.batch_size = args.seq_len, args.batch_size
    result.steps, result.warmup = args.steps, args.warmup

    torch.manual_seed(0)
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    model = build_model(shape, device, dtype, attn)
    lm, dec, vision, conv, proj1, proj2 = count_weights(model)
    # The product's own setup: freeze, checkpointing, LoRA on the language model, projector at
    # its own rate, trainable weights in fp32, input-embedding grad hooks dropped.
    config = TrainConfig.for_stage(
        "instruct",
        lora_r=LORA_RANK,
        lora_alpha=LORA_ALPHA,
        lora_dropout=LORA_DROPOUT,
        learning_rate=LORA_LR,
        projector_lr=0 if args.freeze_projector else PROJECTOR_LR,
    )
    with warnings.catch_warnings():  # peft asks for `is_gradient_checkpointing` (deprecated)
        warnings.simplefilter("ignore", FutureWarning)
        model = prepare_model(model, config)
    projector = [p for _, p in projector_parameters(model) if p.requires_grad]
    model.train()
    if cuda:
        torch.cuda.synchronize(device)
    result.build_s = time.perf_counter() - started

    lora = [p for n, p in model.named_parameters() if "lora_" in n and p.requires_grad]
    counts = Counts(
        lm=lm,
        dec=dec,
        lora=sum(p.numel() for p in lora),
        vision=vision,
        conv=conv,
        proj1=proj1,
        proj2=proj2,
    )
    result.params_total = sum(p.numel() for p in model.parameters())
    result.params_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    result.params_lora = counts.lora
    result.params_projector_trainable = sum(p.numel() for p in projector)
    lora_dtype = DTYPE_NAMES.get(lora[0].dtype, str(lora[0].dtype)) if lora else "-"
    autocast = dtype == torch.bfloat16
    result.dtype = f"{dtype_name} base, {lora_dtype} LoRA" + (", bf16 autocast" if autocast else "")

    groups = parameter_groups(model, config)
    optimizer = torch.optim.AdamW(groups, weight_decay=0.0, fused=cuda)
    batch = make_batch(shape, args.seq_len, args.batch_size, device, dtype)

    def step() -> float:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())  # a host sync, once a step (as a training loop logs)

    losses = [step() for _ in range(args.warmup)]
    if cuda:
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    losses += [step() for _ in range(args.steps)]
    if cuda:
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - started

    result.step_s = elapsed / args.steps
    result.samples_per_s = args.batch_size / result.step_s
    result.tokens_per_s = args.batch_size * args.seq_len / result.step_s
    model_flops, hardware_flops = step_flops(
        shape,
        counts,
        args.seq_len,
        args.batch_size,
        projector_trainable=bool(projector),
        vision_backward=False,
        attention_flops=args.attention_flops,
    )
    result.model_tflop_per_step = model_flops / 1e12
    result.hardware_tflop_per_step = hardware_flops / 1e12
    result.achieved_tflops = model_flops / result.step_s / 1e12
    result.loss_first, result.loss_last = losses[0], losses[-1]
    if cuda:
        result.peak_tflops = args.peak_tflops or peak_tflops(name)
        if result.peak_tflops:
            result.mfu = result.achieved_tflops / result.peak_tflops
            result.hfu = hardware_flops / result.step_s / 1e12 / result.peak_tflops
        result.peak_memory_gib = torch.cuda.max_memory_allocated(device) / 2**30
    return result


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def percent(value: float | None, on_cuda: bool) -> str:
    if value is not None:
        return f"{100 * value:.1f} %"
    return "n/a (pass --peak-tflops)" if on_cuda else "n/a"


def report(result: Result, attention_flops: str) -> None:
    on_cuda = result.peak_memory_gib is not None
    rows = [
        ("device", result.device),
        ("shape", f"{result.shape} (LLaVA-1.5, random weights)"),
        (
            "params",
            f"{result.params_total / 1e9:.4g} B total, {result.params_trainable / 1e6:.4g} M "
            f"trainable (LoRA r={LORA_RANK} {result.params_lora / 1e6:.4g} M, projector "
            f"{result.params_projector_trainable / 1e6:.4g} M)",
        ),
        ("attention", result.attention),
        (
            "vision",
            "forward + unneeded backward and recompute"
            if result.vision_backward
            else "forward only (frozen; no backward through it)",
        ),
        ("dtype", result.dtype),
        (
            "batch",
            f"{result.batch_size} x {result.seq_len} tokens, {result.warmup} warmup + "
            f"{result.steps} timed steps, gradient checkpointing on, built in "
            f"{result.build_s:.1f} s",
        ),
        ("step", f"{result.step_s:.3f} s (loss {result.loss_first:.3f} -> {result.loss_last:.3f})"),
        ("samples/s", f"{result.samples_per_s:.3f}"),
        ("tokens/s", f"{result.tokens_per_s:,.0f}"),
        (
            "FLOPs/step",
            f"model {result.model_tflop_per_step:.4g} TFLOP, hardware (with recompute) "
            f"{result.hardware_tflop_per_step:.4g} TFLOP; attention counted {attention_flops}",
        ),
        ("achieved", f"{result.achieved_tflops:.4g} model TFLOP/s"),
        (
            "peak",
            f"{result.peak_tflops:g} TFLOP/s dense bf16"
            if result.peak_tflops
            else ("unknown" if on_cuda else "n/a"),
        ),
        ("MFU", percent(result.mfu, on_cuda)),
        ("HFU", percent(result.hfu, on_cuda)),
        (
            "peak memory",
            f"{result.peak_memory_gib:.1f} GiB allocated"
            if result.peak_memory_gib is not None
            else "n/a",
        ),
    ]
    for label, value in rows:
        print(f"{label:<12} {value}")
    if not all(math.isfinite(x) for x in (result.loss_first, result.loss_last)):
        print("warning: the loss is not finite")


def table(results: list[Result]) -> None:
    print()
    print(
        f"{'shape':<6} {'status':<8} {'samples/s':>10} {'tokens/s':>10} {'step s':>8} "
        f"{'MFU':>7} {'HFU':>7} {'peak GiB':>9}  attention"
    )
    for r in results:
        if r.status != "ok":
            print(f"{r.shape:<6} {r.status}")
            continue
        mfu = f"{100 * r.mfu:.1f}%" if r.mfu is not None else "n/a"
        hfu = f"{100 * r.hfu:.1f}%" if r.hfu is not None else "n/a"
        memory = f"{r.peak_memory_gib:.1f}" if r.peak_memory_gib is not None else "n/a"
        print(
            f"{r.shape:<6} {r.status:<8} {r.samples_per_s:>10.3f} {r.tokens_per_s:>10,.0f} "
            f"{r.step_s:>8.3f} {mfu:>7} {hfu:>7} {memory:>9}  {r.attention}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shape", choices=sorted(SHAPES), default="7b")
    parser.add_argument("--all", action="store_true", help="7b then 13b, then a table (CUDA)")
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=1, help="micro-batch, samples")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (10; --all: 6)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps (3; --all: 2)")
    parser.add_argument("--dtype", choices=("auto", "bf16", "fp32"), default="auto")
    parser.add_argument("--attention-flops", choices=("causal", "full"), default="causal")
    parser.add_argument("--freeze-projector", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 TFLOP/s")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()
    if args.steps is None:
        args.steps = ALL_STEPS if args.all else 10
    if args.warmup is None:
        args.warmup = ALL_WARMUP if args.all else 3
    if args.steps < 1 or args.warmup < 0 or args.batch_size < 1:
        sys.exit("--steps and --batch-size must be at least 1, --warmup at least 0")

    cuda = torch.cuda.is_available()
    device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    names = ["7b", "13b"] if args.all else [args.shape]
    if not cuda and any(n != "tiny" for n in names):
        sys.exit(CUDA_ONLY)
    try:
        import peft
        import transformers
    except ImportError as exc:
        sys.exit(f"needs transformers and peft: {exc}")
    versions = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "flash_attn": flash_attn_version(),
    }
    print(", ".join(f"{k} {v or 'absent'}" for k, v in versions.items()))
    print()

    results: list[Result] = []
    for index, name in enumerate(names):
        if index:
            print()
        try:
            result = run_shape(SHAPES[name], args, device)
        except torch.cuda.OutOfMemoryError as exc:
            first = str(exc).splitlines()[0] if str(exc) else "out of memory"
            print(f"{name}: out of GPU memory: {first}")
            result = Result(shape=name, device=str(device), status="OOM")
        except Exception as exc:  # report it, and still run the next shape
            traceback.print_exc()
            result = Result(
                shape=name, device=str(device), status=f"{type(exc).__name__}: {exc}"[:200]
            )
        else:
            report(result, args.attention_flops)
        results.append(result)
        free_memory(device)
        if args.json is not None:  # after every shape, so a crash keeps what was measured
            payload = {
                "attention_flops": args.attention_flops,
                "versions": versions,
                "results": [asdict(r) for r in results],
            }
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    if len(results) > 1:
        table(results)
    if args.json is not None:
        print(f"\nwrote {args.json}")
    if any(r.status != "ok" for r in results):
        sys.exit(1)


def flash_attn_version() -> str | None:
    try:
        return importlib.metadata.version("flash_attn")
    except importlib.metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
