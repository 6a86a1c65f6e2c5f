"""`ForgetlessTrainer`: a `transformers.Trainer` that computes logits only where labels are.

Batches are left-padded (see `forgetless.data.collate`), so the labelled positions are the last K of
the batch and the forward asks for `logits_to_keep=K`. The loss is a token-level sum divided by
`num_items_in_batch`, exactly like transformers' own causal-LM loss, so gradient accumulation and
multi-device averaging behave as in a stock Trainer and `accelerate launch` works unchanged.

`anchor_kl` > 0 adds KL(base || adapter) on the labelled tokens of `world` records (the self-replay
anchors of the forgetless recipe): the base's whole next-token distribution there, not only its greedy
answer, is what the adapter must keep. The teacher is the same model under `method.disabled` (peft's
`disable_adapter()`), so no second copy of the base is held; it runs on the `world` rows only, and only
the first time a record is seen: the base is frozen, so its log-probs are kept (`forgetless.train.teacher`).

A `method` (an `AdapterMethod`, see `forgetless.adapters.base`) plugs in what differs between adapters: a context around
the forward (LoRAMoE passes sample types to its routers), auxiliary losses `{name: (value, weight)}`
added as `weight * value` and logged unweighted next to `lm_loss`, and, for methods whose model is not
a PEFT model, adapter-only checkpoint save/load (so a checkpoint never re-saves the frozen base).
"""

from __future__ import annotations

import functools
import inspect
import math
from contextlib import ExitStack, contextmanager, nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import Trainer

from forgetless.data.chat import IGNORE_INDEX
from forgetless.data.collate import label_window, length_groups
from forgetless.errors import TrainingDiverged
from forgetless.models.frozen_weights import frozen_linears_in
from forgetless.train.folded_scaling import folded_lora_scaling
from forgetless.train.progress import RichProgressCallback, quiet_trainer
from forgetless.train.teacher import TeacherCache


