"""Load a base model and tokenizer: an HF model id, a local directory, or the embedded SmolLM2 default.

    from forgetless.models.load import load_model
    model, tokenizer, info = load_model(None)          # embedded SmolLM2-135M-Instruct
    model, tokenizer, info = load_model("HuggingFaceTB/SmolLM2-360M-Instruct")

`info.fingerprint` summarises the architecture plus an embedding checksum; adapters record it so that
loading one onto a different base fails with a clear error instead of garbage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgetless.errors import ModelError
from forgetless.models.embedded import EMBEDDED_HUB_ID, EMBEDDED_ID, embedded_model_dir
from forgetless.models.runtime import contiguous_head_input, pick_device

_EMBEDDED_ALIASES = {None, "", "embedded", EMBEDDED_ID}
_FINGERPRINT_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "vocab_size", "intermediate_size")


@dataclass(frozen=True)
class ModelInfo:
    """What was loaded: the id a user would pass again, where it lives, and its fingerprint."""

    model_id: str
    path: str
    fingerprint: dict[str, Any]
    hub_id: str = ""  # the portable name adapters record as their base (see `portable_id`)


def portable_id(model_id: str, path: str, config_name: str = "") -> str:
    """The base name an adapter records (`base_model_name_or_path`): the hub id, never our cache path.
    The embedded model is `HuggingFaceTB/SmolLM2-135M-Instruct`; a local folder gives the hub id its
    config names, else the folder as the user gave it."""
    if model_id == EMBEDDED_ID:
        return EMBEDDED_HUB_ID
    if not Path(path).is_dir():
        return model_id  # loaded by hub id
    return config_name if hub_like(config_name) else model_id


def hub_like(name: str) -> bool:
    """Whether `name` reads as an `org/name` hub id (not a path on this machine)."""
    return name.count("/") == 1 and not name.startswith((".", "/", "~")) and not Path(name).exists()


def _hub_cached(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:
        return False


def resolve_model(spec: str | None) -> tuple[str, str]:
    """Map `--model` to (model_id, load_path). Raises ModelError for a path that does not exist."""
    if spec in _EMBEDDED_ALIASES or (spec == EMBEDDED_HUB_ID and not _hub_cached(spec)):
        return EMBEDDED_ID, str(embedded_model_dir())  # the hub id maps to the embedded copy offline
    path = Path(spec).expanduser()
    if path.is_dir():
        return str(path.resolve()), str(path.resolve())
    if path.exists() or spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise ModelError(f"{spec}: no such model directory; pass an HF model id, a local directory, or omit --model")
    return spec, spec


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
    hub_id = portable_id(model_id, path, getattr(model.config, "_name_or_path", "") or "")
    return model, tokenizer, ModelInfo(model_id, path, fingerprint(model), hub_id)


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
