"""Load a base model and tokenizer: an HF model id, a local directory, or the embedded SmolLM2 default.

    from forgetless.models import load_model
    model, tokenizer, info = load_model(None)          # embedded SmolLM2-135M-Instruct
    model, tokenizer, info = load_model("HuggingFaceTB/SmolLM2-360M-Instruct")

`info.fingerprint` summarises the architecture plus an embedding checksum; adapters record it so that
loading one onto a different base fails with a clear error instead of garbage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from forgetless.embedded import EMBEDDED_ID, embedded_model_dir
from forgetless.errors import ConfigError, ModelError

PRECISIONS = ("auto", "bf16", "fp32")
_EMBEDDED_ALIASES = {None, "", "embedded", EMBEDDED_ID}
_FINGERPRINT_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "vocab_size", "intermediate_size")


@dataclass(frozen=True)
class ModelInfo:
    """What was loaded: the id a user would pass again, where it lives, and its fingerprint."""

    model_id: str
    path: str
    fingerprint: dict[str, Any]


def resolve_model(spec: str | None) -> tuple[str, str]:
    """Map `--model` to (model_id, load_path). Raises ModelError for a path that does not exist."""
    if spec in _EMBEDDED_ALIASES:
        return EMBEDDED_ID, str(embedded_model_dir())
    path = Path(spec).expanduser()
    if path.is_dir():
        return str(path.resolve()), str(path.resolve())
    if path.exists() or spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise ModelError(f"{spec}: no such model directory; pass an HF model id, a local directory, or omit --model")
    return spec, spec


def pick_device() -> str:
    """CUDA when present, else CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


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


def load_tokenizer(path: str):
    """Load a tokenizer with a pad token (EOS when the model has none) and left padding for generation."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def load_model(spec: str | None = None, device: str | None = None, dtype: str = "fp32") -> tuple[Any, Any, ModelInfo]:
    """Load (model, tokenizer, info). Weights stay fp32 unless dtype='bf16' (training uses bf16 autocast)."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    model_id, path = resolve_model(spec)
    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # keep stderr for our own progress and one-line errors
    try:
        tokenizer = load_tokenizer(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"cannot load model {spec!r}: {first[:200]} (is the id right and the model in the HF cache? "
            "this machine may be offline; pass a local directory with --model)"
        ) from exc
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    model.to(device or pick_device())
    model.eval()
    contiguous_head_input(model)
    return model, tokenizer, ModelInfo(model_id, path, fingerprint(model))


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


def fingerprint(model) -> dict[str, Any]:
    """Architecture numbers plus a checksum of the first embedding rows (tells bases apart)."""
    config = model.config
    result: dict[str, Any] = {key: getattr(config, key, None) for key in _FINGERPRINT_KEYS}
    weight = model.get_input_embeddings().weight
    result["embed_checksum"] = round(float(weight[:256].detach().double().abs().sum()), 4)
    return result


def same_base(recorded: dict[str, Any], actual: dict[str, Any]) -> bool:
    """Whether an adapter's recorded base fingerprint matches a loaded model's (checksum to 1%)."""
    if any(recorded.get(k) != actual.get(k) for k in _FINGERPRINT_KEYS if k in recorded):
        return False
    a, b = recorded.get("embed_checksum"), actual.get("embed_checksum")
    return a is None or b is None or math.isclose(a, b, rel_tol=1e-2)
