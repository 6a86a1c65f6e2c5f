"""Frozen linear weights held in bf16 while a bf16-autocast run trains, and put back afterwards.

Under bf16 autocast every `F.linear` casts its fp32 weight to bf16, and autocast caches the cast only for
weights that require grad: the frozen base is re-cast on every forward (for SmolLM2 LoRA training on
short QA, ~4% of a CPU step, plus the 28M-parameter tied LM head). Holding those weights in bf16 for the
run skips the casts and gives the same numbers bit for bit: the cast autocast would make is the same
round-to-nearest `weight.to(torch.bfloat16)`, done once. Embeddings and norms stay fp32 (autocast does not
cast them), so the residual stream is unchanged; adapter weights and optimizer state stay fp32.

The original fp32 `Parameter` objects are put back on exit, also on error, so ties (SmolLM2's
`lm_head.weight` is `embed_tokens.weight`) and saved or merged weights are exactly as before. Code that
runs inside the block but must see the exact weights (generation merges LoRA into them: the training
gate's probes) asks for them with `original_weights`.

    from forgetless.models.frozen_weights import frozen_linears_in, original_weights
    with frozen_linears_in(model, torch.bfloat16):
        trainer.train()              # a callback inside may use `with original_weights(model): ...`
"""

from __future__ import annotations

from contextlib import contextmanager
from weakref import WeakKeyDictionary

import torch
from torch import nn

_HELD: WeakKeyDictionary = WeakKeyDictionary()  # Linear -> (its fp32 Parameter, the low-precision copy)


@contextmanager
def frozen_linears_in(model: nn.Module, dtype: torch.dtype):
    """Within the block, every frozen fp32 `nn.Linear` weight of `model` is a `dtype` copy."""
    swapped = []
    try:
        for module in model.modules():
            weight = getattr(module, "weight", None)
            if isinstance(module, nn.Linear) and module not in _HELD and _frozen_fp32(weight):
                low = nn.Parameter(weight.detach().to(dtype), requires_grad=False)
                _HELD[module] = (weight, low)
                swapped.append(module)
                module.weight = low
        yield len(swapped)
    finally:
        for module in swapped:
            module.weight = _HELD.pop(module)[0]


@contextmanager
def original_weights(model: nn.Module):
    """Inside `frozen_linears_in`: the original fp32 weights for the block, the copies again after.
    Elsewhere: nothing changes."""
    held = [module for module in model.modules() if module in _HELD]
    for module in held:
        module.weight = _HELD[module][0]
    try:
        yield
    finally:
        for module in held:
            module.weight = _HELD[module][1]


def _frozen_fp32(weight) -> bool:
    return isinstance(weight, nn.Parameter) and not weight.requires_grad and weight.dtype == torch.float32
