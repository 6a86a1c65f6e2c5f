"""Generation options: validation, and fp32 vs bf16 autocast paths both run and return one answer per prompt."""

from __future__ import annotations

import pytest

from forgetless.errors import ConfigError
from forgetless.generation import SamplingConfig, generate_texts


@pytest.mark.parametrize(
    "bad",
    [{"precision": "fp16"}, {"max_new_tokens": 0}, {"temperature": -1.0}, {"top_p": 0.0}],
)
def test_bad_sampling_options_are_user_errors(bad):
    with pytest.raises(ConfigError):
        SamplingConfig(**bad).validate()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_generation_runs_in_both_precisions_and_keeps_input_order(tiny_model_dir, precision):
    from forgetless.data.chat import prompt_messages
    from forgetless.models import load_model

    model, tokenizer, _ = load_model(str(tiny_model_dir))
    prompts = ["a", "a much longer prompt than the first one", "mid length prompt"]
    convs = [prompt_messages(p) for p in prompts]
    batched = generate_texts(model, tokenizer, convs, SamplingConfig(max_new_tokens=3, precision=precision), 8)
    single = [
        generate_texts(model, tokenizer, [c], SamplingConfig(max_new_tokens=3, precision=precision), 1)[0]
        for c in convs
    ]
    assert len(batched) == 3 and all(len(answers) == 1 for answers in batched)
    if precision == "fp32":  # left padding + sorting by length must not change greedy answers
        assert batched == single
