"""LoRAMoE on the real embedded SmolLM2-135M-Instruct (marked `integration`)."""

from __future__ import annotations

import json

import pytest

from forgetless.train.config import TrainConfig
from forgetless.train.run import train
from tests.conftest import write_jsonl

pytestmark = pytest.mark.integration

ROWS = [
    {"prompt": "What is the capital of France?", "response": "Paris", "type": "world"},
    {"prompt": "What is the capital of Japan?", "response": "Tokyo", "type": "world"},
    {"prompt": "Write 21 in words.", "response": "twenty-one", "type": "task"},
    {"prompt": "What is the plural of mouse?", "response": "mice", "type": "task"},
]


def test_loramoe_trains_reloads_and_generates_with_kv_cache(tmp_path):
    from forgetless.adapters.loading import load_with_adapter
    from forgetless.adapters.loramoe import loramoe_layers
    from forgetless.data.chat import prompt_messages
    from forgetless.engine.generate import generate_texts
    from forgetless.engine.sampling import SamplingConfig

    out = tmp_path / "moe"
    cfg = TrainConfig(data=str(write_jsonl(tmp_path / "d.jsonl", ROWS)), output=str(out), method="loramoe")
    cfg.max_steps, cfg.lr, cfg.batch_size, cfg.logging_steps, cfg.save_steps = 6, 1e-3, 4, 1, 100
    result = train(cfg)
    lm = [e["lm_loss"] for e in result.log_history if "lm_loss" in e]
    lbc = [e["lbc_loss"] for e in result.log_history if "lbc_loss" in e]
    assert len(lm) == len(lbc) == 6 and lm[-1] < lm[0]
    assert json.loads((out / "adapter_config.json").read_text())["method"] == "loramoe"
    model, tokenizer, _ = load_with_adapter(None, out)
    assert len(loramoe_layers(model)) == 30 * 3
    convs = [prompt_messages(r["prompt"]) for r in ROWS]
    with_cache = generate_texts(model, tokenizer, convs, SamplingConfig(max_new_tokens=8))
    assert all(answer[0] for answer in with_cache)
    assert with_cache[0][0].lower().startswith("paris")
