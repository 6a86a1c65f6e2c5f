"""Generation options: validation, and fp32 vs bf16 autocast paths both run and return one answer per prompt."""

from __future__ import annotations

import pytest

from forgetless.engine.generate import generate_texts
from forgetless.engine.sampling import SamplingConfig
from forgetless.errors import ConfigError


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
    from forgetless.models.load import load_model

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


def test_bf16_inference_weights_are_restored_bit_for_bit(tiny_model_dir):
    import torch

    from forgetless.engine.weights import inference_weights
    from forgetless.models.load import load_model

    model, _, _ = load_model(str(tiny_model_dir))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    with inference_weights(model, "bf16"):
        assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    assert all(torch.equal(before[name], p) and p.dtype == torch.float32 for name, p in model.named_parameters())
    with inference_weights(model, "fp32"):
        assert all(p.dtype == torch.float32 for p in model.parameters())


def test_lora_is_merged_for_generation_and_unmerged_exactly(tiny_model_dir):
    import torch
    from peft import LoraConfig, get_peft_model

    from forgetless.data.chat import prompt_messages
    from forgetless.engine.weights import _merge_active_lora, inference_weights
    from forgetless.models.load import load_model

    base, tokenizer, _ = load_model(str(tiny_model_dir))
    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=["gate_proj", "up_proj", "down_proj"], init_lora_weights=False
    )
    model = get_peft_model(base, config).eval()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    convs = [prompt_messages(p) for p in ["a", "what is the capital of France?", "xyz"]]
    fp32 = SamplingConfig(max_new_tokens=5, precision="fp32")
    with model.disable_adapter():
        plain_base = generate_texts(model, tokenizer, convs, fp32, 8)
    undo = _merge_active_lora(model)  # what inference_weights does first: check the merged logits directly
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.inference_mode():
        merged_logits = model(input_ids=ids).logits
    for module, weight, data, disabled in reversed(undo):
        weight.data, module._disable_adapters = data, disabled
    with torch.inference_mode():
        lora_logits = model(input_ids=ids).logits
    assert len(undo) == 6 and torch.allclose(merged_logits, lora_logits, atol=1e-5)
    assert generate_texts(model, tokenizer, convs, fp32, 8) == generate_texts(model, tokenizer, convs, fp32, 1)
    with model.disable_adapter():  # a disabled adapter is not merged in
        assert generate_texts(model, tokenizer, convs, fp32, 8) == plain_base
    with inference_weights(model, "bf16"):
        pass
    assert all(torch.equal(before[name], p) for name, p in model.named_parameters())
    assert not any(m._disable_adapters for m in model.modules() if hasattr(m, "_disable_adapters"))


def test_lm_head_gets_a_contiguous_input_on_frozen_peft_models(tiny_model_dir):
    """`logits_to_keep` slices the hidden states; a frozen head would then copy its weight per row."""
    import torch
    from peft import LoraConfig, get_peft_model

    from forgetless.models.load import load_model
    from forgetless.models.runtime import contiguous_head_input

    model, _, _ = load_model(str(tiny_model_dir))
    contiguous_head_input(model)  # idempotent: a second call adds no second hook
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["gate_proj"]))
    head = peft_model.get_output_embeddings()
    assert not head.weight.requires_grad
    seen = []
    head.register_forward_pre_hook(lambda module, args: seen.append(args[0].is_contiguous()))
    with torch.inference_mode():
        peft_model(input_ids=torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12]]), logits_to_keep=1)
    assert seen == [True]
    assert len(head._forward_pre_hooks) == 2  # ours + the test's
