"""`forgetless continual run|add-task` and `forgetless route`: continual instruction tuning from the shell.

forgetless continual run --config configs/continual_builtin.yaml --output runs/cit [--methods switch,sequential]
forgetless continual add-task --run runs/cit --task NAME (--train F --eval F [--metric M] | --builtin TASK)
forgetless route --run runs/cit (--prompt TEXT | --input prompts.jsonl [--output answers.jsonl])
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from forgetless.errors import ConfigError

continual_app = typer.Typer(
    help="Continual instruction tuning: SwitchCIT (one LoRA per task + a switch) vs baselines.", no_args_is_help=True
)


@continual_app.command("run")
def run(
    config: Path = typer.Option(..., "--config", "--tasks", "-c", help="Task-sequence YAML (tasks + options)."),
    output: Path = typer.Option(..., "--output", "-o", help="Run directory to create."),
    model: str = typer.Option(None, "--model", help="HF id or local dir (default: YAML value or embedded)."),
    methods: str = typer.Option(None, "--methods", help="Comma list of switch,sequential,replay,multitask."),
    rehearsal: float = typer.Option(None, "--rehearsal", help="Fraction of each task's prompts kept, in (0, 1]."),
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
    model: str = typer.Option(None, "--model", help="Must be the run's base model (checked); default: it."),
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
    line = f"added {task}: switch memory {summary['memory']} prompts, threshold {summary['threshold']}"
    if "switch_accuracy" in summary:
        line += f", switch accuracy {summary['switch_accuracy']:.3f}"
    out_console.print(line)


def _abs(path: str | None) -> str:
    if not path:
        return ""
    return str(Path(path).resolve()) if Path(path).exists() else path


def route(
    run: Path = typer.Option(..., "--run", help="A continual run directory."),
    prompt: str = typer.Option(None, "--prompt", "-p", help="One prompt to route and answer."),
    input: Path = typer.Option(None, "--input", "-i", help="JSONL of {prompt} or {messages} records."),
    output: Path = typer.Option(None, "--output", "-o", help="Write JSONL answers here (else stdout)."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", help="Tokens to generate at most."),
    batch_size: int = typer.Option(16, "--batch-size", help="Prompts per mixed-adapter batch."),
) -> None:
    """Route each prompt to its task's adapter (or the base) and answer the whole batch together."""
    from forgetless.cli.generate_cmd import _read_prompts
    from forgetless.continual.route import RoutedModel
    from forgetless.data.chat import prompt_messages
    from forgetless.utils.fileio import write_jsonl_atomic

    if (prompt is None) == (input is None):
        raise ConfigError("give exactly one of --prompt TEXT or --input FILE")
    if max_new_tokens < 1 or batch_size < 1:
        raise ConfigError("--max-new-tokens and --batch-size must be >= 1")
    rows = [{"prompt": prompt}] if prompt is not None else _read_prompts(input)
    conversations = [r["messages"] if "messages" in r else prompt_messages(r["prompt"]) for r in rows]
    routed = RoutedModel.load(run)
    answers = routed.answer(conversations, max_new_tokens=max_new_tokens, batch_size=batch_size)
    results = [{**row, **answer} for row, answer in zip(rows, answers, strict=True)]
    if output:
        write_jsonl_atomic(output, results)
    elif prompt is not None:
        typer.echo(f"task: {results[0]['task']} (confidence {results[0]['confidence']:.2f})")
        typer.echo(results[0]["answer"])
    else:
        for row in results:
            typer.echo(json.dumps(row, ensure_ascii=False))


def register(app: typer.Typer) -> None:
    """Add `continual ...` and `route` to the main app."""
    app.add_typer(continual_app, name="continual")
    app.command("route")(route)
