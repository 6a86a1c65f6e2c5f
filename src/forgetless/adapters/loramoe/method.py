"""LoRAMoE as adapter method `loramoe`: experts + router + localized balancing constraint.

Sample types reach the layers through `balance_context` around the forward (no model files edited);
the LBC is added to the LM loss as `beta * lbc` and both are logged separately; checkpoints hold only
the adapter tensors (the frozen base is never re-saved). Its options are TrainConfig fields
(`--experts`, `--world-experts`, `--task-experts`, `--lbc-beta`, `--lbc-delta`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, ClassVar

from forgetless.adapters.base import register_method
from forgetless.adapters.loramoe.balance import balance_context, collect_lbc_loss, loramoe_layers
from forgetless.adapters.loramoe.config import LoRAMoEConfig
from forgetless.adapters.loramoe.model import WEIGHTS_NAME, inject_loramoe, load_loramoe, save_loramoe
from forgetless.errors import ConfigError

TARGETS = ("gate_proj", "up_proj", "down_proj")


@register_method
class LoRAMoEMethod:
    """LoRAMoE with the localized balancing constraint."""

    name: ClassVar[str] = "loramoe"
    title: ClassVar[str] = "LoRAMoE"
    default_rank: ClassVar[int] = 4  # the paper's r=4, alpha=32, 6 experts
    options: ClassVar[tuple[str, ...]] = ("experts", "world_experts", "task_experts", "lbc_beta", "lbc_delta")
    mixable: ClassVar[bool] = False
    vllm_servable: ClassVar[bool] = False
    owns_checkpoints: ClassVar[bool] = True
    row_separable: ClassVar[bool] = False  # LBC balances experts over the whole batch

    def __init__(self, cfg: Any):
        self.cfg = cfg
        self.moe = LoRAMoEConfig(
            num_experts=cfg.experts,
            rank=cfg.resolved_rank,
            alpha=cfg.lora_alpha,
            dropout=cfg.dropout,
            target_modules=tuple(_as_list(cfg.target_modules) or TARGETS),
            world_experts=cfg.world_experts,
            lbc_beta=cfg.lbc_beta,
            lbc_delta=cfg.lbc_delta,
        )

    @staticmethod
    def default_alpha(rank: int) -> float:
        return 32.0

    @classmethod
    def validate_options(cls, cfg: Any) -> None:
        _require(cfg.experts >= 1, "experts", f"must be a positive integer, got {cfg.experts}")
        _require(cfg.lbc_beta >= 0, "lbc-beta", f"must be >= 0, got {cfg.lbc_beta}")
        _require(0 <= cfg.lbc_delta < 1, "lbc-delta", f"must be in [0, 1), got {cfg.lbc_delta}")
        world, task, n = cfg.world_experts, cfg.task_experts, cfg.experts
        for name, size in (("world-experts", world), ("task-experts", task)):
            _require(size is None or 0 <= size <= n, name, f"must be in [0, --experts {n}], got {size}")
        if world is not None and task is not None:
            _require(world + task == n, "world-experts", f"{world} + --task-experts {task} must sum to --experts {n}")
        if world is None and task is not None:
            cfg.world_experts = n - task

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
        return inject_loramoe(model, self.moe)

    def save(self, model, directory: Path, info) -> None:
        fingerprint = info.fingerprint if info is not None else None
        base = (getattr(info, "hub_id", "") or getattr(info, "model_id", None)) if info is not None else None
        save_loramoe(_unwrap(model), self.moe, directory, base, fingerprint)

    def load_checkpoint(self, model, directory: Path) -> None:
        """Copy adapter tensors of a checkpoint into an already injected model (for --resume)."""
        import torch
        from safetensors.torch import load_file

        tensors = load_file(str(Path(directory) / WEIGHTS_NAME))
        with torch.no_grad():
            for name, layer in loramoe_layers(_unwrap(model)):
                for key, param in layer.adapter_parameters().items():
                    param.copy_(tensors[f"{name}.{key}"])

    def loss_context(self, model, inputs: dict[str, Any]):
        if self.moe.lbc_beta == 0 or "sample_type" not in inputs:
            return nullcontext()
        return balance_context(model, inputs["sample_type"], inputs["attention_mask"])

    def aux_losses(self, model, inputs: dict[str, Any]) -> dict:
        if self.moe.lbc_beta == 0 or "sample_type" not in inputs:
            return {}
        lbc = collect_lbc_loss(model, inputs["sample_type"], inputs["attention_mask"], self.moe)
        if lbc is None:  # no labelled sample in this batch: the LBC is skipped
            return {}
        return {"lbc_loss": (lbc, self.moe.lbc_beta)}

    @classmethod
    def attach(cls, base, path: Path):
        model = load_loramoe(base, path)
        model.eval()  # the injected layers start in training mode: their dropout made greedy answers vary
        return model

    @classmethod
    def holds(cls, model) -> bool:
        return bool(loramoe_layers(model))

    @classmethod
    @contextmanager
    def disabled(cls, model) -> Iterator[Any]:
        layers = [layer for _, layer in loramoe_layers(model)]
        for layer in layers:
            layer.disabled = True
        try:
            yield model
        finally:
            for layer in layers:
                layer.disabled = False


def _require(ok: bool, option: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"--{option} {message}")


def _as_list(targets) -> list[str] | None:
    if targets is None:
        return None
    return [targets] if isinstance(targets, str) else list(targets)


def _unwrap(model):
    return getattr(model, "module", model)
