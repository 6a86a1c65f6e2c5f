"""`forgetless export vllm`: plain-PEFT adapters, a standalone router that routes like the switch, the vLLM
command, LoRAMoE refusal, atomic output. The router's proxy is driven in front of a forgetless server
standing in for vLLM (both speak the OpenAI API and take adapter names as `model`)."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
import torch

from forgetless.adapters.switch import Switch
from forgetless.cli.app import main
from forgetless.errors import ConfigError
from forgetless.serve.vllm.export import export_vllm
from tests.unit.test_serve_model import FOREIGN, minilm, prompts, run_dir, served  # noqa: F401 (fixtures)

ALLOWED_IMPORTS = {"torch", "transformers", "safetensors"}


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory) -> Path:  # noqa: F811
    return export_vllm(run_dir, tmp_path_factory.mktemp("export") / "vllm")


def load_router_module(path: Path):
    spec = importlib.util.spec_from_file_location("exported_router", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_layout_and_adapters_load_with_plain_peft(exported, run_dir, tiny_model_dir):  # noqa: F811
    from peft import LoraConfig, PeftModel
    from transformers import AutoModelForCausalLM

    listing = ["README.md", "adapters", "router", "serve_vllm.sh"]
    assert sorted(p.name for p in exported.iterdir()) == [".forgetless-output", *listing]
    assert not list(exported.parent.glob(".*partial*"))
    ids = torch.tensor([[1, 5, 9, 42, 7]])
    for task in ("plural", "numbers"):
        config = json.loads((exported / "adapters" / task / "adapter_config.json").read_text())
        assert config["base_model_name_or_path"] == str(tiny_model_dir.resolve())
        assert LoraConfig(**{k: v for k, v in config.items() if k not in ("peft_type", "auto_mapping")}).r == 4
        plain = PeftModel.from_pretrained(
            AutoModelForCausalLM.from_pretrained(tiny_model_dir), exported / "adapters" / task
        )
        original = PeftModel.from_pretrained(
            AutoModelForCausalLM.from_pretrained(tiny_model_dir), run_dir / "adapters" / task
        )
        with torch.no_grad():
            logits = plain.eval()(ids).logits
            torch.testing.assert_close(logits, original.eval()(ids).logits, rtol=0, atol=0)
            with plain.disable_adapter():
                assert not torch.allclose(logits, plain(ids).logits)  # the adapter does something


def test_router_depends_only_on_torch_transformers_safetensors(exported):
    tree = ast.parse((exported / "router" / "router.py").read_text())
    names = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    names |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    third_party = names - set(sys.stdlib_module_names) - {"__future__"}
    assert third_party == ALLOWED_IMPORTS


def test_router_routes_like_the_switch(exported, run_dir, minilm, prompts):  # noqa: F811
    router = load_router_module(exported / "router" / "router.py").Router.load(exported / "router")
    texts = [p for ps in prompts.values() for p in ps[60:66]] + FOREIGN
    switch = Switch.load(run_dir / "switch", encoder=minilm).route(texts)
    routed = router.route(texts)
    assert [r["adapter"] for r in routed] == [r.task if not r.abstained else None for r in switch]
    assert [r["abstained"] for r in routed] == [r.abstained for r in switch]
    assert {r["adapter"] for r in routed} == {"plural", "numbers", None}
    for mine, theirs in zip(routed, switch, strict=True):
        assert mine["confidence"] == pytest.approx(theirs.confidence, abs=1e-5)
        assert mine["score"] == pytest.approx(theirs.score, abs=1e-5)
    config = json.loads((exported / "router" / "router.json").read_text())
    assert config["encoder"]["path"] == "encoder" and (exported / "router" / "encoder" / "model.safetensors").is_file()


def test_readme_and_script_give_the_vllm_command(exported, tiny_model_dir):
    readme, script = (exported / "README.md").read_text(), (exported / "serve_vllm.sh").read_text()
    base = str(tiny_model_dir.resolve())
    assert f"vllm serve {base} --enable-lora --max-lora-rank 8 --max-loras 2" in readme
    for task in ("plural", "numbers"):
        assert json.dumps({"name": task, "path": f"{exported}/adapters/{task}"}) in readme
        assert f'\\"path\\": \\"$HERE/adapters/{task}\\"' in script
    assert "router.py proxy" in readme and "LoRAMoE" not in readme
    subprocess.run(["bash", "-n", str(exported / "serve_vllm.sh")], check=True)


def test_the_script_passes_one_json_argument_per_adapter_even_from_an_odd_folder(exported, tmp_path):
    """A folder with a space and a comma: each --lora-modules value stays one argument, valid JSON."""
    odd = shutil.copytree(exported, tmp_path / "my exports, v2")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "vllm").write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n')
    (fake / "vllm").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    args = subprocess.run(["bash", str(odd / "serve_vllm.sh")], env=env, capture_output=True, text=True, check=True)
    lines = args.stdout.splitlines()
    modules = [json.loads(line) for line in lines if line.startswith("{")]
    assert [m["name"] for m in modules] == ["plural", "numbers"]
    assert all(Path(m["path"]).is_dir() and "my exports, v2" in m["path"] for m in modules)


def test_router_proxy_in_front_of_an_openai_server(exported, served):  # noqa: F811
    module = load_router_module(exported / "router" / "router.py")
    proxy = module.proxy_server(module.Router.load(exported / "router"), served.url, port=0)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{proxy.server_address[1]}"
    try:
        body = {"model": "auto", "messages": [{"role": "user", "content": "What is the plural of wolf?"}]}
        r = httpx.post(f"{url}/v1/chat/completions", json=body | {"max_tokens": 2}, timeout=30)
        assert r.status_code == 200 and r.headers["x-forgetless-adapter"] == "plural"
        assert r.json()["model"] == "plural"  # the upstream saw the adapter's name, not "auto"
        r = httpx.post(f"{url}/v1/completions", json={"prompt": "hi, how are you?", "max_tokens": 2, "stream": True})
        assert r.headers["x-forgetless-adapter"] == "base" and r.text.rstrip().endswith("data: [DONE]")
        assert r.text.count("data: ") >= 3
        r = httpx.post(f"{url}/v1/chat/completions", json=body | {"model": "numbers", "max_tokens": 1})
        assert r.json()["adapter"] == "numbers" and "x-forgetless-route-confidence" not in r.headers  # not routed
        r = httpx.post(f"{url}/v1/chat/completions", json=body | {"model": "../../etc"})
        assert r.status_code == 404  # upstream errors are relayed
        assert httpx.get(f"{url}/v1/models").status_code == 200
    finally:
        proxy.shutdown()
        proxy.server_close()


def _with_loramoe(run_dir: Path, tiny_model_dir: Path, into: Path) -> Path:  # noqa: F811
    from forgetless.adapters.loramoe import LoRAMoEConfig, inject_loramoe, save_loramoe
    from forgetless.models.load import fingerprint, load_model

    run = shutil.copytree(run_dir, into)
    base, _, _ = load_model(str(tiny_model_dir))
    cfg = LoRAMoEConfig(num_experts=2, rank=2, world_experts=1, target_modules=("down_proj",))
    shutil.rmtree(run / "adapters" / "numbers")
    save_loramoe(inject_loramoe(base, cfg), cfg, run / "adapters" / "numbers", str(tiny_model_dir), fingerprint(base))
    return run


def test_loramoe_is_refused_with_a_pointer_to_forgetless_serve(run_dir, tiny_model_dir, tmp_path, capsys):  # noqa: F811
    run = _with_loramoe(run_dir, tiny_model_dir, tmp_path / "run")
    with pytest.raises(ConfigError, match="vLLM cannot serve"):
        export_vllm(run, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))  # nothing half-written
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "vllm", "--run", str(run), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and "\n" not in err and "forgetless serve --run" in err

    out = export_vllm(run, tmp_path / "out", skip_loramoe=True)
    router = json.loads((out / "router" / "router.json").read_text())
    assert {t["name"]: t["adapter"] for t in router["tasks"]} == {"plural": "plural", "numbers": None}
    assert sorted(p.name for p in (out / "adapters").iterdir()) == ["plural"]
    assert "cannot be served by vLLM" in (out / "README.md").read_text()


@pytest.mark.parametrize("case", ["missing-run", "not-a-run", "output-exists"])
def test_bad_input_is_one_line_exit_2(case, run_dir, tmp_path, capsys):  # noqa: F811
    run, output = run_dir, tmp_path / "out"
    if case == "missing-run":
        run = tmp_path / "nope"
    elif case == "not-a-run":
        run = run_dir / "adapters"
    else:
        output.mkdir()
        (output / "keep.txt").write_text("x")
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "vllm", "--run", str(run), "--output", str(output)])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and err.startswith("error: ") and "\n" not in err
    assert case != "output-exists" or (output / "keep.txt").read_text() == "x"


def _edited_copy(source: Path, into: Path, **config) -> Path:
    run = Path(shutil.copytree(source, into))
    path = run / "adapters" / "plural" / "adapter_config.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | config))
    return run


def test_a_rank_above_vllms_largest_is_refused_at_export(run_dir, tmp_path, capsys):  # noqa: F811
    run = _edited_copy(run_dir, tmp_path / "run", r=600)
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "vllm", "--run", str(run), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and "\n" not in err and "rank 600" in err and "512" in err
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_rslora_is_warned_about_for_lorax(run_dir, tmp_path, capsys):  # noqa: F811
    run = _edited_copy(run_dir, tmp_path / "run", use_rslora=True)
    out = export_vllm(run, tmp_path / "out")
    assert "LoRAX" in capsys.readouterr().err
    readme = (out / "README.md").read_text()
    assert "rsLoRA" in readme and "bf16/fp16" in readme and "reachable on the serving host" in readme
