"""The method test table: every registered adapter method goes through the same round trips.

    .venv/bin/python -m pytest tests/unit/test_adapter_methods.py -q

A row per method (like peft's TEST_CASES): train a few steps on the tiny random Llama, reload with
identical logits, save the reloaded adapter again and reload it (same logits), disabled = base exactly,
resume after an interruption = an uninterrupted run, and mixed batches that either work or are refused
with a clear error. `FrozenALora` below is a third method defined and registered only in this file:
the table covers it without any other file knowing it exists.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest
import torch

from forgetless.adapters.base import AdapterMethod, registered
from forgetless.adapters.lora import LoraMethod
from forgetless.adapters.registry import method_class, method_names
from forgetless.errors import ModelError
from forgetless.train.config import TrainConfig
from forgetless.train.run import train
from tests.conftest import interrupt_training_at, write_jsonl


class FrozenALora(LoraMethod):
    """A newcomer's method: LoRA whose A matrices stay at their random init (only B trains)."""

    name: ClassVar[str] = "frozen_a_lora"
    title: ClassVar[str] = "LoRA (frozen A)"

    def wrap(self, model):
        peft_model = super().wrap(model)
        for key, param in peft_model.named_parameters():
            if "lora_A" in key:
                param.requires_grad_(False)
        return peft_model


ROWS = [{"prompt": f"What is the capital of land {i}?", "response": f"City {i}.", "type": "world"} for i in range(6)]
ROWS += [{"prompt": f"Write {i} in words.", "response": f"number {i} spelled out", "type": "task"} for i in range(6)]
EXTRA = {"loramoe": {"experts": 4, "lbc_beta": 1.0}}  # options of a method beyond the shared ones
CASES = [*method_names(), FrozenALora.name]


@pytest.fixture(params=CASES)
def method(request):
    if request.param == FrozenALora.name:
        with registered(FrozenALora):
            yield FrozenALora
    else:
        yield method_class(request.param)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("methods") / "rows.jsonl", ROWS)


def _cfg(model_dir, data, output, method, **kw) -> TrainConfig:
    options = dict(data=str(data), output=str(output), model=str(model_dir), method=method.name, lr=1e-2)
    options |= dict(max_steps=4, batch_size=4, logging_steps=1, save_steps=100, dropout=0.0)
    return TrainConfig(**{**options, **EXTRA.get(method.name, {}), **kw})


def _logits(model, tokenizer):
    ids = torch.tensor([tokenizer("What is the capital of land 3?")["input_ids"]])
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_every_method_implements_the_protocol(method):
    assert isinstance(method, type) and method.name in method_names()
    assert {"name", "wrap", "attach", "disabled", "mixable"} <= set(dir(method))
    assert isinstance(method(TrainConfig(data="d", output="o", method=method.name)), AdapterMethod)
    assert set(method.options) <= TrainConfig.field_names()  # its CLI/YAML options are config fields


def test_train_reload_resave_and_disable(method, tiny_model_dir, data, tmp_path, tokenizer):
    from forgetless.adapters.loading import adapter_disabled, load_with_adapter
    from forgetless.models.load import load_model

    out = tmp_path / "adapter"
    train(_cfg(tiny_model_dir, data, out, method))
    assert (out / "adapter_config.json").is_file() and (out / "forgetless.json").is_file()
    model, _, info = load_with_adapter(None, out)  # the base is read from forgetless.json
    assert not [name for name, module in model.named_modules() if module.training]  # loaded for inference
    base, _, _ = load_model(str(tiny_model_dir))
    adapted, plain = _logits(model, tokenizer), _logits(base, tokenizer)
    assert not torch.allclose(adapted, plain)  # training changed something
    assert method_class(method.name).holds(model)
    with adapter_disabled(model):
        assert torch.equal(_logits(model, tokenizer), plain)  # disabled = the base exactly
    assert torch.equal(_logits(model, tokenizer), adapted)  # and back
    again = tmp_path / "resaved"
    method(_cfg(tiny_model_dir, data, again, method)).save(model, again, info)
    reloaded, _, _ = load_with_adapter(str(tiny_model_dir), again)
    assert torch.equal(_logits(reloaded, tokenizer), adapted)


def test_resume_after_interruption_is_exact(method, tiny_model_dir, data, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    reference, out = tmp_path / "reference", tmp_path / "adapter"
    train(_cfg(tiny_model_dir, data, reference, method, max_steps=6, save_steps=3))
    resume_normally = interrupt_training_at(monkeypatch, step=4)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tiny_model_dir, data, out, method, max_steps=6, save_steps=3))
    resume_normally()
    train(_cfg(tiny_model_dir, data, out, method, max_steps=6, save_steps=3, resume=True))
    resumed, expected = load_file(out / "adapter_model.safetensors"), load_file(reference / "adapter_model.safetensors")
    assert resumed.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(resumed[key], value, rtol=1e-4, atol=1e-6)


def test_mixed_batch_works_or_is_refused(method, tiny_model_dir, data, tmp_path, tokenizer):
    from forgetless.adapters.loading import load_with_adapter
    from forgetless.adapters.mixed import generate_mixed, load_adapters
    from forgetless.data.chat import prompt_messages
    from forgetless.engine.generate import generate_texts
    from forgetless.engine.sampling import SamplingConfig

    out = tmp_path / "adapter"
    train(_cfg(tiny_model_dir, data, out, method))
    if not method.mixable:
        with pytest.raises(ModelError, match="share a mixed batch"):
            load_adapters(str(tiny_model_dir), {"a": out})
        return
    pool, _, _ = load_adapters(str(tiny_model_dir), {"a": out})
    single, _, _ = load_with_adapter(str(tiny_model_dir), out)
    conversations = [prompt_messages(row["prompt"]) for row in ROWS[:4]]
    greedy = SamplingConfig(max_new_tokens=6, precision="fp32")
    mixed = generate_mixed(pool, tokenizer, conversations, ["a", None, "a", None], greedy)
    alone = [answers[0] for answers in generate_texts(single, tokenizer, conversations, greedy)]
    base, _, _ = load_adapters(str(tiny_model_dir), {})
    plain = generate_mixed(base, tokenizer, conversations, [None] * 4, greedy)
    assert [mixed[0], mixed[2]] == [alone[0], alone[2]] and [mixed[1], mixed[3]] == [plain[1], plain[3]]


def test_the_newcomer_method_trains_only_b(tiny_model_dir, data, tmp_path):
    from forgetless.adapters.loading import load_with_adapter

    with registered(FrozenALora):
        out = tmp_path / "adapter"
        cfg = _cfg(tiny_model_dir, data, out, FrozenALora)
        train(cfg)
        trained, _, _ = load_with_adapter(None, out)
        torch.manual_seed(cfg.seed)  # the same seeded init as the run's
        fresh = FrozenALora(cfg).wrap(_base(tiny_model_dir))
    a_keys = [k for k, _ in trained.named_parameters() if "lora_A" in k]
    b_keys = [k for k, _ in trained.named_parameters() if "lora_B" in k]
    params, init = dict(trained.named_parameters()), dict(fresh.named_parameters())
    assert a_keys and all(torch.equal(params[k], init[k]) for k in a_keys)
    assert any(not torch.equal(params[k], init[k]) for k in b_keys)
    assert FrozenALora.name not in method_names()  # registered only inside the block


def _base(model_dir):
    from forgetless.models.load import load_model

    return load_model(str(model_dir))[0]
