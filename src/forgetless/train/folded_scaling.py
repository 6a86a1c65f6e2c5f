"""LoRA's output scaling folded into B while a run trains: one small multiply instead of two big ones.

peft's LoRA forward is `result + lora_B(lora_A(dropout(x))) * scaling`: the `* scaling` multiplies the
whole [batch, tokens, out_features] output, and its backward multiplies the whole gradient again, for
every adapted linear (420 passes over activations per step for SmolLM2 LoRA on all linears). Here the
scaling multiplies B's weight instead ([out_features, r]: tiny), and the sum is added into the base
output in place. When the scaling is a power of two (peft's default alpha = 2 x rank, forgetless's
default) every number is the same, bit for bit: scaling by a power of two is exact in any float format
(tested). Other scalings keep peft's own forward.

It is installed through peft's LoRA-variant hook (`layer.lora_variant[adapter]`, the way DoRA plugs in)
only for the run, and removed afterwards, also on error: saved adapters, merging and inference never see
it. Merging inside the run (the training gate's probes) goes through the variant's vanilla merge.

    from forgetless.train.folded_scaling import folded_lora_scaling
    with folded_lora_scaling(model) as layers:
        trainer.train()
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F

from forgetless.utils.floats import exact_scale

try:  # the hook exists in peft >= 0.15; without it, the context manager does nothing
    from peft.tuners.lora.layer import Linear as LoraLinear
    from peft.tuners.lora.layer import LoraVariant
except ImportError:  # pragma: no cover - older peft
    LoraLinear, LoraVariant = None, object


class FoldedScaling(LoraVariant):
    """Vanilla LoRA with the scaling folded into B (see the module docstring)."""

    @staticmethod
    def init(module, adapter_name: str, **kwargs) -> None:
        return None

    @staticmethod
    def forward(module, active_adapter: str, x: torch.Tensor, result: torch.Tensor, **kwargs) -> torch.Tensor:
        lora_B = module.lora_B[active_adapter]
        hidden = module.lora_A[active_adapter](module.lora_dropout[active_adapter](x))
        return result.add_(F.linear(hidden, lora_B.weight * module.scaling[active_adapter]))

    @staticmethod
    def merge_safe(module, active_adapter: str, orig_weight: torch.Tensor) -> torch.Tensor:
        return orig_weight + module.get_delta_weight(active_adapter).to(orig_weight.dtype)

    @staticmethod
    def merge_unsafe(module, active_adapter: str, orig_weight: torch.Tensor) -> None:
        orig_weight.data += module.get_delta_weight(active_adapter)

    @staticmethod
    def unmerge(module, active_adapter: str, orig_weight: torch.Tensor) -> torch.Tensor:
        return orig_weight.data - module.get_delta_weight(active_adapter).to(orig_weight.dtype)


@contextmanager
def folded_lora_scaling(model: torch.nn.Module):
    """Within the block, every vanilla peft LoRA `Linear` adapter of `model` whose scaling is a power of two
    runs `FoldedScaling`; yields how many (layer, adapter) pairs."""
    installed = []
    try:
        for module in model.modules():
            for adapter in _foldable_adapters(module):
                module.lora_variant[adapter] = FoldedScaling()
                installed.append((module, adapter))
        yield len(installed)
    finally:
        for module, adapter in installed:
            module.lora_variant.pop(adapter, None)


def _foldable_adapters(module: torch.nn.Module) -> list[str]:
    variants = getattr(module, "lora_variant", None)
    if LoraLinear is None or type(module) is not LoraLinear or not isinstance(variants, dict):
        return []
    return [
        adapter
        for adapter, lora_B in module.lora_B.items()
        if adapter not in variants and lora_B.bias is None and exact_scale(module.scaling.get(adapter))
    ]
