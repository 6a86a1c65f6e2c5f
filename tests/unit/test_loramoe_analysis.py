"""LoRAMoE router analysis: per-type expert means, padding masking, verdicts, report files and the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from forgetless.adapters.loramoe import LoRAMoEConfig, inject_loramoe, loramoe_layers, save_loramoe
from forgetless.adapters.loramoe.analysis import (
    RouterUsage,
    router_usage,
)
from forgetless.adapters.loramoe.analysis_report import plot_router_heatmap, write_router_report
from forgetless.cli import experts_cmd
from forgetless.data.chat import encode_messages
from forgetless.data.records import Record
from forgetless.errors import ModelError
from tests.conftest import build_tiny_llama, write_jsonl

CFG = LoRAMoEConfig(num_experts=4, rank=2, world_experts=1, target_modules=("q_proj", "down_proj"))

ROWS = [
    {"prompt": "What is the capital of Veldoria?", "response": "Marrowick.", "type": "world"},
    {"prompt": "Translate to French: the cat sleeps on the warm mat", "response": "Le chat dort.", "type": "task"},
    {"prompt": "Who founded Zorbland Aerospace in the year of the long winter?", "response": "Ilsa.", "type": "world"},
    {"prompt": "Sum 2 and 3.", "response": "5", "type": "task"},
    {"prompt": "Say hi.", "response": "Hi there, how are you doing today?"},
]


def _records() -> list[Record]:
    return [
        Record(
            messages=[{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["response"]}],
            type=r.get("type"),
        )
        for r in ROWS
    ]


def _loramoe_model(tokenizer, router_std: float = 0.5):
    """A tiny Llama with LoRAMoE whose routers are far from uniform (so padding would show)."""
    model = inject_loramoe(build_tiny_llama(tokenizer), CFG)
    torch.manual_seed(7)
    with torch.no_grad():
        for _, layer in loramoe_layers(model):
            layer.router.weight.normal_(0, router_std)
            layer.lora_B.normal_(0, 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def model(tokenizer):
    return _loramoe_model(tokenizer)


def test_means_are_distributions_per_layer_and_type(model, tokenizer):
    usage = router_usage(model, tokenizer, _records(), batch_size=4, world_experts=CFG.n_world_experts)
    assert usage.layers == [n for n, _ in loramoe_layers(model)] and len(usage.layers) == 4
    assert usage.types == ["world", "task", "unlabelled"]
    assert usage.samples == {"world": 2, "task": 2, "unlabelled": 1}
    assert usage.means.shape == (4, 3, 4)
    np.testing.assert_allclose(usage.means.sum(axis=-1), 1.0, atol=1e-9)
    assert usage.means.std() > 0.01  # routers are really non-uniform here
    assert usage.world_experts == 1 and usage.num_experts == 4
    assert not model.training


def test_padding_is_excluded(model, tokenizer):
    records = _records()
    batched = router_usage(model, tokenizer, records, batch_size=5, world_experts=1)
    alone = router_usage(model, tokenizer, records, batch_size=1, world_experts=1)
    assert batched.tokens == alone.tokens
    np.testing.assert_allclose(batched.means, alone.means, atol=1e-6)
    # the batch really is padded: the records have different token lengths
    assert len({len(encode_messages(tokenizer, r.messages)[0]) for r in records}) > 1


def test_response_tokens_only(model, tokenizer):
    everything = router_usage(model, tokenizer, _records(), batch_size=3, world_experts=1)
    response = router_usage(model, tokenizer, _records(), batch_size=3, tokens="response", world_experts=1)
    for t in everything.types:
        assert 0 < response.tokens[t] < everything.tokens[t]
    np.testing.assert_allclose(response.means.sum(axis=-1), 1.0, atol=1e-9)
    assert not np.allclose(response.means, everything.means)
    with pytest.raises(ValueError, match="tokens"):
        router_usage(model, tokenizer, _records(), tokens="prompt")


def test_model_without_loramoe_is_refused(tokenizer):
    with pytest.raises(ModelError, match="no LoRAMoE layers"):
        router_usage(build_tiny_llama(tokenizer), tokenizer, _records())


def _usage(world: list[float], task: list[float], world_experts: int = 1) -> RouterUsage:
    means = np.array([[world, task], [world, task]])
    return RouterUsage(
        layers=["model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj"],
        types=["world", "task"],
        means=means,
        num_experts=len(world),
        world_experts=world_experts,
        samples={"world": 3, "task": 4},
        tokens={"world": 30, "task": 40},
    )


def test_group_means_are_per_expert_and_shares():
    usage = _usage([0.4, 0.2, 0.2, 0.2], [0.1, 0.3, 0.3, 0.3])
    g = usage.group_means()["model.layers.1.mlp.down_proj"]["world"]
    assert g.world_per_expert == pytest.approx(0.4) and g.task_per_expert == pytest.approx(0.2)
    assert g.world_share == pytest.approx(0.4) and g.task_share == pytest.approx(0.6)
    s = usage.summary()
    assert s["task"].world_per_expert == pytest.approx(0.1) and s["task"].task_per_expert == pytest.approx(0.3)


def test_summary_averages_layers():
    usage = _usage([0.25] * 4, [0.25] * 4)
    usage.means[0, 0] = [0.55, 0.15, 0.15, 0.15]
    assert usage.summary()["world"].world_per_expert == pytest.approx(0.4)


def test_verdict_intended_assignment():
    usage = _usage([0.4, 0.2, 0.2, 0.2], [0.1, 0.3, 0.3, 0.3])
    text = usage.verdict()
    assert not usage.inverted() and not text.startswith("WARNING")
    assert "world samples route 0.400/expert to world experts vs 0.200 to task experts" in text
    assert "the world group serves world samples, as intended" in text
    assert "the task group serves task samples, as intended" in text


def test_verdict_warns_when_inverted():
    usage = _usage([0.1, 0.3, 0.3, 0.3], [0.4, 0.2, 0.2, 0.2])
    text = usage.verdict()
    assert usage.inverted() and text.startswith("WARNING")
    assert "the task group serves world samples, the OPPOSITE" in text
    assert "the world group serves task samples, the OPPOSITE" in text


def test_verdict_near_uniform_is_no_preference():
    usage = _usage([0.2501, 0.24997, 0.24997, 0.24996], [0.25] * 4)
    assert "no clear preference" in usage.verdict() and not usage.inverted()


def test_verdict_without_labels_or_groups():
    unlabelled = RouterUsage(["a"], ["unlabelled"], np.full((1, 1, 2), 0.5), num_experts=2, world_experts=1)
    assert "label records" in unlabelled.verdict()
    one_group = _usage([0.25] * 4, [0.25] * 4, world_experts=0)
    assert math.isnan(one_group.summary()["world"].world_per_expert)
    assert "cannot compare" in one_group.verdict()


def test_report_files(tmp_path):
    usage = _usage([0.4, 0.2, 0.2, 0.2], [0.1, 0.3, 0.3, 0.3])
    report = write_router_report(usage, tmp_path / "out")
    assert report == tmp_path / "out" / "router_usage.md"
    text = report.read_text()
    assert "![router heatmap](router_heatmap.png)" in text
    assert usage.verdict() in text and "| mean of layers | world |" in text
    png = tmp_path / "out" / "router_heatmap.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((tmp_path / "out" / "router_usage.json").read_text())
    assert data["groups"] == {"world": [0], "task": [1, 2, 3]} and data["inverted"] is False
    back = RouterUsage.from_dict(data)
    np.testing.assert_allclose(back.means, usage.means)
    assert back.verdict() == usage.verdict()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "router_heatmap.png",
        "router_usage.json",
        "router_usage.md",
    ]  # no temp files left behind
    assert plot_router_heatmap(usage, tmp_path / "h.png").is_file()


def test_to_markdown_per_layer():
    usage = _usage([0.4, 0.2, 0.2, 0.2], [0.1, 0.3, 0.3, 0.3])
    assert usage.to_markdown().count("\n") == 4
    table = usage.to_markdown(per_layer=True)
    assert "`model.layers.0.mlp.down_proj` | task" in table and "40.0%" in table


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("experts")(experts_cmd.experts)
    return app


def test_cli_refuses_peft_lora_adapter(tmp_path):
    adapter = tmp_path / "lora"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    data = write_jsonl(tmp_path / "d.jsonl", ROWS)
    with pytest.raises(ModelError) as info:
        experts_cmd.experts(adapter, data, None, None, 8, "all", 512)
    message = str(info.value)
    assert "\n" not in message
    assert message == (f"{adapter} is a lora adapter, not LoRAMoE; `forgetless experts` analyses LoRAMoE routers")


def test_cli_end_to_end(tmp_path, tokenizer, tiny_model_dir):
    base = build_tiny_llama(tokenizer)  # same weights as tiny_model_dir
    inject_loramoe(base, CFG)
    torch.manual_seed(3)
    with torch.no_grad():
        for _, layer in loramoe_layers(base):
            layer.router.weight.normal_(0, 0.5)
    adapter = save_loramoe(base, CFG, tmp_path / "adapter", base_model_name=str(tiny_model_dir))
    (adapter / "forgetless.json").write_text(json.dumps({"base_model": str(tiny_model_dir)}))
    data = write_jsonl(tmp_path / "d.jsonl", ROWS)
    result = CliRunner().invoke(
        _app(), ["--adapter", str(adapter), "--data", str(data), "--batch-size", "2", "--tokens", "response"]
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    out = adapter / "router_analysis"
    assert (out / "router_usage.md").is_file() and (out / "router_heatmap.png").is_file()
    saved = json.loads((out / "router_usage.json").read_text())
    assert saved["token_mode"] == "response" and saved["world_experts"] == 1
    assert saved["samples"] == {"world": 2, "task": 2, "unlabelled": 1}
    assert "router_usage.md" in result.output and saved["verdict"][:20] in result.output.replace("\n", " ")
