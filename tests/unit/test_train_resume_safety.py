"""Resume hardening: an incomplete checkpoint is skipped, a rerun never silently deletes checkpoints,
and `--resume` refuses different data or options."""

from __future__ import annotations

import shutil

import pytest
import torch

from forgetless.errors import ConfigError, OutputError
from forgetless.train.config import TrainConfig
from forgetless.train.run import train
from tests.conftest import QA_ROWS, interrupt_training_at, write_jsonl


def _cfg(model_dir, data, out, **kw) -> TrainConfig:
    options = dict(epochs=1, batch_size=2, logging_steps=1, max_steps=6, save_steps=3)
    return TrainConfig(model=str(model_dir), data=str(data), output=str(out), **{**options, **kw})


@pytest.fixture
def interrupted(tiny_model_dir, qa_file, tmp_path, monkeypatch):
    """A run killed after its step-3 checkpoint (the staging dir keeps checkpoint-3)."""
    resume_normally = interrupt_training_at(monkeypatch, step=4)
    out = tmp_path / "adapter"
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tiny_model_dir, qa_file, out))
    resume_normally()
    return out, tmp_path / ".adapter.partial" / "checkpoints"


def test_a_checkpoint_killed_while_written_is_skipped(interrupted, tiny_model_dir, qa_file, tmp_path):
    from safetensors.torch import load_file

    out, checkpoints = interrupted
    half = checkpoints / "checkpoint-6"  # what a kill -9 during the save leaves: a folder, no state
    half.mkdir()
    (half / "README.md").write_text("partial")
    shutil.copytree(checkpoints / "checkpoint-3", checkpoints / "checkpoint-5")
    (checkpoints / "checkpoint-5" / "trainer_state.json").write_text('{"truncated": ')
    result = train(_cfg(tiny_model_dir, qa_file, out, resume=True))
    assert [e["step"] for e in result.log_history if "loss" in e][-1] == 6
    reference = tmp_path / "reference"
    train(_cfg(tiny_model_dir, qa_file, reference))
    resumed = load_file(out / "adapter_model.safetensors")
    for key, value in load_file(reference / "adapter_model.safetensors").items():
        torch.testing.assert_close(resumed[key], value, rtol=1e-4, atol=1e-6)


def test_a_rerun_without_resume_keeps_the_checkpoints(interrupted, tiny_model_dir, qa_file):
    out, checkpoints = interrupted
    with pytest.raises(OutputError, match="--resume"):
        train(_cfg(tiny_model_dir, qa_file, out))
    assert (checkpoints / "checkpoint-3").is_dir()


def test_overwrite_starts_over(interrupted, tiny_model_dir, qa_file):
    out, _ = interrupted
    result = train(_cfg(tiny_model_dir, qa_file, out, overwrite=True))
    assert next(e["step"] for e in result.log_history if "loss" in e) == 1


def test_resume_refuses_other_data_or_options(interrupted, tiny_model_dir, qa_file, tmp_path):
    out, checkpoints = interrupted
    other = write_jsonl(tmp_path / "other.jsonl", QA_ROWS[::-1][:3])
    with pytest.raises(ConfigError, match="different --data"):
        train(_cfg(tiny_model_dir, other, out, resume=True))
    with pytest.raises(ConfigError, match="lr"):
        train(_cfg(tiny_model_dir, qa_file, out, resume=True, lr=5e-3))
    assert (checkpoints / "checkpoint-3").is_dir()
