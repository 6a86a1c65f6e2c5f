"""`forgetless train`: train an adapter. Options come from defaults < `--config` YAML < flags.

Flags default to None (not given) so that YAML values stay; the defaults are TrainConfig's, and the
"(default X)" of the help texts are checked against them by tests/unit/test_cli_defaults.py.
"""

from __future__ import annotations

from pathlib import Path

import typer

from forgetless.cli.options import model_option
from forgetless.utils.console import err_console, out_console


def train(
    data: str = typer.Option(None, "--data", help="Records: .jsonl/.json/.csv/.parquet file or hub dataset."),
    output: str = typer.Option(None, "--output", "-o", help="Adapter output directory."),
    model: str = model_option("HF model id or local dir (default: embedded SmolLM2)."),
    method: str = typer.Option(None, "--method", help="Adapter method: lora (default) or loramoe."),
    epochs: float = typer.Option(None, "--epochs", help="Training epochs (default 3)."),
    max_steps: int = typer.Option(None, "--max-steps", help="Stop after N optimizer steps (overrides epochs)."),
    lr: float = typer.Option(None, "--lr", help="Learning rate (default 2e-4)."),
    rank: int = typer.Option(None, "--rank", help="LoRA rank (default 16; loramoe 4 per expert)."),
    alpha: float = typer.Option(None, "--alpha", help="LoRA alpha (default 2 x rank; loramoe 32)."),
    experts: int = typer.Option(None, "--experts", help="loramoe: experts per layer (default 6)."),
    world_experts: int = typer.Option(None, "--world-experts", help="loramoe: size of the world group (N // 2)."),
    task_experts: int = typer.Option(None, "--task-experts", help="loramoe: size of the task group (the rest)."),
    lbc_beta: float = typer.Option(None, "--lbc-beta", help="loramoe: balancing-constraint weight (0.1; 0 = off)."),
    lbc_delta: float = typer.Option(None, "--lbc-delta", help="loramoe: balancing-constraint delta (0.1)."),
    target_modules: str = typer.Option(None, "--targets", help="Comma-separated module names to adapt."),
    batch_size: int = typer.Option(None, "--batch-size", help="Per-device batch size (default 8)."),
    max_length: int = typer.Option(None, "--max-length", help="Max tokens per example (default 512)."),
    loss_on: str = typer.Option(None, "--loss-on", help="response (default) or all tokens."),
    precision: str = typer.Option(None, "--precision", help="auto (bf16 where fast), bf16 or fp32."),
    seed: int = typer.Option(None, "--seed", help="Random seed (default 0)."),
    resume: bool = typer.Option(None, "--resume", help="Continue from the last checkpoint of this output."),
    overwrite: bool = typer.Option(None, "--overwrite", help="Replace a non-empty output directory."),
    config: Path = typer.Option(None, "--config", help="YAML file with any of these options."),
) -> None:
    """Train a LoRA or LoRAMoE adapter on instruction records (loss on response tokens only)."""
    from forgetless.train.config import TrainConfig
    from forgetless.train.run import describe_partial, is_main_process
    from forgetless.train.run import train as run_training
    from forgetless.utils.yamlconfig import load_yaml_options

    flags = {k: v for k, v in locals().items() if k in TrainConfig.field_names() and v is not None}
    if target_modules is not None:
        flags["target_modules"] = [t.strip() for t in target_modules.split(",") if t.strip()]
    options = load_yaml_options(config, TrainConfig) if config else {}
    cfg = TrainConfig(**{**options, **flags})
    try:
        result = run_training(cfg)
    except KeyboardInterrupt:
        hint = describe_partial(cfg.output)
        err_console.print(f"interrupted; {hint}" if hint else "interrupted")
        raise
    if not is_main_process():  # torchrun / accelerate launch: rank 0 reports
        return
    metrics = result.metrics
    err_console.print(
        f"trained {metrics.get('records')} records in {metrics.get('train_seconds')} s, "
        f"final loss {metrics.get('train_loss', float('nan')):.4f}"
    )
    out_console.print(f"adapter saved to {result.output}")
