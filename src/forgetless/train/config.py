"""`TrainConfig`: every training option, its default, and its validation. The CLI and YAML map onto it.

A YAML config holds the same keys (see configs/*.yaml, each opening with its run command); command-line
flags override YAML values, which override these defaults. Defaults suit a ~135M model on 2 CPU cores.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forgetless.errors import ConfigError

METHODS = ("lora", "loramoe")
DEFAULT_RANK = {"lora": 16, "loramoe": 4}  # LoRAMoE: the paper's r=4, alpha=32, 6 experts


@dataclass
class TrainConfig:
    """Options of one adapter training run."""

    data: str = ""
    output: str = ""
    model: str | None = None  # HF id, local dir, or None for the embedded SmolLM2-135M-Instruct
    method: str = "lora"
    epochs: float = 3.0
    max_steps: int = -1  # > 0 overrides epochs
    lr: float = 2e-4
    rank: int | None = None  # None: 16 for lora, 4 for loramoe
    alpha: float | None = None  # None: 2 * rank for lora, 32 for loramoe
    dropout: float = 0.05
    target_modules: list[str] | str | None = None  # None: all linear layers (lora), FFN (loramoe)
    experts: int = 6  # loramoe: experts per adapted layer
    world_experts: int | None = None  # loramoe: size of the `world` group (first experts); None: experts // 2
    task_experts: int | None = None  # loramoe: size of the `task` group; must sum with world to experts
    lbc_beta: float = 0.1  # loramoe: weight of the localized balancing constraint (0 turns it off)
    lbc_delta: float = 0.1  # loramoe: importance bonus/penalty of the constraint
    rslora: bool = False
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 512
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    scheduler: str = "cosine"
    loss_on: str = "response"  # or "all" (whole-sequence loss)
    system: str | None = None  # system prompt added to prompt/response records without one
    save_steps: int = 200
    logging_steps: int = 10
    seed: int = 0
    precision: str = "auto"  # auto | bf16 | fp32
    resume: bool = False
    overwrite: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # method-specific options

    def validate(self) -> TrainConfig:
        """Raise ConfigError naming the first invalid option and how to fix it."""
        _require(bool(self.data), "data", "is required: pass --data FILE (or a hub dataset name)")
        _require(bool(self.output), "output", "is required: pass --output DIR")
        _require(self.method in METHODS, "method", f"must be one of {', '.join(METHODS)}")
        _require(self.resolved_rank >= 1, "rank", f"must be a positive integer, got {self.rank}")
        _require(self.experts >= 1, "experts", f"must be a positive integer, got {self.experts}")
        _require(self.lbc_beta >= 0, "lbc-beta", f"must be >= 0, got {self.lbc_beta}")
        _require(0 <= self.lbc_delta < 1, "lbc-delta", f"must be in [0, 1), got {self.lbc_delta}")
        self._validate_groups()
        _require(self.lr > 0, "lr", f"must be positive, got {self.lr}")
        _require(self.epochs > 0, "epochs", f"must be positive, got {self.epochs}")
        _require(self.max_steps == -1 or self.max_steps > 0, "max-steps", "must be a positive integer")
        _require(self.alpha is None or self.alpha > 0, "alpha", f"must be positive, got {self.alpha}")
        _require(0 <= self.dropout < 1, "dropout", f"must be in [0, 1), got {self.dropout}")
        _require(self.batch_size >= 1, "batch-size", f"must be >= 1, got {self.batch_size}")
        _require(self.grad_accum >= 1, "grad-accum", f"must be >= 1, got {self.grad_accum}")
        _require(self.max_length >= 8, "max-length", f"must be >= 8, got {self.max_length}")
        _require(self.loss_on in ("response", "all"), "loss-on", "must be 'response' or 'all'")
        _require(self.precision in ("auto", "bf16", "fp32"), "precision", "must be auto, bf16 or fp32")
        _require(Path(self.output).resolve() != Path.cwd(), "output", "must not be the current directory")
        return self

    def _validate_groups(self) -> None:
        world, task, n = self.world_experts, self.task_experts, self.experts
        for name, size in (("world-experts", world), ("task-experts", task)):
            _require(size is None or 0 <= size <= n, name, f"must be in [0, --experts {n}], got {size}")
        if world is not None and task is not None:
            _require(world + task == n, "world-experts", f"{world} + --task-experts {task} must sum to --experts {n}")
        if world is None and task is not None:
            self.world_experts = n - task

    @property
    def resolved_rank(self) -> int:
        return self.rank if self.rank is not None else DEFAULT_RANK.get(self.method, 16)

    @property
    def lora_alpha(self) -> float:
        if self.alpha is not None:
            return self.alpha
        return 32.0 if self.method == "loramoe" else 2.0 * self.resolved_rank

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}


def _require(ok: bool, option: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"--{option} {message}")
