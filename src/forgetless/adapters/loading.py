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
from forgetless.models.load import ModelInfo, hub_like, load_model, same_base


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


WEIGHTS_FILE = "adapter_model.safetensors"


def check_adapter_weights(path: Path) -> None:
    """ModelError, before any model is loaded, when the weights file is missing, pickled or damaged."""
    from safetensors import SafetensorError, safe_open

    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        pickled = (
            " (only adapter_model.bin, a pickle, which forgetless never loads)"
            if (path / "adapter_model.bin").is_file()
            else ""
        )
        raise ModelError(f"{path}: no {WEIGHTS_FILE} in the adapter directory{pickled}; re-save or re-train it")
    try:
        with safe_open(str(weights), framework="pt") as handle:
            handle.keys()
    except (SafetensorError, OSError) as exc:
        raise ModelError(
            f"{weights}: damaged or truncated weights ({exc}); copy the adapter again or re-train it"
        ) from None


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
    check_adapter_weights(Path(adapter))
    declared = str(config.get("base_model_name_or_path") or "")
    spec = model if model is not None else manifest.get("base_model") or (declared if hub_like(declared) else None)
    base, tokenizer, info = load_model(spec, device=device, dtype=dtype)
    recorded = manifest.get("base_fingerprint") or config.get("base_model_fingerprint")
    if recorded and not same_base(recorded, info.fingerprint):
        trained_on = manifest.get("base_model") or declared
        raise ModelError(
            f"{adapter}: adapter was made for a different base model ({trained_on}), not {info.model_id}; "
            f"pass --model {trained_on} or omit --model"
        )
    if not recorded and hub_like(declared) and declared.lower() != info.hub_id.lower():
        raise ModelError(  # a foreign adapter (no fingerprint): its declared base must be the loaded one
            f"{adapter}: adapter declares base model {declared}, but {info.hub_id} is loaded (the shapes may "
            f"fit, the weights would not); pass --model {declared}"
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
