"""The official LoRAMoE layer design (N separate LoRA experts summed in a Python loop), the baseline that
`benchmarks/loramoe_speed.py` and `benchmarks/gpu_check.py` compare our stacked `LoRAMoELinear` with.

    from loop_loramoe import LoopLoRAMoELinear      # (benchmarks/ on sys.path, as when a benchmark runs)
    loop = LoopLoRAMoELinear.from_stacked(layer, dropout=0.05)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from forgetless.adapters.loramoe import LoRAMoELinear


class LoopLoRAMoELinear(nn.Module):
    """The official LoRAMoE layer design: N separate LoRA experts summed in a Python loop.

    y = base(x) + sum_i g_i * B_i(A_i(dropout(x))) * alpha / r, g = softmax(router(x)) in fp32.
    """

    def __init__(self, base: nn.Linear, num_experts: int, rank: int, alpha: float, dropout: float) -> None:
        super().__init__()
        self.base = base
        self.num_experts = num_experts
        self.scaling = alpha / rank
        self.router = nn.Linear(base.in_features, num_experts, bias=False)
        self.lora_A = nn.ModuleList(nn.Linear(base.in_features, rank, bias=False) for _ in range(num_experts))
        self.lora_B = nn.ModuleList(nn.Linear(rank, base.out_features, bias=False) for _ in range(num_experts))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    @classmethod
    def from_stacked(cls, layer: LoRAMoELinear, dropout: float) -> LoopLoRAMoELinear:
        """Same base and the same initial weights as a `LoRAMoELinear` (split per expert)."""
        loop = cls(layer.base, layer.num_experts, layer.rank, layer.alpha, dropout)
        r = layer.rank
        with torch.no_grad():
            loop.router.weight.copy_(layer.router.weight)
            for i in range(layer.num_experts):
                loop.lora_A[i].weight.copy_(layer.lora_A[i * r : (i + 1) * r])
                loop.lora_B[i].weight.copy_(layer.lora_B[:, i * r : (i + 1) * r])
        return loop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base(x)
        g = F.softmax(self.router(x), dim=-1, dtype=torch.float32).to(result.dtype)
        for i in range(self.num_experts):
            expert = self.lora_B[i](self.lora_A[i](self.dropout(x)))
            result = result + g[..., i : i + 1] * expert * self.scaling
        return result
