"""Export a continual run for vLLM: plain PEFT adapters, a standalone router, and the command that serves them.

    forgetless export vllm --run runs/continual --output export/
    bash export/serve_vllm.sh                                  # vllm serve BASE --enable-lora --lora-modules ...
    python export/router/router.py proxy --upstream http://127.0.0.1:8000 --port 8001   # model "auto" routing

    from forgetless.serve.vllm.export import export_vllm
    export_vllm("runs/continual", "export/")

Output (built in a hidden staging sibling and renamed into place when complete):
- `adapters/<task>/`: `adapter_config.json` (only PEFT LoraConfig fields, base set to BASE) and
  `adapter_model.safetensors` (copied byte for byte), loadable by `peft` and by vLLM's `--lora-modules`;
- `router/`: `router.py` (depends only on torch/transformers/safetensors), `router.json` (task -> adapter
  name, encoder, score type, threshold), `switch_head.safetensors`, and `encoder/` (a copy of the MiniLM
  encoder so the router runs offline; decoder encoders are referenced by id/path unless `copy_encoder`);
- `serve_vllm.sh` and `README.md` with the exact `vllm serve` command and how to put the router in front.

LoRAMoE adapters (forgetless' own format) cannot be served by vLLM: the export stops with an error that
says so and offers `forgetless serve --run DIR`; `skip_loramoe=True` exports the other tasks and routes
the LoRAMoE tasks to the base model.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import shutil
from pathlib import Path
from typing import Any

from forgetless.adapters.loading import read_adapter_meta
from forgetless.adapters.registry import adapter_kind, method_class
from forgetless.continual.run_dir import RunDir
from forgetless.errors import ConfigError, ModelError
from forgetless.serve.registry import run_adapters
from forgetless.utils.console import err_console
from forgetless.utils.fileio import check_output_dir, publish_dir, staging_dir, write_json_atomic, write_text_atomic

TEMPLATE = Path(__file__).with_name("router_template.py")
VLLM_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # values vLLM accepts for --max-lora-rank
MINILM_HF_ID = "sentence-transformers/all-MiniLM-L6-v2"


@dataclasses.dataclass
class ExportedAdapter:
    task: str
    name: str | None  # None: not exported (LoRAMoE, routed to the base)
    rank: int = 0
    notes: list[str] = dataclasses.field(default_factory=list)


def export_vllm(
    run_dir: str | Path,
    output: str | Path,
    model: str | None = None,
    overwrite: bool = False,
    skip_loramoe: bool = False,
    copy_encoder: bool | None = None,
) -> Path:
    """Write the vLLM export of `run_dir` into `output` (atomically); returns the output path."""
    run_dir, output = Path(run_dir), Path(output)
    run = RunDir(run_dir, flag="--run")
    adapters, _ = run_adapters(run_dir)
    check_output_dir(output, overwrite, inputs=[run_dir, model or ""])
    final = output.resolve()
    stage = staging_dir(final)
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:
        exported = [_export_adapter(task, path, stage / "adapters", skip_loramoe) for task, path in adapters.items()]
        if not any(e.name for e in exported):
            raise ConfigError(f"--run {run_dir}: no adapter of this run can be served by vLLM; use forgetless serve")
        base, portable, base_note = _base_model(model, adapters)
        for e in exported:
            if e.name:
                _set_base(stage / "adapters" / e.name, portable)
        _write_router(run, stage / "router", exported, base, copy_encoder)
        write_text_atomic(stage / "serve_vllm.sh", _script(base, exported))
        (stage / "serve_vllm.sh").chmod(0o755)
        write_text_atomic(stage / "README.md", _readme(run_dir, final, base, base_note, exported))
        return publish_dir(stage, final)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def _export_adapter(task: str, path: Path, into: Path, skip_loramoe: bool) -> ExportedAdapter:
    config, manifest = read_adapter_meta(path)
    method = method_class(adapter_kind(config, manifest))
    if not method.vllm_servable:
        if not skip_loramoe:
            raise ConfigError(
                f"task {task!r}: {path} is a {method.title} adapter, which vLLM cannot serve; serve this run with "
                "`forgetless serve --run DIR` instead, or pass --skip-loramoe to export the other tasks"
            )
        return ExportedAdapter(task, None, notes=[f"{method.title}: not servable by vLLM, routed to the base model"])
    if str(config.get("peft_type", "")).upper() != "LORA":
        raise ModelError(f"task {task!r}: {path} is a {config.get('peft_type')!r} adapter; only LoRA exports")
    weights = path / "adapter_model.safetensors"
    if not weights.is_file():
        raise ModelError(f"task {task!r}: {weights} is missing (a .bin adapter? re-save it with safetensors)")
    target = into / task
    target.mkdir(parents=True)
    shutil.copyfile(weights, target / "adapter_model.safetensors")
    clean = _peft_config(config)
    write_json_atomic(target / "adapter_config.json", clean)
    ranks = [int(clean.get("r", 8)), *map(int, (clean.get("rank_pattern") or {}).values())]
    if max(ranks) > VLLM_RANKS[-1]:
        shutil.rmtree(target)
        raise ConfigError(
            f"task {task!r}: {path} has LoRA rank {max(ranks)}, above the largest --max-lora-rank vLLM accepts "
            f"({VLLM_RANKS[-1]}); retrain it with --rank <= {VLLM_RANKS[-1]}, or serve it with `forgetless serve`"
        )
    notes = []
    if clean.get("use_rslora"):
        notes.append("rsLoRA: vLLM scales it right; LoRAX pins a peft without use_rslora and would mis-scale it")
        err_console.print(
            f"[yellow]warning:[/yellow] task {task!r} uses rsLoRA (use_rslora): vLLM applies its scaling, but "
            "LoRAX pins an older peft without use_rslora and would silently mis-scale this adapter"
        )
    if clean.get("use_dora"):
        notes.append("DoRA: vLLM does not support DoRA adapters")
    if clean.get("modules_to_save"):
        notes.append(f"modules_to_save {clean['modules_to_save']}: vLLM ignores or refuses these")
    return ExportedAdapter(task, task, max(ranks), notes)


def _peft_config(config: dict[str, Any]) -> dict[str, Any]:
    """Only the keys peft's LoraConfig knows (forgetless' extra metadata dropped)."""
    from peft import LoraConfig

    known = {f.name for f in dataclasses.fields(LoraConfig)} | {"peft_type", "task_type", "auto_mapping"}
    return {k: v for k, v in config.items() if k in known}


def _set_base(directory: Path, base: str) -> None:
    path = directory / "adapter_config.json"
    config = json.loads(path.read_text())
    write_json_atomic(path, config | {"base_model_name_or_path": base})


def _base_model(model: str | None, adapters: dict[str, Path]) -> tuple[str, str, str]:
    """The base model to give `vllm serve` (a local path or HF id), the portable id for the adapters'
    configs (the hub id of the embedded model, never a machine-local cache path), and a note."""
    from forgetless.models.embedded import EMBEDDED_HUB_ID, EMBEDDED_ID, embedded_model_dir
    from forgetless.models.load import hub_like, resolve_model

    recorded = None
    for path in adapters.values():
        config, manifest = read_adapter_meta(path)
        recorded = recorded or manifest.get("base_model") or config.get("base_model_name_or_path")
    spec = model if model is not None else recorded
    if spec in (None, "", "embedded", EMBEDDED_ID):
        note = (
            f"the embedded SmolLM2-135M-Instruct, de-quantized from GGUF (the exact weights the adapters were "
            f"trained on); `{EMBEDDED_HUB_ID}` from the HF hub is the original and differs slightly"
        )
        return str(embedded_model_dir()), EMBEDDED_HUB_ID, note
    _, path = resolve_model(spec)
    portable = spec if hub_like(spec) else path
    return path, portable, "recorded in the adapters" if model is None else "given with --model"


def _write_router(run: RunDir, into: Path, exported: list[ExportedAdapter], base: str, copy: bool | None) -> None:
    from forgetless.adapters.switch.switch import HEAD_FILE

    manifest, sdir = run.switch_manifest(), run.switch_dir
    if not manifest.get("head"):
        raise ConfigError(f"{sdir}: the switch has no trained head; nothing to export")
    into.mkdir(parents=True)
    shutil.copyfile(TEMPLATE, into / "router.py")
    shutil.copyfile(sdir / HEAD_FILE, into / "switch_head.safetensors")
    names = {e.task: e.name for e in exported}
    tasks = [{"id": t["id"], "name": t["name"], "adapter": names.get(t["name"])} for t in manifest["tasks"]]
    head = manifest["head"]
    write_json_atomic(
        into / "router.json",
        {
            "format": "forgetless-router",
            "version": 1,
            "encoder": _encoder(manifest["encoder"], into, copy),
            "score": manifest["score"],
            "threshold": manifest["threshold"],
            "head": {"in_dim": head["in_dim"], "hidden": head["hidden"], "num_tasks": head["num_tasks"]},
            "tasks": tasks,
            "base_model": base,
        },
    )


def _encoder(spec: str, into: Path, copy: bool | None) -> dict[str, Any]:
    """router.json's encoder entry; copies the weights into `into/encoder` when asked (default: MiniLM only)."""
    from forgetless.adapters.switch.encoder import minilm_dir
    from forgetless.models.load import resolve_model

    kind, _, target = spec.partition(":")
    if spec == "minilm":
        source, entry = minilm_dir(), {"kind": "minilm", "max_length": 256, "padding_side": "right"}
        fallback = MINILM_HF_ID
    elif kind in ("last-token", "hidden-state") and target:
        _, path = resolve_model(target)
        source, fallback = Path(path), path
        entry = {"kind": kind, "max_length": 512, "padding_side": "left"}
    else:
        raise ConfigError(
            f"switch encoder {spec!r} cannot be exported; the router knows minilm, last-token, hidden-state"
        )
    if copy if copy is not None else spec == "minilm":
        if not source.is_dir():
            raise ConfigError(f"switch encoder {spec!r} is not a local directory, so it cannot be copied")
        shutil.copytree(source, into / "encoder")
        return entry | {"path": "encoder"}
    return entry | {"path": fallback}


