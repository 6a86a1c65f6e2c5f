"""`forgetless facts ...`: write the built-in fact sets to files.

forgetless facts countries --output facts/countries.jsonl     # 2,400+ facts from countryinfo
forgetless facts fictional --n 200 --seed 0 --output facts/fictional.jsonl
"""

from __future__ import annotations

from pathlib import Path

import typer

from forgetless.utils.console import out_console

facts_app = typer.Typer(help="Write fact sets (subject, relation, object, aliases) as JSONL.", no_args_is_help=True)


@facts_app.command("countries")
def countries(output: Path = typer.Option(..., "--output", "-o", help="JSONL file to write.")) -> None:
    """Real facts about ~250 countries from the `countryinfo` package (capital, currency, region, ...)."""
    from forgetless.knowledge import write_country_facts
    from forgetless.utils.fileio import check_output_file

    check_output_file(output)
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
    from forgetless.utils.fileio import check_output_file

    if n < 1:
        raise ConfigError(f"--n must be >= 1, got {n}")
    check_output_file(output)
    out_console.print(f"wrote {write_fictional_facts(output, n, seed)} facts to {output}")
