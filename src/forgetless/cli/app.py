"""The `forgetless` console command. Each command (or command group) lives in the module named after it.

    forgetless --help
    forgetless train --data F --output D [--max-steps N]
    forgetless generate [--adapter D] --prompt "..."

Errors caused by input print one line `error: ...` on stderr and exit with code 2; `--debug` (anywhere on
the command line) shows the traceback instead. Library warnings (transformers, peft, ...) go to
`<cache>/logs/forgetless.log`; `--verbose` (anywhere) shows them on stderr instead.
"""

from __future__ import annotations

import os
import sys

import click
import typer

try:  # typer >= 0.20 ships its own copy of click: catch both families
    from typer._click import exceptions as _typer_click
except ImportError:  # pragma: no cover - older typer uses click itself
    _typer_click = click.exceptions

from forgetless._version import __version__
from forgetless.errors import ForgetlessError

app = typer.Typer(
    name="forgetless",
    help="Teach an LLM new tasks and facts with adapters, and measure what was gained and what was lost.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:  # eager: runs while parsing, so `forgetless --version` needs no command
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    verbose: bool = typer.Option(
        False, "--verbose", help="Show library warnings on stderr (default: in <cache>/logs/forgetless.log)."
    ),
    version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", callback=_print_version, is_eager=True
    ),
) -> None:
    """Teach an LLM new tasks and facts with adapters, and measure what was gained and what was lost."""


def _register() -> None:
    from forgetless.cli import (
        audit_cmd,
        continual_cmd,
        demo_cmd,
        experts_cmd,
        export_cmd,
        facts_cmd,
        generate_cmd,
        inject_cmd,
        learn_cmd,
        probe_cmd,
        route_cmd,
        serve_cmd,
        tasks_cmd,
        train_cmd,
    )

    app.command("train")(train_cmd.train)
    app.command("generate")(generate_cmd.generate)
    app.command("demo")(demo_cmd.demo)
    app.command("experts")(experts_cmd.experts)
    app.command("probe")(probe_cmd.probe)
    app.command("inject")(inject_cmd.inject)
    app.command("audit")(audit_cmd.audit)
    app.command("learn")(learn_cmd.learn)
    app.add_typer(facts_cmd.facts_app, name="facts")
    app.add_typer(tasks_cmd.tasks_app, name="tasks")
    app.add_typer(continual_cmd.continual_app, name="continual")
    app.command("route")(route_cmd.route)
    app.command("serve")(serve_cmd.serve)
    app.add_typer(export_cmd.export_app, name="export")


_register()


def fail(message: str) -> None:
    """Print a one-line error and exit 2."""
    first = " ".join(str(message).split())
    click.echo(f"error: {first}", err=True)
    sys.exit(2)


def _route_library_output(args: list[str]) -> None:
    """Library warnings to the log file unless --verbose (skipped for --help/--version: nothing to log)."""
    from forgetless.utils.library_output import disable_library_bars, route_library_output

    if not args or {"--help", "-h", "--version"} & set(args):
        disable_library_bars()
        return
    from forgetless.models.embedded import cache_root

    route_library_output("--verbose" in args, cache_root() / "logs" / "forgetless.log")


def main(argv: list[str] | None = None) -> None:
    """Console entry point: runs the app and turns user errors into one line and exit code 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("FORGETLESS_DEBUG") == "1"
    for flag in ("--verbose", "--debug"):  # accepted anywhere, handled by the root callback
        if flag in args:
            args = [flag, *[a for a in args if a != flag]]
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _route_library_output(args)
    try:
        code = app(args=args, prog_name="forgetless", standalone_mode=False)
    except ForgetlessError as exc:
        if debug:
            raise
        fail(str(exc))
    except (click.UsageError, _typer_click.UsageError) as exc:
        if debug:
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":  # typer has printed the help already
            sys.exit(2)
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx else ""
        fail(exc.format_message() + hint)
    except (click.ClickException, _typer_click.ClickException) as exc:
        if debug:
            raise
        fail(exc.format_message())
    except (click.Abort, typer.Abort, KeyboardInterrupt):
        click.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
