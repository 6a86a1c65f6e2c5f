"""`forgetless generate`: answer one prompt or a JSONL file of prompts, with or without an adapter.

    forgetless generate --adapter runs/x --prompt "What is the capital of Peru?"
    forgetless generate --adapter runs/x --input prompts.jsonl --output answers.jsonl --precision auto

It runs in fp32 by default, so its greedy answers are those of plain transformers + peft (the parity
switch a user checks an adapter with); `--precision auto` is the fast path (bf16 autocast where the
hardware runs it fast), whose answers can differ slightly. The probes, audits and `serve` keep `auto`.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path

import typer

from forgetless.cli.options import ADAPTER_BASE_OR_EMBEDDED, model_option
from forgetless.engine.sampling import GENERATE_PRECISION, SamplingConfig
from forgetless.errors import ConfigError, DataError, where


def generate(
    prompt: str = typer.Option(None, "--prompt", "-p", help="One prompt to answer."),
    input: Path = typer.Option(None, "--input", "-i", help="JSONL of {prompt} or {messages} records."),
    output: Path = typer.Option(None, "--output", "-o", help="Write JSONL answers here (else stdout)."),
    model: str = model_option(ADAPTER_BASE_OR_EMBEDDED),
    adapter: Path = typer.Option(None, "--adapter", help="Adapter directory (LoRA or LoRAMoE)."),
    system: str = typer.Option(None, "--system", help="System prompt."),
    max_new_tokens: int = typer.Option(
        SamplingConfig.max_new_tokens, "--max-new-tokens", help="Tokens to generate at most."
    ),
    temperature: float = typer.Option(
        SamplingConfig.temperature, "--temperature", help="0 = greedy (default); > 0 samples."
    ),
    top_p: float = typer.Option(SamplingConfig.top_p, "--top-p", help="Nucleus sampling mass."),
    top_k: int = typer.Option(SamplingConfig.top_k, "--top-k", help="Top-k sampling (0 = off)."),
    batch_size: int = typer.Option(16, "--batch-size", help="Prompts per forward batch."),
    seed: int = typer.Option(SamplingConfig.seed, "--seed", help="Sampling seed."),
    no_scope: bool = typer.Option(
        False,
        "--no-scope",
        help="Ignore the adapter's scope.json (facts adapters answer only questions naming a taught subject; "
        "the base answers the rest): use the adapter on every prompt, as plain PEFT or vLLM would.",
    ),
    precision: str = typer.Option(
        GENERATE_PRECISION,
        "--precision",
        help="fp32 (default): the same greedy answers as plain transformers + peft. auto/bf16: bf16 autocast "
        "where the hardware runs it fast (about 2x on a bf16 CPU), answers may differ slightly.",
    ),
) -> None:
    """Generate answers (chat template applied, batched, left-padded)."""
    from forgetless.adapters.loading import load_with_adapter
    from forgetless.data.chat import prompt_messages
    from forgetless.engine.generate import generate_texts
    from forgetless.knowledge.scope import FactScope
    from forgetless.knowledge.scoped import generate_in_scope
    from forgetless.utils.console import progress
    from forgetless.utils.fileio import check_output_file, write_jsonl_atomic

    if (prompt is None) == (input is None):
        raise ConfigError("give exactly one of --prompt TEXT or --input FILE")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    if output:
        check_output_file(output)
    sampling = SamplingConfig(max_new_tokens, temperature, top_p, top_k, seed=seed, precision=precision).validate()
    rows = [{"prompt": prompt}] if prompt is not None else read_prompts(input)
    conversations = [r["messages"] if "messages" in r else prompt_messages(r["prompt"], system) for r in rows]
    scope = None if no_scope or adapter is None else FactScope.load(adapter)
    loaded, tokenizer, _ = load_with_adapter(model, str(adapter) if adapter else None)
    with progress() if input else nullcontext() as bar:  # one --prompt: no bar
        task = bar.add_task("generating", total=len(rows)) if input else None

        def run(convs):
            return generate_texts(
                loaded, tokenizer, convs, sampling, batch_size, on_batch=lambda n: _advance(bar, task, n)
            )

        answers = generate_in_scope(loaded, conversations, scope, run)
    results = [{**row, "answer": a[0]} for row, a in zip(rows, answers, strict=True)]
    if output:
        write_jsonl_atomic(output, results)
    elif prompt is not None:
        typer.echo(results[0]["answer"])
    else:
        for row in results:
            typer.echo(json.dumps(row, ensure_ascii=False))


def _advance(bar, task, n: int) -> None:
    if task is not None:
        bar.advance(task, n)


def read_prompts(path: Path) -> list[dict]:
    """The `--input` JSONL: one {prompt} or {messages} object per line; DataError naming the bad line."""
    if not path.is_file():
        raise DataError(f"{path}: input file not found; check the --input path")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where(path, number)}: malformed JSON ({exc.msg}); one object per line") from None
        if not isinstance(obj, dict) or not ("prompt" in obj or "messages" in obj):
            raise DataError(f"{where(path, number)}:prompt: missing; each line needs `prompt` or `messages`")
        if "prompt" in obj and not isinstance(obj["prompt"], str):
            raise DataError(f"{where(path, number)}:prompt: expected a string")
        rows.append(obj)
    if not rows:
        raise DataError(f"{path}: input file has no prompts")
    return rows