def accepts_logits_to_keep(model) -> bool:
    """Whether the (PEFT-wrapped) causal LM's forward takes `logits_to_keep`."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


class ForgetlessTrainer(Trainer):
    """Trainer with label-only logits, a summed-token loss, and pluggable auxiliary losses."""

    def __init__(self, *args, method=None, anchor_kl: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.method = method
        self.anchor_kl = anchor_kl
        self.teacher_cache = TeacherCache()
        self.model_accepts_loss_kwargs = True  # our loss is normalized by num_items_in_batch
        self._slice_logits = accepts_logits_to_keep(self.model)
        self._logged: dict[str, list[float]] = {}
        quiet_trainer(self)  # one rich bar instead of tqdm and `{'loss': ...}` lines on stdout

    def train(self, *args, **kwargs):
        failed = True
        try:
            with self._fast_paths():
                result = super().train(*args, **kwargs)
            failed = False
            return result
        finally:  # also when training fails or is interrupted: the bar must not outlive the run
            for callback in self.callback_handler.callbacks:
                if isinstance(callback, RichProgressCallback):
                    callback.close(failed)

    def _fast_paths(self) -> ExitStack:
        """For the run: LoRA's scaling folded into B (`forgetless.train.folded_scaling`), and, under bf16
        autocast on the CPU, the frozen linears held in bf16 and peft's up-cast of bf16 inputs to its fp32
        LoRA weights skipped (autocast casts them back to bf16 anyway). The same numbers, bit for bit
        (tested), without ~4 passes over activations per adapted linear per step."""
        stack = ExitStack()
        stack.enter_context(folded_lora_scaling(self.model))
        if self.args.bf16 and self.model.device.type == "cpu":
            from peft.helpers import disable_input_dtype_casting

            stack.enter_context(frozen_linears_in(self.model, torch.bfloat16))
            stack.enter_context(disable_input_dtype_casting(self.model))
        return stack

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        extras = {k: inputs.pop(k) for k in ("sample_type", "record_index") if k in inputs}
        separable = not return_outputs and self.method is not None and self.method.row_separable
        groups = length_groups(inputs["attention_mask"]) if separable else [None]
        parts = [self._part_loss(model, *_rows(inputs, labels, extras, rows)) for rows in groups]
        loss_sum, tokens = sum(p["lm"] for p in parts), sum(p["tokens"] for p in parts)
        aux = {k: v for p in parts for k, v in p["aux"].items()}  # several parts: row-separable methods only
        kl_parts = [p["kl"] for p in parts if p["kl"] is not None]
        if kl_parts:
            kl_tokens = sum(count for _, count in kl_parts).clamp(min=1)
            aux = {**aux, "anchor_kl": (sum(total for total, _ in kl_parts) / kl_tokens, self.anchor_kl)}
        count = num_items_in_batch if num_items_in_batch is not None else tokens
        loss = loss_sum / count
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes
        if aux:  # log the LM part separately only when something is added to it
            self._remember("lm_loss", loss_sum / tokens.clamp(min=1))
        for name, (value, weight) in aux.items():
            self._remember(name, value)
            loss = loss + weight * value
        return (loss, parts[0]["outputs"]) if return_outputs else loss

    def _part_loss(self, model, inputs, labels, extras) -> dict:
        """Summed LM loss, labelled token count, method losses and (KL sum, tokens) of one forward."""
        keep = label_window(labels)
        kwargs = {"logits_to_keep": keep} if self._slice_logits else {}
        hooked = {**inputs, **extras}
        with self.method.loss_context(model, hooked) if self.method else nullcontext():
            outputs = model(**inputs, use_cache=False, **kwargs)
            aux = self.method.aux_losses(model, hooked) if self.method else {}
        logits = outputs.logits[:, -keep:]  # [B, K, V]: positions T-K .. T-1
        targets = labels[:, labels.shape[1] - keep + 1 :].to(logits.device)  # tokens T-K+1 .. T-1
        kl = None
        if self.anchor_kl > 0 and self.method is not None and "sample_type" in extras:
            kl = self._anchor_kl(model, inputs, extras, logits, targets, kwargs)
        lm = F.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.shape[-1]),
            targets.reshape(-1),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        )
        return {"outputs": outputs, "lm": lm, "tokens": (targets != IGNORE_INDEX).sum(), "aux": aux, "kl": kl}

    def _anchor_kl(self, model, inputs, extras, logits, targets, kwargs):
        """(summed KL(base || adapter), labelled tokens) over the `world` rows; None when there are none."""
        rows = (extras["sample_type"] == 1).to(logits.device)
        if not bool(rows.any()):
            return None
        labelled = (targets[rows] != IGNORE_INDEX).to(logits.device)  # [R, K-1]
        student = F.log_softmax(logits[rows][:, :-1].float(), dim=-1)[labelled]  # [N, V]
        world = rows.nonzero().flatten()

        def teacher(which: torch.Tensor) -> torch.Tensor:  # [R', K-1, V] log-probs of world rows `which`
            picked = world[which.to(world.device)]
            with torch.no_grad(), self.method.disabled(model):
                out = model(**{k: v[picked] for k, v in inputs.items()}, use_cache=False, **kwargs).logits
            return F.log_softmax(out[:, -logits.shape[1] :, :][:, :-1].float(), dim=-1)

        if "record_index" in extras:
            records = extras["record_index"][rows.to(extras["record_index"].device)].tolist()
            target = self.teacher_cache.log_probs(records, labelled, teacher)
        else:  # a dataset without record indices: the teacher runs every step
            target = teacher(torch.ones(len(world), dtype=torch.bool))[labelled]
        per_token = F.kl_div(student, target, log_target=True, reduction="none").sum(-1)
        return per_token.sum(), labelled.sum()

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        if self.method is None or not self.method.owns_checkpoints:
            with no_hub_lookup_on_save(self.accelerator.unwrap_model(self.model)):
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
        if "loss" in logs and not math.isfinite(logs["loss"]):
            raise TrainingDiverged(
                f"the training loss became {logs['loss']} at step {self.state.global_step}: rerun with a lower --lr "
                "and --overwrite (or check the data); the checkpoints written before it are kept until then, but "
                "--resume continues only with the same options"
            )
        for name, values in self._logged.items():
            if values and "loss" in logs:
                logs[name] = round(sum(values) / len(values), 6)
        if "loss" in logs:
            self._logged = {}
        super().log(logs, *args, **kwargs)


def _rows(inputs: dict, labels, extras: dict, rows) -> tuple[dict, object, dict]:
    """(inputs, labels, extras) of the batch rows `rows`, cut to their own width (None: the whole batch)."""
    if rows is None:
        return inputs, labels, extras
    rows = rows.to(labels.device)
    width = int(inputs["attention_mask"][rows].sum(dim=1).max())
    cut = {k: v[rows][:, -width:] if v.dim() == 2 else v[rows] for k, v in inputs.items()}
    return cut, labels[rows][:, -width:], {k: v[rows.to(v.device)] for k, v in extras.items()}


@contextmanager
def no_hub_lookup_on_save(model):
    """A PEFT model's `save_pretrained` with `save_embedding_layers=False` inside the block. Left at "auto",
    peft asks the Hub whether the base's vocabulary changed on every checkpoint (the adapter names a hub id,
    never a local path): a network call, a warning offline, a stall behind a firewall. forgetless never
    resizes embeddings, and its final adapter save says False too (`LoraMethod.save`)."""
    if not hasattr(model, "peft_config"):
        yield
        return
    model.save_pretrained = functools.partial(model.save_pretrained, save_embedding_layers=False)
    try:
        yield
    finally:
        del model.save_pretrained  # the class's method again
