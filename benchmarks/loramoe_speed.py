"""LoRAMoE training speed: PEFT LoRA vs our stacked LoRAMoE vs a per-expert loop, side by side in one run.

    .venv/bin/python benchmarks/loramoe_speed.py [--steps 3] [--rounds 2] [--rank 4] [--experts 6] [--threads 1]

(--threads 1 keeps a shared, busy machine from oversubscribing torch's thread pool.)

Model arms (embedded SmolLM2-135M-Instruct, fp32 weights, bf16 autocast where
`resolve_precision("auto", "cpu")` says bf16, else fp32), each a full fwd+bwd+AdamW step on the same
fixed batch of real text (chat-formatted countryinfo QA, tokenized with the model's tokenizer and
concatenated into B x T tokens, loss on every token), all adapting gate_proj/up_proj/down_proj:
- lora: PEFT LoRA, rank r, alpha 32, dropout 0.05;
- loramoe: ours (`inject_loramoe`), N experts of rank r, stacked/fused (three matmuls, no loop);
- loop: the official LoRAMoE / MoE-PEFT design (`LoopLoRAMoELinear` below): N separate
  `nn.Linear` A_i, B_i pairs plus a router, `sum_i g_i * B_i(A_i(dropout(x)))` in a Python loop with
  one dropout call per expert as in the official code. Its weights are copied from a freshly
  injected `LoRAMoELinear`, so init and routing are identical and only the expert computation differs.
Each arm runs in its own subprocess (this script with `--arm X`), so its peak RSS (ru_maxrss) is its
own; arms alternate (lora, loramoe, loop, lora, ...) over --rounds rounds. Step time is the median of
the timed steps after --warmup untimed ones; the best (min) round per arm is reported.

Layer micro-benchmark (as in the issue): T=512 tokens through one frozen 576->1536 linear with
N=6, r=4 experts, fwd+bwd (input requires grad, as for a layer in the middle of the network), for a
single rank-r PEFT LoRA on the same linear, the loop and the stacked layer; median ms per step.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
from loop_loramoe import LoopLoRAMoELinear
from torch import nn

from forgetless.adapters.loramoe import LoRAMoEConfig, LoRAMoELinear, inject_loramoe, loramoe_layers
from forgetless.knowledge.countries import country_facts
from forgetless.models.load import load_model
from forgetless.models.runtime import resolve_precision

ARMS = ("lora", "loramoe", "loop")
TARGETS = ("gate_proj", "up_proj", "down_proj")
ALPHA = 32
DROPOUT = 0.05


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def real_batch(tokenizer, batch: int, seq: int) -> torch.Tensor:
    """[batch, seq] token ids of chat-formatted countryinfo QA, concatenated (real text, no padding)."""
    ids: list[int] = []
    for fact in country_facts():
        messages = [
            {"role": "user", "content": fact.question},
            {
                "role": "assistant",
                "content": f"The {fact.relation.replace('_', ' ')} of {fact.subject} is {fact.object}.",
            },
        ]
        text = tokenizer.apply_chat_template(messages, tokenize=False)
        ids.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        if len(ids) >= batch * seq:
            break
    if len(ids) < batch * seq:
        raise SystemExit(f"only {len(ids)} tokens of QA text for a {batch}x{seq} batch")
    return torch.tensor(ids[: batch * seq]).view(batch, seq)


def build_arm(arm: str, model: nn.Module, rank: int, experts: int) -> nn.Module:
    if arm == "lora":
        from peft import LoraConfig, get_peft_model

        cfg = LoraConfig(
            r=rank, lora_alpha=ALPHA, lora_dropout=DROPOUT, target_modules=list(TARGETS), task_type="CAUSAL_LM"
        )
        return get_peft_model(model, cfg)
    cfg = LoRAMoEConfig(num_experts=experts, rank=rank, alpha=ALPHA, dropout=DROPOUT, target_modules=TARGETS)
    model = inject_loramoe(model, cfg)
    if arm == "loop":
        for name, layer in loramoe_layers(model):
            _set_module(model, name, LoopLoRAMoELinear.from_stacked(layer, DROPOUT))
    return model


def run_arm(args) -> dict:
    """One arm in this (fresh) process: build, train --warmup + --steps steps, report times and RSS."""
    torch.manual_seed(0)
    bf16 = resolve_precision("auto", "cpu") == "bf16"
    model, tokenizer, _ = load_model(None, device="cpu")
    input_ids = real_batch(tokenizer, args.batch_size, args.seq_len)
    model = build_arm(args.arm, model, args.rank, args.experts)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times, losses = [], []
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=input_ids, labels=input_ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
        losses.append(float(loss.detach()))
    return {
        "arm": args.arm,
        "step_s": statistics.median(times),
        "trainable": sum(p.numel() for p in params),
        "rss_before_mib": rss_before / 1024,
        "rss_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "first_loss": losses[0],
        "last_loss": losses[-1],
    }


def spawn_arm(arm: str, args) -> dict:
    cmd = [sys.executable, __file__, "--arm", arm, "--warmup", str(args.warmup), "--steps", str(args.steps)]
    cmd += ["--rank", str(args.rank), "--experts", str(args.experts)]
    cmd += ["--batch-size", str(args.batch_size), "--seq-len", str(args.seq_len), "--threads", str(args.threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def micro_layers(rank: int, experts: int) -> dict[str, nn.Module]:
    """The three layer variants on one frozen 576 -> 1536 linear (same base weights)."""
    from peft import LoraConfig, inject_adapter_in_model

    torch.manual_seed(0)
    base = nn.Linear(576, 1536, bias=False)
    base.requires_grad_(False)
    holder = nn.Module()
    holder.proj = nn.Linear(576, 1536, bias=False)
    holder.proj.load_state_dict(base.state_dict())
    holder = inject_adapter_in_model(
        LoraConfig(r=rank, lora_alpha=ALPHA, lora_dropout=DROPOUT, target_modules=["proj"]), holder
    )
    for name, p in holder.named_parameters():
        p.requires_grad_("lora_" in name)
    stacked = LoRAMoELinear(base, experts, rank, ALPHA, DROPOUT)
    loop = LoopLoRAMoELinear.from_stacked(stacked, DROPOUT)
    for layer in (stacked, loop):  # non-zero B so no path is trivially zero
        for name, p in layer.named_parameters():
            if "lora_B" in name:
                nn.init.normal_(p, std=0.02)
    return {"lora": holder.proj, "loramoe": stacked, "loop": loop}


def micro_round(layers: dict[str, nn.Module], x: torch.Tensor, iters: int, bf16: bool) -> dict[str, float]:
    """Median ms per fwd+bwd step of each layer, the layers interleaved step by step."""
    times: dict[str, list[float]] = {k: [] for k in layers}
    for it in range(iters + 3):
        for name, layer in layers.items():
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                y = layer(x)
            y.float().square().mean().backward()
            elapsed = time.perf_counter() - start
            layer.zero_grad(set_to_none=True)
            x.grad = None
            if it >= 3:
                times[name].append(elapsed * 1000)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per arm and round")
    parser.add_argument("--warmup", type=int, default=1, help="untimed training steps first")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--experts", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--threads", type=int, default=0, help="torch threads per process (0: torch's default)")
    parser.add_argument("--micro-iters", type=int, default=60, help="timed steps per layer and round")
    parser.add_argument("--arm", choices=ARMS, help=argparse.SUPPRESS)  # internal: run one arm, print JSON
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.arm:
        print(json.dumps(run_arm(args)), flush=True)
        return

    precision = resolve_precision("auto", "cpu")
    bf16 = precision == "bf16"
    print(f"precision: {precision} ({'bf16 autocast' if bf16 else 'fp32'}), threads {torch.get_num_threads()}")
    print(f"model arms: B={args.batch_size} T={args.seq_len} r={args.rank} N={args.experts}, targets {TARGETS}")
    results: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    for round_index in range(args.rounds):
        for arm in ARMS:
            res = spawn_arm(arm, args)
            results[arm].append(res)
            print(
                f"round {round_index + 1} {arm:8s} {res['step_s']:6.3f} s/step  peak RSS {res['rss_peak_mib']:6.0f} MiB"
                f"  loss {res['first_loss']:.4f} -> {res['last_loss']:.4f}",
                flush=True,
            )

    layers = micro_layers(args.rank, args.experts)
    x = torch.randn(512, 576, requires_grad=True)
    micro: dict[str, list[float]] = {k: [] for k in layers}
    for round_index in range(args.rounds):
        ms = micro_round(layers, x, args.micro_iters, bf16)
        for k, v in ms.items():
            micro[k].append(v)
        print(f"micro round {round_index + 1}: " + ", ".join(f"{k} {v:.2f} ms" for k, v in ms.items()), flush=True)

    best = {arm: min(r["step_s"] for r in results[arm]) for arm in ARMS}
    print(
        f"\n### Model: SmolLM2-135M, B={args.batch_size} T={args.seq_len}, {precision}, best of {args.rounds} rounds\n"
    )
    print("| arm | s/step | vs LoRA | trainable params | peak RSS (MiB) | RSS before training (MiB) |")
    print("|---|---|---|---|---|---|")
    for arm in ARMS:
        peak = max(r["rss_peak_mib"] for r in results[arm])
        before = max(r["rss_before_mib"] for r in results[arm])
        trainable = results[arm][0]["trainable"]
        print(
            f"| {arm} | {best[arm]:.3f} | {best[arm] / best['lora']:.2f}x | {trainable:,} | {peak:.0f} | {before:.0f} |"
        )
    ratios = f"LoRAMoE/LoRA {best['loramoe'] / best['lora']:.2f}x, loop/LoRAMoE {best['loop'] / best['loramoe']:.2f}x"
    print(f"\n{ratios} (best rounds)")
    for i in range(args.rounds):
        lo, st, lp = (results[a][i]["step_s"] for a in ARMS)
        print(f"round {i + 1}: LoRAMoE/LoRA {st / lo:.2f}x, loop/LoRAMoE {lp / st:.2f}x")

    mbest = {k: min(v) for k, v in micro.items()}
    print(f"\n### Layer micro-benchmark: T=512, 576->1536, N={args.experts}, r={args.rank}, fwd+bwd, {precision}\n")
    print("| layer | ms/step | vs LoRA |\n|---|---|---|")
    for k in ARMS:
        print(f"| {k} | {mbest[k]:.2f} | {mbest[k] / mbest['lora']:.2f}x |")
    print(
        f"\nLoRAMoE/LoRA {mbest['loramoe'] / mbest['lora']:.2f}x, loop/LoRAMoE {mbest['loop'] / mbest['loramoe']:.2f}x"
    )
    for i in range(args.rounds):
        lo, st, lp = (micro[a][i] for a in ARMS)
        print(f"micro round {i + 1}: LoRAMoE/LoRA {st / lo:.2f}x, loop/LoRAMoE {lp / st:.2f}x")


if __name__ == "__main__":
    main()
