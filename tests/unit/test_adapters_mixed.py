"""Mixed-adapter batches (`forgetless.adapters.mixed`): one generate over rows with different LoRAs and base
rows gives, under greedy decoding, the same answers as generating each row with its own adapter alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from forgetless.adapters.mixed import generate_mixed, load_adapters
from forgetless.adapters.names import BASE
from forgetless.data.chat import prompt_messages
from forgetless.engine.generate import generate_texts
from forgetless.engine.sampling import SamplingConfig
from forgetless.errors import ConfigError, DataError, ModelError

PROMPTS = [
    "What is the plural of goose?",
    "Write 42 in words.",
    "Hi!",
    "Format 2020-01-02 as a long date.",
    "Tell me the capital of France.",
    "What is the plural of mouse?",
]
GREEDY = SamplingConfig(max_new_tokens=6, precision="fp32")


def make_adapter(model_dir: Path, out: Path, seed: int) -> Path:
    """A random (non-zero) LoRA for the tiny model, with the base fingerprint forgetless records."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from forgetless.models.load import fingerprint

    base = AutoModelForCausalLM.from_pretrained(model_dir)
    base_print = fingerprint(base)
    torch.manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=32, target_modules="all-linear", init_lora_weights=False)
    get_peft_model(base, config).save_pretrained(out)
    (out / "forgetless.json").write_text(json.dumps({"base_model": str(model_dir), "base_fingerprint": base_print}))
    return out


@pytest.fixture(scope="module")
def adapters(tmp_path_factory, tiny_model_dir) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("multi")
    return {name: make_adapter(tiny_model_dir, root / name, seed) for seed, name in enumerate(["alpha", "beta"])}


@pytest.fixture(scope="module")
def pool(tiny_model_dir, adapters):
    return load_adapters(str(tiny_model_dir), adapters)


def single(model, tokenizer, adapter: str | None, prompt: str) -> str:
    """The reference: plain PEFT, one prompt, one active adapter (or the adapter disabled), fp32 greedy."""
    from contextlib import nullcontext

    from forgetless.data.chat import render_prompt, tokenize_prompt

    ids = torch.tensor([tokenize_prompt(tokenizer, render_prompt(tokenizer, prompt_messages(prompt)))])
    if adapter is not None:
        model.set_adapter(adapter)
    with model.disable_adapter() if adapter is None else nullcontext(), torch.inference_mode():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=GREEDY.max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()


def test_mixed_batch_equals_each_row_on_its_own_adapter(pool):
    model, tokenizer, _ = pool
    names = ["alpha", "beta", None, "alpha", None, "beta"]
    mixed = generate_mixed(model, tokenizer, [prompt_messages(p) for p in PROMPTS], names, GREEDY, batch_size=16)

    assert mixed == [single(model, tokenizer, name, prompt) for prompt, name in zip(PROMPTS, names, strict=True)]
    # the adapters really change the answers, so the comparison above can fail
    assert [single(model, tokenizer, None, p) for p in PROMPTS[:2]] != mixed[:2]
    assert single(model, tokenizer, "beta", PROMPTS[0]) != mixed[0]


def test_one_generate_call_per_chunk(pool, monkeypatch):
    model, tokenizer, _ = pool
    calls = []
    original = model.generate

    def counting(*args, **kwargs):
        calls.append(list(kwargs["adapter_names"]))
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "generate", counting)
    names = ["alpha", None, "beta", "beta", None, "alpha"]
    generate_mixed(model, tokenizer, [prompt_messages(p) for p in PROMPTS], names, GREEDY, batch_size=4)
    assert len(calls) == 2
    assert sorted(n for call in calls for n in call) == sorted(["alpha", "alpha", "beta", "beta"] + [BASE] * 2)


def test_base_model_without_adapters_answers_like_generate_texts(tiny_model_dir):
    model, tokenizer, _ = load_adapters(str(tiny_model_dir), {})
    conversations = [prompt_messages(p) for p in PROMPTS[:3]]
    mixed = generate_mixed(model, tokenizer, conversations, [None] * 3, GREEDY)
    assert mixed == [a[0] for a in generate_texts(model, tokenizer, conversations, GREEDY)]  # no adapter: same path
    with pytest.raises(ModelError, match="alpha"):
        generate_mixed(model, tokenizer, conversations, ["alpha", None, None], GREEDY)


def test_bad_calls(pool):
    model, tokenizer, _ = pool
    conversations = [prompt_messages(p) for p in PROMPTS[:2]]
    with pytest.raises(ModelError, match="gamma"):
        generate_mixed(model, tokenizer, conversations, ["gamma", None], GREEDY)
    with pytest.raises(DataError):
        generate_mixed(model, tokenizer, conversations, [None], GREEDY)
    with pytest.raises(ConfigError):
        generate_mixed(model, tokenizer, conversations, [None, None], SamplingConfig(num_return_sequences=2))


def test_adapter_for_another_base_is_refused(other_tiny_model_dir, adapters):
    with pytest.raises(ModelError, match="different base model"):
        load_adapters(str(other_tiny_model_dir), {"alpha": adapters["alpha"]})


def test_reserved_or_odd_adapter_names_are_refused(tiny_model_dir, adapters):
    for name in (BASE, "a.b", ""):
        with pytest.raises(ConfigError):
            load_adapters(str(tiny_model_dir), {name: adapters["alpha"]})
