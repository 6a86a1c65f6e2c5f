"""Continual instruction tuning: SwitchCIT (one LoRA per task + a learned switch) against the usual baselines.

    forgetless tasks builtin --output data/builtin                       # or your own JSONL tasks
    forgetless continual run --config configs/continual_builtin.yaml --output runs/cit
    forgetless continual add-task --run runs/cit --task dates2 --train d.jsonl --eval d_eval.jsonl
    forgetless route --run runs/cit --prompt "What is the plural of goose?"

Modules: `config` (the task-sequence YAML), `data` (task records and their splits), `training` (fresh or
continued LoRAs), `pool` (one base with every adapter, cached mixed-batch generation), `general` (known
facts, MMLU, foreign prompts), `switch_stage` (the switch inside a run), `evaluate` (R rows and metrics),
`strategies` (switch, sequential, replay, multitask), `runner` (the whole run), `report` (Markdown + plots),
`run_dir` (the one reader of a run directory), `add_task`, `route`.
"""

from forgetless.continual.add_task import add_task
from forgetless.continual.config import STRATEGIES, ContinualConfig, ContinualTask, load_continual_config
from forgetless.continual.route import RoutedModel
from forgetless.continual.runner import run_continual

__all__ = [
    "STRATEGIES",
    "ContinualConfig",
    "ContinualTask",
    "RoutedModel",
    "add_task",
    "load_continual_config",
    "run_continual",
]
