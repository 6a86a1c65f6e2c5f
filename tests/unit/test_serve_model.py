"""`forgetless serve` with a real model: a tiny random Llama, two PEFT LoRA adapters and a MiniLM switch.

A continual-run directory is built the way `forgetless continual run` lays it out (adapters + `switch/`
whose manifest records adapter paths relative to the run). The server runs on loopback and is driven
over HTTP: `auto` sends each task's held-out prompts to that task's adapter and foreign prompts to the
base; rows of different adapters generated in ONE batch give exactly what each adapter gives alone.
`build_run` and the fixtures are reused by test_export_vllm.py.
"""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import httpx
import pytest
import torch

from forgetless.adapters.switch import MiniLMEncoder, Switch
from forgetless.cli.app import main
from forgetless.continual.run_dir import RunDir
from forgetless.errors import ConfigError
from forgetless.serve.app import ServeConfig, create_app
from forgetless.serve.backend import build_backend
from forgetless.serve.registry import registry_from_run
from forgetless.serve.server import ServerThread

NOUNS = "child mouse goose tooth foot person city knife leaf box cactus woman wolf hero potato church baby ox"
NOUNS += " crisis thesis fish sheep man bus wife loaf half key toy day story lady fox dish brush witch"
FAMILIES = {
    "plural": lambda r: r.choice(
        ["What is the plural of {}?", "Give the plural form of {}.", "What is the plural of the word '{}'?"]
    ).format(r.choice(NOUNS.split())),
    "numbers": lambda r: r.choice(
        ["Write the number {} in words.", "Write the number {} in English words.", "Spell out {} in words."]
    ).format(r.randint(0, 99_999)),
}
FOREIGN = ["hi, how are you?", "Explain the causes of the French Revolution.", "Write a haiku about autumn leaves."]


def family_prompts(n: int, seed: int = 0) -> dict[str, list[str]]:
    rng, out = random.Random(seed), {}
    for name, make in FAMILIES.items():
        seen: dict[str, None] = {}
        while len(seen) < n:
            seen[make(rng)] = None
        out[name] = list(seen)
    return out


