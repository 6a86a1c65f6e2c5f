"""LoRAMoELinear: the fused layer equals a per-expert loop reference (outputs and gradients)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from forgetless.adapters.loramoe import LoRAMoEConfig, LoRAMoELinear
from forgetless.errors import ConfigError

IN, OUT, N, R, ALPHA = 12, 10, 5, 3, 8.0


def loop_reference(x, base_w, base_b, lora_a, lora_b, router_w, n, r, scaling):
    """Straightforward LoRAMoE: y = base(x) + sum_i g_i * scaling * B_i A_i x (official-code style)."""
    y = x @ base_w.T + base_b
    gates = torch.softmax(x @ router_w.T, dim=-1)
    for i in range(n):
        a_i = lora_a[i * r : (i + 1) * r]
        b_i = lora_b[:, i * r : (i + 1) * r]
        y = y + gates[..., i : i + 1] * ((x @ a_i.T) @ b_i.T) * scaling
    return y


def make_layer(dropout: float = 0.0, seed: int = 0) -> LoRAMoELinear:
    torch.manual_seed(seed)
    layer = LoRAMoELinear(nn.Linear(IN, OUT), N, R, ALPHA, dropout=dropout, router_init_std=0.5)
    with torch.no_grad():
        layer.lora_B.normal_(0, 0.3)  # non-zero B so the experts matter
    return layer


def test_shapes_and_init():
    layer = LoRAMoELinear(nn.Linear(IN, OUT), N, R, ALPHA)
    assert layer.lora_A.shape == (N * R, IN)
    assert layer.lora_B.shape == (OUT, N * R)
    assert layer.router.weight.shape == (N, IN) and layer.router.bias is None
    assert torch.all(layer.lora_B == 0)
    bound = 1 / math.sqrt(IN)  # kaiming_uniform(a=sqrt(5)) bound, as peft's lora_A
    assert layer.lora_A.abs().max() <= bound and layer.lora_A.std() > bound / 4
    assert layer.router.weight.std() < 0.05
    assert not any(p.requires_grad for p in layer.base.parameters())


def test_fused_equals_loop_outputs_and_gradients():
    layer = make_layer().eval()
    x = torch.randn(3, 7, IN, requires_grad=True)
    y = layer(x)
    fused_params = (layer.lora_A, layer.lora_B, layer.router.weight)
    params = [p.detach().clone().requires_grad_(True) for p in fused_params]
    x2 = x.detach().clone().requires_grad_(True)
    y_ref = loop_reference(x2, layer.base.weight, layer.base.bias, *params, N, R, ALPHA / R)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-6)

    upstream = torch.randn_like(y)
    (y * upstream).sum().backward()
    (y_ref * upstream).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-5, atol=1e-6)
    for fused, ref in zip(fused_params, params, strict=True):
        torch.testing.assert_close(fused.grad, ref.grad, rtol=1e-5, atol=1e-6)


def test_zero_b_gives_base_output_exactly():
    torch.manual_seed(1)
    base = nn.Linear(IN, OUT)
    layer = LoRAMoELinear(base, N, R, ALPHA, dropout=0.1).train()
    x = torch.randn(2, 4, IN)
    assert torch.equal(layer(x), base(x))


def test_any_leading_dims():
    layer = make_layer().eval()
    for shape in [(IN,), (5, IN), (2, 3, 4, IN)]:
        assert layer(torch.randn(*shape)).shape == (*shape[:-1], OUT)


def test_dropout_mask_shared_and_router_sees_clean_input():
    layer = make_layer(dropout=0.5).train()
    x = torch.randn(4, IN)
    torch.manual_seed(3)
    y = layer(x)
    torch.manual_seed(3)
    x_drop = layer.dropout(x)
    gates = torch.softmax(x @ layer.router.weight.T, -1)  # router on x without dropout
    expected = layer.base(x) + (ALPHA / R) * ((x_drop @ layer.lora_A.T) * gates.repeat_interleave(R, -1)) @ (
        layer.lora_B.T
    )
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-6)


def test_no_recording_outside_balance_context():
    layer = make_layer()
    layer(torch.randn(2, 3, IN))
    assert layer.recorded_gates == []


def test_autocast_bf16_forward_backward_gates_fp32():
    layer = make_layer().train()
    layer.recording = True
    x = torch.randn(2, 5, IN)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    assert y.dtype == torch.bfloat16
    (gates,) = layer.recorded_gates
    assert gates.dtype == torch.float32 and gates.requires_grad
    y.float().sum().backward()
    assert layer.lora_A.grad is not None and layer.router.weight.grad is not None
    assert layer.lora_A.grad.dtype == torch.float32


def test_bf16_base_without_autocast():
    base = nn.Linear(IN, OUT).to(torch.bfloat16)
    layer = LoRAMoELinear(base, N, R, ALPHA)
    assert layer.lora_A.dtype == torch.float32  # adapters upcast like peft
    y = layer(torch.randn(2, IN, dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_experts": 0},
        {"rank": 0},
        {"world_experts": 7},
        {"world_experts": -1},
        {"lbc_delta": 1.0},
        {"lbc_beta": -0.1},
        {"dropout": 1.0},
        {"target_modules": ()},
    ],
)
def test_config_validation(kwargs):
    with pytest.raises(ConfigError):
        LoRAMoEConfig(**kwargs)


def test_config_round_trip_and_tags():
    cfg = LoRAMoEConfig(num_experts=5, world_experts=None, target_modules=["q_proj", "v_proj"])
    assert cfg.n_world_experts == 2 and cfg.target_modules == ("q_proj", "v_proj")
    d = cfg.to_dict(base_model_name_or_path="tiny")
    assert d["method"] == "loramoe" and d["peft_type"] == "LORAMOE"
    assert d["base_model_name_or_path"] == "tiny" and "forgetless_version" in d
    assert d["groups"] == {"world": [0, 1], "task": [2, 3, 4]}
    assert LoRAMoEConfig.from_dict(d) == cfg
    with pytest.raises(ConfigError, match="unknown keys"):
        LoRAMoEConfig.from_dict({**d, "num_expert": 3})


@pytest.mark.parametrize("autocast", [False, True])
def test_a_power_of_two_scaling_folded_into_b_changes_no_bit(monkeypatch, autocast):
    import forgetless.adapters.loramoe.layer as layer_module

    def run(fold: bool):
        monkeypatch.setattr(layer_module, "exact_scale", lambda value: fold)
        torch.manual_seed(0)
        layer = LoRAMoELinear(nn.Linear(IN, OUT), N, 4, 32.0, router_init_std=0.5)  # scaling 8
        with torch.no_grad():
            layer.lora_B.normal_(0, 0.3)
        x = torch.randn(3, 7, IN, requires_grad=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            y = layer(x)
        (y.float() * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        return [y, x.grad, layer.lora_A.grad, layer.lora_B.grad, layer.router.weight.grad]

    for folded, plain in zip(run(True), run(False), strict=True):
        assert folded.dtype == plain.dtype and torch.equal(folded, plain)


def test_the_fold_applies_to_powers_of_two_only():
    from forgetless.utils.floats import exact_scale

    assert all(exact_scale(v) for v in (8.0, 2, 1.0, 0.5, 2.0**-10))
    assert not any(exact_scale(v) for v in (8 / 3, 3.0, 0.0, -2.0, float("inf"), float("nan"), True, None))
