"""`forgetless serve`: an OpenAI-compatible API over the base model + adapters (see forgetless.serve.app).

The limits' defaults are `ServeConfig`'s (checked by tests/unit/test_cli_defaults.py: importing FastAPI
here would slow every command's start-up); `--max-prompt-tokens` and `--max-messages` default to None,
which leaves ServeConfig's own defaults (the model's context, 1000 messages) in charge.

The server checks neither the `Host` header nor who calls (no authentication). On loopback that is fine
for a personal machine (only its own programs connect; a web page in its browser could still reach the
server by DNS rebinding and use the model); to serve anyone else, keep it on loopback behind a reverse
proxy that checks Host and authenticates.
"""

from __future__ import annotations

from pathlib import Path

import typer

from forgetless.cli.options import model_option
from forgetless.errors import ConfigError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def serve(
    model: str = model_option("Base model: HF id or local dir (default: adapters' base)."),
    run: Path = typer.Option(None, "--run", help="A continual run directory: its adapters + switch (model auto)."),
    adapter: list[str] = typer.Option(None, "--adapter", help="NAME=DIR, repeatable: serve DIR as model NAME."),
    host: str = typer.Option(
        "127.0.0.1",
        "--host",
        help="Address to bind (loopback by default). The Host header is not checked and there is no auth: "
        "fine on loopback; otherwise put a reverse proxy in front.",
    ),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
    max_batch: int = typer.Option(16, "--max-batch", help="Rows generated together at most."),
    batch_window_ms: float = typer.Option(5.0, "--batch-window-ms", help="How long to gather a batch."),
    max_queue: int = typer.Option(256, "--max-queue", help="Waiting requests before answering 429."),
    max_tokens: int = typer.Option(512, "--max-tokens", help="Cap on any request's max_tokens."),
    max_prompt_tokens: int = typer.Option(
        None, "--max-prompt-tokens", help="Longest prompt in tokens; longer is a 400 (default: the model's context)."
    ),
    max_messages: int = typer.Option(
        None, "--max-messages", help="Most messages in one chat request; more is a 400 (default: 1000)."
    ),
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
    if min(max_prompt_tokens or 1, max_messages or 1) < 1:
        raise ConfigError("--max-prompt-tokens and --max-messages must be >= 1")
    registry = registry_from_run(run) if run is not None else registry_from_specs(list(adapter or []))
    backend, info = build_backend(model, registry.adapters, precision=precision)
    registry.base_id = info.model_id
    config = ServeConfig(
        max_tokens_cap=max_tokens,
        default_max_tokens=min(ServeConfig.default_max_tokens, max_tokens),
        max_batch=1 if no_batching else max_batch,
        window_ms=0.0 if no_batching else batch_window_ms,
        max_queue=max_queue,
        max_prompt_tokens=max_prompt_tokens,
        max_messages=max_messages or ServeConfig.max_messages,
    )
    if host not in LOOPBACK:
        typer.echo(
            f"warning: binding {host} exposes the server beyond this machine; it has no authentication and does "
            "not check the Host header: put a reverse proxy in front",
            err=True,
        )
    typer.echo(f"serving {info.model_id} as {', '.join(registry.names())} on http://{host}:{port}/v1", err=True)
    serve_forever(create_app(backend, registry, config), host, port, log_level)
