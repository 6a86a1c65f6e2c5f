"""`forgetless audit`: what any adapter taught and what it cost (also prints the summary of `inject`).

Option defaults are `AuditSettings`' (tests/unit/test_cli_defaults.py checks them; importing it here would
slow every command's start-up).
"""

from __future__ import annotations

from pathlib import Path

import typer

from forgetless.cli.options import ADAPTER_BASE, model_option
from forgetless.utils.console import out_console


def audit(
    adapter: Path = typer.Option(..., "--adapter", help="Adapter directory (PEFT LoRA, ours or not, or LoRAMoE)."),
    facts: Path = typer.Option(..., "--facts", help="Facts JSONL to probe before and after."),
    output: Path = typer.Option(..., "--output", "-o", help="Report directory."),
    model: str = model_option(ADAPTER_BASE),
    mmlu: int = typer.Option(285, "--mmlu", help="MMLU questions (stratified; 0 skips)."),
    mmlu_shots: int = typer.Option(5, "--mmlu-shots", help="MMLU exemplars per question (0 is ~6x faster)."),
    exemplar_sets: int = typer.Option(4, "--exemplar-sets", help="Few-shot prompts per fact."),
    shots: int = typer.Option(4, "--shots", help="Exemplars per fact prompt (other facts of its relation)."),
    samples: int = typer.Option(0, "--samples", help="Sampled answers per prompt (0 = greedy only)."),
    per_relation: int = typer.Option(None, "--per-relation", help="At most N facts per relation (seeded)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty output."),
    no_scope: bool = typer.Option(
        False, "--no-scope", help="Ignore the adapter's scope.json: audit it on every prompt (as plain PEFT/vLLM)."
    ),
    lm_eval_tasks: str = typer.Option(
        None, "--lm-eval-tasks", help="lm-eval tasks, e.g. mmlu,truthfulqa_mc2 (pip install 'forgetless[lm-eval]')."
    ),
    lm_eval_include: Path = typer.Option(
        None, "--lm-eval-include", help="Folder (or YAML) of local lm-eval tasks, e.g. from export lm-eval-mmlu."
    ),
    lm_eval_shots: int = typer.Option(None, "--lm-eval-shots", help="Few-shot count (default: each task's own)."),
    lm_eval_batch_size: int = typer.Option(8, "--lm-eval-batch-size", help="lm-eval batch size."),
    lm_eval_limit: int = typer.Option(None, "--lm-eval-limit", help="Examples per lm-eval task (default: all)."),
) -> None:
    """Compare the base (adapter disabled) with base + adapter: shifts, answers, refusals, MMLU, loss."""
    from forgetless.eval.lm_eval_bridge import LmEvalOptions, parse_tasks
    from forgetless.knowledge.audit import AuditSettings
    from forgetless.knowledge.runs import run_audit
    from forgetless.knowledge.slick import ProbeSettings

    probe = ProbeSettings(n_exemplar_sets=exemplar_sets, shots=shots, samples=samples)
    settings = AuditSettings(probe=probe, mmlu_n=mmlu, mmlu_shots=mmlu_shots, per_relation=per_relation)
    lm_eval = LmEvalOptions(
        parse_tasks(lm_eval_tasks), lm_eval_limit, lm_eval_shots, lm_eval_batch_size, lm_eval_include
    ).validate()
    result = run_audit(adapter, facts, output, model, settings.validate(), overwrite, lm_eval, use_scope=not no_scope)
    print_summary(result, output)


def print_summary(result: dict, output: Path) -> None:
    """The audit's (or an injection's) summary table and where its report is."""
    from rich.table import Table

    from forgetless.knowledge.audit_report import summary_rows

    table = Table(title="What the adapter taught and what it cost")
    table.add_column("measure")
    table.add_column("value")
    for name, value in summary_rows(result):
        table.add_row(name, value)
    out_console.print(table)
    out_console.print(f"report: {output / 'report.md'}")
