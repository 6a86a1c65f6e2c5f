"""`forgetless route`: answer prompts with a continual run, each routed by its switch to a task's adapter.

forgetless route --run runs/cit (--prompt TEXT | --input prompts.jsonl [--output answers.jsonl])
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from forgetless.errors import ConfigError


def route(
    run: Path = typer.Option(..., "--run", help="A continual run directory."),
    prompt: str = typer.Option(None, "--prompt", "-p", help="One prompt to route and answer."),
    input: Path = typer.Option(None, "--input", "-i", help="JSONL of {prompt} or {messages} records."),
    output: Path = typer.Option(None, "--output", "-o", help="Write JSONL answers here (else stdout)."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", help="Tokens to generate at most."),
    batch_size: int = typer.Option(16, "--batch-size", help="Prompts per mixed-adapter batch."),
) -> None:
    """Route each prompt to its task's adapter (or the base) and answer the whole batch together."""
    from forgetless.cli.generate_cmd import read_prompts
    from forgetless.continual.route import RoutedModel
    from forgetless.data.chat import prompt_messages
    from forgetless.utils.fileio import write_jsonl_atomic

    if (prompt is None) == (input is None):
        raise ConfigError("give exactly one of --prompt TEXT or --input FILE")
    if max_new_tokens < 1 or batch_size < 1:
        raise ConfigError("--max-new-tokens and --batch-size must be >= 1")
    rows = [{"prompt": prompt}] if prompt is not None else read_prompts(input)
    conversations = [r["messages"] if "messages" in r else prompt_messages(r["prompt"]) for r in rows]
    routed = RoutedModel.load(run)
    answers = routed.answer(conversations, max_new_tokens=max_new_tokens, batch_size=batch_size)
    results = [{**row, **answer} for row, answer in zip(rows, answers, strict=True)]
    if output:
        write_jsonl_atomic(output, results)
    elif prompt is not None:
        typer.echo(f"task: {results[0]['task']} (confidence {results[0]['confidence']:.2f})")
        typer.echo(results[0]["answer"])
    else:
        for row in results:
            typer.echo(json.dumps(row, ensure_ascii=False))
