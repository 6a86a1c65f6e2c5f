"""Lookups in the adapter-method registry, with the built-in methods (lora, loramoe) registered.

    from forgetless.adapters.registry import build_method, method_names, adapter_kind
    method = build_method(train_config)          # the AdapterMethod object of cfg.method
    adapter_kind(adapter_config, manifest)       # "lora" | "loramoe" | ... for a saved adapter

Every place that needs to know what kind of adapter it holds asks here; none compares method names.
"""

from __future__ import annotations

from typing import Any

from forgetless.adapters.base import METHODS, AdapterMethod, method_class
from forgetless.adapters.lora import LoraMethod
from forgetless.adapters.loramoe import LoRAMoEMethod

BUILTIN = (LoraMethod, LoRAMoEMethod)  # registered on import, in this order (the order of --method choices)
DEFAULT_METHOD = LoraMethod.name

__all__ = ["METHODS", "adapter_kind", "build_method", "method_class", "method_holding", "method_names"]


def method_names() -> tuple[str, ...]:
    """Registered method names, in registration order."""
    return tuple(METHODS)


def build_method(cfg: Any) -> AdapterMethod:
    """The method object of `cfg.method` for one training run."""
    return method_class(cfg.method)(cfg)


def adapter_kind(config: dict[str, Any], manifest: dict[str, Any] | None = None) -> str:
    """The registered method that made a saved adapter, from its adapter_config.json (and forgetless.json).

    Adapters of other tools (plain PEFT, TRL) count as `lora`: PEFT loads them."""
    kind = config.get("method") or (manifest or {}).get("method") or DEFAULT_METHOD
    return kind if kind in METHODS else DEFAULT_METHOD


def method_holding(model: Any) -> type[AdapterMethod] | None:
    """The first registered method whose adapter `model` carries (None for a bare base model)."""
    return next((cls for cls in METHODS.values() if cls.holds(model)), None)
