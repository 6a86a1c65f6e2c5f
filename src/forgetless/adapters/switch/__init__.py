"""SwitchCIT (Wu et al., 2024): one LoRA per task, plus a small switch network that routes prompts to them.

    from forgetless.adapters.switch import Switch, ood_metrics
    switch = Switch()                                   # MiniLM features, 1% rehearsal memory, MLP head
    switch = Switch(switch_type="prototype")            # class means + shared covariance: no rehearsal needed
    switch.update("task-a", prompts_a, "runs/lora-a")   # once per task, in order
    switch.update("task-b", prompts_b, "runs/lora-b")
    switch.calibrate(held_out_prompts)                  # optional: route foreign prompts to "__base__"
    switch.calibrate_per_task({"task-a": [...], ...})   # or one threshold per task
    routes = switch.route(["..."])                      # [Route(task, adapter, confidence, abstained, score)]

Modules: `encoder` (prompt features), `classifier` (the MLP head), `prototype` (the Gaussian head),
`memory` (rehearsal sample),
`scores` (in-distribution scores, calibration, OOD metrics), `switch` (the `Switch` tying them together).
"""

from __future__ import annotations

from forgetless.adapters.switch.classifier import SwitchHead
from forgetless.adapters.switch.encoder import (
    HiddenStateEncoder,
    LastTokenEncoder,
    MiniLMEncoder,
    PromptEncoder,
    make_encoder,
)
from forgetless.adapters.switch.memory import RehearsalMemory
from forgetless.adapters.switch.scores import SCORE_TYPES, id_scores, keep_threshold, ood_metrics
from forgetless.adapters.switch.switch import Route, Switch

__all__ = [
    "SCORE_TYPES",
    "HiddenStateEncoder",
    "LastTokenEncoder",
    "MiniLMEncoder",
    "PromptEncoder",
    "RehearsalMemory",
    "Route",
    "Switch",
    "SwitchHead",
    "id_scores",
    "keep_threshold",
    "make_encoder",
    "ood_metrics",
]
