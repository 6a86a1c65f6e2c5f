"""One command that a task lent a GPU runs once (about 5-8 minutes on an H200): training, LoRAMoE,
generation and serving figures on randomly initialised models, then the unit tests that make sense on CUDA.

    python3 benchmarks/gpu_check.py --output gpu_out            # on the GPU machine (see benchmarks/README.md)
    .venv/bin/python benchmarks/gpu_check.py --smoke --output /tmp/gpu_smoke   # CPU, tiny shapes (a test runs it)

Nothing is downloaded: models are built from configs (tiny, SmolLM2-135M-shaped, Llama-3-8B-shaped, bf16
weights, LoRA in fp32) and prompts are words of a synthetic tokenizer. Figures:
- LoRA training tokens/s and MFU (against ~790 TFLOP/s bf16) per shape;
- LoRAMoE (N=6, r=4) vs LoRA r=4 vs the official per-expert loop: step time and peak memory;
- batched generation vs a one-prompt loop (tokens/s); shared-prefix probing vs a one-prompt loop;
- mixed-adapter batches (3 LoRAs in one batch) vs one adapter at a time.
Writes `gpu_check.json` and `gpu_check.md` into --output; each section that fails records its error and
the rest goes on. Every ratio is measured side by side in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import gpu_parts as parts

ROOT = Path(__file__).resolve().parents[1]
CUDA_TESTS = [  # tiny-random-Llama tests whose training/generation paths run on CUDA when it is there
    "tests/unit/test_loramoe_layer.py",
    "tests/unit/test_loramoe_balance.py",
    "tests/unit/test_loramoe_model.py",
    "tests/unit/test_anchor_kl.py",
    "tests/unit/test_engine_generate.py",
    "tests/unit/test_engine_prefix.py",
    "tests/unit/test_adapters_mixed.py",
    "tests/unit/test_train.py",
    "tests/unit/test_train_loramoe.py",
]


def plan(smoke: bool) -> dict:
    """Sizes per section: the GPU run, or tiny shapes that finish in seconds on a CPU."""
    if smoke:
        return {
            "train": [("tiny", 2, 16, 2)],
            "loramoe": ("tiny", 2, 16, 2),
            "gen": ("tiny", 4, 4, 2),
            "prefix": ("tiny", 4, 24, 2),
            "mixed": ("tiny", 6),
        }
    return {
        "train": [("tiny", 8, 128, 5), ("smollm2-135m", 16, 512, 5), ("llama-3-8b", 4, 1024, 5)],
        "loramoe": ("smollm2-135m", 8, 512, 5),
        "gen": ("smollm2-135m", 64, 64, 8),
        "prefix": ("smollm2-135m", 128, 600, 8),
        "mixed": ("smollm2-135m", 48),
    }


def run_sections(device: str, sizes: dict) -> dict:
    results: dict = {}

    def section(name, fn):
        start = time.perf_counter()
        try:
            results[name] = fn()
        except Exception as exc:  # a section that fails is recorded; the others still run
            results[name] = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-2000:]}
        print(f"[{time.perf_counter() - start:6.1f} s] {name}: {json.dumps(results[name], default=str)[:300]}")
        if device.startswith("cuda"):
            torch.cuda.empty_cache()

    for shape, batch, seq, steps in sizes["train"]:
        section(f"train_lora/{shape}", lambda s=shape, b=batch, t=seq, n=steps: _train(s, device, b, t, n))
    shape, batch, seq, steps = sizes["loramoe"]
    section(f"loramoe/{shape}", lambda: parts.loramoe_arms(parts.SHAPES[shape], device, batch, seq, steps))
    shape, prompts, tokens, loop = sizes["gen"]
    section(f"generation/{shape}", lambda: _with_model(shape, device, parts.generation, prompts, tokens, loop))
    shape, prompts, words, loop = sizes["prefix"]
    section(f"shared_prefix/{shape}", lambda: _with_model(shape, device, parts.shared_prefix, prompts, words, loop))
    shape, prompts = sizes["mixed"]
    section(f"mixed_adapters/{shape}", lambda: _with_model(shape, device, parts.mixed_adapters, prompts))
    return results


def _train(shape: str, device: str, batch: int, seq: int, steps: int) -> dict:
    model = parts.lora_model(parts.build_model(parts.SHAPES[shape], device))
    return parts.train_steps(model, batch, seq, steps)


def _with_model(shape: str, device: str, fn, *args) -> dict:
    spec = parts.SHAPES[shape]
    model = parts.build_model(spec, device)
    return fn(model, parts.word_tokenizer(spec.vocab), device, *args)


def run_tests(output: Path, timeout: int) -> dict:
    """The CUDA-relevant unit tests, on this machine (the tiny models train on CUDA when present)."""
    paths = [str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--junitxml", str(output / "tests.xml")]
    try:
        done = subprocess.run(
            [*command, *CUDA_TESTS], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"error": f"tests did not finish in {timeout} s"}
    tail = (done.stdout + done.stderr).strip().splitlines()
    return {"returncode": done.returncode, "summary": tail[-1] if tail else "", "tail": "\n".join(tail[-30:])}


def markdown(report: dict) -> str:
    lines = [f"# GPU check ({report['device']}, torch {report['torch']}, {report['date']})", ""]
    for name, value in report["sections"].items():
        lines.append(f"## {name}\n")
        if "error" in value:
            lines.append(f"failed: `{value['error']}`\n")
            continue
        rows = value.items() if not all(isinstance(v, dict) for v in value.values()) else []
        lines += [f"- {k}: {_fmt(v)}" for k, v in rows]
        for arm, figures in value.items() if not rows else []:
            lines.append(f"- {arm}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in figures.items()))
        lines.append("")
    if "tests" in report:
        lines += ["## unit tests on this device\n", f"`{report['tests'].get('summary') or report['tests']}`", ""]
    return "\n".join(lines)


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on whatever device (CI runs this)")
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--test-timeout", type=int, default=240)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    args.output.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    report = {"device": name, "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "smoke": args.smoke}
    report["threads"] = torch.get_num_threads()
    report["sections"] = run_sections(device, plan(args.smoke))
    if not args.skip_tests and not args.smoke:
        report["tests"] = run_tests(args.output, args.test_timeout)
    (args.output / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (args.output / "gpu_check.md").write_text(markdown(report) + "\n")
    failed = [k for k, v in report["sections"].items() if "error" in v]
    print(f"wrote {args.output / 'gpu_check.md'}; sections failed: {failed or 'none'}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
