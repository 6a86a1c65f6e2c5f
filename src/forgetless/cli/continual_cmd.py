"""`forgetless continual run|add-task`: continual instruction tuning from the shell (`route` answers with a run).

forgetless continual run --config configs/continual_builtin.yaml --output runs/cit [--methods switch,sequential]
forgetless continual add-task --run runs/cit --task NAME (--train F --eval F [--metric M] | --builtin TASK)

Flags of `run` default to None (not given): the YAML value, else ContinualConfig's default, applies.
"""

from __future__ import annotations

from pathlib import Path

import typer

from forgetless.cli.options import model_option

continual_app = typer.Typer(
    help="Continual instruction tuning: SwitchCIT (one LoRA per task + a switch) vs baselines.", no_args_is_help=True
)


@continual_app.command("run")
def run(
    config: Path = typer.Option(..., "--config", "--tasks", "-c", help="Task-sequence YAML (tasks + options)."),
    output: Path = typer.Option(..., "--output", "-o", help="Run directory to create."),
    model: str = model_option("HF id or local dir (default: YAML value or embedded)."),
    methods: str = typer.Option(None, "--methods", help="Comma list of switch,sequential,replay,multitask."),
    rehearsal: float = typer.Option(None, "--rehearsal", help="Fraction of each task's prompts kept, in [0, 1]."),
    switch_type: str = typer.Option(None, "--switch-type", help="prototype (default) or mlp (the paper's)."),
    max_train: int = typer.Option(None, "--max-train", help="LoRA train records per task at most."),
    max_eval: int = typer.Option(None, "--max-eval", help="Eval records per task at most."),
    epochs: float = typer.Option(None, "--epochs", help="Epochs per task adapter."),
    max_steps: int = typer.Option(None, "--max-steps", help="Optimizer steps per adapter (overrides epochs)."),
    reuse_adapters: Path = typer.Option(None, "--reuse-adapters", help="Copy matching task adapters from this run."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output directory."),
    resume: bool = typer.Option(False, "--resume", help="Continue a run: reuse its finished task adapters."),
) -> None:
    """Train the task sequence with every method and write results.json, report.md and plots."""
    from forgetless.continual import load_continual_config, run_continual
    from forgetless.utils.console import out_console

    chosen = [m.strip() for m in methods.split(",") if m.strip()] if methods is not None else None
    cfg = load_continual_config(
        config,
        output=str(output),
        model=model,
        methods=chosen,
        rehearsal=rehearsal,
        switch_type=switch_type,
        max_train=max_train,
        max_eval=max_eval,
        epochs=epochs,
        max_steps=max_steps,
        reuse_adapters=str(reuse_adapters) if reuse_adapters else None,
        overwrite=overwrite or None,
        resume=resume or None,
    )
    results = run_continual(cfg)
    out_console.print(_summary_line("switch", results))
    for name, summary in results.get("baselines", {}).items():
        out_console.print(_summary_line(name, summary))
    out_console.print(f"results: {output / 'results.json'}  report: {output / 'report.md'}")


def _summary_line(method: str, s: dict) -> str:
    def fmt(v):
        return "-" if v is None else f"{v:.3f}"

    if not s.get("R"):
        return f"{method}: not run"
    return (
        f"{method}: AA {fmt(s.get('aa'))}  BWT {fmt(s.get('bwt'))}  FWT {fmt(s.get('fwt'))}  "
        f"forgetting {fmt(s.get('forgetting'))}  switch accuracy {fmt(s.get('switch_accuracy'))}"
    )


@continual_app.command("add-task")
def add_task(
    run: Path = typer.Option(..., "--run", help="A continual run directory."),
    task: str = typer.Option(..., "--task", help="Name of the new task."),
    train: str = typer.Option(None, "--train", help="Train data (prompt/response JSONL or hub name)."),
    eval: str = typer.Option(None, "--eval", help="Eval data (prompt/response JSONL or hub name)."),
    metric: str = typer.Option("exact_match", "--metric", help="exact_match, token_f1, rouge_l or sari."),
    max_train: int = typer.Option(None, "--max-train", help="LoRA train records at most."),
    builtin: str = typer.Option(None, "--builtin", help="Build the data of a built-in task instead of files."),
    model: str = model_option("Must be the run's base model (checked); default: it."),
    evaluate: bool = typer.Option(True, "--eval-after/--no-eval-after", help="Score every task afterwards."),
) -> None:
    """Add one task to a run: train its LoRA, update the switch from its memory (old adapters untouched)."""
    from forgetless.continual import ContinualTask
    from forgetless.continual import add_task as add
    from forgetless.utils.console import out_console

    spec = ContinualTask(
        name=task, train=_abs(train), eval=_abs(eval), metric=metric, max_train=max_train, builtin=builtin
    )
    summary = add(run, spec, model=model, evaluate=evaluate)
    threshold = summary["threshold"]
    if isinstance(threshold, dict):  # per-task thresholds
        threshold = ", ".join(f"{name} {value:.4g}" for name, value in threshold.items())
    line = f"added {task}: switch memory {summary['memory']} prompts, threshold {threshold}"
    if "switch_accuracy" in summary:
        line += f", switch accuracy {summary['switch_accuracy']:.3f}"
    out_console.print(line)


def _abs(path: str | None) -> str:
    if not path:
        return ""
    return str(Path(path).resolve()) if Path(path).exists() else path
