"""`train --method loramoe` on the tiny random Llama: both losses fall, files, resume, reload, bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from forgetless.train.config import TrainConfig
from forgetless.train.run import train
from tests.conftest import interrupt_training_at, write_jsonl

MIXED = [{"prompt": f"What is the capital of land {i}?", "response": f"City {i}.", "type": "world"} for i in range(8)]
MIXED += [{"prompt": f"Write {i} in words.", "response": f"number {i} spelled out", "type": "task"} for i in range(8)]


@pytest.fixture
def mixed_file(tmp_path):
    return write_jsonl(tmp_path / "mixed.jsonl", MIXED)


def _cfg(tiny_model_dir, data, output, **kw):
    base = dict(data=str(data), output=str(output), model=str(tiny_model_dir), method="loramoe", lr=1e-2)
    return TrainConfig(**{**base, "max_steps": 12, "batch_size": 8, "logging_steps": 2, "save_steps": 100, **kw})


def _series(log_history, key):
    return [entry[key] for entry in log_history if key in entry and "loss" in entry]


def test_a_few_steps_lower_both_losses(tiny_model_dir, mixed_file, tmp_path):
    # beta=1: at the paper's 0.1 the LM gradient dominates the routers of a tiny random model
    result = train(_cfg(tiny_model_dir, mixed_file, tmp_path / "moe", lbc_beta=1.0))
    lm, lbc = _series(result.log_history, "lm_loss"), _series(result.log_history, "lbc_loss")
    assert len(lm) == len(lbc) == 6
    assert lm[-1] < lm[0] and lbc[-1] < lbc[0]


def test_output_is_a_loramoe_adapter_that_generate_loads(tiny_model_dir, mixed_file, tmp_path):
    from forgetless.adapters.loading import load_with_adapter
    from forgetless.adapters.loramoe import loramoe_layers

    out = tmp_path / "moe"
    train(_cfg(tiny_model_dir, mixed_file, out, experts=5, world_experts=2))
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",  # the model card
        "adapter_config.json",
        "adapter_model.safetensors",
        "forgetless.json",
        "train_log.jsonl",
    ]
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["method"] == "loramoe" and config["num_experts"] == 5 and config["rank"] == 4
    assert config["groups"] == {"world": [0, 1], "task": [2, 3, 4]} and config["forgetless_version"]
    model, _, _ = load_with_adapter(None, out)
    assert len(loramoe_layers(model)) == 2 * 3  # 2 layers x gate/up/down
    cli = [sys.executable, "-m", "forgetless.cli.app", "generate", "--adapter", str(out)]
    result = subprocess.run(
        [*cli, "--prompt", "hi", "--max-new-tokens", "3"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_beta_zero_skips_the_constraint(tiny_model_dir, mixed_file, tmp_path):
    result = train(_cfg(tiny_model_dir, mixed_file, tmp_path / "moe", lbc_beta=0.0, max_steps=2))
    assert not _series(result.log_history, "lbc_loss")


def test_checkpoints_hold_only_the_adapter_and_resume_is_exact(tiny_model_dir, mixed_file, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    reference = tmp_path / "reference"
    train(_cfg(tiny_model_dir, mixed_file, reference, max_steps=6, save_steps=3, dropout=0.0))
    resume_normally = interrupt_training_at(monkeypatch, step=4)
    out = tmp_path / "moe"
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tiny_model_dir, mixed_file, out, max_steps=6, save_steps=3, dropout=0.0))
    checkpoint = tmp_path / ".moe.partial" / "checkpoints" / "checkpoint-3"
    assert (checkpoint / "adapter_model.safetensors").is_file()
    assert not (checkpoint / "model.safetensors").exists()  # the frozen base is never re-saved
    resume_normally()
    train(_cfg(tiny_model_dir, mixed_file, out, max_steps=6, save_steps=3, dropout=0.0, resume=True))
    resumed, expected = load_file(out / "adapter_model.safetensors"), load_file(reference / "adapter_model.safetensors")
    assert resumed.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(resumed[key], expected[key], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--experts", "0"], "--experts"),
        (["--rank", "0"], "--rank"),
        (["--world-experts", "4", "--task-experts", "3"], "must sum to --experts 6"),
        (["--world-experts", "0"], "matches no expert group"),
        (["--targets", "no_such_proj"], "no_such_proj"),
    ],
)
def test_bad_loramoe_options_exit_2(tiny_model_dir, mixed_file, tmp_path, flags, needle):
    out = tmp_path / "moe"
    args = ["train", "--method", "loramoe", "--data", str(mixed_file), "--output", str(out)]
    args += ["--model", str(tiny_model_dir), "--max-steps", "1", *flags]
    result = subprocess.run([sys.executable, "-m", "forgetless.cli.app", *args], capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0]
    assert not out.exists() and not (tmp_path / ".moe.partial").exists()
