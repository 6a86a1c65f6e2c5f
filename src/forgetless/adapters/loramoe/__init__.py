"""LoRAMoE (Dou et al., ACL 2024): a mixture of LoRA experts with a localized balancing constraint.

Each targeted linear layer of a frozen base model gets N LoRA experts and a token-level router
(`LoRAMoELinear`, fused: no loop over experts). The experts are split into a `world` group (the
first `world_experts`) and a `task` group; the localized balancing constraint (`lbc_loss`) gives
each group a different importance for world (type 1) and task (type 0) samples.

Typical training step:

    from forgetless.adapters.loramoe import (
        LoRAMoEConfig, inject_loramoe, balance_context, collect_lbc_loss, save_loramoe)

    cfg = LoRAMoEConfig(num_experts=6, rank=4)
    model = inject_loramoe(model, cfg)
    with balance_context(model, sample_types, batch["attention_mask"]):
        out = model(**batch)
        lbc = collect_lbc_loss(model, sample_types, batch["attention_mask"], cfg)
    loss = out.loss if lbc is None else out.loss + cfg.lbc_beta * lbc
    loss.backward()
    save_loramoe(model, cfg, "out/adapter", base_model_name="...", base_model_fingerprint={...})

Registered as adapter method `loramoe` (`LoRAMoEMethod`, see `forgetless.adapters.base`).
Load with `load_loramoe(fresh_base, "out/adapter", expected_fingerprint={...})`; tell a LoRAMoE
adapter directory from a PEFT one with `is_loramoe_adapter(dir)`.
"""

from __future__ import annotations

from forgetless.adapters.loramoe.balance import (
    balance_context,
    collect_lbc_loss,
    importance_matrix,
    lbc_loss,
    loramoe_layers,
)
from forgetless.adapters.loramoe.config import METHOD, PEFT_TYPE, LoRAMoEConfig
from forgetless.adapters.loramoe.layer import LoRAMoELinear
from forgetless.adapters.loramoe.method import LoRAMoEMethod
from forgetless.adapters.loramoe.model import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    count_trainable,
    find_targets,
    inject_loramoe,
    is_loramoe_adapter,
    load_loramoe,
    loramoe_state_dict,
    read_adapter_config,
    save_loramoe,
)

__all__ = [
    "CONFIG_NAME",
    "METHOD",
    "PEFT_TYPE",
    "WEIGHTS_NAME",
    "LoRAMoEConfig",
    "LoRAMoELinear",
    "LoRAMoEMethod",
    "balance_context",
    "collect_lbc_loss",
    "count_trainable",
    "find_targets",
    "importance_matrix",
    "inject_loramoe",
    "is_loramoe_adapter",
    "lbc_loss",
    "load_loramoe",
    "loramoe_layers",
    "loramoe_state_dict",
    "read_adapter_config",
    "save_loramoe",
]
