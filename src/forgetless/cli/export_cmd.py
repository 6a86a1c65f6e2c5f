"""`forgetless export vllm`: a continual run as PEFT adapters + a standalone router for vLLM."""

from __future__ import annotations

from pathlib import Path

import typer

from forgetless.cli.options import model_option

export_app = typer.Typer(help="Export trained adapters for other serving stacks.", no_args_is_help=True)


@export_app.command("vllm")
def export_vllm_cmd(
    run: Path = typer.Option(..., "--run", help="A continual run directory (adapters + switch)."),
    output: Path = typer.Option(..., "--output", "-o", help="Directory to write the export into."),
    model: str = model_option("Base model for `vllm serve` (default: the adapters' base)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing non-empty output."),
    skip_loramoe: bool = typer.Option(False, "--skip-loramoe", help="Export the LoRA tasks, route LoRAMoE to base."),
    copy_encoder: bool = typer.Option(
        None, "--copy-encoder/--no-copy-encoder", help="Copy the switch encoder's weights (default: MiniLM only)."
    ),
) -> None:
    """Export a run for vLLM: PEFT adapters, a standalone router module and the `vllm serve` command."""
    from forgetless.serve.vllm.export import export_vllm

    path = export_vllm(run, output, model, overwrite, skip_loramoe, copy_encoder)
    typer.echo(f"wrote {path} (see {path / 'README.md'}; serve with: bash {path / 'serve_vllm.sh'})")
