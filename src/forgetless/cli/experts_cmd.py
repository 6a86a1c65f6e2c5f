"""`forgetless experts`: which LoRAMoE expert group do world and task samples route to?

    forgetless experts --adapter runs/x/adapter --data data/mixed.jsonl [--tokens response]

Writes `router_usage.md`, `router_heatmap.png` and `router_usage.json` to `--output`
(default `<adapter>/router_analysis`) and prints the layer-averaged table and the verdict.
"""

from __future__ import annotations

from pathlib import Path

import typer

from forgetless.cli.options import ADAPTER_BASE, model_option
from forgetless.errors import ConfigError, ModelError


def experts(
    adapter: Path = typer.Option(..., "--adapter", help="LoRAMoE adapter directory to analyse."),
    data: Path = typer.Option(..., "--data", help="Records (with `type`: world | task) to route."),
    output: Path = typer.Option(None, "--output", "-o", help="Report directory (default: <adapter>/router_analysis)."),
    model: str = model_option(ADAPTER_BASE),
    batch_size: int = typer.Option(8, "--batch-size", help="Records per forward batch."),
    tokens: str = typer.Option("all", "--tokens", help="Average over `all` non-padding tokens or `response` only."),
    max_length: int = typer.Option(512, "--max-length", help="Truncate records to this many tokens."),
) -> None:
    """Analyse a LoRAMoE adapter's routers: mean expert weights per sample type, table + heatmap."""
    from forgetless.adapters.loading import load_with_adapter, read_adapter_meta
    from forgetless.adapters.loramoe.analysis import TOKEN_MODES, router_usage
    from forgetless.adapters.loramoe.analysis_report import write_router_report
    from forgetless.adapters.loramoe.config import METHOD, LoRAMoEConfig
    from forgetless.data.records import load_records
    from forgetless.utils.console import out_console, progress

    if tokens not in TOKEN_MODES:
        raise ConfigError(f"--tokens {tokens!r} is invalid: use one of {', '.join(TOKEN_MODES)}")
    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size} is invalid: it must be >= 1")
    if max_length < 1:
        raise ConfigError(f"--max-length {max_length} is invalid: it must be >= 1")
    config, _ = read_adapter_meta(adapter)
    if config.get("method") != METHOD:
        kind = config.get("method") or str(config.get("peft_type") or "unknown").lower()
        raise ModelError(f"{adapter} is a {kind} adapter, not LoRAMoE; `forgetless experts` analyses LoRAMoE routers")
    try:
        world_experts = LoRAMoEConfig.from_dict(config).n_world_experts
    except ConfigError as exc:
        raise ModelError(f"{adapter}/adapter_config.json: {exc}") from None
    records = load_records(data)
    loaded, tokenizer, _ = load_with_adapter(model, adapter)
    with progress() as bar:
        task = bar.add_task("routing", total=len(records))
        usage = router_usage(
            loaded,
            tokenizer,
            records,
            batch_size=batch_size,
            max_length=max_length,
            tokens=tokens,
            world_experts=world_experts,
            on_batch=lambda n: bar.advance(task, n),
        )
    out_console.print(_summary_table(usage))
    style = "bold yellow" if usage.inverted() else "bold"
    out_console.print(usage.verdict(), style=style, markup=False, highlight=False)
    report = write_router_report(usage, output if output is not None else adapter / "router_analysis")
    out_console.print(f"report: {report}", markup=False, highlight=False)


def _summary_table(usage):
    from rich.table import Table

    from forgetless.adapters.loramoe.analysis import format_weight

    table = Table(title=f"LoRAMoE router usage (mean of {len(usage.layers)} layers, {usage.token_mode} tokens)")
    for name in ("sample type", "samples", "tokens", "world /expert", "task /expert", "world share", "task share"):
        table.add_column(name, justify="left" if name == "sample type" else "right", no_wrap=name == "sample type")
    for t, g in usage.summary().items():
        table.add_row(
            t,
            str(usage.samples.get(t, 0)),
            str(usage.tokens.get(t, 0)),
            format_weight(g.world_per_expert),
            format_weight(g.task_per_expert),
            format_weight(g.world_share, pct=True),
            format_weight(g.task_share, pct=True),
        )
    return table
