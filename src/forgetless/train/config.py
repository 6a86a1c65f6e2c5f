"""`TrainConfig`: one adapter training run, its `TrainArgs` plus data, output and bookkeeping; validation.

A YAML config holds the same keys (see configs/*.yaml, each opening with its run command); command-line
flags override YAML values, which override these defaults (`forgetless.train.args.TrainArgs` holds the
training ones). Defaults suit a ~135M model on 2 CPU cores.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgetless.adapters.registry import METHODS
from forgetless.errors import ConfigError
from forgetless.train.args import TrainArgs

RUN_FIRST = ("data", "output", "model")  # `to_dict` lists these first, then the rest in field order


@dataclass
class TrainConfig(TrainArgs):
    """Options of one adapter training run: the training options (TrainArgs) and the run's own."""

    data: str = ""
    output: str = ""
    model: str | None = None  # HF id, local dir, or None for the embedded SmolLM2-135M-Instruct
    system: str | None = None  # system prompt added to prompt/response records without one
    save_steps: int = 200
    logging_steps: int = 10
    seed: int = 0
    precision: str = "auto"  # auto | bf16 | fp32
    resume: bool = False
    overwrite: bool = False

    @classmethod
    def from_args(cls, args: TrainArgs, **run: Any) -> TrainConfig:
        """A run of the training options `args` (copied) with the run options `run` (data, output, ...)."""
        return cls(**args.args(), **run)

    def validate(self) -> TrainConfig:
        """Raise ConfigError naming the first invalid option and how to fix it."""
        _require(bool(self.data), "data", "is required: pass --data FILE (or a hub dataset name)")
        for name, value in dataclasses.asdict(self).items():  # inf/nan pass every "> 0" check below
            _require(
                not isinstance(value, float) or math.isfinite(value),
                name.replace("_", "-"),
                f"must be a finite number, got {value}",
            )
        _require(bool(self.output), "output", "is required: pass --output DIR")
        _require(self.method in METHODS, "method", f"must be one of {', '.join(METHODS)}")
        _require(self.resolved_rank >= 1, "rank", f"must be a positive integer, got {self.rank}")
        for method in METHODS.values():  # each method checks its own options (CLI flags / YAML keys)
            method.validate_options(self)
        _require(self.lr > 0, "lr", f"must be positive, got {self.lr}")
        _require(self.epochs > 0, "epochs", f"must be positive, got {self.epochs}")
        _require(self.max_steps == -1 or self.max_steps > 0, "max-steps", "must be a positive integer")
        _require(self.alpha is None or self.alpha > 0, "alpha", f"must be positive, got {self.alpha}")
        _require(0 <= self.dropout < 1, "dropout", f"must be in [0, 1), got {self.dropout}")
        _require(self.batch_size >= 1, "batch-size", f"must be >= 1, got {self.batch_size}")
        _require(self.grad_accum >= 1, "grad-accum", f"must be >= 1, got {self.grad_accum}")
        _require(self.max_length >= 8, "max-length", f"must be >= 8, got {self.max_length}")
        _require(0 <= self.warmup_ratio < 1, "warmup-ratio", f"must be in [0, 1), got {self.warmup_ratio}")
        _require(self.weight_decay >= 0, "weight-decay", f"must be >= 0, got {self.weight_decay}")
        _require(self.loss_on in ("response", "all"), "loss-on", "must be 'response' or 'all'")
        _require(self.anchor_kl >= 0, "anchor-kl", f"must be >= 0, got {self.anchor_kl}")
        _require(self.precision in ("auto", "bf16", "fp32"), "precision", "must be auto, bf16 or fp32")
        _require(Path(self.output).resolve() != Path.cwd(), "output", "must not be the current directory")
        return self

    @property
    def resolved_rank(self) -> int:
        """--rank, else the method's default rank (16 for lora, 4 for loramoe)."""
        if self.rank is not None:
            return self.rank
        return METHODS[self.method].default_rank if self.method in METHODS else 16

    @property
    def lora_alpha(self) -> float:
        """--alpha, else the method's default (2 x rank for lora, 32 for loramoe)."""
        if self.alpha is not None:
            return self.alpha
        method = METHODS.get(self.method, METHODS["lora"])
        return method.default_alpha(self.resolved_rank)

    def to_dict(self) -> dict[str, Any]:
        """Every option and its value, data/output/model first (the `config` of forgetless.json)."""
        values = dataclasses.asdict(self)
        return {name: values.pop(name) for name in RUN_FIRST} | values

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}


def _require(ok: bool, option: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"--{option} {message}")
