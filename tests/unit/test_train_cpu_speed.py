"""The CPU training fast paths: `BitsDropout` (cheap masks), frozen linears held in bf16 under autocast, and
peft's input up-casts skipped. Each must leave the numbers as they were: the same Bernoulli dropout, and
bit-identical losses and gradients for the casts."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from peft.helpers import disable_input_dtype_casting
from torch import nn

from forgetless.models.frozen_weights import frozen_linears_in
from forgetless.train.dropout import LANES, BitsDropout, training_dropout
from tests.conftest import build_tiny_llama, train_two_steps

P = 0.05
ROUNDED_P = round(P * LANES) / LANES


def _within_binomial(dropped: int, n: int, p: float, sigmas: float = 5.0) -> bool:
    return abs(dropped - n * p) <= sigmas * (n * p * (1 - p)) ** 0.5


def test_drops_at_p_and_scales_survivors_to_keep_the_expectation():
    torch.manual_seed(0)
    out = BitsDropout(P).train()(torch.ones(1_000_000))
    dropped = int((out == 0).sum())
    assert _within_binomial(dropped, out.numel(), ROUNDED_P)
    assert torch.all(out[out != 0] == 1 / (1 - ROUNDED_P))


def test_every_lane_of_a_random_word_drops_at_p():
    # four 16-bit lanes per 64-bit word: a generator that leaves the top bit 0 would never drop lane 3
    torch.manual_seed(1)
    out = BitsDropout(P).train()(torch.ones(4 * 250_000)).view(-1, 4)
    for lane in range(4):
        assert _within_binomial(int((out[:, lane] == 0).sum()), out.shape[0], ROUNDED_P), lane


def test_identity_in_eval_and_at_p_zero():
    x = torch.randn(3, 5)
    assert BitsDropout(P).eval()(x) is x
    assert BitsDropout(0.0).train()(x) is x
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        BitsDropout(1.0)


def test_a_seed_repeats_the_mask_and_the_gradient_is_the_mask():
    x = torch.randn(7, 33, requires_grad=True)
    torch.manual_seed(3)
    first = BitsDropout(0.3).train()(x)
    torch.manual_seed(3)
    again = BitsDropout(0.3).train()(x)
    assert torch.equal(first, again)
    first.sum().backward()
    scale = LANES / (LANES - round(0.3 * LANES))
    assert torch.equal(x.grad, (first != 0).float() * scale)


def test_bf16_input_gives_the_fp32_result_rounded():
    x = torch.randn(4, 50, 96).bfloat16()
    torch.manual_seed(5)
    low = BitsDropout(P).train()(x)
    torch.manual_seed(5)
    high = BitsDropout(P).train()(x.float())
    assert low.dtype == torch.bfloat16
    assert torch.equal(low, high.bfloat16())


def test_an_adapter_input_dropout_writes_the_autocast_dtype_with_the_same_numbers():
    x = torch.randn(4, 50, 96, requires_grad=True)
    outputs, grads = [], []
    for feeds_linear in (False, True):
        torch.manual_seed(6)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = BitsDropout(P, feeds_linear).train()(x)
            outputs.append(out)
            (nn.functional.linear(out, torch.randn(8, 96, generator=torch.Generator().manual_seed(0)))).sum().backward()
        grads.append(x.grad.clone())
        x.grad = None
    assert outputs[0].dtype == torch.float32 and outputs[1].dtype == torch.bfloat16
    assert torch.equal(outputs[0].bfloat16(), outputs[1])
    assert grads[1].dtype == torch.float32 and torch.equal(grads[0], grads[1])
    assert BitsDropout(P, feeds_linear=True).train()(x).dtype == torch.float32  # no autocast: no cast


def _lora(tokenizer, dropout: float):
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules="all-linear")
    return get_peft_model(build_tiny_llama(tokenizer), config)


def test_training_dropout_swaps_lora_dropout_on_the_cpu_only(tokenizer):
    model = _lora(tokenizer, 0.1)
    adapted = sum(1 for m in model.modules() if hasattr(m, "lora_dropout"))
    assert training_dropout(model, "cuda") == 0
    assert training_dropout(model, "cpu") == adapted > 0
    dropouts = [m.lora_dropout["default"] for m in model.modules() if hasattr(m, "lora_dropout")]
    assert all(type(d) is BitsDropout and d.p == 0.1 and d.training == model.training for d in dropouts)
    assert all(d.feeds_linear for d in dropouts)
    assert training_dropout(_lora(tokenizer, 0.0), "cpu") == 0  # peft's nn.Identity: nothing to swap


def test_only_adapter_input_dropouts_feed_a_linear(tokenizer):
    model = _lora(tokenizer, 0.1)
    layer = model.get_base_model().model.layers[0]
    layer.mlp.residual_dropout = nn.Dropout(0.1)  # a base-model dropout: its output is not the adapter's input
    training_dropout(model, "cpu")
    assert layer.mlp.residual_dropout.feeds_linear is False
    assert layer.mlp.up_proj.lora_dropout["default"].feeds_linear is True


def test_frozen_linears_in_bf16_then_the_same_parameters_back(tokenizer):
    model = _lora(tokenizer, 0.0)
    base = model.get_base_model()
    q_proj = base.model.layers[0].self_attn.q_proj
    before = {name: p for name, p in model.named_parameters()}
    with frozen_linears_in(model, torch.bfloat16) as swapped:
        assert swapped == 2 * 7 + 1  # every adapted base linear and the tied LM head
        assert q_proj.base_layer.weight.dtype == torch.bfloat16
        assert q_proj.lora_A["default"].weight.dtype == torch.float32  # trainable: untouched
        assert base.model.embed_tokens.weight.dtype == torch.float32
        assert base.lm_head.weight.dtype == torch.bfloat16
    assert all(p is before[name] for name, p in model.named_parameters())
    assert base.lm_head.weight is base.model.embed_tokens.weight  # the tie is back

    with pytest.raises(RuntimeError), frozen_linears_in(model, torch.bfloat16):
        raise RuntimeError("training failed")
    assert q_proj.base_layer.weight is before["base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight"]


def _loss_and_grads(model, batch) -> tuple[torch.Tensor, dict]:
    model.zero_grad()
    torch.manual_seed(11)  # the same dropout masks in both runs
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(**batch, labels=batch["input_ids"]).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_skipping_the_casts_changes_no_bit_of_loss_or_gradients(tokenizer):
    model = _lora(tokenizer, 0.1)
    training_dropout(model, "cpu")
    model.train()
    torch.manual_seed(0)
    batch = {"input_ids": torch.randint(0, len(tokenizer), (3, 17)), "attention_mask": torch.ones(3, 17).long()}
    batch["attention_mask"][0, :5] = 0
    loss, grads = _loss_and_grads(model, batch)
    with frozen_linears_in(model, torch.bfloat16), disable_input_dtype_casting(model):
        fast_loss, fast_grads = _loss_and_grads(model, batch)
    assert torch.equal(loss, fast_loss)
    assert grads.keys() == fast_grads.keys()
    assert all(torch.equal(grads[name], fast_grads[name]) for name in grads)


@pytest.mark.parametrize("method", ["lora", "loramoe"])
def test_the_fused_dropout_cast_changes_no_bit_of_loss_or_gradients(tokenizer, method):
    if method == "lora":
        model = _lora(tokenizer, 0.1)
    else:
        from forgetless.adapters.loramoe.config import LoRAMoEConfig
        from forgetless.adapters.loramoe.model import inject_loramoe

        model = inject_loramoe(build_tiny_llama(tokenizer), LoRAMoEConfig(num_experts=4, rank=4, dropout=0.1))
    for name, param in model.named_parameters():
        if "lora_B" in name:  # zero at init: nothing would flow back through the dropout
            nn.init.normal_(param, std=0.5)
    assert training_dropout(model, "cpu") > 0
    model.train()
    torch.manual_seed(0)
    batch = {"input_ids": torch.randint(0, len(tokenizer), (3, 17)), "attention_mask": torch.ones(3, 17).long()}
    fused = [m for m in model.modules() if isinstance(m, BitsDropout)]
    assert all(m.feeds_linear for m in fused)
    loss, grads = _loss_and_grads(model, batch)
    for module in fused:
        module.feeds_linear = False
    plain_loss, plain_grads = _loss_and_grads(model, batch)
    assert torch.equal(loss, plain_loss)
    assert all(torch.equal(grads[name], plain_grads[name]) for name in grads)


def test_a_bf16_cpu_training_run_holds_bf16_weights_and_restores_them(tokenizer, tmp_path):
    from transformers import TrainerCallback

    seen = []

    class Watch(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            seen.append(q_proj.base_layer.weight.dtype)

    model = _lora(tokenizer, 0.1)
    q_proj = model.get_base_model().model.layers[0].self_attn.q_proj
    weight = q_proj.base_layer.weight
    train_two_steps(model, tokenizer, tmp_path, "bf16", Watch())
    assert seen == [torch.bfloat16, torch.bfloat16]
    assert q_proj.base_layer.weight is weight and weight.dtype == torch.float32
    assert isinstance(q_proj.lora_dropout["default"], BitsDropout)
    assert all(not isinstance(m, nn.Dropout) or m.p == 0 for m in model.modules())


def _loss_curve(tokenizer, tmp_path, precision: str) -> list[float]:
    from forgetless.data.records import Record
    from forgetless.train.config import TrainConfig
    from forgetless.train.setup import build_dataset, build_trainer

    torch.manual_seed(0)
    model = _lora(tokenizer, 0.05)
    records = [
        Record([{"role": "user", "content": f"What is {i} plus {i}?"}, {"role": "assistant", "content": f"{2 * i}"}])
        for i in range(32)
    ]
    cfg = TrainConfig(data="-", output="-", max_steps=12, batch_size=8, lr=5e-2)
    cfg.logging_steps = 1
    dataset = build_dataset(tokenizer, records, cfg)
    trainer = build_trainer(model, tokenizer, dataset, cfg, tmp_path / precision, precision)
    trainer.args.save_strategy = "no"
    trainer.train()
    return [row["loss"] for row in trainer.state.log_history if "loss" in row]


def test_the_bf16_cpu_loss_curve_stays_within_noise_of_fp32(tokenizer, tmp_path):
    fp32 = _loss_curve(tokenizer, tmp_path, "fp32")
    bf16 = _loss_curve(tokenizer, tmp_path, "bf16")
    assert len(fp32) == len(bf16) == 12
    assert fp32[-1] < fp32[0] - 0.1  # it learns (slowly: a 2-layer, 32-wide random model, 49k-token vocabulary)
    gaps = [abs(a - b) / a for a, b in zip(fp32, bf16, strict=True)]
    assert max(gaps) < 2e-3  # measured: ~3e-5


def test_generation_inside_a_training_run_merges_lora_into_the_fp32_weights(tokenizer):
    # the training gate probes the adapter mid-run: it must see the weights generation sees after training
    from forgetless.engine.weights import inference_weights

    model = _lora(tokenizer, 0.0)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            nn.init.normal_(param, std=0.5)
    base = model.get_base_model().model.layers[0].mlp.down_proj.base_layer
    with inference_weights(model, "bf16"):
        after_training = base.weight.detach().clone()
    with frozen_linears_in(model, torch.bfloat16):
        with inference_weights(model, "bf16"):
            mid_run = base.weight.detach().clone()
        assert base.weight.dtype == torch.bfloat16  # the run's copy again
    assert after_training.dtype == torch.bfloat16
    assert torch.equal(mid_run, after_training)
