"""Load a base model with an adapter directory on top, checking that the adapter fits that base.

    model, tokenizer, info = load_with_adapter(model=None, adapter="runs/demo")

With no `model`, the base recorded in the adapter's `forgetless.json` is used (else the embedded one).
An adapter trained on another base fails with a clear ModelError instead of producing garbage.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from forgetless.adapters.registry import adapter_kind, method_class, method_holding
from forgetless.errors import ModelError
from forgetless.models.load import ModelInfo, load_model, same_base


def read_adapter_meta(adapter: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(adapter_config.json, forgetless.json or {}) of an adapter directory; ModelError if it is not one."""
    path = Path(adapter)
    config_file = path / "adapter_config.json"
    if not config_file.is_file():
        raise ModelError(f"{path}: not an adapter directory (no adapter_config.json); pass a trained --adapter")
    try:
        config = json.loads(config_file.read_text())
        manifest_file = path / "forgetless.json"
        manifest = json.loads(manifest_file.read_text()) if manifest_file.is_file() else {}
    except json.JSONDecodeError as exc:
        raise ModelError(f"{config_file}:{exc.lineno}: adapter metadata is not valid JSON") from None
    return config, manifest


def load_with_adapter(
    model: str | None = None,
    adapter: str | Path | None = None,
    device: str | None = None,
    dtype: str = "fp32",
) -> tuple[Any, Any, ModelInfo]:
    """Load the base (or the adapter's recorded base) and attach the adapter, after checking they fit."""
    if adapter is None:
        return load_model(model, device=device, dtype=dtype)
    config, manifest = read_adapter_meta(adapter)
    spec = model if model is not None else manifest.get("base_model")
    base, tokenizer, info = load_model(spec, device=device, dtype=dtype)
    recorded = manifest.get("base_fingerprint") or config.get("base_model_fingerprint")
    if recorded and not same_base(recorded, info.fingerprint):
        trained_on = manifest.get("base_model") or config.get("base_model_name_or_path")
        raise ModelError(
            f"{adapter}: adapter was made for a different base model ({trained_on}), not {info.model_id}; "
            f"pass --model {trained_on} or omit --model"
        )
    return _attach(base, adapter, config, manifest), tokenizer, info


def _attach(base, adapter: str | Path, config: dict[str, Any], manifest: dict[str, Any]):
    return method_class(adapter_kind(config, manifest)).attach(base, Path(adapter))


@contextmanager
def adapter_disabled(model):
    """Run the base model alone inside the block (the method's own switch: PEFT's `disable_adapter`,
    LoRAMoE layers switched off, ...). This is how audits measure "before": the same loaded weights,
    the adapter contributing nothing."""
    method = method_holding(model)
    if method is None:
        yield model
        return
    with method.disabled(model):
        yield model
