"""The main job (`make demo` / `forgetless demo`): both recipes teach the same facts, side by side.

    forgetless demo [--output runs/demo] [--unknown 20] [--per-relation 60] [--mixture known --k 1]

1. Probe real country facts (a seeded sample of `per_relation` facts for each of a few relations, from
   `countryinfo`) on SmolLM2-135M-Instruct: SliCK categories from few-shot greedy answers.
2. Take `unknown` facts the model does not know (seeded random sample of the Unknown ones).
3. Inject them twice: with the knowledge-packing paper's recipe (rank-1 LoRA, mixed with one HighlyKnown
   fact per unknown fact, the mixture the paper found to do least harm) into OUTPUT/paper, and with the
   forgetless recipe (phrasings, self-replay anchors, probe-gated training) into OUTPUT/forgetless.
4. Audit each: re-probe every fact with the adapter, zero-shot and held-out phrasings, MMLU (0-shot
   loglik, stratified subsample) and general text loss before/after, answer distribution and refusals.
5. Print one table (reliability, generalization, HighlyKnown kept, collapse, MMLU, wall time).

Everything goes through `forgetless.knowledge.runs.run_injection`, the same code as `forgetless inject`,
so the demo's numbers are what the CLI gives. `forgetless demo --fictional` runs the older, faster demo
(8 invented facts with self-replay anchors, see `forgetless.demos.fictional`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgetless.utils.console import err_console, out_console

DEMO_RELATIONS = ("capital", "currency", "demonym", "region")


@dataclass
class DemoSettings:
    """Sized so the whole job takes under 10 minutes on 2 CPU cores."""

    output: str = "runs/demo"
    recipes: tuple[str, ...] = ("paper", "forgetless")
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
    from forgetless.knowledge.countries import sample_country_facts

    return sample_country_facts(DEMO_RELATIONS, per_relation, f"demo/{seed}")


def run_demo(settings: DemoSettings | None = None) -> dict[str, dict[str, Any]]:
    """Probe, inject with each recipe, audit; print the table. Returns {recipe: results.json content}."""
    from forgetless.knowledge.facts import save_facts
    from forgetless.knowledge.runs import run_injection

    settings = settings or DemoSettings()
    output = Path(settings.output)
    facts_file = save_facts(output.parent / f"{output.name}_facts.jsonl", demo_facts(settings.per_relation, 0))
    err_console.print(f"[bold]1/4[/bold] probing {facts_file} on the embedded model (SliCK, few-shot greedy)...")
    results = {}
    for recipe in settings.recipes:
        start = time.perf_counter()
        results[recipe] = run_injection(inject_config(settings, facts_file, recipe))
        results[recipe]["wall_seconds"] = round(time.perf_counter() - start, 1)
    for recipe, result in results.items():
        print_summary(result, output / recipe)
    print_comparison(results)
    return results


def inject_config(settings: DemoSettings, facts_file: Path, recipe: str):
    """The injection of one recipe: the paper's with its mixture, ours with its own ingredients."""
    from forgetless.knowledge.inject import InjectConfig

    paper = recipe == "paper"
    return InjectConfig(
        facts=str(facts_file),
        output=str(Path(settings.output) / recipe),
        unknown=settings.unknown,
        mixture=settings.mixture if paper else "none",
        k=settings.k if paper else 0,
        recipe=recipe,
        seed=settings.seed,
        exemplar_sets=settings.exemplar_sets,
        samples=0,
        mmlu=settings.mmlu,
        mmlu_shots=settings.mmlu_shots,
        general=settings.general,
        overwrite=True,
    )


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
    scope, alone = result.get("scope"), result.get("unscoped")
    if scope and alone:
        lines.append(
            f"scope: the adapter answers questions naming its {scope['subjects']} subjects "
            f"({scope['facts_in_scope']} of {scope['facts']} facts), the base the rest; the adapter alone "
            f"(plain PEFT, vLLM): reliability {alone['reliability']:.2f}, HighlyKnown kept "
            f"{alone['highly_known_kept']:.2f}"
        )
    if result.get("seconds"):
        lines.append(f"time: {phase_text(result['seconds'])}")
    lines.append(
        f"zero-shot answers: {result['answers_before']['unique']} -> {result['answers_after']['unique']} unique, "
        f"refusals {result['refusal_before']:.0%} -> {result['refusal_after']:.0%}, "
        f"exploded: {', '.join(repr(e['answer']) for e in result['exploded_answers'][:3]) or 'none'}"
    )
    return lines


def phase_text(seconds: dict[str, float]) -> str:
    """ "base probe 21 s, training 250 s (gate checks 40 s), audit 70 s" from results.json's `seconds`."""
    return (
        f"base probe {seconds.get('probe_base', 0):.0f} s, training {seconds.get('train', 0):.0f} s "
        f"(gate checks {seconds.get('gate', 0):.0f} s), audit {seconds.get('audit', 0):.0f} s"
    )


def print_summary(result: dict[str, Any], output: Path) -> None:
    title = f"forgetless demo ({result.get('recipe', 'paper')} recipe): what the adapter taught and what it cost"
    out_console.print(f"\n[bold]{title}[/bold]")
    for line in summary_lines(result):
        out_console.print(f"  - {line}")
    out_console.print(f"report: {output / 'report.md'}")


HEADER = (
    "recipe",
    "reliability",
    "zero-shot",
    "held-out",
    "HighlyKnown kept [95% CI]",
    "kept, no scope",
    "exploded (wrong)",
    "MMLU",
    "time",
)


def comparison_rows(results: dict[str, dict[str, Any]]) -> list[list[str]]:
    """One row per recipe: what it taught, what it kept, what it cost, how long it took."""
    rows = []
    for recipe, r in results.items():
        low, high = r.get("highly_known_kept_ci95", [0.0, 1.0])
        exploded = r.get("exploded_wrong", [])
        wrong = sum(e["wrong"] for e in exploded)
        mmlu = "-" if r.get("mmlu_before") is None else f"{r['mmlu_before']:.3f} -> {r['mmlu_after']:.3f}"
        rows.append(
            [
                recipe,
                f"{r['reliability']:.2f}",
                f"{r['reliability_zero_shot']:.2f}",
                f"{r['generalization']:.2f}",
                f"{r['highly_known_kept']:.2f} [{low:.2f}, {high:.2f}]",
                f"{r['unscoped']['highly_known_kept']:.2f}" if r.get("unscoped") else "(same)",
                f"{len(exploded)} ({wrong} wrong)",
                mmlu,
                f"{r.get('wall_seconds', 0):.0f} s",
            ]
        )
    return rows


def comparison_text(results: dict[str, dict[str, Any]]) -> list[str]:
    """The side-by-side table as fixed-width lines (readable in a log, a terminal and the README)."""
    rows = [list(HEADER), *comparison_rows(results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]


def print_comparison(results: dict[str, dict[str, Any]]) -> None:
    out_console.print("\n[bold]the same facts, two recipes[/bold]")
    for line in comparison_text(results):
        out_console.print(line, highlight=False, soft_wrap=True)
