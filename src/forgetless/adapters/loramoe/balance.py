"""The localized balancing constraint (LBC) of LoRAMoE, and how routing weights reach it.

Sample types reach the layers without touching transformers' model code: `balance_context` switches
recording on for every `LoRAMoELinear` of the model, each layer appends its gate probabilities
(fp32, with grad) during the forward, and `collect_lbc_loss` turns them into one scalar:

    with balance_context(model, sample_types, batch["attention_mask"]):
        out = model(**batch)
        lbc = collect_lbc_loss(model, sample_types, batch["attention_mask"], cfg)
        loss = out.loss if lbc is None else out.loss + cfg.lbc_beta * lbc
    loss.backward()

`sample_types[b]` is 1 for a `world` sample, 0 for a `task` sample and -1 for an unlabelled one
(ignored by the constraint). On exit the recordings are dropped, so nothing is kept during
generation or evaluation. Call `collect_lbc_loss` right after the forward: with gradient
checkpointing the recomputation during backward would append further (unused) recordings.

Per module, with gates g [B, T, N] and the labelled samples m = 1..M:

* Q[n, m] = sum of g[m, t, n] over sample m's NON-padding tokens (the official code sums over the
  padding too, which lets pad tokens steer the loss; here they are masked out);
* I[n, m] = 1 + delta if expert n's group matches sample m's type (the first `world_experts`
  experts <-> world = 1, the rest <-> task = 0), else 1 - delta;
* loss = Var(I∘Q) / Mean(I∘Q)^2, the squared coefficient of variation over the whole N×M matrix,
  with the POPULATION variance (divide by N·M): an exactly uniform I∘Q gives 0.

Module losses are combined by their MEAN (the official code sums them): then `lbc_beta` keeps its
meaning whatever the number of targeted modules or layers.

Under DDP (torch.distributed initialised, more than one process) the N×M matrix is the GLOBAL batch's:
every rank's samples enter one CV², computed from all-reduced sums (see `_global_cv2`), so two processes
of batch b train the same constraint as one process of batch 2b. The logged `lbc_loss` is that global
value on every rank.

Note on direction: minimising CV²(I∘Q) pushes I∘Q toward a constant, i.e. Q toward 1/I. By itself
the constraint therefore pushes a MATCHING group's weights DOWN (1/(1+delta) < 1/(1-delta)); the
group specialisation in the paper has to come from the interplay with the LM loss. Which group ends
up serving which sample type must be verified empirically (a later router analysis does so).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from forgetless.adapters.loramoe.config import LoRAMoEConfig
from forgetless.adapters.loramoe.layer import LoRAMoELinear
from forgetless.errors import ModelError


def loramoe_layers(model: nn.Module) -> list[tuple[str, LoRAMoELinear]]:
    """All `LoRAMoELinear` modules of `model` with their module paths."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, LoRAMoELinear)]


def _check_batch(sample_types: torch.Tensor, attention_mask: torch.Tensor) -> None:
    if sample_types.dim() != 1:
        raise ValueError(f"sample_types must have shape [B], got {tuple(sample_types.shape)}")
    if attention_mask.dim() != 2 or attention_mask.shape[0] != sample_types.shape[0]:
        raise ValueError(
            f"attention_mask must have shape [B={sample_types.shape[0]}, T], got {tuple(attention_mask.shape)}"
        )
    bad = ~((sample_types == -1) | (sample_types == 0) | (sample_types == 1))
    if bool(bad.any()):
        raise ValueError(f"sample_types must hold 1 (world), 0 (task) or -1 (unlabelled), got {sample_types}")


@contextmanager
def balance_context(
    model: nn.Module, sample_types: torch.Tensor, attention_mask: torch.Tensor
) -> Iterator[list[tuple[str, LoRAMoELinear]]]:
    """Record the gate probabilities of every LoRAMoE layer of `model` while the block runs.

    `sample_types` [B] (1 world, 0 task, -1 unlabelled) and `attention_mask` [B, T] are checked
    here so that a bad batch fails before the forward. Yields the recording layers; on exit
    recording stops and the recorded gates are dropped.
    """
    _check_batch(sample_types, attention_mask)
    layers = loramoe_layers(model)
    if not layers:
        raise ModelError("balance_context: the model has no LoRAMoE layers; call inject_loramoe first")
    if any(layer.recording for _, layer in layers):
        raise RuntimeError("balance_context is already active on this model; it cannot be nested")
    for _, layer in layers:
        layer.recorded_gates = []
        layer.recording = True
    try:
        yield layers
    finally:
        for _, layer in layers:
            layer.clear_recording()


