"""LoRAMoE hyper-parameters (Dou et al., ACL 2024) and their on-disk form.

`LoRAMoEConfig` validates itself on construction (call `validate()` again after mutating it) and
raises `ConfigError` with a fix-it message.
The expert pool is split into two groups: the FIRST `world_experts` experts are meant to serve
`world` samples (keeping the base model's world knowledge), the remaining ones `task` samples.
`world_experts=None` means `num_experts // 2`; use `cfg.n_world_experts` for the resolved number.

    cfg = LoRAMoEConfig(num_experts=6, rank=4, target_modules=("q_proj", "v_proj"))
    d = cfg.to_dict(base_model_name_or_path="HuggingFaceTB/SmolLM2-135M")  # JSON-ready
    assert LoRAMoEConfig.from_dict(d) == cfg

The saved dict carries `"method": "loramoe"`, `"peft_type": "LORAMOE"` and `forgetless_version`, so
an adapter directory says what it is without loading any weights.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from forgetless.errors import ConfigError

METHOD = "loramoe"
PEFT_TYPE = "LORAMOE"

# Keys written by `to_dict` (or by `save_loramoe`) that are metadata, not constructor arguments.
_METADATA_KEYS = frozenset(
    {
        "method",
        "peft_type",
        "forgetless_version",
        "base_model_name_or_path",
        "groups",
        "base_model_fingerprint",
    }
)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass
class LoRAMoEConfig:
    """Hyper-parameters of a LoRAMoE adapter.

    Args:
        num_experts: LoRA experts per adapted linear layer (N).
        rank: rank r of every expert.
        alpha: LoRA alpha; the adapter output is scaled by alpha / rank.
        dropout: dropout on the adapter input (one mask shared by all experts).
        target_modules: linear layers whose module name ends with one of these are adapted.
        world_experts: size of the `world` group (the first experts); None means num_experts // 2.
        lbc_beta: weight of the localized balancing constraint in the training loss.
        lbc_delta: group-matching bonus/penalty delta of the constraint's importance matrix.
        router_init_std: std of the normal init of the router weights (small: near-uniform gates).
    """

    num_experts: int = 6
    rank: int = 4
    alpha: float = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = field(default=("gate_proj", "up_proj", "down_proj"))
    world_experts: int | None = None
    lbc_beta: float = 0.1
    lbc_delta: float = 0.1
    router_init_std: float = 0.01

    def __post_init__(self) -> None:
        targets = self.target_modules
        if isinstance(targets, str):
            targets = (targets,)
        if not isinstance(targets, list | tuple) or not all(isinstance(t, str) and t for t in targets):
            raise ConfigError(
                f"loramoe target_modules={self.target_modules!r}: give a list of module-name suffixes, "
                'e.g. ["gate_proj", "up_proj", "down_proj"]'
            )
        if not targets:
            raise ConfigError("loramoe target_modules is empty: name at least one linear layer, e.g. q_proj")
        self.target_modules = tuple(targets)
        self.validate()

    def validate(self) -> None:
        """Raise `ConfigError` naming the first invalid field and its allowed range."""

        def bad(name: str, rule: str) -> ConfigError:
            return ConfigError(f"loramoe {name}={getattr(self, name)!r} is invalid: it must be {rule}")

        if not _is_int(self.num_experts) or self.num_experts < 1:
            raise bad("num_experts", "an integer >= 1")
        if not _is_int(self.rank) or self.rank < 1:
            raise bad("rank", "an integer >= 1")
        if not _is_number(self.alpha) or self.alpha <= 0:
            raise bad("alpha", "a number > 0")
        if not _is_number(self.dropout) or not 0 <= self.dropout < 1:
            raise bad("dropout", "in [0, 1)")
        if self.world_experts is not None and (
            not _is_int(self.world_experts) or not 0 <= self.world_experts <= self.num_experts
        ):
            raise bad("world_experts", f"null or an integer in [0, num_experts={self.num_experts}]")
        if not _is_number(self.lbc_beta) or self.lbc_beta < 0:
            raise bad("lbc_beta", "a number >= 0 (0 disables the balancing constraint)")
        if not _is_number(self.lbc_delta) or not 0 <= self.lbc_delta < 1:
            raise bad("lbc_delta", "in [0, 1)")
        if not _is_number(self.router_init_std) or self.router_init_std < 0:
            raise bad("router_init_std", "a number >= 0")

    @property
    def n_world_experts(self) -> int:
        """Resolved size of the `world` group (the first experts)."""
        return self.num_experts // 2 if self.world_experts is None else self.world_experts

    @property
    def scaling(self) -> float:
        """The LoRA scale alpha / rank applied to the adapter output."""
        return self.alpha / self.rank

    def groups(self) -> dict[str, list[int]]:
        """Expert indices of each group: {"world": [...], "task": [...]}."""
        k = self.n_world_experts
        return {"world": list(range(k)), "task": list(range(k, self.num_experts))}

    def to_dict(self, base_model_name_or_path: str | None = None) -> dict[str, Any]:
        """A JSON-ready dict with the method tags, the resolved groups and the library version."""
        from forgetless._version import __version__

        d: dict[str, Any] = {"method": METHOD, "peft_type": PEFT_TYPE}
        d.update(dataclasses.asdict(self))
        d["target_modules"] = list(self.target_modules)
        d["groups"] = self.groups()
        d["base_model_name_or_path"] = base_model_name_or_path
        d["forgetless_version"] = __version__
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LoRAMoEConfig:
        """Rebuild a config from `to_dict` output (metadata keys are ignored, unknown keys refused)."""
        if not isinstance(d, dict):
            raise ConfigError(f"loramoe config must be a JSON object, got {type(d).__name__}")
        method = d.get("method", METHOD)
        if method != METHOD:
            raise ConfigError(f"config has method={method!r}, not {METHOD!r}: it is not a LoRAMoE adapter")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names - _METADATA_KEYS)
        if unknown:
            raise ConfigError(
                f"loramoe config has unknown keys {unknown}; known keys are {sorted(names)} "
                "(was it written by a newer forgetless? upgrade it)"
            )
        kwargs = {k: v for k, v in d.items() if k in names}
        if isinstance(kwargs.get("target_modules"), list):
            kwargs["target_modules"] = tuple(kwargs["target_modules"])
        return cls(**kwargs)