def make_lora(base_dir: Path, out: Path, seed: int) -> Path:
    """A PEFT LoRA with random (non-zero) A and B, so it changes the model's output."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    targets = ["q_proj", "v_proj", "up_proj", "down_proj"]
    config = LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False, task_type="CAUSAL_LM")
    get_peft_model(model, config).save_pretrained(out)
    (out / "forgetless.json").write_text(json.dumps({"base_model": str(base_dir)}))
    return out


def build_run(run: Path, base_dir: Path, encoder, switch_encoder_prompts: dict[str, list[str]]) -> Path:
    """A continual-run directory: adapters/<task>/ + switch/ (adapter paths relative to the run)."""
    # 150 epochs (not the paper's 20): with 40 prompts per task the energy score then separates held-out
    # prompts (min 1.78) from foreign ones (max 1.30) with a clear margin around the threshold (1.41).
    switch = Switch(encoder=encoder, fraction=0.1, score="energy", seed=0, balanced=True, epochs=150)
    for seed, (task, prompts) in enumerate(switch_encoder_prompts.items()):
        make_lora(base_dir, run / "adapters" / task, seed=seed + 1)
        switch.update(task, prompts[:40], f"adapters/{task}")
    switch.calibrate([p for prompts in switch_encoder_prompts.values() for p in prompts[40:60]], keep=1.0)
    switch.save(run / "switch")
    return run


@pytest.fixture(scope="session")
def minilm():
    return MiniLMEncoder()


@pytest.fixture(scope="session")
def prompts():
    return family_prompts(70)


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory, tiny_model_dir, minilm, prompts) -> Path:
    return build_run(tmp_path_factory.mktemp("continual-run"), tiny_model_dir, minilm, prompts)


@pytest.fixture(scope="module")
def served(run_dir, minilm):
    registry = registry_from_run(run_dir, encoder=minilm)
    backend, info = build_backend(None, registry.adapters, precision="fp32")  # base read from forgetless.json
    registry.base_id = info.model_id
    with ServerThread(create_app(backend, registry, ServeConfig(window_ms=40, max_tokens_cap=16))) as server:
        yield server


async def _post_all(url: str, bodies: list[tuple[str, dict]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        return await asyncio.gather(*(http.post(path, json=body) for path, body in bodies))


def chat(model: str, text: str, **extra) -> tuple[str, dict]:
    return "/v1/chat/completions", {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def test_auto_routes_each_tasks_prompts_to_its_adapter_and_foreign_ones_to_base(served, prompts):
    held_out = {task: p[60:64] for task, p in prompts.items()}
    bodies = [chat("auto", p, max_tokens=1) for ps in held_out.values() for p in ps]
    bodies += [chat("auto", p, max_tokens=1) for p in FOREIGN]
    answers = [r.json() for r in asyncio.run(_post_all(served.url, bodies))]
    expected = [task for task, ps in held_out.items() for _ in ps] + [None] * len(FOREIGN)
    assert [a["adapter"] for a in answers] == expected
    assert all(a["route"]["abstained"] == (a["adapter"] is None) for a in answers)
    assert all(a["route"]["confidence"] > 0.5 for a in answers if a["adapter"])


def _reference(base_dir: Path, adapter: Path | None, texts: list[str], max_new_tokens: int) -> list[str]:
    """What the adapter alone (plain peft, no server) answers, greedy, fp32."""
    from peft import PeftModel

    from forgetless.data.chat import prompt_messages
    from forgetless.engine.generate import generate_texts
    from forgetless.engine.sampling import SamplingConfig
    from forgetless.models.load import load_model

    model, tokenizer, _ = load_model(str(base_dir))
    if adapter is not None:
        model = PeftModel.from_pretrained(model, str(adapter)).eval()
    sampling = SamplingConfig(max_new_tokens=max_new_tokens, precision="fp32")
    return [a[0] for a in generate_texts(model, tokenizer, [prompt_messages(t) for t in texts], sampling)]


def test_rows_of_different_adapters_in_one_batch_match_each_adapter_alone(served, run_dir, tiny_model_dir):
    texts = ["What is the plural of goose?", "Write the number 12 in words, please, right now."]
    models = ["base", "plural", "numbers"]
    bodies = [chat(m, t, max_tokens=6) for m in models for t in texts]
    before = httpx.get(f"{served.url}/metrics", params={"format": "json"}).json()["batches"]
    responses = asyncio.run(_post_all(served.url, bodies))
    after = httpx.get(f"{served.url}/metrics", params={"format": "json"}).json()
    assert after["batches"] - before < len(bodies), "concurrent requests were not batched together"
    served_texts = [r.json()["choices"][0]["message"]["content"].strip() for r in responses]
    expected = []
    for model in models:
        adapter = None if model == "base" else run_dir / "adapters" / model
        expected += _reference(tiny_model_dir, adapter, texts, 6)
    assert served_texts == expected
    assert len(set(served_texts[0::2])) == 3, "the adapters should change the answers"


def test_32_concurrent_clients_on_the_model(served, prompts):
    models = ["base", "plural", "numbers", "auto"]
    texts = [p for ps in prompts.values() for p in ps[60:70]]
    bodies = [chat(models[i % 4], texts[i % len(texts)], max_tokens=4, stream=i % 3 == 0) for i in range(32)]
    responses = asyncio.run(_post_all(served.url, bodies))
    assert [r.status_code for r in responses] == [200] * 32
    explicit = [(b["model"], r.headers["x-forgetless-adapter"]) for (_, b), r in zip(bodies, responses, strict=True)]
    assert all(adapter == model for model, adapter in explicit if model in ("base", "plural", "numbers"))
    assert all(
        r.text.rstrip().endswith("data: [DONE]") for (_, b), r in zip(bodies, responses, strict=True) if b["stream"]
    )


def test_streaming_and_completions_on_the_model(served):
    body = {"model": "plural", "messages": [{"role": "user", "content": "What is the plural of ox?"}]}
    full = httpx.post(f"{served.url}/v1/chat/completions", json=body | {"max_tokens": 50}, timeout=60).json()
    assert full["usage"]["completion_tokens"] <= 16  # the server's cap
    streamed = httpx.post(f"{served.url}/v1/chat/completions", json=body | {"max_tokens": 50, "stream": True})
    lines = [line[6:] for line in streamed.text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    text = "".join(json.loads(line)["choices"][0]["delta"].get("content", "") for line in lines[:-1])
    assert text == full["choices"][0]["message"]["content"]
    completion = httpx.post(
        f"{served.url}/v1/completions", json={"model": "numbers", "prompt": "One, two,", "max_tokens": 3}
    ).json()
    assert completion["usage"]["completion_tokens"] <= 3 and completion["adapter"] == "numbers"


def test_adapter_paths_resolve_when_the_run_moved(run_dir, tmp_path):
    assert RunDir(run_dir).adapter_dir("adapters/plural") == (run_dir / "adapters" / "plural").resolve()
    stale = "/somewhere/else/old-run/adapters/plural"  # an absolute path from before the run was moved
    assert RunDir(run_dir).adapter_dir(stale) == (run_dir / "adapters" / "plural").resolve()
    with pytest.raises(Exception, match="not found"):
        RunDir(tmp_path).adapter_dir("adapters/plural")


def test_loramoe_adapter_is_served_alone_with_base_rows_split(tiny_model_dir, run_dir, tmp_path):
    from forgetless.adapters.loramoe import LoRAMoEConfig, inject_loramoe, loramoe_layers, save_loramoe
    from forgetless.models.load import fingerprint, load_model

    base, _, _ = load_model(str(tiny_model_dir))
    cfg = LoRAMoEConfig(num_experts=2, rank=2, world_experts=1, target_modules=("q_proj", "down_proj"))
    inject_loramoe(base, cfg)
    torch.manual_seed(5)
    with torch.no_grad():
        for _, layer in loramoe_layers(base):
            layer.lora_B.normal_(0, 0.5)
    moe_dir = save_loramoe(base, cfg, tmp_path / "moe", str(tiny_model_dir), fingerprint(base))
    with pytest.raises(ConfigError, match="LoRAMoE"):
        build_backend(str(tiny_model_dir), {"moe": moe_dir, "plural": run_dir / "adapters" / "plural"})
    from forgetless.serve.registry import Registry

    backend, info = build_backend(str(tiny_model_dir), {"moe": moe_dir}, precision="fp32")
    registry = Registry({"moe": moe_dir}, base_id=info.model_id)
    with ServerThread(create_app(backend, registry, ServeConfig(window_ms=40))) as server:
        texts = ["What is the plural of goose?"]
        responses = asyncio.run(
            _post_all(server.url, [chat("moe", texts[0], max_tokens=5), chat("base", texts[0], max_tokens=5)])
        )
    moe_text, base_text = (r.json()["choices"][0]["message"]["content"].strip() for r in responses)
    assert base_text == _reference(tiny_model_dir, None, texts, 5)[0]
    assert moe_text != base_text


def test_cli_serve_wires_a_run_into_a_loopback_server(run_dir, monkeypatch):
    """`forgetless serve --run DIR` builds the app; serve_forever is replaced to drive it in a thread."""
    captured = {}

    def fake_serve_forever(app, host, port, log_level):
        captured.update(host=host, port=port)
        with ServerThread(app) as server:
            r = httpx.post(f"{server.url}/v1/chat/completions", json=chat("auto", "What is the plural of fox?")[1])
            captured["answer"] = r.json()

    monkeypatch.setattr("forgetless.serve.server.serve_forever", fake_serve_forever)
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--run", str(run_dir), "--max-tokens", "2", "--precision", "fp32"])
    assert exit_info.value.code == 0
    assert captured["host"] == "127.0.0.1" and captured["port"] == 8000
    assert captured["answer"]["adapter"] == "plural" and captured["answer"]["usage"]["completion_tokens"] <= 2


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "--run", "RUN", "--adapter", "a=RUN/adapters/plural"],
        ["serve", "--adapter", "auto=RUN/adapters/plural"],
        ["serve", "--adapter", "../../etc=RUN/adapters/plural"],
        ["serve", "--adapter", "x=RUN/no-such-adapter"],
        ["serve", "--adapter", "no-equals-sign"],
        ["serve", "--run", "RUN/adapters"],
        ["serve", "--port", "70000"],
    ],
)
def test_cli_serve_input_errors_are_one_line_exit_2(args, run_dir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([a.replace("RUN", str(run_dir)) for a in args])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and err.startswith("error: ") and "\n" not in err
