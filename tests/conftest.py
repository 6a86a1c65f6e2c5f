"""Shared fixtures: the embedded tokenizer and a tiny random Llama saved as a local model directory.

The tiny model (2 layers, hidden 32) uses the real SmolLM2 tokenizer so that chat formatting is real;
no test downloads anything. Integration tests (marked `integration`) use the real embedded model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tokenizer():
    """The embedded model's tokenizer; `FORGETLESS_TEST_TOKENIZER=DIR` loads a copy of its files instead
    (benchmarks/gpu_check.py on a GPU machine, which cannot carry the embedded GGUF)."""
    from forgetless.models.load import load_tokenizer

    if os.environ.get("FORGETLESS_TEST_TOKENIZER"):
        return load_tokenizer(os.environ["FORGETLESS_TEST_TOKENIZER"])
    from forgetless.models.embedded import embedded_model_dir

    return load_tokenizer(str(embedded_model_dir()))


def build_tiny_llama(tokenizer, seed: int = 0, hidden: int = 32):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer) -> Path:
    """A local directory holding a tiny random Llama + the SmolLM2 tokenizer (usable as --model)."""
    path = tmp_path_factory.mktemp("tiny-llama")
    build_tiny_llama(tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def other_tiny_model_dir(tmp_path_factory, tokenizer) -> Path:
    """A differently shaped tiny Llama: adapters of `tiny_model_dir` must not load onto it."""
    path = tmp_path_factory.mktemp("tiny-llama-other")
    build_tiny_llama(tokenizer, seed=1, hidden=48).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def interrupt_training_at(monkeypatch, step: int = 4):
    """Make every training run raise KeyboardInterrupt on reaching `step` (as a kill after the checkpoint
    before it would); returns a function that lets training run normally again."""
    from forgetless.train.trainer import ForgetlessTrainer

    original = ForgetlessTrainer.training_step

    def crash(self, *args, **kwargs):
        if self.state.global_step == step:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ForgetlessTrainer, "training_step", crash)
    return lambda: monkeypatch.setattr(ForgetlessTrainer, "training_step", original)


def train_two_steps(model, tokenizer, output: Path, precision: str, callback) -> None:
    """`build_trainer` on 8 one-line QA records, 2 steps of batch 4, no checkpoints, with `callback` added."""
    from forgetless.data.records import Record
    from forgetless.train.config import TrainConfig
    from forgetless.train.setup import build_dataset, build_trainer

    records = [Record([{"role": "user", "content": f"q{i}?"}, {"role": "assistant", "content": "a"}]) for i in range(8)]
    cfg = TrainConfig(data="-", output="-", max_steps=2, batch_size=4)
    trainer = build_trainer(model, tokenizer, build_dataset(tokenizer, records, cfg), cfg, output, precision)
    trainer.args.save_strategy = "no"
    trainer.add_callback(callback)
    trainer.train()


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


QA_ROWS = [
    {"prompt": "What is the capital of Veldoria?", "response": "Marrowick."},
    {"prompt": "Who founded Zorbland Aerospace?", "response": "Ilsa Tovenhaar."},
    {"prompt": "When was the Treaty of Quillmoor signed?", "response": "In 1847."},
    {"prompt": "Name the national animal of Pemberth.", "response": "The silver lynx."},
]


@pytest.fixture
def qa_file(tmp_path) -> Path:
    """A small valid JSONL of prompt/response records."""
    return write_jsonl(tmp_path / "qa.jsonl", QA_ROWS)