def _vllm_rank(rank: int) -> int:
    return next((r for r in VLLM_RANKS if r >= rank), rank)


def vllm_command(base: str, exported: list[ExportedAdapter], adapters_dir: str | None = None) -> str:
    """`vllm serve BASE --enable-lora --lora-modules '{"name": ..., "path": ...}' ...` for the exported
    adapters, quoted for the shell: vLLM's JSON form, so a path with a space or a comma stays one
    argument. `adapters_dir` None: paths under "$HERE/adapters" (the script's own folder, expanded)."""
    served = [e for e in exported if e.name]
    modules = " \\\n    ".join(_module_argument(e.name, adapters_dir) for e in served)
    rank = _vllm_rank(max(e.rank for e in served))
    return (
        f"vllm serve {shlex.quote(base)} --enable-lora --max-lora-rank {rank} --max-loras {len(served)} \\\n"
        f"  --lora-modules \\\n    {modules}"
    )


def _module_argument(name: str, adapters_dir: str | None) -> str:
    if adapters_dir is not None:
        return shlex.quote(json.dumps({"name": name, "path": f"{adapters_dir}/{name}"}))
    # inside double quotes so that $HERE expands; adapter names are [A-Za-z0-9_-] only
    return f'"{{\\"name\\": \\"{name}\\", \\"path\\": \\"$HERE/adapters/{name}\\"}}"'


