"""Injection into a tiny random Llama, generation, save/load round trip and base-model checks."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from forgetless.adapters.loramoe import (
    LoRAMoEConfig,
    LoRAMoELinear,
    balance_context,
    collect_lbc_loss,
    count_trainable,
    inject_loramoe,
    is_loramoe_adapter,
    load_loramoe,
    loramoe_layers,
    loramoe_state_dict,
    save_loramoe,
)
from forgetless.errors import ConfigError, ModelError

FINGERPRINT = {"model_type": "llama", "hidden_size": 32, "num_hidden_layers": 2}


def tiny_llama(seed: int = 0, hidden: int = 32, intermediate: int = 64) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=128,
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=intermediate,
        max_position_embeddings=64,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )
    return LlamaForCausalLM(config).eval()


def trained_like(model: LlamaForCausalLM, cfg: LoRAMoEConfig) -> LlamaForCausalLM:
    """Inject and give B non-zero values so the adapter changes the output."""
    inject_loramoe(model, cfg)
    torch.manual_seed(123)
    with torch.no_grad():
        for _, layer in loramoe_layers(model):
            layer.lora_B.normal_(0, 0.2)
    return model.eval()


def test_inject_replaces_only_targets_and_freezes_base():
    model = inject_loramoe(tiny_llama(), LoRAMoEConfig())
    names = {n for n, _ in loramoe_layers(model)}
    expected = {f"model.layers.{i}.mlp.{p}" for i in range(2) for p in ("gate_proj", "up_proj", "down_proj")}
    assert names == expected
    for name, p in model.named_parameters():
        is_adapter = any(k in name for k in ("lora_A", "lora_B", "router"))
        assert p.requires_grad == is_adapter, name
    trainable, total = count_trainable(model)
    assert trainable == sum(p.numel() for p in loramoe_state_dict(model).values())
    assert 0 < trainable < total


def test_inject_attention_targets():
    model = inject_loramoe(tiny_llama(), LoRAMoEConfig(target_modules=("q_proj", "v_proj")))
    names = sorted(n for n, _ in loramoe_layers(model))
    assert names == [f"model.layers.{i}.self_attn.{p}" for i in range(2) for p in ("q_proj", "v_proj")]
    v = model.get_submodule("model.layers.0.self_attn.v_proj")
    assert v.lora_B.shape == (16, 6 * 4)  # 2 kv heads * head_dim 8


def test_no_match_raises_config_error_listing_names():
    with pytest.raises(ConfigError, match="q_proj"):
        inject_loramoe(tiny_llama(), LoRAMoEConfig(target_modules=("nonexistent",)))


def test_fresh_injection_keeps_logits_and_generation_works():
    ids = torch.tensor([[2, 5, 9, 11]])
    base_logits = tiny_llama()(ids).logits
    model = inject_loramoe(tiny_llama(), LoRAMoEConfig()).eval()
    torch.testing.assert_close(model(ids).logits, base_logits, rtol=0, atol=0)
    model = trained_like(tiny_llama(), LoRAMoEConfig())
    kwargs = {"attention_mask": torch.ones_like(ids), "max_new_tokens": 3, "do_sample": False}
    out = model.generate(ids, use_cache=True, **kwargs)
    assert out.shape == (1, 7)
    torch.testing.assert_close(out, model.generate(ids, use_cache=False, **kwargs))  # KV cache consistent
    assert all(layer.recorded_gates == [] for _, layer in loramoe_layers(model))


def test_training_step_with_lbc_and_padding():
    cfg = LoRAMoEConfig(num_experts=4, rank=2, target_modules=("up_proj", "v_proj"))
    model = inject_loramoe(tiny_llama(), cfg).train()
    ids = torch.tensor([[2, 5, 9, 11], [2, 7, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    types = torch.tensor([1, 0])
    with balance_context(model, types, mask):
        out = model(input_ids=ids, attention_mask=mask, labels=ids)
        lbc = collect_lbc_loss(model, types, mask, cfg)
    (out.loss + cfg.lbc_beta * lbc).backward()
    router = model.get_submodule("model.layers.0.mlp.up_proj").router.weight
    assert router.grad is not None and router.grad.abs().sum() > 0


def test_save_load_round_trip(tmp_path):
    cfg = LoRAMoEConfig(num_experts=3, rank=2, world_experts=1, target_modules=("q_proj", "down_proj"))
    model = trained_like(tiny_llama(), cfg)
    ids = torch.tensor([[2, 5, 9, 11, 3]])
    logits = model(ids).logits
    out = save_loramoe(model, cfg, tmp_path / "adapter", "tiny-llama", FINGERPRINT)
    assert sorted(p.name for p in out.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    saved = json.loads((out / "adapter_config.json").read_text())
    assert saved["method"] == "loramoe" and saved["num_experts"] == 3 and saved["rank"] == 2
    assert saved["groups"] == {"world": [0], "task": [1, 2]}
    assert saved["base_model_fingerprint"] == FINGERPRINT
    assert saved["target_modules"] == ["q_proj", "down_proj"] and saved["forgetless_version"]
    assert is_loramoe_adapter(out) and not is_loramoe_adapter(tmp_path)

    loaded = load_loramoe(tiny_llama(), out, expected_fingerprint=dict(FINGERPRINT)).eval()
    torch.testing.assert_close(loaded(ids).logits, logits, rtol=0, atol=0)
    assert not torch.equal(logits, tiny_llama()(ids).logits)


def test_same_adapter_saves_the_same_bytes(tmp_path):
    """safetensors orders a metadata map at random: with two keys the files differed between saves."""
    cfg = LoRAMoEConfig(num_experts=2, rank=2)
    model = trained_like(tiny_llama(), cfg)
    files = {
        (save_loramoe(model, cfg, tmp_path / str(i), "tiny", FINGERPRINT) / "adapter_model.safetensors").read_bytes()
        for i in range(6)
    }
    assert len(files) == 1


def test_load_into_different_base_raises_model_error(tmp_path):
    cfg = LoRAMoEConfig(num_experts=2, rank=2)
    out = save_loramoe(trained_like(tiny_llama(), cfg), cfg, tmp_path / "a", "tiny", FINGERPRINT)
    other = tiny_llama(intermediate=96)
    with pytest.raises(ModelError, match="different base model"):
        load_loramoe(other, out)
    assert not loramoe_layers(other)  # the model is left untouched on error
    with pytest.raises(ModelError, match="different base model"):
        load_loramoe(tiny_llama(), out, expected_fingerprint={**FINGERPRINT, "hidden_size": 48})


def test_load_rejects_non_adapter_dirs(tmp_path):
    with pytest.raises(ModelError, match=r"adapter_config\.json"):
        load_loramoe(tiny_llama(), tmp_path)
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    assert not is_loramoe_adapter(tmp_path)
    with pytest.raises(ModelError, match="not a LoRAMoE adapter"):
        load_loramoe(tiny_llama(), tmp_path)


def test_autocast_bf16_forward_backward_on_llama():
    cfg = LoRAMoEConfig(num_experts=2, rank=2, target_modules=("gate_proj",))
    model = inject_loramoe(tiny_llama(), cfg).train()
    ids = torch.tensor([[2, 5, 9, 11]])
    mask = torch.ones_like(ids)
    with balance_context(model, torch.tensor([0]), mask), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(input_ids=ids, labels=ids)
        gates = [g for _, layer in loramoe_layers(model) for g in layer.recorded_gates]
        lbc = collect_lbc_loss(model, torch.tensor([0]), mask, cfg)
    assert gates and all(g.dtype == torch.float32 for g in gates)
    (out.loss.float() + lbc).backward()
    layer = model.get_submodule("model.layers.1.mlp.gate_proj")
    assert isinstance(layer, LoRAMoELinear) and layer.lora_A.grad is not None
