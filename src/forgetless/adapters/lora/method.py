"""Plain LoRA through peft: `peft.get_peft_model` to train, `PeftModel.from_pretrained` to load.

Checkpoints and output are standard PEFT files (the Trainer saves PEFT models as adapters already).
Rows of different LoRA adapters share one batch through PEFT's `adapter_names` (see adapters/mixed.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, ClassVar

from forgetless.adapters.base import register_method
from forgetless.errors import ConfigError, ModelError
from forgetless.utils.fileio import write_json_atomic

TARGETS = "all-linear"


@register_method
class LoraMethod:
    """Plain LoRA through peft."""

    name: ClassVar[str] = "lora"
    title: ClassVar[str] = "LoRA"
    default_rank: ClassVar[int] = 16
    options: ClassVar[tuple[str, ...]] = ()
    mixable: ClassVar[bool] = True
    vllm_servable: ClassVar[bool] = True
    owns_checkpoints: ClassVar[bool] = False
    row_separable: ClassVar[bool] = True

    def __init__(self, cfg: Any):
        self.cfg = cfg

    @staticmethod
    def default_alpha(rank: int) -> float:
        return 2.0 * rank

    @classmethod
    def validate_options(cls, cfg: Any) -> None:
        """Plain LoRA has no options of its own."""

    def check_types(self, records) -> None:
        """Plain LoRA ignores sample types."""

    def wrap(self, model):
        from peft import LoraConfig, get_peft_model

        cfg = self.cfg
        lora = LoraConfig(
            r=cfg.resolved_rank,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.dropout,
            target_modules=cfg.target_modules or TARGETS,
            use_rslora=cfg.rslora,
            task_type="CAUSAL_LM",
        )
        try:
            return get_peft_model(model, lora)
        except ValueError as exc:  # peft's NoMatchingPeftModuleError is one
            if "not found in the base model" not in str(exc):
                raise
            names = sorted(
                {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if type(m).__name__ == "Linear"}
            )
            raise ConfigError(
                f"--targets {','.join(sorted(lora.target_modules))} matched no layer of this model; "
                f"its linear layers are {', '.join(names[:12])}"
            ) from None

    def save(self, model, directory: Path, info) -> None:
        # no embedding check: it would look the base up on the hub (we never resize vocabularies)
        model.save_pretrained(directory, safe_serialization=True, save_embedding_layers=False)
        if info is not None and info.hub_id:  # peft records the path it loaded from (maybe our cache)
            config_file = Path(directory) / "adapter_config.json"
            config = json.loads(config_file.read_text())
            write_json_atomic(config_file, {**config, "base_model_name_or_path": info.hub_id})

    def load_checkpoint(self, model, directory: Path) -> None:  # pragma: no cover - the Trainer does it
        raise NotImplementedError

    def loss_context(self, model, inputs: dict[str, Any]):
        return nullcontext()

    def aux_losses(self, model, inputs: dict[str, Any]) -> dict:
        return {}

    @classmethod
    def attach(cls, base, path: Path):
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(base, str(path))
        except (RuntimeError, ValueError, KeyError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise ModelError(f"{path}: adapter does not fit this base model ({first}); use its own base") from None
        model.eval()
        return model

    @classmethod
    def holds(cls, model) -> bool:
        return hasattr(model, "disable_adapter")

    @classmethod
    @contextmanager
    def disabled(cls, model) -> Iterator[Any]:
        with model.disable_adapter():
            yield model
