"""`TrainArgs`: one set of training options that `TrainConfig` is built on and that the injection and continual
configs hold, while users (YAML, flags, the `config` in results files) keep seeing flat options."""

from __future__ import annotations

from pathlib import Path

import pytest

from forgetless.continual.config import ContinualConfig, ContinualTask
from forgetless.continual.training import train_config as continual_train_config
from forgetless.knowledge.inject import InjectConfig
from forgetless.knowledge.inject import train_config as inject_train_config
from forgetless.train.args import TrainArgs
from forgetless.train.config import TrainConfig

# The `config` layouts written into forgetless.json, an injection's results.json and a continual run's
# run.json/results.json: flat, these keys, this order (forgetless.json's lost only the dead `extra`).
TRAIN_KEYS = [
    "data",
    "output",
    "model",
    "method",
    "epochs",
    "max_steps",
    "lr",
    "rank",
    "alpha",
    "dropout",
    "target_modules",
    "experts",
    "world_experts",
    "task_experts",
    "lbc_beta",
    "lbc_delta",
    "rslora",
    "batch_size",
    "grad_accum",
    "max_length",
    "warmup_ratio",
    "weight_decay",
    "scheduler",
    "loss_on",
    "anchor_kl",
    "group_by_length",
    "system",
    "save_steps",
    "logging_steps",
    "seed",
    "precision",
    "resume",
    "overwrite",
]
INJECT_KEYS = [
    "facts",
    "output",
    "unknown",
    "mixture",
    "k",
    "recipe",
    "seed",
    "model",
    "method",
    "rank",
    "alpha",
    "rslora",
    "dropout",
    "target_modules",
    "lr",
    "epochs",
    "batch_size",
    "loss_on",
    "anchor_kl",
    "exemplar_sets",
    "shots",
    "samples",
    "mmlu",
    "mmlu_shots",
    "general",
    "audit_facts",
    "overwrite",
]
CONTINUAL_KEYS = [
    "tasks",
    "output",
    "model",
    "methods",
    "seed",
    "epochs",
    "max_steps",
    "lr",
    "rank",
    "alpha",
    "batch_size",
    "max_length",
    "max_train",
    "rehearsal",
    "switch_type",
    "switch_encoder",
    "switch_balanced",
    "switch_score",
    "switch_epochs",
    "switch_shrinkage",
    "abstain_keep",
    "abstain_per_task",
    "calibration_size",
    "max_eval",
    "eval_all_tasks",
    "max_new_tokens",
    "eval_batch_size",
    "general_qa",
    "mmlu",
    "ood_mmlu",
    "builtin_train",
    "builtin_eval",
    "reuse_adapters",
    "overwrite",
    "resume",
    "source",
]


def test_config_layouts_stay_flat_in_their_order():
    assert list(TrainConfig().to_dict()) == TRAIN_KEYS
    assert list(InjectConfig().to_dict()) == INJECT_KEYS == list(InjectConfig.option_types())
    assert list(ContinualConfig().to_dict()) == CONTINUAL_KEYS == list(ContinualConfig.option_types())


def test_each_config_has_its_own_training_defaults():
    paper = InjectConfig(recipe="paper").to_dict()
    expected = {"method": "lora", "rank": 1, "alpha": 2.0, "rslora": True, "dropout": 0.1, "lr": 1e-3, "epochs": 10.0}
    assert {k: paper[k] for k in expected} == expected
    assert paper["target_modules"] == ["gate_proj", "up_proj", "down_proj"]
    ours = InjectConfig().to_dict()  # the default recipe, forgetless
    expected = {"recipe": "forgetless", "rank": 16, "alpha": 32.0, "rslora": False, "dropout": 0.0, "lr": 1e-3}
    assert {k: ours[k] for k in expected} == expected and ours["target_modules"] == [
        "gate_proj",
        "up_proj",
        "down_proj",
    ]
    continual = ContinualConfig().to_dict()
    assert (continual["epochs"], continual["lr"], continual["rank"], continual["max_length"]) == (1.0, 1e-3, 16, 256)
    assert TrainArgs().lr == TrainConfig().lr == 2e-4 and TrainConfig().epochs == 3.0


def test_flat_options_round_trip_and_go_into_train():
    cfg = InjectConfig.from_options(facts="f", output="o", lr=5e-3, epochs=2, unknown=3, recipe="paper")
    assert (cfg.train.lr, cfg.train.epochs, cfg.train.rank, cfg.unknown) == (5e-3, 2, 1, 3)
    assert InjectConfig.from_options(**cfg.to_dict()) == cfg
    with pytest.raises(TypeError):
        InjectConfig.from_options(grad_accum=2)  # a training option injection does not offer
    run = ContinualConfig.from_options(tasks=[ContinualTask("a", "x", "y")], output="o", max_steps=4, rehearsal=0.5)
    assert (run.train.max_steps, run.train.lr, run.rehearsal) == (4, 1e-3, 0.5)


def test_copiers_are_one_call_that_copies():
    cfg = InjectConfig.from_options(facts="f", output="o", seed=3, model="m", method="loramoe", recipe="paper")
    tcfg = inject_train_config(cfg, Path("d.jsonl"), Path("out"))
    assert tcfg.args() == cfg.train.args() and (tcfg.seed, tcfg.model, tcfg.method) == (3, "m", "loramoe")
    assert (tcfg.data, tcfg.output, tcfg.save_steps, tcfg.logging_steps, tcfg.overwrite) == (
        "d.jsonl",
        "out",
        100_000,
        10,
        True,
    )
    tcfg.target_modules.append("q_proj")
    assert cfg.train.target_modules == ["gate_proj", "up_proj", "down_proj"]  # a copy, not the config's list
    run = ContinualConfig.from_options(output="o", seed=2, lr=2e-3)
    ccfg = continual_train_config(run, Path("d.jsonl"), Path("out"))
    assert ccfg.args() == run.train.args() and (ccfg.seed, ccfg.save_steps, ccfg.logging_steps) == (2, 10**9, 5)
