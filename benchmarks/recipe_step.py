"""The forgetless recipe's training step: one padded forward + a teacher forward every step (before) vs
length groups + the cached anchor teacher (now), side by side in one run.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/recipe_step.py [--unknown 20] [--epochs 3] [--rounds 1]

Records: the recipe's own (`forgetless_plan` with `RecipeSettings()`: 2 phrasings per new fact, 40
self-replay anchors x 2 phrasings with KL to the base, one few-shot record per new fact behind 4
exemplars), for `--unknown` countryinfo facts of the demo's relations; the base's answers are stood in by
the true objects (the shapes, not the answers, set the cost). Same model (embedded SmolLM2-135M-Instruct),
LoRA r=16 on the FFN, batch 8, length-grouped sampler, bf16 autocast where the CPU has it, as
`forgetless inject` trains. Each variant trains `--epochs` epochs (the teacher cache fills in the first);
the first step is warm-up, not timed. Same batches, same order, same loss (tests/unit/test_length_groups.py
and test_anchor_kl.py check that the loss and gradients match).
"""

from __future__ import annotations

import argparse
import math

import torch
from train_throughput import StepTimer  # benchmarks/ is on sys.path when run as a script

from forgetless.adapters.registry import build_method
from forgetless.data.validate import Record, validate_record
from forgetless.knowledge.plan import forgetless_plan
from forgetless.knowledge.recipe import RecipeSettings, forgetless_train_args
from forgetless.models.load import load_model
from forgetless.models.runtime import resolve_precision
from forgetless.train.config import TrainConfig
from forgetless.train.setup import build_dataset, build_trainer


def recipe_records(unknown: int) -> list[Record]:
    from forgetless.demos.knowledge_audit import demo_facts

    facts = demo_facts(60, 0)
    chosen = facts[::7][:unknown]
    categories = {f.id: ("Unknown" if f in chosen else "HighlyKnown") for f in facts}
    answers = {f.id: f.object for f in facts}
    plan = forgetless_plan(chosen, facts, categories, RecipeSettings(), 0, lambda qs: list(qs), answers)
    return [validate_record(row, f"plan:{i}") for i, row in enumerate(plan.rows)]


def run(variant: str, records: list[Record], args) -> tuple[float, int]:
    """(seconds per timed step, steps) of one variant."""
    model, tokenizer, _ = load_model(None, device="cpu")
    cfg = TrainConfig.from_args(forgetless_train_args(), data="-", output="-", save_steps=10_000, logging_steps=10_000)
    cfg.max_steps = args.epochs * math.ceil(len(records) / cfg.batch_size)
    dataset = build_dataset(tokenizer, records, cfg)
    method = build_method(cfg)
    if variant == "before":
        method.row_separable = False  # one forward per batch, at the longest row's width
        dataset = dataset.remove_columns(["record_index"])  # no record keys: the teacher runs every step
    trainer = build_trainer(method.wrap(model), tokenizer, dataset, cfg, args.tmp, resolve_precision("auto", "cpu"))
    trainer.method, trainer.args.save_strategy = method, "no"
    timer = StepTimer()
    trainer.add_callback(timer)
    trainer.train()
    return (timer.end - timer.start) / (cfg.max_steps - 1), cfg.max_steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unknown", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--tmp", default="/tmp/forgetless-bench-recipe")
    args = parser.parse_args()
    records = recipe_records(args.unknown)
    print(f"{len(records)} records, threads {torch.get_num_threads()}, precision {resolve_precision('auto', 'cpu')}")
    best: dict[str, float] = {}
    for round_index in range(args.rounds):
        times = {variant: run(variant, records, args) for variant in ("before", "now")}
        for variant, (seconds, _) in times.items():
            best[variant] = min(best.get(variant, math.inf), seconds)
        steps = times["now"][1]
        print(
            f"round {round_index + 1} ({steps} steps): "
            + ", ".join(f"{v} {s:.2f} s/step" for v, (s, _) in times.items())
        )
    print("\n| variant | s/step (best round) | speed-up |\n|---|---|---|")
    for variant, seconds in best.items():
        print(f"| {variant} | {seconds:.2f} | {best['before'] / seconds:.2f}x |")


if __name__ == "__main__":
    main()
