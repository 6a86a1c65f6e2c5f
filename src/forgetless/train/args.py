"""`TrainArgs`: how an adapter is trained, the one home of every training option and its default.

    from forgetless.train.args import TrainArgs
    from forgetless.train.config import TrainConfig
    cfg = TrainConfig.from_args(TrainArgs(lr=1e-3, rank=1), data="d.jsonl", output="runs/x", seed=0)

`TrainConfig` is a `TrainArgs` plus what one run trains on and where it writes. `InjectConfig` and
`ContinualConfig` HOLD a `TrainArgs` (field `train`, with their own defaults) and show users some of its
fields as flat options through `HoldsTrainArgs`: YAML keys, command-line flags and the `config` written
into results files stay flat (`lr: 1e-3`), never `train: {lr: ...}`.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Self


@dataclass
class TrainArgs:
    """Training options: adapter method and shape, schedule, batching, loss. Defaults suit a ~135M model."""

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
    anchor_kl: float = 0.0  # weight of KL(base || adapter) on the answers of `world` records (0: off)
    group_by_length: bool = False  # batches of similar lengths (HF's LengthGroupedSampler): less padding

    def args(self) -> dict[str, Any]:
        """The `TrainArgs` fields only (also of a subclass such as TrainConfig), lists copied."""
        return {f.name: _copy(getattr(self, f.name)) for f in dataclasses.fields(TrainArgs)}


class HoldsTrainArgs:
    """Base of a config dataclass that holds `train: TrainArgs` but shows users flat options.

    Its flat options are its own fields with `train` replaced, at its place, by the `TRAIN_OPTIONS`
    (TrainArgs field -> the type users may give it); the other TrainArgs fields keep the defaults of the
    config's `train` default. YAML loaders, CLI flags and `to_dict` all use this one layout.
    """

    TRAIN_OPTIONS: ClassVar[dict[str, Any]]
    train: TrainArgs

    @classmethod
    def option_types(cls) -> dict[str, Any]:
        """Flat option name -> type, in the order `to_dict` writes them."""
        hints = typing.get_type_hints(cls)
        types: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            types.update(cls.TRAIN_OPTIONS if f.name == "train" else {f.name: hints[f.name]})
        return types

    @classmethod
    def from_options(cls, **options: Any) -> Self:
        """The config from flat options (training ones go into a copy of this config's default `train`)."""
        train = {name: options.pop(name) for name in list(options) if name in cls.TRAIN_OPTIONS}
        return cls(**options, train=dataclasses.replace(cls().train, **train))

    def to_dict(self) -> dict[str, Any]:
        """Every flat option and its value (what results files record as `config`)."""
        flat: dict[str, Any] = {}
        for name, value in dataclasses.asdict(self).items():
            flat.update({k: value[k] for k in self.TRAIN_OPTIONS} if name == "train" else {name: value})
        return flat


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value
