"""The localized balancing constraint: hand-computed value, padding masking, groups, recording."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from forgetless.adapters.loramoe import (
    LoRAMoEConfig,
    LoRAMoELinear,
    balance_context,
    collect_lbc_loss,
    importance_matrix,
    lbc_loss,
)


def small_example():
    gates = torch.tensor(
        [
            [[0.5, 0.5], [1.0, 0.0]],  # sample 0 (world): Q[:, 0] = [1.5, 0.5]
            [[0.25, 0.75], [0.9, 0.1]],  # sample 1 (task), 2nd token is padding: Q[:, 1] = [0.25, 0.75]
        ]
    )
    types = torch.tensor([1, 0])
    mask = torch.tensor([[1, 1], [1, 0]])
    return gates, types, mask


def test_hand_computed_example():
    gates, types, mask = small_example()
    # I (delta=0.5, expert 0 = world group): [[1.5, 0.5], [0.5, 1.5]] → I∘Q = [[2.25, 0.125], [0.25, 1.125]]
    iq = torch.tensor([2.25, 0.125, 0.25, 1.125])
    mean = 0.9375
    var = float(((iq - mean) ** 2).mean())  # population variance = 0.72265625
    assert var == pytest.approx(0.72265625)
    loss = lbc_loss(gates, types, mask, world_experts=1, delta=0.5)
    assert loss.item() == pytest.approx(var / mean**2, rel=1e-6)


def test_padding_does_not_change_loss():
    gates, types, mask = small_example()
    base = lbc_loss(gates, types, mask, 1, 0.5)
    changed = gates.clone()
    changed[1, 1] = torch.tensor([0.0, 1.0])  # a padded position
    assert lbc_loss(changed, types, mask, 1, 0.5).item() == pytest.approx(base.item(), rel=1e-7)
    # ...and the same change at a real token does matter (so the test would catch unmasked padding)
    all_real = torch.ones_like(mask)
    assert lbc_loss(changed, types, all_real, 1, 0.5).item() != pytest.approx(
        lbc_loss(gates, types, all_real, 1, 0.5).item(), rel=1e-3
    )


def test_unlabelled_samples_are_ignored_and_all_unlabelled_is_none():
    gates, types, mask = small_example()
    base = lbc_loss(gates, types, mask, 1, 0.5)
    more = torch.cat([gates, torch.rand(1, 2, 2).softmax(-1)])
    more_types = torch.cat([types, torch.tensor([-1])])
    more_mask = torch.cat([mask, torch.ones(1, 2, dtype=mask.dtype)])
    assert lbc_loss(more, more_types, more_mask, 1, 0.5).item() == pytest.approx(base.item(), rel=1e-7)
    assert lbc_loss(gates, torch.tensor([-1, -1]), mask, 1, 0.5) is None
    assert lbc_loss(gates, types, torch.zeros_like(mask), 1, 0.5) is None  # labelled but all padding


@pytest.mark.parametrize("n, world", [(5, 2), (5, 0), (5, 5), (1, 1), (3, 1)])
def test_group_edges_and_odd_n(n, world):
    gates = torch.rand(3, 4, n).softmax(-1)
    types = torch.tensor([1, 0, 1])
    loss = lbc_loss(gates, types, torch.ones(3, 4), world, 0.1)
    assert loss is not None and torch.isfinite(loss) and loss >= 0
    imp = importance_matrix(types, n, world, 0.1)
    assert imp.shape == (n, 3)
    hi, lo = torch.tensor(1.1), torch.tensor(0.9)
    assert torch.allclose(imp[:world, 0], hi) and torch.allclose(imp[world:, 0], lo)  # world sample
    assert torch.allclose(imp[:world, 1], lo) and torch.allclose(imp[world:, 1], hi)  # task sample


def test_uniform_iq_gives_zero_loss():
    # delta = 0 and identical per-expert totals → I∘Q constant → CV² = 0
    gates = torch.full((2, 3, 4), 0.25)
    loss = lbc_loss(gates, torch.tensor([0, 1]), torch.ones(2, 3), 2, 0.0)
    assert loss.item() == pytest.approx(0.0, abs=1e-12)


def two_layer_model(n=4, seed=0):
    torch.manual_seed(seed)
    layers = [LoRAMoELinear(nn.Linear(8, 8), n, 2, 4.0, router_init_std=0.5) for _ in range(2)]
    return nn.Sequential(*layers)


def test_collect_mean_over_modules_gradient_and_cleanup():
    model = two_layer_model()
    cfg = LoRAMoEConfig(num_experts=4, world_experts=2, lbc_delta=0.2)
    x = torch.randn(3, 5, 8)
    types = torch.tensor([1, 0, -1])
    mask = torch.ones(3, 5, dtype=torch.long)
    mask[0, 3:] = 0
    with balance_context(model, types, mask):
        model(x)
        per_module = [lbc_loss(m.recorded_gates[0], types, mask, 2, 0.2) for m in model]
        loss = collect_lbc_loss(model, types, mask, cfg)
    assert loss.item() == pytest.approx(torch.stack(per_module).mean().item(), rel=1e-6)
    loss.backward()
    for m in model:
        assert m.router.weight.grad is not None and m.router.weight.grad.abs().sum() > 0
        assert m.recorded_gates == [] and not m.recording  # cleared on exit
    model(x)
    assert all(m.recorded_gates == [] for m in model)


def test_collect_returns_none_when_unlabelled_and_raises_without_recording():
    model = two_layer_model()
    cfg = LoRAMoEConfig(num_experts=4)
    types = torch.tensor([-1, -1])
    mask = torch.ones(2, 3)
    with balance_context(model, types, mask):
        model(torch.randn(2, 3, 8))
        assert collect_lbc_loss(model, types, mask, cfg) is None
    with pytest.raises(RuntimeError, match="balance_context"):
        collect_lbc_loss(model, torch.tensor([1, 0]), mask, cfg)


def test_context_rejects_bad_inputs_and_nesting():
    model = two_layer_model()
    with (
        pytest.raises(ValueError, match="sample_types"),
        balance_context(model, torch.tensor([2, 0]), torch.ones(2, 3)),
    ):
        pass
    with (
        pytest.raises(ValueError, match="attention_mask"),
        balance_context(model, torch.tensor([1, 0]), torch.ones(3, 3)),
    ):
        pass
    ok = (torch.tensor([1, 0]), torch.ones(2, 3))
    with (
        balance_context(model, *ok),
        pytest.raises(RuntimeError, match="nested"),
        balance_context(model, *ok),
    ):
        pass
    assert not any(m.recording for m in model)
