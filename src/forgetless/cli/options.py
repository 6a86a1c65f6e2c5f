"""Options several commands share, and where command defaults come from.

A command's option defaults have one home, the config dataclass (or library function) that owns them:
a command takes them from it where that is cheap to import (`SamplingConfig`, `DemoSettings`), else it
states them, and tests/unit/test_cli_defaults.py fails when a stated default, or a "(default X)" in a help
text, differs from its home. (Importing the knowledge, continual or serve packages at start-up would slow
every command.)

    from forgetless.cli.options import ADAPTER_BASE_OR_EMBEDDED, model_option
    def probe(..., model: str = model_option(ADAPTER_BASE_OR_EMBEDDED), ...): ...
"""

from __future__ import annotations

from typing import Any

import typer

ADAPTER_BASE = "Base model (default: the adapter's recorded base)."
ADAPTER_BASE_OR_EMBEDDED = "HF id or local dir (default: adapter's base or embedded)."


def model_option(help: str) -> Any:
    """`--model`: the base model as an HF id or local dir; None lets the command choose (`help` says how)."""
    return typer.Option(None, "--model", help=help)
