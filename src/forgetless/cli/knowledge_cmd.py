"""`forgetless inject` (one run or a YAML sweep) and `forgetless audit` (any adapter)."""

from __future__ import annotations

from pathlib import Path

import typer

from forgetless.utils.console import out_console


def inject(
    facts: str = typer.Option(None, "--facts", help="Facts JSONL (e.g. from `forgetless facts countries`)."),
    output: str = typer.Option(None, "--output", "-o", help="Output directory."),
    unknown: int = typer.Option(None, "--unknown", "-n", help="Unknown facts to inject (default 10)."),
    mixture: str = typer.Option(None, "--mixture", help="none | known | paraphrase."),
    k: int = typer.Option(None, "--k", help="HighlyKnown facts or paraphrases per unknown fact."),
    seed: int = typer.Option(None, "--seed", help="Seed of the fact sample and training."),
    model: str = typer.Option(None, "--model", help="Base model (default: embedded)."),
    method: str = typer.Option(None, "--method", help="lora (default) or loramoe."),
    epochs: float = typer.Option(None, "--epochs", help="Training epochs (paper: 10)."),
    loss_on: str = typer.Option(None, "--loss-on", help="response (ours) or all (paper)."),
    mmlu: int = typer.Option(None, "--mmlu", help="MMLU questions (stratified; 0 skips)."),
    exemplar_sets: int = typer.Option(None, "--exemplar-sets", help="Few-shot prompts per fact (probe)."),
    shots: int = typer.Option(None, "--shots", help="Exemplars per prompt (probe)."),
    samples: int = typer.Option(None, "--samples", help="Sampled answers per prompt (probe; 0 = greedy)."),
    audit_facts: int = typer.Option(
        None, "--audit-facts", help="Re-probe after training only the trained facts + this many others (0 = all)."
    ),
    overwrite: bool = typer.Option(None, "--overwrite", help="Replace a non-empty output."),
    config: Path = typer.Option(None, "--config", help="YAML; unknown/mixture/k/seed may be lists (a sweep)."),
) -> None:
    """Inject unknown facts with a LoRA and measure the cost (reliability, shifts, MMLU, refusals)."""
    from forgetless.knowledge.inject import InjectConfig
    from forgetless.knowledge.runs import run_injection
    from forgetless.knowledge.sweep import GRID_KEYS, run_sweep, sweep_table
    from forgetless.utils.yamlconfig import load_yaml_options

    names = set(InjectConfig.__dataclass_fields__)
    flags = {key: value for key, value in locals().items() if key in names and value is not None}
    options = {**(load_yaml_options(config, InjectConfig, GRID_KEYS) if config else {}), **flags}
    grid = {key: options.pop(key) for key in list(options) if key in GRID_KEYS and isinstance(options[key], list)}
    base = InjectConfig(**options)
    if grid:
        rows = run_sweep(base.validate() if base.facts and base.output else base, grid)
        out_console.print(sweep_table(rows))
        out_console.print(f"report: {Path(base.output) / 'report.md'}")
        return
    result = run_injection(base)
    _print_summary(result, Path(base.output))


def audit(
    adapter: Path = typer.Option(..., "--adapter", help="Adapter directory (PEFT LoRA, ours or not, or LoRAMoE)."),
    facts: Path = typer.Option(..., "--facts", help="Facts JSONL to probe before and after."),
    output: Path = typer.Option(..., "--output", "-o", help="Report directory."),
    model: str = typer.Option(None, "--model", help="Base model (default: the adapter's recorded base)."),
    mmlu: int = typer.Option(285, "--mmlu", help="MMLU questions (stratified, 5-shot; 0 skips)."),
    exemplar_sets: int = typer.Option(4, "--exemplar-sets", help="Few-shot prompts per fact."),
    samples: int = typer.Option(0, "--samples", help="Sampled answers per prompt (0 = greedy only)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty output."),
    lm_eval_tasks: str = typer.Option(None, "--lm-eval-tasks", help="e.g. mmlu,truthfulqa_mc2 (needs lm-eval)."),
    lm_eval_limit: int = typer.Option(None, "--lm-eval-limit", help="Examples per lm-eval task (default: all)."),
) -> None:
    """Compare the base (adapter disabled) with base + adapter: shifts, answers, refusals, MMLU, loss."""
    from forgetless.knowledge.audit import AuditSettings
    from forgetless.knowledge.runs import run_audit
    from forgetless.knowledge.slick import ProbeSettings

    settings = AuditSettings(probe=ProbeSettings(n_exemplar_sets=exemplar_sets, samples=samples), mmlu_n=mmlu)
    from forgetless.eval.lm_eval_bridge import parse_tasks

    tasks = parse_tasks(lm_eval_tasks)
    result = run_audit(adapter, facts, output, model, settings, overwrite, tasks, lm_eval_limit)
    _print_summary(result, output)


def _print_summary(result: dict, output: Path) -> None:
    from rich.table import Table

    from forgetless.knowledge.audit_report import summary_rows

    table = Table(title="What the adapter taught and what it cost")
    table.add_column("measure")
    table.add_column("value")
    for name, value in summary_rows(result):
        table.add_row(name, value)
    out_console.print(table)
    out_console.print(f"report: {output / 'report.md'}")
