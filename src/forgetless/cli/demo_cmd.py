"""`forgetless demo`: the main job on the embedded model (see forgetless.demo)."""

from __future__ import annotations

import typer


def demo(
    output: str = typer.Option("runs/demo", "--output", "-o", help="Where the adapter and REPORT.md go."),
    max_steps: int = typer.Option(60, "--max-steps", help="LoRA optimizer steps."),
    anchors: bool = typer.Option(True, "--anchors/--no-anchors", help="Mix in the base's own answers."),
) -> None:
    """Teach the embedded model 8 fictional facts; show answers before/after and what it still knows."""
    from forgetless.demo import run_demo

    run_demo(output, max_steps, anchors)
