"""Adapter methods behind one small interface, so the training run does not care which it trains.

- `lora`: a PEFT LoRA (`peft.get_peft_model`); checkpoints and output are standard PEFT files.
- `loramoe`: LoRA experts + router + localized balancing constraint (`forgetless.adapters.loramoe`);
  sample types reach the layers through `balance_context` around the forward (no model files edited),
  the LBC is added to the LM loss as `beta * lbc` and both are logged separately; checkpoints hold only
  the adapter tensors (the frozen base is never re-saved).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgetless.errors import ConfigError
from forgetless.train.config import TrainConfig

LORA_TARGETS = "all-linear"
LORAMOE_TARGETS = ("gate_proj", "up_proj", "down_proj")


class LoraMethod:
    """Plain LoRA through peft."""

    name = "lora"
    owns_checkpoints = False  # the Trainer saves PEFT models as adapters already

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg

    def wrap(self, model):
        from peft import LoraConfig, get_peft_model

        cfg = self.cfg
        lora = LoraConfig(
            r=cfg.resolved_rank,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.dropout,
            target_modules=cfg.target_modules or LORA_TARGETS,
            use_rslora=cfg.rslora,
            task_type="CAUSAL_LM",
        )
        return get_peft_model(model, lora)

    def check_types(self, records) -> None:
        """Plain LoRA ignores sample types."""

    def save(self, model, directory: Path, info) -> None:
        model.save_pretrained(directory, safe_serialization=True)

    def load_checkpoint(self, model, directory: Path) -> None:  # pragma: no cover - Trainer does it
        raise NotImplementedError

    def loss_context(self, model, inputs: dict[str, Any]):
        return nullcontext()

    def aux_losses(self, model, inputs: dict[str, Any]) -> dict:
        return {}


@dataclass
class LoRAMoEMethod:
    """LoRAMoE with the localized balancing constraint."""

    cfg: TrainConfig
    name = "loramoe"
    owns_checkpoints = True

    def __post_init__(self):
        from forgetless.adapters.loramoe import LoRAMoEConfig

        cfg = self.cfg
        self.moe = LoRAMoEConfig(
            num_experts=cfg.experts,
            rank=cfg.resolved_rank,
            alpha=cfg.lora_alpha,
            dropout=cfg.dropout,
            target_modules=tuple(_as_list(cfg.target_modules) or LORAMOE_TARGETS),
            world_experts=cfg.world_experts,
            lbc_beta=cfg.lbc_beta,
            lbc_delta=cfg.lbc_delta,
        )

    def check_types(self, records) -> None:
        """Every labelled sample type needs a non-empty expert group when the LBC is on."""
        if self.moe.lbc_beta == 0:
            return
        groups = self.moe.groups()
        for record in records:
            if record.type and not groups[record.type]:
                raise ConfigError(
                    f"{record.source}:type: {record.type!r} matches no expert group (the {record.type} group "
                    f"is empty with --experts {self.moe.num_experts} --world-experts {self.moe.n_world_experts}); "
                    "resize the groups or drop the label"
                )

    def wrap(self, model):
        from forgetless.adapters.loramoe import inject_loramoe

        return inject_loramoe(model, self.moe)

    def save(self, model, directory: Path, info) -> None:
        from forgetless.adapters.loramoe import save_loramoe

        fingerprint = info.fingerprint if info is not None else None
        save_loramoe(_unwrap(model), self.moe, directory, getattr(info, "model_id", None), fingerprint)

    def load_checkpoint(self, model, directory: Path) -> None:
        """Copy adapter tensors of a checkpoint into an already injected model (for --resume)."""
        import torch
        from safetensors.torch import load_file

        from forgetless.adapters.loramoe import WEIGHTS_NAME, loramoe_layers

        tensors = load_file(str(Path(directory) / WEIGHTS_NAME))
        with torch.no_grad():
            for name, layer in loramoe_layers(_unwrap(model)):
                for key, param in layer.adapter_parameters().items():
                    param.copy_(tensors[f"{name}.{key}"])

    def loss_context(self, model, inputs: dict[str, Any]):
        if self.moe.lbc_beta == 0 or "sample_type" not in inputs:
            return nullcontext()
        from forgetless.adapters.loramoe import balance_context

        return balance_context(model, inputs["sample_type"], inputs["attention_mask"])

    def aux_losses(self, model, inputs: dict[str, Any]) -> dict:
        if self.moe.lbc_beta == 0 or "sample_type" not in inputs:
            return {}
        from forgetless.adapters.loramoe import collect_lbc_loss

        lbc = collect_lbc_loss(model, inputs["sample_type"], inputs["attention_mask"], self.moe)
        if lbc is None:  # no labelled sample in this batch: the LBC is skipped
            return {}
        return {"lbc_loss": (lbc, self.moe.lbc_beta)}


def build_method(cfg: TrainConfig):
    """The method object for `cfg.method`."""
    return LoRAMoEMethod(cfg) if cfg.method == "loramoe" else LoraMethod(cfg)


def _as_list(targets) -> list[str] | None:
    if targets is None:
        return None
    return [targets] if isinstance(targets, str) else list(targets)


def _unwrap(model):
    return getattr(model, "module", model)
