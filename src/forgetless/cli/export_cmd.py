"""`forgetless export`: a continual run for vLLM (PEFT adapters + a standalone router), and a local MMLU
task for lm-evaluation-harness.

    forgetless export vllm --run runs/continual --output export/
    forgetless export lm-eval-mmlu --output tasks/ --questions 285 --shots 0
"""

from __future__ import annotations

from pathlib import Path

import typer

from forgetless.cli.options import model_option

export_app = typer.Typer(help="Export adapters for other serving stacks, or tasks for lm-eval.", no_args_is_help=True)


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


@export_app.command("lm-eval-mmlu")
def export_lm_eval_mmlu_cmd(
    output: Path = typer.Option(..., "--output", "-o", help="Folder for forgetless_mmlu.yaml and its JSONL."),
    questions: int = typer.Option(285, "--questions", help="Stratified MMLU questions (as `audit --mmlu`)."),
    shots: int = typer.Option(0, "--shots", help="Exemplars in each prompt (as `audit --mmlu-shots`)."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed (the audit's is 0)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a folder this command wrote before."),
) -> None:
    """Write a local lm-eval task with forgetless' own MMLU sample and prompt format (no network needed)."""
    from forgetless.eval.lm_eval_tasks import TASK_NAME, write_mmlu_task

    path = write_mmlu_task(output, questions, shots, seed, overwrite)
    typer.echo(f"wrote {path}; run: lm_eval --include_path {path.parent} --tasks {TASK_NAME} ...")
    typer.echo(f"or: forgetless audit ... --lm-eval-include {path.parent} --lm-eval-tasks {TASK_NAME}")
