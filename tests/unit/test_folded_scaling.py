"""LoRA's scaling folded into B during training: the same loss and gradients bit for bit (power-of-two
scalings), peft's forward kept otherwise, merging unchanged, and nothing left behind after the run."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn

from forgetless.train.dropout import training_dropout
from forgetless.train.folded_scaling import FoldedScaling, folded_lora_scaling
from tests.conftest import build_tiny_llama, train_two_steps


def _lora(tokenizer, alpha: float, **extra):
    model = get_peft_model(
        build_tiny_llama(tokenizer),
        LoraConfig(r=4, lora_alpha=alpha, lora_dropout=0.1, target_modules="all-linear", **extra),
    )
    torch.manual_seed(1)
    for name, param in model.named_parameters():
        if "lora_B" in name:  # zero at init: the adapter would add nothing
            nn.init.normal_(param, std=0.5)
    return model.train()


def _loss_and_grads(model, autocast: bool):
    model.zero_grad()
    torch.manual_seed(0)
    batch = torch.randint(0, 1000, (3, 19))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = model(input_ids=batch, labels=batch).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("autocast", [False, True])
def test_folding_a_power_of_two_scaling_changes_no_bit(tokenizer, autocast):
    model = _lora(tokenizer, alpha=8)  # scaling 2, the default alpha = 2 x rank
    training_dropout(model, "cpu")
    loss, grads = _loss_and_grads(model, autocast)
    with folded_lora_scaling(model) as folded:
        assert folded == 2 * 7  # every adapted linear of the 2-layer model
        fast_loss, fast_grads = _loss_and_grads(model, autocast)
    assert torch.equal(loss, fast_loss)
    assert grads.keys() == fast_grads.keys()
    assert all(torch.equal(grads[name], fast_grads[name]) for name in grads)


def test_other_scalings_and_variants_keep_peft_s_forward(tokenizer):
    assert _count_folded(_lora(tokenizer, alpha=6)) == 0  # scaling 1.5: folding would round differently
    assert _count_folded(_lora(tokenizer, alpha=8, use_dora=True)) == 0  # DoRA has its own variant


def _count_folded(model) -> int:
    with folded_lora_scaling(model) as folded:
        return folded


def test_nothing_is_left_behind_even_when_training_fails(tokenizer):
    model = _lora(tokenizer, alpha=8)
    with pytest.raises(RuntimeError), folded_lora_scaling(model):
        variants = [v for m in model.modules() for v in getattr(m, "lora_variant", {}).values()]
        assert variants and all(isinstance(v, FoldedScaling) for v in variants)
        raise RuntimeError("training failed")
    assert all(not getattr(m, "lora_variant", {}) for m in model.modules())


@pytest.mark.parametrize("safe", [False, True])
def test_merging_inside_the_run_gives_peft_s_merged_weights(tokenizer, safe):
    model = _lora(tokenizer, alpha=8)
    linear = model.get_base_model().model.layers[0].mlp.down_proj
    weight = linear.base_layer.weight
    before = weight.detach().clone()
    peft_weights = []
    linear.merge(safe_merge=safe)
    peft_weights.append(weight.detach().clone())
    linear.unmerge()
    peft_weights.append(weight.detach().clone())
    weight.data.copy_(before)
    with folded_lora_scaling(model):
        linear.merge(safe_merge=safe)
        assert torch.equal(linear.base_layer.weight, peft_weights[0])
        linear.unmerge()
        assert torch.equal(linear.base_layer.weight, peft_weights[1])


def test_a_training_run_folds_the_scaling_and_removes_it(tokenizer, tmp_path):
    from transformers import TrainerCallback

    seen = []

    class Watch(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            seen.append(type(linear.lora_variant.get("default")).__name__)

    model = _lora(tokenizer, alpha=8)
    linear = model.get_base_model().model.layers[1].self_attn.v_proj
    train_two_steps(model, tokenizer, tmp_path, "fp32", Watch())
    assert seen == ["FoldedScaling", "FoldedScaling"]
    assert linear.lora_variant == {}
