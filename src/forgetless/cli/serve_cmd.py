"""`forgetless serve` (OpenAI-compatible API over the base + adapters) and `forgetless export vllm`."""

from __future__ import annotations

from pathlib import Path

import typer

from forgetless.errors import ConfigError

export_app = typer.Typer(help="Export trained adapters for other serving stacks.", no_args_is_help=True)
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def serve(
    model: str = typer.Option(None, "--model", help="Base model: HF id or local dir (default: adapters' base)."),
    run: Path = typer.Option(None, "--run", help="A continual run directory: its adapters + switch (model auto)."),
    adapter: list[str] = typer.Option(None, "--adapter", help="NAME=DIR, repeatable: serve DIR as model NAME."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback by default)."),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
    max_batch: int = typer.Option(16, "--max-batch", help="Rows generated together at most."),
    batch_window_ms: float = typer.Option(5.0, "--batch-window-ms", help="How long to gather a batch."),
    max_queue: int = typer.Option(256, "--max-queue", help="Waiting requests before answering 429."),
    max_tokens: int = typer.Option(512, "--max-tokens", help="Cap on any request's max_tokens."),
    no_batching: bool = typer.Option(False, "--no-batching", help="Generate one request at a time."),
    precision: str = typer.Option("auto", "--precision", help="auto (bf16 autocast where fast) or fp32."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level."),
) -> None:
    """Serve the base model and adapters behind an OpenAI-compatible API (/v1/chat/completions, ...)."""
    from forgetless.serve.app import ServeConfig, create_app
    from forgetless.serve.backend import build_backend
    from forgetless.serve.registry import registry_from_run, registry_from_specs
    from forgetless.serve.server import serve_forever

    if run is not None and adapter:
        raise ConfigError("give --run DIR or --adapter NAME=DIR, not both")
    if port < 0 or port > 65535:
        raise ConfigError(f"--port {port} is not a TCP port (0-65535)")
    if min(max_batch, max_queue, max_tokens) < 1 or batch_window_ms < 0:
        raise ConfigError("--max-batch, --max-queue and --max-tokens must be >= 1, --batch-window-ms >= 0")
    registry = registry_from_run(run) if run is not None else registry_from_specs(list(adapter or []))
    backend, info = build_backend(model, registry.adapters, precision=precision)
    registry.base_id = info.model_id
    config = ServeConfig(
        max_tokens_cap=max_tokens,
        default_max_tokens=min(256, max_tokens),
        max_batch=1 if no_batching else max_batch,
        window_ms=0.0 if no_batching else batch_window_ms,
        max_queue=max_queue,
    )
    if host not in LOOPBACK:
        typer.echo(
            f"warning: binding {host} exposes the server beyond this machine; it has no authentication", err=True
        )
    typer.echo(f"serving {info.model_id} as {', '.join(registry.names())} on http://{host}:{port}/v1", err=True)
    serve_forever(create_app(backend, registry, config), host, port, log_level)


@export_app.command("vllm")
def export_vllm_cmd(
    run: Path = typer.Option(..., "--run", help="A continual run directory (adapters + switch)."),
    output: Path = typer.Option(..., "--output", "-o", help="Directory to write the export into."),
    model: str = typer.Option(None, "--model", help="Base model for `vllm serve` (default: the adapters' base)."),
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
