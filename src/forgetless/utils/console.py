"""Shared rich console output: progress bars, spinners and tables go to stderr; answers go to stdout."""

from __future__ import annotations

from contextlib import contextmanager

from rich.console import Console

err_console = Console(stderr=True)
out_console = Console(soft_wrap=True)


@contextmanager
def status(message: str):
    """Show a spinner with `message` on stderr while the block runs (quiet when not a terminal)."""
    if err_console.is_terminal:
        with err_console.status(message):
            yield
    else:
        err_console.print(message)
        yield


def progress():
    """A rich progress bar on stderr with count, elapsed time and ETA."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )
