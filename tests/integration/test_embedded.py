"""Integration tests on the real embedded SmolLM2-135M-Instruct (marked `integration`, ~1-2 min)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from forgetless.train.config import TrainConfig
from forgetless.train.run import train
from tests.conftest import QA_ROWS, write_jsonl

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A LoRA adapter on the embedded model after a few steps on 4 fictional QA pairs."""
    root = tmp_path_factory.mktemp("embedded")
    data = write_jsonl(root / "qa.jsonl", QA_ROWS)
    cfg = TrainConfig(data=str(data), output=str(root / "adapter"), max_steps=8, lr=1e-3, batch_size=4)
    cfg.logging_steps, cfg.save_steps = 1, 100
    return train(cfg)


def test_a_few_lora_steps_make_the_loss_fall(trained):
    losses = [entry["loss"] for entry in trained.log_history if "loss" in entry]
    assert len(losses) == 8
    assert sum(losses[-3:]) / 3 < 0.7 * sum(losses[:3]) / 3


def test_adapter_reloads_with_plain_peft_and_greedy_output_matches(trained):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from forgetless.adapters.loading import load_with_adapter
    from forgetless.data.chat import prompt_messages
    from forgetless.engine.generate import generate_texts
    from forgetless.engine.sampling import SamplingConfig
    from forgetless.models.embedded import embedded_model_dir

    ours, tokenizer, _ = load_with_adapter(None, trained.output)
    base = AutoModelForCausalLM.from_pretrained(embedded_model_dir(), dtype=torch.float32)
    plain = PeftModel.from_pretrained(base, str(trained.output)).eval()
    conversations = [prompt_messages(row["prompt"]) for row in QA_ROWS]
    sampling = SamplingConfig(max_new_tokens=16)
    assert generate_texts(ours, tokenizer, conversations, sampling) == generate_texts(
        plain, tokenizer, conversations, sampling
    )


def test_cli_generate_answers_paris():
    result = subprocess.run(
        [sys.executable, "-m", "forgetless.cli.app", "generate", "--prompt", "What is the capital of France?"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout


def test_cli_train_then_generate_with_adapter(tmp_path):
    data = write_jsonl(tmp_path / "qa.jsonl", QA_ROWS)
    out = tmp_path / "adapter"
    cli = [sys.executable, "-m", "forgetless.cli.app"]
    trained = subprocess.run(
        [*cli, "train", "--data", str(data), "--output", str(out), "--max-steps", "2"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert trained.returncode == 0, trained.stderr
    assert (out / "adapter_model.safetensors").is_file()
    answered = subprocess.run(
        [*cli, "generate", "--adapter", str(out), "--prompt", "Hi", "--max-new-tokens", "4"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert answered.returncode == 0, answered.stderr
    assert answered.stdout.strip()
