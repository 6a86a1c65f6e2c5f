"""`forgetless facts ...` and `forgetless tasks ...`: write the built-in real data sets to files.

forgetless facts countries --output facts/countries.jsonl     # 2,400+ facts from countryinfo
forgetless facts fictional --n 200 --seed 0 --output facts/fictional.jsonl
forgetless tasks builtin --output tasks/                      # 5 instruction tasks + tasks.yaml
"""

from __future__ import annotations

from pathlib import Path

import typer

from forgetless.utils.console import out_console

facts_app = typer.Typer(help="Write fact sets (subject, relation, object, aliases) as JSONL.", no_args_is_help=True)
tasks_app = typer.Typer(help="Write instruction task suites for continual tuning.", no_args_is_help=True)


@facts_app.command("countries")
def countries(output: Path = typer.Option(..., "--output", "-o", help="JSONL file to write.")) -> None:
    """Real facts about ~250 countries from the `countryinfo` package (capital, currency, region, ...)."""
    from forgetless.knowledge import write_country_facts

    out_console.print(f"wrote {write_country_facts(output)} facts to {output}")


@facts_app.command("fictional")
def fictional(
    output: Path = typer.Option(..., "--output", "-o", help="JSONL file to write."),
    n: int = typer.Option(100, "--n", help="How many facts."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same facts)."),
) -> None:
    """Invented facts about invented entities: guaranteed Unknown to any model."""
    from forgetless.errors import ConfigError
    from forgetless.knowledge import write_fictional_facts

    if n < 1:
        raise ConfigError(f"--n must be >= 1, got {n}")
    out_console.print(f"wrote {write_fictional_facts(output, n, seed)} facts to {output}")


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
