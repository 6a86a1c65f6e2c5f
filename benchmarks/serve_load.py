"""Serving load: requests/s and p50/p95 latency of `forgetless serve` at several concurrencies, batching on vs off.

    .venv/bin/python benchmarks/serve_load.py                          # embedded model + 3 synthetic adapters
    .venv/bin/python benchmarks/serve_load.py --run runs/continual     # a continual run (adds model "auto")
    .venv/bin/python benchmarks/serve_load.py --concurrency 1,4 --requests 8 --max-tokens 8   # quick smoke

The server is the real `forgetless serve` command in a subprocess on 127.0.0.1 (a free port), once with
dynamic batching (`--max-batch 32 --batch-window-ms 5`) and once with `--no-batching` (one request at a
time). At each concurrency C, C clients send chat requests back to back until `--requests` (default
max(32, 4C)) have been answered; requests cycle through the models (base and every adapter, and `auto`
with --run), so batches mix adapters. Greedy decoding with the same prompts in both modes, so both do
the same work. Reported: requests/s, p50/p95 latency, the server's mean batch size, and the ratio of
batched to unbatched requests/s. Without --run, the adapters are synthetic (random LoRA weights, rank 8
on all linear layers: the compute of a trained adapter, built in seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

PROMPTS = [
    "What is the capital of France?",
    "Write the number 4817 in words.",
    "What is the plural of goose?",
    "Translate to French: the old teacher is reading a red book.",
    "Name three primary colours.",
    "What is 12 times 7?",
    "Give a synonym of happy.",
    "Who wrote Romeo and Juliet?",
    "What is the plural of cactus?",
    "Write the number 90210 in words.",
    "What is the boiling point of water in Celsius?",
    "Name a planet with rings.",
]


def synthetic_adapters(directory: Path, names: list[str]) -> dict[str, Path]:
    """Rank-8 LoRA adapters on all linear layers of the embedded model, with small random B (distinct outputs)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from forgetless.models.load import load_model

    adapters = {}
    for seed, name in enumerate(names):
        model, _, _ = load_model(None, device="cpu")
        torch.manual_seed(seed)
        config = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM")
        peft_model = get_peft_model(model, config)
        with torch.no_grad():
            for param_name, param in peft_model.named_parameters():
                if "lora_B" in param_name:
                    param.normal_(0, 0.002)
        peft_model.save_pretrained(directory / name)
        (directory / name / "forgetless.json").write_text(json.dumps({"base_model": "embedded"}))
        adapters[name] = directory / name
    return adapters


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(source: list[str], batching: bool, max_tokens: int, port: int) -> subprocess.Popen:
    args = [sys.executable, "-m", "forgetless.cli.app", "serve", *source, "--port", str(port)]
    args += ["--max-tokens", str(max_tokens), "--max-queue", "4096", "--log-level", "warning"]
    args += ["--max-batch", "32", "--batch-window-ms", "5"] if batching else ["--no-batching"]
    return subprocess.Popen(args, env=os.environ | {"TOKENIZERS_PARALLELISM": "false"})


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with code {process.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit("the server did not become healthy in time")


async def load(url: str, models: list[str], concurrency: int, total: int, max_tokens: int) -> dict:
    """`concurrency` clients send requests back to back until `total` are done."""
    latencies: list[float] = []
    errors = 0
    issued = 0

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal issued, errors
        while issued < total:
            index = issued
            issued += 1
            body = {
                "model": models[index % len(models)],
                "messages": [{"role": "user", "content": PROMPTS[index % len(PROMPTS)]}],
                "max_tokens": max_tokens,
                "temperature": 0,
            }
            started = time.perf_counter()
            response = await http.post("/v1/chat/completions", json=body)
            latencies.append(time.perf_counter() - started)
            errors += response.status_code != 200

    limits = httpx.Limits(max_connections=concurrency + 4)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:
        before = (await http.get("/metrics", params={"format": "json"})).json()
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        wall = time.perf_counter() - started
        after = (await http.get("/metrics", params={"format": "json"})).json()
    batches = after["batches"] - before["batches"]
    rows = after["mean_batch_size"] * after["batches"] - before["mean_batch_size"] * before["batches"]
    latencies.sort()
    return {
        "concurrency": concurrency,
        "requests": total,
        "errors": errors,
        "wall_s": wall,
        "req_per_s": total / wall,
        "p50_s": latencies[len(latencies) // 2],
        "p95_s": latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))],
        "mean_batch": rows / batches if batches else 0.0,
    }


def run_mode(source, models, batching, levels, requests, max_tokens) -> list[dict]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_server(source, batching, max_tokens, port)
    try:
        wait_healthy(url, process)
        asyncio.run(load(url, models, 2, 4, max_tokens))  # warm-up, not reported
        results = []
        for concurrency in levels:
            total = requests or max(32, 4 * concurrency)
            result = asyncio.run(load(url, models, concurrency, total, max_tokens))
            print(f"  {'batched' if batching else 'one at a time'} C={concurrency}: {json.dumps(result)}", flush=True)
            results.append(result)
        return results
    finally:
        process.terminate()
        process.wait(30)


def table(batched: list[dict], single: list[dict]) -> str:
    lines = [
        "| concurrency | batched req/s | p50 s | p95 s | mean batch | one-at-a-time req/s | p50 s | p95 s | ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for b, s in zip(batched, single, strict=True):
        ratio = b["req_per_s"] / s["req_per_s"]
        lines.append(
            f"| {b['concurrency']} | {b['req_per_s']:.2f} | {b['p50_s']:.2f} | {b['p95_s']:.2f} "
            f"| {b['mean_batch']:.1f} | {s['req_per_s']:.2f} | {s['p50_s']:.2f} | {s['p95_s']:.2f} | **{ratio:.2f}×** |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a continual run directory (default: synthetic adapters)")
    parser.add_argument("--adapters", type=int, default=3, help="synthetic adapters to build without --run")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated client counts")
    parser.add_argument("--requests", type=int, default=0, help="requests per level (default max(32, 4C))")
    parser.add_argument("--max-tokens", type=int, default=32, help="max_tokens of every request")
    parser.add_argument("--output", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        if args.run:
            from forgetless.serve.registry import run_adapters

            names = list(run_adapters(args.run)[0])
            source, models = ["--run", str(args.run)], ["auto", "base", *names]
        else:
            print(f"building {args.adapters} synthetic adapters ...", flush=True)
            adapters = synthetic_adapters(Path(tmp), [f"task{i}" for i in range(args.adapters)])
            source = [arg for name, path in adapters.items() for arg in ("--adapter", f"{name}={path}")]
            models = ["base", *adapters]
        batched = run_mode(source, models, True, levels, args.requests, args.max_tokens)
        single = run_mode(source, models, False, levels, args.requests, args.max_tokens)
    print(f"\nmodels cycled: {', '.join(models)}; max_tokens {args.max_tokens}; greedy\n")
    print(table(batched, single))
    if args.output:
        args.output.write_text(json.dumps({"batched": batched, "one_at_a_time": single}, indent=2) + "\n")


if __name__ == "__main__":
    main()
