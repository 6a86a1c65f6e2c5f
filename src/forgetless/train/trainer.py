"""`ForgetlessTrainer`: a `transformers.Trainer` that computes logits only where labels are.

Batches are left-padded (see `forgetless.data.collate`), so the labelled positions are the last K of
the batch and the forward asks for `logits_to_keep=K`. The loss is a token-level sum divided by
`num_items_in_batch`, exactly like transformers' own causal-LM loss, so gradient accumulation and
multi-device averaging behave as in a stock Trainer and `accelerate launch` works unchanged.

A `method` (an `AdapterMethod`, see `forgetless.adapters.base`) plugs in what differs between adapters: a context around
the forward (LoRAMoE passes sample types to its routers), auxiliary losses `{name: (value, weight)}`
added as `weight * value` and logged unweighted next to `lm_loss`, and, for methods whose model is not
a PEFT model, adapter-only checkpoint save/load (so a checkpoint never re-saves the frozen base).
"""

from __future__ import annotations

import inspect
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import Trainer

from forgetless.data.chat import IGNORE_INDEX
from forgetless.data.collate import label_window


def accepts_logits_to_keep(model) -> bool:
    """Whether the (PEFT-wrapped) causal LM's forward takes `logits_to_keep`."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


class ForgetlessTrainer(Trainer):
    """Trainer with label-only logits, a summed-token loss, and pluggable auxiliary losses."""

    def __init__(self, *args, method=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.method = method
        self.model_accepts_loss_kwargs = True  # our loss is normalized by num_items_in_batch
        self._slice_logits = accepts_logits_to_keep(self.model)
        self._logged: dict[str, list[float]] = {}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        extras = {k: inputs.pop(k) for k in ("sample_type",) if k in inputs}
        keep = label_window(labels)
        kwargs = {"logits_to_keep": keep} if self._slice_logits else {}
        hooked = {**inputs, **extras}
        with self.method.loss_context(model, hooked) if self.method else nullcontext():
            outputs = model(**inputs, use_cache=False, **kwargs)
            aux = self.method.aux_losses(model, hooked) if self.method else {}
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
        if aux:  # log the LM part separately only when something is added to it
            self._remember("lm_loss", loss_sum / (targets != IGNORE_INDEX).sum().clamp(min=1))
        for name, (value, weight) in aux.items():
            self._remember(name, value)
            loss = loss + weight * value
        return (loss, outputs) if return_outputs else loss

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        if self.method is None or not self.method.owns_checkpoints:
            return super()._save(output_dir, state_dict)
        if self.args.should_save:
            self.method.save(self.model, Path(output_dir or self.args.output_dir), None)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        if self.method is None or not self.method.owns_checkpoints:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        self.method.load_checkpoint(model or self.model, Path(resume_from_checkpoint))

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
