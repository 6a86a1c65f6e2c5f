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


@pytest.mark.parametrize("with_adapter", [False])  # True passes too (bf16 did not change its short answers)
def test_generate_default_precision_matches_plain_transformers_generate(trained, with_adapter):
    """`forgetless generate`'s default (fp32) gives plain transformers (+ peft)'s greedy answers (parity)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from forgetless.adapters.loading import load_with_adapter
    from forgetless.data.chat import prompt_messages
    from forgetless.engine.generate import generate_texts
    from forgetless.engine.sampling import GENERATE_PRECISION, SamplingConfig
    from forgetless.models.embedded import embedded_model_dir

    adapter = str(trained.output) if with_adapter else None
    prompts = [row["prompt"] for row in QA_ROWS] + PARITY_PROMPTS
    ours, tokenizer, _ = load_with_adapter(None, adapter)
    sampling = SamplingConfig(max_new_tokens=32, precision=GENERATE_PRECISION)
    answers = generate_texts(ours, tokenizer, [prompt_messages(p) for p in prompts], sampling)
    plain = AutoModelForCausalLM.from_pretrained(embedded_model_dir(), dtype=torch.float32).eval()
    plain = PeftModel.from_pretrained(plain, adapter).eval() if adapter else plain
    for prompt, answer in zip(prompts, answers, strict=True):
        ids = tokenizer.apply_chat_template(prompt_messages(prompt), add_generation_prompt=True, return_tensors="pt")
        ids = ids["input_ids"] if not torch.is_tensor(ids) else ids
        out = plain.generate(input_ids=ids, max_new_tokens=32, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        assert tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip() == answer[0].strip()


PARITY_PROMPTS = [  # with 32 new tokens, bf16 autocast changes some of the base's answers
    "Say hello.",
    "Write a haiku about rain.",
    "Explain photosynthesis in one sentence.",
    "Who wrote Hamlet?",
    "List three fruits.",
    "What is the boiling point of water?",
    "Translate 'good morning' into French.",
]


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