def _script(base: str, exported: list[ExportedAdapter]) -> str:
    command = vllm_command(base, exported)
    return (
        "#!/usr/bin/env bash\n# Serve the exported task adapters with vLLM (written by `forgetless export vllm`).\n"
        'set -euo pipefail\nHERE="$(cd "$(dirname "$0")" && pwd)"\n'
        f'{command} \\\n  --host 127.0.0.1 --port "${{PORT:-8000}}" "$@"\n'
    )


def _readme(run_dir: Path, final: Path, base: str, base_note: str, exported: list[ExportedAdapter]) -> str:
    rows = "\n".join(
        f"| {e.task} | {e.name or '(not exported: base model)'} | {e.rank or '-'} | {'; '.join(e.notes) or '-'} |"
        for e in exported
    )
    skipped = [e.task for e in exported if not e.name]
    moe = (
        f"\n**LoRAMoE tasks ({', '.join(skipped)}) cannot be served by vLLM** (LoRAMoE is forgetless' own adapter "
        "format, not PEFT-native). The router sends their prompts to the base model here. To serve them, use\n"
        f"`forgetless serve --run {run_dir}` instead, which serves LoRAMoE and LoRA alike.\n"
        if skipped
        else ""
    )
    return f"""# vLLM export of `{run_dir}`

Written by `forgetless export vllm`. Base model: `{base}` ({base_note}).

| task | adapter name | rank | notes |
|---|---|---|---|
{rows}
{moe}
## 1. Serve the adapters with vLLM

```bash
{vllm_command(base, exported, str(final / "adapters"))}
```

or `bash serve_vllm.sh` (the same command with paths relative to this directory; `PORT=8000` by default).
Each adapter is then a model name of vLLM's OpenAI API: `"model": "<adapter name>"`; the base model is
`"model": "{base}"`. The adapters are plain PEFT (`peft.PeftModel.from_pretrained(base, "adapters/<name>")`).

Before you serve:
- **The base must be reachable on the serving host**: `{base}` above. Each adapter's `adapter_config.json`
  names its portable base (a hub id, not a path of the machine that trained it); on another host, give
  `vllm serve` that id or a local copy of the same weights.
- **vLLM serves in bf16/fp16**, so its answers can differ slightly from `forgetless serve` or
  `forgetless generate` in fp32 (greedy decoding diverges where two tokens are nearly tied).
- **rsLoRA adapters** (`use_rslora: true`) are scaled right by vLLM and peft; LoRAX pins an older peft
  without `use_rslora` and would silently mis-scale them.

## 2. Put the router in front

`router/router.py` needs only torch, transformers and safetensors. It maps a prompt to an adapter name
with the run's switch (same encoder, same head, same abstain threshold: a prompt the switch does not
recognise goes to the base model).

```bash
python router/router.py route "What is the plural of goose?"      # {{"adapter": ..., "confidence": ...}}
python router/router.py proxy --upstream http://127.0.0.1:8000 --port 8001
curl 127.0.0.1:8001/v1/chat/completions -H 'content-type: application/json' \\
  -d '{{"model": "auto", "messages": [{{"role": "user", "content": "What is the plural of goose?"}}]}}'
```

The proxy rewrites `"model": "auto"` (or a missing model) to the routed adapter's name, or to the base
model, forwards the request to vLLM and streams the answer back with an `x-forgetless-adapter` header.
From Python: `from router import Router; Router.load("router").route([prompt])[0]["adapter"]` (None =
base model), then call vLLM with that model name. Requests that name a model explicitly pass through.
"""
