"""Shared rich console output: progress bars, spinners and tables go to stderr; answers go to stdout.

from forgetless.utils.console import progress
with progress() as bar:                      # one rich display: a nested `progress()` (e.g. a training
    task = bar.add_task("probing", total=n)  # run inside a continual stage) adds its rows to it
    bar.advance(task)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console

err_console = Console(stderr=True)
out_console = Console(soft_wrap=True)
_active: list[Any] = []  # the live Progress, when one is shown


@contextmanager
def status(message: str):
    """Show a spinner with `message` on stderr while the block runs (quiet when not a terminal)."""
    if err_console.is_terminal:
        with err_console.status(message):
            yield
    else:
        err_console.print(message)
        yield


@contextmanager
def progress() -> Iterator[Any]:
    """A rich progress display on stderr (count, elapsed time, ETA); inside another one, that same display."""
    if _active:
        yield _active[-1]
        return
    live = err_console.is_terminal
    bar = _new_progress(disable=not live)
    _active.append(bar)
    try:
        with bar:
            try:
                yield bar
            except BaseException:
                bar.live.transient = True  # a failed run leaves no bar behind: its error stays one line
                raise
        if not live:  # a log or a pipe gets the final state once, and only when the work succeeded
            err_console.print(bar.get_renderable())
    finally:
        _active.remove(bar)


def nested_progress() -> bool:
    """True while a `progress()` display is already shown (a new bar then joins it)."""
    return bool(_active)


def _new_progress(disable: bool = False):
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
        disable=disable,
    )
