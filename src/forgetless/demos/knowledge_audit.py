"""The main job (`make demo` / `forgetless demo`): a knowledge audit of an injection on the embedded model.

    forgetless demo [--output runs/demo] [--unknown 20] [--per-relation 60] [--mixture known --k 1]

1. Probe real country facts (a seeded sample of `per_relation` facts for each of a few relations, from
   `countryinfo`) on SmolLM2-135M-Instruct: SliCK categories from few-shot greedy answers.
2. Take `unknown` facts the model does not know (seeded random sample of the Unknown ones).
3. Inject them with a rank-1 LoRA (the knowledge-packing paper's recipe), mixed with one HighlyKnown fact
   per unknown fact (the mixture the paper found to do least harm).
4. Audit: re-probe every fact with the adapter, MMLU (0-shot loglik, stratified subsample) and general
   text loss before/after, answer distribution and refusals.
5. Print the summary and where the report is.

Everything goes through `forgetless.knowledge.runs.run_injection`, the same code as `forgetless inject`,
so the demo's numbers are what the CLI gives. `forgetless demo --fictional` runs the older, faster demo
(8 invented facts with self-replay anchors, see `forgetless.demos.fictional`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgetless.utils.console import err_console, out_console

DEMO_RELATIONS = ("capital", "currency", "demonym", "region")


@dataclass
class DemoSettings:
    """Sized so the whole job takes about 5 minutes on 2 CPU cores."""

    output: str = "runs/demo"
    unknown: int = 20
    per_relation: int = 60
    mixture: str = "known"
    k: int = 1
    exemplar_sets: int = 3
    mmlu: int = 114  # 2 per topic
    mmlu_shots: int = 0  # 0-shot keeps the demo under 10 minutes (5-shot prompts are 5x longer)
    general: int = 32
    seed: int = 0


def demo_facts(per_relation: int, seed: int) -> list:
    """A seeded sample of `per_relation` real country facts for each of DEMO_RELATIONS."""
    from forgetless.knowledge.countries import country_facts

    facts = country_facts()
    chosen = []
    for relation in DEMO_RELATIONS:
        pool = [f for f in facts if f.relation == relation]
        chosen += random.Random(f"demo/{seed}/{relation}").sample(pool, min(per_relation, len(pool)))
    return chosen


def run_demo(settings: DemoSettings | None = None) -> dict[str, Any]:
    """Probe, inject, audit; print the summary. Returns the injection's results.json content."""
    from forgetless.knowledge.facts import save_facts
    from forgetless.knowledge.inject import InjectConfig
    from forgetless.knowledge.runs import run_injection

    settings = settings or DemoSettings()
    output = Path(settings.output)
    facts_file = save_facts(output.parent / f"{output.name}_facts.jsonl", demo_facts(settings.per_relation, 0))
    err_console.print(f"[bold]1/4[/bold] probing {facts_file} on the embedded model (SliCK, few-shot greedy)...")
    cfg = InjectConfig(
        facts=str(facts_file),
        output=str(output),
        unknown=settings.unknown,
        mixture=settings.mixture,
        k=settings.k,
        seed=settings.seed,
        exemplar_sets=settings.exemplar_sets,
        samples=0,
        mmlu=settings.mmlu,
        mmlu_shots=settings.mmlu_shots,
        general=settings.general,
        overwrite=True,
    )
    result = run_injection(cfg)
    print_summary(result, output)
    return result


def summary_lines(result: dict[str, Any]) -> list[str]:
    """The demo's short summary, one line per finding."""
    from forgetless.knowledge.shifts import CATEGORIES

    matrix = result["transitions"]
    before = [sum(row) for row in matrix]
    highly = CATEGORIES.index("HighlyKnown")
    kept = matrix[highly][highly]
    untrained = result.get("shifts_untrained", result["shifts"])
    counts = ", ".join(f"{n} {name}" for name, n in zip(CATEGORIES, before, strict=True))
    lines = [
        f"probed {result['facts']} real country facts: {counts}",
        f"injected {result['trained_facts']} Unknown facts ({result['train_records']} training records, "
        f"mixture {result['config']['mixture']} k={result['config']['k']})",
        f"reliability on the injected facts: {result['reliability']:.2f} mean P_correct, "
        f"{result['reliability_all_correct']:.0%} correct under every few-shot prompt",
        f"HighlyKnown facts still HighlyKnown: {kept}/{before[highly]}",
        f"other facts: {untrained['positive']} became more known, {untrained['negative']} less known",
    ]
    if result.get("mmlu_before") is not None:
        lines.append(
            f"MMLU ({result['mmlu_n']} q, {result['config']['mmlu_shots']}-shot): "
            f"{result['mmlu_before']:.3f} -> {result['mmlu_after']:.3f} "
            f"({result['mmlu_delta']:+.3f} ± {result['mmlu_delta_stderr']:.3f} paired s.e.)"
        )
    if result.get("general_loss_before") is not None:
        lines.append(f"loss on general text: {result['general_loss_before']:.3f} -> {result['general_loss_after']:.3f}")
    lines.append(
        f"zero-shot answers: {result['answers_before']['unique']} -> {result['answers_after']['unique']} unique, "
        f"refusals {result['refusal_before']:.0%} -> {result['refusal_after']:.0%}, "
        f"exploded: {', '.join(repr(e['answer']) for e in result['exploded_answers'][:3]) or 'none'}"
    )
    return lines


def print_summary(result: dict[str, Any], output: Path) -> None:
    out_console.print("\n[bold]forgetless demo: what the adapter taught and what it cost[/bold]")
    for line in summary_lines(result):
        out_console.print(f"  - {line}")
    out_console.print(f"report: {output / 'report.md'}")
