"""Frozen linear weights held in bf16 while a bf16-autocast run trains, and put back afterwards.

Under bf16 autocast every `F.linear` casts its fp32 weight to bf16, and autocast caches the cast only for
weights that require grad: the frozen base is re-cast on every forward (for SmolLM2 LoRA training on
short QA, ~4% of a CPU step, plus the 28M-parameter tied LM head). Holding those weights in bf16 for the
run skips the casts and gives the same numbers bit for bit: the cast autocast would make is the same
round-to-nearest `weight.to(torch.bfloat16)`, done once. Embeddings and norms stay fp32 (autocast does not
cast them), so the residual stream is unchanged; adapter weights and optimizer state stay fp32.

The original fp32 `Parameter` objects are put back on exit, also on error, so ties (SmolLM2's
`lm_head.weight` is `embed_tokens.weight`) and saved or merged weights are exactly as before.

    from forgetless.train.frozen_weights import frozen_linears_in
    with frozen_linears_in(model, torch.bfloat16):
        trainer.train()
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def frozen_linears_in(model: nn.Module, dtype: torch.dtype):
    """Within the block, every frozen fp32 `nn.Linear` weight of `model` is a `dtype` copy."""
    originals = []
    try:
        for module in model.modules():
            weight = getattr(module, "weight", None)
            if isinstance(module, nn.Linear) and _frozen_fp32(weight):
                originals.append((module, weight))
                module.weight = nn.Parameter(weight.detach().to(dtype), requires_grad=False)
        yield len(originals)
    finally:
        for module, weight in originals:
            module.weight = weight


def _frozen_fp32(weight) -> bool:
    return isinstance(weight, nn.Parameter) and not weight.requires_grad and weight.dtype == torch.float32
