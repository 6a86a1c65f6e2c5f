"""`ForgetlessTrainer`: a `transformers.Trainer` that computes logits only where labels are.

Batches are left-padded (see `forgetless.data.collate`), so the labelled positions are the last K of
the batch and the forward asks for `logits_to_keep=K`. The loss is a token-level sum divided by
`num_items_in_batch`, exactly like transformers' own causal-LM loss, so gradient accumulation and
multi-device averaging behave as in a stock Trainer and `accelerate launch` works unchanged.

Methods with auxiliary losses (LoRAMoE's balancing constraint) plug in through `aux_losses`: a list of
callables `(model, inputs) -> dict[name, scalar]`, added to the loss and logged separately.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from transformers import Trainer

from forgetless.data.chat import IGNORE_INDEX
from forgetless.data.collate import label_window

AuxLoss = Callable[[Any, dict[str, Any]], dict[str, torch.Tensor]]


def accepts_logits_to_keep(model) -> bool:
    """Whether the (PEFT-wrapped) causal LM's forward takes `logits_to_keep`."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


class ForgetlessTrainer(Trainer):
    """Trainer with label-only logits, a summed-token loss, and pluggable auxiliary losses."""

    def __init__(self, *args, aux_losses: list[AuxLoss] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.aux_losses = aux_losses or []
        self.model_accepts_loss_kwargs = True  # our loss is normalized by num_items_in_batch
        self._slice_logits = accepts_logits_to_keep(self.model)
        self._logged: dict[str, list[float]] = {}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        extras = {k: inputs.pop(k) for k in ("sample_type",) if k in inputs}
        keep = label_window(labels)
        kwargs = {"logits_to_keep": keep} if self._slice_logits else {}
        outputs = model(**inputs, use_cache=False, **kwargs)
        logits = outputs.logits[:, -keep:]  # [B, K, V]: positions T-K .. T-1
        targets = labels[:, labels.shape[1] - keep + 1 :]  # tokens T-K+1 .. T-1
        loss_sum = F.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.shape[-1]),
            targets.reshape(-1).to(logits.device),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        )
        count = num_items_in_batch if num_items_in_batch is not None else (targets != IGNORE_INDEX).sum()
        loss = loss_sum / count
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes
        if self.aux_losses:  # log the LM part separately only when something is added to it
            self._remember("lm_loss", loss_sum / (targets != IGNORE_INDEX).sum().clamp(min=1))
        for aux in self.aux_losses:
            for name, value in aux(model, {**inputs, **extras}).items():
                self._remember(name, value)
                loss = loss + value
        return (loss, outputs) if return_outputs else loss

    def _remember(self, name: str, value: torch.Tensor) -> None:
        if self.model.training:
            self._logged.setdefault(name, []).append(float(value.detach()))

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        for name, values in self._logged.items():
            if values and "loss" in logs:
                logs[name] = round(sum(values) / len(values), 6)
        if "loss" in logs:
            self._logged = {}
        super().log(logs, *args, **kwargs)
