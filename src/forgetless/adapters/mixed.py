"""Many LoRA adapters on one base model, and mixed batches: each row of one `generate` uses its own adapter.

    from forgetless.adapters.mixed import load_adapters, generate_mixed
    from forgetless.engine.sampling import SamplingConfig
    model, tokenizer, info = load_adapters(None, {"plural": "runs/cit/adapters/plural",
                                                  "num2words": "runs/cit/adapters/num2words"})
    answers = generate_mixed(model, tokenizer, conversations, ["plural", None, "num2words"], SamplingConfig())

One copy of the base weights holds every adapter (a `peft.PeftModel` with several named LoRA adapters).
`generate_mixed` sorts prompts by length, cuts them into chunks of `batch_size` and runs ONE batched
`generate` per chunk whatever the mix of adapters in it: PEFT's `adapter_names=[...]` argument (peft
>= 0.10; checked on 0.21) makes every LoRA layer add each row's own adapter, and rows named `__base__`
(`None` here) get the base model alone. Greedy answers equal those of the same rows generated with one
adapter at a time (tests check it). Only plain PEFT LoRA adapters mix (DoRA and LoRAMoE cannot);
adapters made for another base model are refused with a ModelError, as `load_with_adapter` does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from forgetless.adapters.loading import check_adapter_weights, read_adapter_meta
from forgetless.adapters.names import BASE
from forgetless.adapters.registry import adapter_kind, method_class
from forgetless.data.chat import render_prompt, tokenize_prompt
from forgetless.engine.generate import generate_batch
from forgetless.engine.sampling import SamplingConfig
from forgetless.errors import ConfigError, DataError, ModelError
from forgetless.models.load import ModelInfo, load_model, same_base

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")

__all__ = ["adapter_names_of", "add_adapter", "generate_mixed", "load_adapters"]


def load_adapters(
    model: str | None, adapters: dict[str, str | Path], device: str | None = None
) -> tuple[Any, Any, ModelInfo]:
    """The base model (None = embedded default) with every named LoRA adapter loaded into one PeftModel.

    With no adapters the plain base model comes back (`generate_mixed` then takes only `None` names).
    """
    base, tokenizer, info = load_model(model, device=device)
    peft_model: Any = base
    for name, path in adapters.items():
        peft_model = add_adapter(peft_model, name, path, info)
    return peft_model, tokenizer, info


def add_adapter(model: Any, name: str, path: str | Path, info: ModelInfo) -> Any:
    """Load one more LoRA adapter under `name` (the first one turns the base into a PeftModel)."""
    from peft import PeftModel

    _check_name(name, model)
    config = _check_adapter(path, info)
    if config.get("use_dora"):
        raise ModelError(f"{path}: DoRA adapters cannot share a mixed batch; use a plain LoRA adapter")
    try:
        if isinstance(model, PeftModel):
            model.load_adapter(str(path), adapter_name=name)
        else:
            model = PeftModel.from_pretrained(model, str(path), adapter_name=name)
    except (RuntimeError, ValueError, KeyError, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelError(f"{path}: adapter does not fit this base model ({first}); use its own base") from None
    model.eval()
    return model


def adapter_names_of(model: Any) -> list[str]:
    """Names of the adapters loaded into `model` ([] for a plain base model)."""
    return list(getattr(model, "peft_config", {}) or {})


def _check_name(name: str, model: Any) -> None:
    if not isinstance(name, str) or not _NAME.match(name) or name == BASE:
        raise ConfigError(f"adapter name {name!r} is not usable; use letters, digits, '_' or '-' (not {BASE})")
    if name in adapter_names_of(model):
        raise ConfigError(f"adapter name {name!r} is loaded twice; give every adapter its own name")


def _check_adapter(path: str | Path, info: ModelInfo) -> dict[str, Any]:
    config, manifest = read_adapter_meta(path)
    check_adapter_weights(Path(path))
    if not method_class(adapter_kind(config, manifest)).mixable or config.get("peft_type", "LORA") != "LORA":
        raise ModelError(f"{path}: only PEFT LoRA adapters can share a mixed batch (this one is not a plain LoRA)")
    recorded = manifest.get("base_fingerprint") or config.get("base_model_fingerprint")
    if recorded and not same_base(recorded, info.fingerprint):
        trained_on = manifest.get("base_model") or config.get("base_model_name_or_path")
        raise ModelError(
            f"{path}: adapter was made for a different base model ({trained_on}), not {info.model_id}; "
            "load it with its own base"
        )
    return config


def generate_mixed(
    model: Any,
    tokenizer: Any,
    conversations: list[list[dict]],
    adapter_names: list[str | None],
    sampling: SamplingConfig,
    batch_size: int = 16,
    on_batch: Any = None,
) -> list[str]:
    """One answer per conversation, row i generated with adapter `adapter_names[i]` (None = the base model).

    Prompts are sorted by length and generated in chunks of `batch_size`, one `generate` call per chunk
    with the rows' adapters mixed; answers come back in input order.
    """
    sampling = (sampling or SamplingConfig()).validate()
    if sampling.num_return_sequences != 1:
        raise ConfigError("generate_mixed returns one answer per prompt; use num_return_sequences=1")
    if len(conversations) != len(adapter_names):
        raise DataError(f"{len(conversations)} conversations but {len(adapter_names)} adapter names")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    names = _resolve_names(model, adapter_names)
    if sampling.seed is not None:
        import torch

        torch.manual_seed(sampling.seed)
    encoded = [tokenize_prompt(tokenizer, render_prompt(tokenizer, c)) for c in conversations]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    answers = [""] * len(encoded)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        rows, row_names = [encoded[i] for i in chunk], [names[i] for i in chunk]
        texts = generate_batch(model, tokenizer, rows, sampling, row_names if adapter_names_of(model) else None)
        for index, text in zip(chunk, texts, strict=True):
            answers[index] = text
        if on_batch:
            on_batch(len(chunk))
    return answers


def _resolve_names(model: Any, adapter_names: Sequence[str | None]) -> list[str]:
    """Map None to `__base__` and check every other name is an adapter loaded into `model`."""
    known = set(adapter_names_of(model))
    names = [BASE if name is None else name for name in adapter_names]
    unknown = sorted({n for n in names if n != BASE and n not in known})
    if unknown:
        raise ModelError(f"adapter(s) {', '.join(unknown)} are not loaded; loaded: {', '.join(sorted(known)) or '-'}")
    return names