def importance_matrix(sample_types: torch.Tensor, num_experts: int, world_experts: int, delta: float) -> torch.Tensor:
    """I [N, M]: 1 + delta where expert n's group matches sample m's type, else 1 - delta.

    Experts n < world_experts form the world group (matches type 1), the rest the task group (type 0).
    """
    is_world_expert = torch.arange(num_experts, device=sample_types.device) < world_experts
    is_world_sample = sample_types == 1
    match = is_world_expert[:, None] == is_world_sample[None, :]
    hi = torch.full(match.shape, 1.0 + delta, device=sample_types.device)
    return torch.where(match, hi, 1.0 - delta)


def lbc_loss(
    gates: torch.Tensor,
    sample_types: torch.Tensor,
    attention_mask: torch.Tensor,
    world_experts: int,
    delta: float,
) -> torch.Tensor | None:
    """Squared coefficient of variation (population variance) of I∘Q for one module.

    gates [B, T, N], sample_types [B], attention_mask [B, T]. Only labelled samples (type >= 0)
    with at least one non-padding token enter; returns None if there are none (skip the LBC).
    """
    if gates.dim() != 3 or gates.shape[:2] != attention_mask.shape:
        raise ValueError(f"gates must be [B, T, N] matching attention_mask {tuple(attention_mask.shape)}")
    num_experts = gates.shape[-1]
    if not 0 <= world_experts <= num_experts:
        raise ValueError(f"world_experts={world_experts} must be in [0, {num_experts}]")
    sample_types = sample_types.to(gates.device)
    mask = attention_mask.to(gates.device)
    keep = (sample_types >= 0) & (mask != 0).any(dim=1)
    g = gates[keep].float()
    m = (mask[keep] != 0).to(g.dtype)
    q = torch.einsum("mtn,mt->nm", g, m)  # [N, M]
    weighted = importance_matrix(sample_types[keep], num_experts, world_experts, delta).to(q) * q
    if distributed_world() > 1:
        return _global_cv2(weighted)
    if not bool(keep.any()):
        return None
    return weighted.var(unbiased=False) / weighted.mean().square()


def distributed_world() -> int:
    """The number of processes of an initialised torch.distributed group (1 when not distributed)."""
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _global_cv2(weighted: torch.Tensor) -> torch.Tensor | None:
    """CV² of I∘Q over the GLOBAL batch (every rank's samples), from all-reduced sums (sum, sum of squares,
    count; float64). The all-reduce is autograd-aware: each rank's backward sums every rank's upstream
    gradient, so a rank's share comes out world_size times the global-batch gradient, and DDP's gradient
    average turns that into exactly the gradient of the global-batch LBC. Every rank must call this for
    every module (a rank without labelled samples contributes zeros), so no collective is skipped."""
    from torch.distributed.nn.functional import all_reduce

    w = weighted.double()
    count = torch.tensor(float(w.numel()), dtype=torch.float64, device=w.device)
    sums = all_reduce(torch.stack([w.sum(), w.square().sum(), count]))
    if float(sums[2]) == 0:
        return None
    mean = sums[0] / sums[2]
    variance = (sums[1] / sums[2] - mean.square()).clamp(min=0)
    return (variance / mean.square()).float()


def collect_lbc_loss(
    model: nn.Module,
    sample_types: torch.Tensor,
    attention_mask: torch.Tensor,
    cfg: LoRAMoEConfig,
) -> torch.Tensor | None:
    """Mean over recorded module calls of `lbc_loss`; None when no sample is labelled.

    Call inside `balance_context` after the forward. Raises RuntimeError if nothing was recorded.
    """
    _check_batch(sample_types, attention_mask)
    batch, seq = attention_mask.shape
    losses: list[torch.Tensor] = []
    recorded = 0
    for name, layer in loramoe_layers(model):
        for g in layer.recorded_gates:
            recorded += 1
            if g.numel() != batch * seq * layer.num_experts:
                raise ValueError(f"{name}: recorded gates {tuple(g.shape)} do not fit the batch [B={batch}, T={seq}]")
            loss = lbc_loss(g.reshape(batch, seq, -1), sample_types, attention_mask, cfg.n_world_experts, cfg.lbc_delta)
            if loss is None:
                return None
            losses.append(loss)
    if recorded == 0:
        raise RuntimeError("no router weights were recorded: run the forward inside balance_context(...)")
    return torch.stack(losses).mean()
