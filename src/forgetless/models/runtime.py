"""Where and in which precision a model runs: device choice, the bf16 policy, the attention kernel for
training, and a head-input fix.

from forgetless.models.runtime import pick_device, resolve_precision, autocast
with autocast(model.device.type, resolve_precision("auto", model.device.type)):
    ...
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from forgetless.errors import ConfigError

PRECISIONS = ("auto", "bf16", "fp32")


def pick_device() -> str:
    """CUDA when present, else CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


EAGER_ATTENTION_MAX_TOKENS = 512


def training_attention(model, device: str, longest: int) -> str:
    """Train on the CPU with eager attention when no record is longer than 512 tokens.

    torch's CPU SDPA kernel with a mask (left-padded batches always have one) is 2-4x slower than
    eager attention at these lengths, forward + backward, in bf16 (measured: 12.6 vs 3.2 ms at 48
    tokens, 19.8 vs 9.7 at 128, equal at 512); it made a LoRA step on short QA ~15% slower. Longer
    records, and every GPU, keep the model's own choice. Returns the implementation now in use.
    """
    current = getattr(model.config, "_attn_implementation", None)
    if device != "cpu" or current != "sdpa" or longest > EAGER_ATTENTION_MAX_TOKENS:
        return str(current)
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    else:  # pragma: no cover - transformers without the setter
        model.config._attn_implementation = "eager"
    return "eager"


@cache
def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 matmul (avx512_bf16 or AMX), where bf16 autocast pays off."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: str) -> str:
    """Turn `auto` into bf16 where the hardware runs it fast, else fp32."""
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    import torch

    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_supports_bf16() else "fp32"


def contiguous_head_input(model) -> None:
    """Hand the LM head a contiguous input (idempotent; `load_model` does it).

    With `logits_to_keep`, transformers slices the hidden states (`h[:, -k:, :]`), which cannot be viewed
    as a matrix; when the head's weight does not require grad (any PEFT-wrapped or frozen model) torch's
    matmul then expands the weight to the batch, copying it once per row: 64 x 576 x 49,152 values per
    forward on SmolLM2, 10x the cost of the whole forward (measured: a 64 x 9 pass of the adapted model,
    4.6 s without this, 0.46 s with it). A contiguous copy of the sliced rows is tiny.
    """
    head = model.get_output_embeddings()
    if head is None or getattr(head, "_forgetless_contiguous_input", False):
        return
    head.register_forward_pre_hook(_contiguous_first_argument)
    head._forgetless_contiguous_input = True


def _contiguous_first_argument(module, args):
    return (args[0].contiguous(), *args[1:]) if args else None


def autocast(device_type: str, precision: str):
    """bf16 autocast when `precision` resolves to bf16 on this device, else a no-op context."""
    import torch

    bf16 = resolve_precision(precision, device_type) == "bf16"
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16)
