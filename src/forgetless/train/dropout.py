"""Dropout with a quarter of the random numbers, for training on the CPU.

`nn.Dropout` draws one float per element with torch's CPU generator (`bernoulli_`, ~150M numbers/s):
LoRA puts a dropout on the input of every adapted linear, so on short records the masks alone were a
fifth of a training step (`torch.profiler`, SmolLM2 LoRA on all linears, 2 threads: 21% in
`aten::bernoulli_`, more than every matmul but the base model's). `BitsDropout` cuts each 64-bit random
word into four 16-bit lanes and keeps an element when its lane is at or above p's threshold, so a mask
costs a quarter of the draws.

The distribution is the same Bernoulli up to p's 16-bit rounding (p = 0.05 becomes 3277/65536 =
0.050003), and the survivors are scaled by 1 / (1 - that p), so the expectation is exact. Masks come from
torch's global generator, so a seeded run repeats and an HF Trainer resume (which restores that
generator) replays them. GPUs keep `nn.Dropout`: their generator is not the bottleneck.

The mask is built as a float straight from the comparison (`torch.ge(..., out=)`: a bool-to-float cast
cost 4x the comparison). An adapter's input dropout (`feeds_linear`: LoRA's and LoRAMoE's, whose output
goes only into the adapter's first matmul) also writes its output in the autocast dtype under CPU autocast:
the cast autocast would make next, fused into the mask multiply (and its gradient's cast back, into the
backward multiply). Both give the same numbers bit for bit (tested).

    from forgetless.train.dropout import training_dropout
    training_dropout(model, "cpu")  # swaps every nn.Dropout with p > 0; returns how many
"""

from __future__ import annotations

import torch
from torch import nn

LANES = 1 << 16  # a mask element is one 16-bit lane of a 64-bit random word


class BitsDropout(nn.Module):
    """`nn.Dropout(p)` drawn from 16 random bits per element (see the module docstring)."""

    def __init__(self, p: float, feeds_linear: bool = False):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p, self.feeds_linear = p, feeds_linear
        dropped = round(p * LANES)
        self.threshold = dropped - LANES // 2  # lanes are read as int16: keep lane >= threshold
        self.scale = LANES / (LANES - dropped)  # 1 / (1 - the rounded p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.threshold == -LANES // 2:
            return x
        keep = self.keep_mask(x, x.dtype)  # a 0/1 float mask: faster than where() on bools
        if x.dtype in (torch.float16, torch.bfloat16):  # scale at float precision, as the fp32 path rounds it
            return (x * keep).mul_(self.scale)
        cast_to = _autocast_dtype(x) if self.feeds_linear else None
        if cast_to is not None:
            return _MaskedCast.apply(x, keep.mul_(self.scale), cast_to)
        return x * keep.mul_(self.scale)

    def keep_mask(self, x: torch.Tensor, dtype: torch.dtype = torch.bool) -> torch.Tensor:
        """A tensor of x's shape, 1 (True) with probability 1 - p (the rounded p), else 0, in `dtype`."""
        words = torch.empty((x.numel() + 3) // 4, dtype=torch.int64, device=x.device).random_(-(2**63), None)
        lanes = words.view(torch.int16)[: x.numel()].view(x.shape)
        return torch.ge(lanes, self.threshold, out=x.new_empty(x.shape, dtype=dtype))

    def extra_repr(self) -> str:
        return f"p={self.p}, feeds_linear={self.feeds_linear}"


class _MaskedCast(torch.autograd.Function):
    """x * keep written in `dtype` (one pass, not a multiply and a cast); the gradient x * keep would
    get after autocast's cast back: float(grad) * keep."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, keep: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        ctx.save_for_backward(keep)
        return torch.mul(x, keep, out=x.new_empty(x.shape, dtype=dtype))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (keep,) = ctx.saved_tensors
        return grad * keep, None, None


def _autocast_dtype(x: torch.Tensor) -> torch.dtype | None:
    """The dtype CPU autocast will cast an fp32 `x` to before a matmul, or None (no autocast, not fp32)."""
    if x.dtype != torch.float32 or x.device.type != "cpu" or not torch.is_autocast_enabled("cpu"):
        return None
    return torch.get_autocast_dtype("cpu")


def training_dropout(model: nn.Module, device: str) -> int:
    """On the CPU, replace every `nn.Dropout` with p > 0 (LoRA's and LoRAMoE's input dropout, and any in the
    base) by a `BitsDropout` of the same p. Returns how many were replaced (0 on other devices)."""
    if device != "cpu":
        return 0
    swaps = [
        (parent, name, child.p, _feeds_adapter(parent_name, parent))
        for parent_name, parent in model.named_modules()
        for name, child in parent.named_children()
        if type(child) is nn.Dropout and child.p > 0
    ]
    for parent, name, p, feeds_linear in swaps:
        replacement = BitsDropout(p, feeds_linear)
        replacement.train(parent.training)
        setattr(parent, name, replacement)
    return len(swaps)


def _feeds_adapter(parent_name: str, parent: nn.Module) -> bool:
    """An adapter's input dropout: peft LoRA's `lora_dropout[adapter]` or LoRAMoE's `dropout` (a module that
    holds `lora_A`): its output only goes into the adapter's first matmul."""
    return parent_name.rsplit(".", 1)[-1] == "lora_dropout" or hasattr(parent, "lora_A")
