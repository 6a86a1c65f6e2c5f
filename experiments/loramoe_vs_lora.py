"""Does LoRAMoE + LBC keep world knowledge better than LoRA as task data grows? (Dou et al., ACL 2024)

    .venv/bin/python experiments/loramoe_vs_lora.py [--world 64] [--scales 1 4 16] [--quick]

On the embedded SmolLM2-135M-Instruct, on the CPU:
1. Probe the base closed-book on real countryinfo facts (capital, region, subregion, currency, official
   language); keep those it answers correctly (greedy, whole-word alias match). Part of them is the
   `world` training data, the rest is held out: retention = closed-book accuracy on the held-out known
   facts after training (the base scores 100% there by construction).
2. `task` data from three built-in tasks made of real package data (num2words, inflect plurals, CLDR
   country names), grown to 1x, 4x, 16x the world data; task score = exact match on held-out items.
3. Three arms per scale: plain LoRA (r=24 on the FFN, same alpha/r scale as LoRAMoE, about the same
   trainable parameters), LoRAMoE with beta=0, LoRAMoE + LBC (beta=delta=0.1). Same data, lr, epochs.
Writes experiments/results/loramoe_vs_lora/{REPORT.md, results.json, tradeoff.png, router_usage.md}.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from forgetless.adapters.loading import load_with_adapter
from forgetless.data.chat import prompt_messages
from forgetless.data.tasks import build_task
from forgetless.engine.generate import generate_texts
from forgetless.engine.sampling import SamplingConfig
from forgetless.eval.metrics import score
from forgetless.knowledge import is_correct
from forgetless.knowledge.countries import country_facts
from forgetless.train.config import TrainConfig
from forgetless.train.run import train
from forgetless.utils.fileio import write_json_atomic, write_jsonl_atomic

RELATIONS = ("capital", "region", "subregion", "currency", "official_language")
TASKS = ("num2words", "plural", "translate_country")
ARMS = {
    "lora": dict(method="lora", rank=24, alpha=192.0, target_modules=["gate_proj", "up_proj", "down_proj"]),
    "loramoe_beta0": dict(method="loramoe", lbc_beta=0.0),
    "loramoe_lbc": dict(method="loramoe", lbc_beta=0.1, lbc_delta=0.1),
}
OUT = Path(__file__).parent / "results" / "loramoe_vs_lora"


def answer_all(model, tokenizer, prompts: list[str], max_new_tokens: int = 24) -> list[str]:
    convs = [prompt_messages(p) for p in prompts]
    sampling = SamplingConfig(max_new_tokens=max_new_tokens)
    return [a[0] for a in generate_texts(model, tokenizer, convs, sampling, batch_size=32)]


def known_facts(work: Path) -> list[dict]:
    """Country facts the base model answers correctly closed-book (cached in work/known.json)."""
    cache = work / "known.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    facts = [f for f in country_facts() if f.relation in RELATIONS]
    model, tokenizer, _ = load_with_adapter(None, None)
    answers = answer_all(model, tokenizer, [f.question for f in facts])
    known = [
        {"prompt": f.question, "response": f.object, "answers": f.answers, "relation": f.relation}
        for f, a in zip(facts, answers, strict=True)
        if is_correct(a, f.answers, mode="substring")
    ]
    print(f"base knows {len(known)}/{len(facts)} probed facts")
    write_json_atomic(cache, known)
    return known


def build_sets(known: list[dict], n_world: int, scales: list[int], n_eval_task: int, seed: int = 0):
    rng = random.Random(seed)
    known = known[:]
    rng.shuffle(known)
    world_train = [{"prompt": k["prompt"], "response": k["response"], "type": "world"} for k in known[:n_world]]
    world_eval = known[n_world:]
    per_task = max(scales) * n_world // len(TASKS) + 1
    task_train, task_eval = {}, {}
    for name in TASKS:
        train_rows, eval_rows = build_task(name, seed=seed, n_train=per_task, n_eval=n_eval_task)
        task_train[name] = [dict(r, type="task") for r in train_rows]
        task_eval[name] = eval_rows
    return world_train, world_eval, task_train, task_eval


def mixture(world_train, task_train, scale: int, seed: int = 0) -> list[dict]:
    n_task = scale * len(world_train)
    rows = list(world_train)
    for i, name in enumerate(TASKS):
        share = n_task // len(TASKS) + (1 if i < n_task % len(TASKS) else 0)
        rows += task_train[name][:share]
    random.Random(seed).shuffle(rows)
    return rows


def evaluate(adapter: Path | None, world_eval, task_eval) -> dict:
    model, tokenizer, _ = load_with_adapter(None, adapter)
    answers = answer_all(model, tokenizer, [k["prompt"] for k in world_eval])
    retention = sum(is_correct(a, k["answers"], mode="substring") for a, k in zip(answers, world_eval, strict=True))
    result = {"world_retention": retention / len(world_eval)}
    for name, rows in task_eval.items():
        preds = answer_all(model, tokenizer, [r["prompt"] for r in rows], max_new_tokens=32)
        result[f"task_{name}"] = score("exact_match", preds, [r["response"] for r in rows])
    result["task_mean"] = sum(result[f"task_{n}"] for n in task_eval) / len(task_eval)
    return result


def run_arm(arm: str, rows: list[dict], work: Path, args) -> tuple[Path, dict]:
    data = write_jsonl_atomic(work / f"{arm}_{len(rows)}.jsonl", rows)
    out = work / f"{arm}_{len(rows)}"
    cfg = TrainConfig(data=str(data), output=str(out), epochs=args.epochs, lr=args.lr, batch_size=8, **ARMS[arm])
    cfg.save_steps, cfg.logging_steps, cfg.overwrite = 100_000, 10, True
    start = time.perf_counter()
    result = train(cfg)
    manifest = json.loads((out / "forgetless.json").read_text())
    info = {
        "train_seconds": round(time.perf_counter() - start, 1),
        "trainable": manifest["metrics"]["trainable_params"],
    }
    info["final_loss"] = result.metrics.get("train_loss")
    return out, info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=int, default=64, help="world-knowledge training records")
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 4, 16], help="task data = scale x world")
    parser.add_argument("--eval-task", type=int, default=40, help="held-out items per task")
    parser.add_argument("--max-world-eval", type=int, default=150, help="held-out known facts to score")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (8 world, scale 1, 10 evals)")
    parser.add_argument("--output", type=Path, default=OUT)
    args = parser.parse_args()
    if args.quick:
        args.world, args.scales, args.eval_task, args.max_world_eval = 8, [1], 5, 10
    work = args.output / "work"
    work.mkdir(parents=True, exist_ok=True)
    world_train, world_eval, task_train, task_eval = build_sets(
        known_facts(work), args.world, args.scales, args.eval_task
    )
    world_eval = world_eval[: args.max_world_eval]
    rows = [{"arm": "base", "scale": 0, **evaluate(None, world_eval, task_eval)}]
    print(rows[-1], flush=True)
    for scale in args.scales:
        data = mixture(world_train, task_train, scale)
        for arm in ARMS:
            adapter, info = run_arm(arm, data, work, args)
            rows.append(
                {"arm": arm, "scale": scale, "records": len(data), **info, **evaluate(adapter, world_eval, task_eval)}
            )
            print(rows[-1], flush=True)
            write_json_atomic(args.output / "results.json", rows)
    from loramoe_report import write_report  # sibling module (the script's folder is on sys.path)

    write_report(args, rows, len(world_train), len(world_eval), work, world_eval, task_eval)


if __name__ == "__main__":
    main()
