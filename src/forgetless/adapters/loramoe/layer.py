"""`LoRAMoELinear`: a frozen `nn.Linear` plus N LoRA experts mixed by a token-level router.

    y = base(x) + (alpha / r) * B_cat( (A_cat · dropout(x)) ⊙ repeat_interleave(g, r) )
    g = softmax(router(x), -1)            # [..., N], computed in fp32

The N experts are stored STACKED, so the forward is three matmuls with dense routing and no Python
loop over experts:

* `lora_A`: [N*r, in]  (rows i*r:(i+1)*r are expert i's A)
* `lora_B`: [out, N*r] (columns i*r:(i+1)*r are expert i's B)
* `router`: `nn.Linear(in, N, bias=False)`

Scaling expert i's r-dimensional bottleneck by g_i before B is exactly sum_i g_i * B_i A_i x.

Notable choices:

* Init as LoRA/peft: A kaiming-uniform(a=sqrt(5)) (the fan-in of a stacked [N*r, in] block equals
  the per-expert fan-in, so each expert gets exactly peft's distribution), B zeros (so a fresh
  layer returns base(x) exactly), router normal(0, router_init_std) (near-uniform gates).
* Dropout: ONE mask is shared by all experts. The official code calls the dropout module once per
  expert (independent masks); a shared mask is what makes the fused form possible and is the
  same in expectation.
* The router sees x WITHOUT dropout. Gates are computed in fp32 (also under autocast) and cast to
  the compute dtype only for the product.
* Adapter parameters are kept in fp32 when the base is fp16/bf16 (like peft's default adapter
  upcast); outside autocast the input is cast to the adapter dtype and the result back.
* The scaling multiplies B's weight instead of the output when it is a power of two (the default
  32 / 4 = 8): the same numbers bit for bit, without a pass over every output and its gradient.
* Router recording: while `forgetless.adapters.loramoe.balance.balance_context` is active the
  layer appends its gate probabilities (fp32, with grad) to `recorded_gates` for the balancing
  loss; otherwise nothing is stored, so generation does not grow memory.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from forgetless.utils.floats import exact_scale


class LoRAMoELinear(nn.Module):
    """A frozen base `nn.Linear` with a mixture of N stacked LoRA experts (see module docstring)."""

    def __init__(
        self,
        base: nn.Linear,
        num_experts: int,
        rank: int,
        alpha: float,
        dropout: float = 0.0,
        router_init_std: float = 0.01,
    ) -> None:
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.num_experts = num_experts
        self.rank = rank
        self.alpha = alpha
        self.scaling = alpha / rank
        self.in_features = base.in_features
        self.out_features = base.out_features
        self.router_init_std = router_init_std
        device = base.weight.device
        dtype = base.weight.dtype
        if dtype in (torch.float16, torch.bfloat16):
            dtype = torch.float32
        nr = num_experts * rank
        self.lora_A = nn.Parameter(torch.empty(nr, self.in_features, device=device, dtype=dtype))
        self.lora_B = nn.Parameter(torch.empty(self.out_features, nr, device=device, dtype=dtype))
        self.router = nn.Linear(self.in_features, num_experts, bias=False, device=device, dtype=dtype)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.recording = False
        self.disabled = False  # True: behave exactly as the base layer (audits measure "before" this way)
        self.recorded_gates: list[torch.Tensor] = []
        self.reset_adapter_parameters()

    @torch.no_grad()
    def reset_adapter_parameters(self) -> None:
        """LoRA init: A kaiming-uniform per expert block, B zeros, router normal(0, router_init_std)."""
        for block in self.lora_A.view(self.num_experts, self.rank, self.in_features):
            nn.init.kaiming_uniform_(block, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B)
        nn.init.normal_(self.router.weight, mean=0.0, std=self.router_init_std)

    def adapter_parameters(self) -> dict[str, nn.Parameter]:
        """The trainable tensors by their name inside this module (what an adapter file stores)."""
        return {"lora_A": self.lora_A, "lora_B": self.lora_B, "router.weight": self.router.weight}

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        """Router probabilities g = softmax(router(x)) in fp32, shape [..., N]."""
        if not torch.is_autocast_enabled(x.device.type):
            x = x.to(self.router.weight.dtype)
        return torch.softmax(self.router(x).float(), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base(x)
        if self.disabled:
            return result
        g = self.gates(x)
        if self.recording:
            self.recorded_gates.append(g)
        h = self.dropout(x)
        if not torch.is_autocast_enabled(x.device.type):
            h = h.to(self.lora_A.dtype)
        h = F.linear(h, self.lora_A)  # [..., N*r]
        h = h * g.repeat_interleave(self.rank, dim=-1).to(h.dtype)
        if exact_scale(self.scaling):  # folded into B: a [out, N*r] multiply, not one over every output
            delta = F.linear(h, self.lora_B * self.scaling)
        else:
            delta = F.linear(h, self.lora_B) * self.scaling
        return result + delta.to(result.dtype)

    def clear_recording(self) -> None:
        """Stop recording and drop the recorded gates."""
        self.recording = False
        self.recorded_gates = []

    def extra_repr(self) -> str:
        return (
            f"in={self.in_features}, out={self.out_features}, experts={self.num_experts}, "
            f"rank={self.rank}, scaling={self.scaling:g}"
        )
