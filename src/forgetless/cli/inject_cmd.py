"""`forgetless inject`: one injection run, or a YAML sweep (lists of unknown/mixture/k/seed make a grid).

Flags default to None (not given) so that YAML values stay; the defaults are InjectConfig's (its training
ones the paper's), and tests/unit/test_cli_defaults.py checks the "(default X)" of the help texts.
"""

from __future__ import annotations

from pathlib import Path

import typer

from forgetless.cli.options import model_option
from forgetless.utils.console import out_console


def inject(
    facts: str = typer.Option(None, "--facts", help="Facts JSONL (e.g. from `forgetless facts countries`)."),
    output: str = typer.Option(None, "--output", "-o", help="Output directory."),
    unknown: int = typer.Option(None, "--unknown", "-n", help="Unknown facts to inject (default 10)."),
    mixture: str = typer.Option(None, "--mixture", help="none | known | paraphrase."),
    k: int = typer.Option(None, "--k", help="HighlyKnown facts or paraphrases per unknown fact."),
    recipe: str = typer.Option(
        None, "--recipe", help="forgetless (default: phrasings, self-replay anchors, gating) or paper (as the sweep)."
    ),
    seed: int = typer.Option(None, "--seed", help="Seed of the fact sample and training."),
    model: str = model_option("Base model (default: embedded)."),
    method: str = typer.Option(None, "--method", help="lora (default) or loramoe."),
    epochs: float = typer.Option(None, "--epochs", help="Training epochs (paper: 10)."),
    loss_on: str = typer.Option(None, "--loss-on", help="response (ours) or all (paper)."),
    anchor_kl: float = typer.Option(
        None, "--anchor-kl", help="Weight of KL to the base on anchor answers (forgetless: 5; 0 = off)."
    ),
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
    from forgetless.cli.audit_cmd import print_summary
    from forgetless.knowledge.inject import InjectConfig
    from forgetless.knowledge.runs import run_injection
    from forgetless.knowledge.sweep import GRID_KEYS, run_sweep, sweep_table
    from forgetless.utils.yamlconfig import load_yaml_options

    types = InjectConfig.option_types()  # flags are None when not given, so YAML values and defaults stay
    flags = {key: value for key, value in locals().items() if key in types and value is not None}
    options = {**(load_yaml_options(config, types, GRID_KEYS) if config else {}), **flags}
    grid = {key: options.pop(key) for key in list(options) if key in GRID_KEYS and isinstance(options[key], list)}
    base = InjectConfig.from_options(**options)
    if grid:
        rows = run_sweep(base.validate() if base.facts and base.output else base, grid)
        out_console.print(sweep_table(rows))
        out_console.print(f"report: {Path(base.output) / 'report.md'}")
        return
    result = run_injection(base)
    print_summary(result, Path(base.output))
