"""`forgetless tasks ...`: write the built-in instruction task suites to files.

forgetless tasks builtin --output tasks/                      # 5 instruction tasks + tasks.yaml
"""

from __future__ import annotations

from pathlib import Path

import typer

from forgetless.utils.console import out_console

tasks_app = typer.Typer(help="Write instruction task suites for continual tuning.", no_args_is_help=True)


@tasks_app.command("builtin")
def builtin(
    output: Path = typer.Option(..., "--output", "-o", help="Directory to write the suite into."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the splits and phrasings."),
    n_train: int = typer.Option(200, "--n-train", help="Train records per task."),
    n_eval: int = typer.Option(50, "--n-eval", help="Eval records per task."),
) -> None:
    """Five offline tasks from package data: num2words, plurals, country names, capitals, dates."""
    from forgetless.data.tasks import write_builtin_suite
    from forgetless.errors import ConfigError

    if n_train < 1 or n_eval < 1:
        raise ConfigError("--n-train and --n-eval must be >= 1")
    out_console.print(
        f"wrote the built-in task suite; sequence file: {write_builtin_suite(output, seed, n_train, n_eval)}"
    )
