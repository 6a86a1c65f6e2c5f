"""`forgetless probe`: SliCK knowledge categories (HighlyKnown/MaybeKnown/WeaklyKnown/Unknown) of facts.

    forgetless probe --facts facts.jsonl --output runs/probe-base
    forgetless probe --facts facts.jsonl --output runs/probe-lora --adapter runs/lora --samples 0

Writes `facts.jsonl` (one row per fact, with its `category`), `summary.json`, `summary.md` and
`cache/<key>.jsonl` into --output. Results are appended to the cache after every batch, so a killed run
can be resumed by running the SAME command again: a non-empty --output is accepted only when it holds a
cache for the same model, adapter and settings (the key hashes them); anything else is refused, pick a
new --output.

Option defaults are `ProbeSettings`' (tests/unit/test_cli_defaults.py checks them; importing it here would
slow every command's start-up).

Bad input is refused with a one-line error (exit 2) before the model is loaded or any cache row is
written: a fact without subject or object, a relation with no question and no template, a relation with
fewer than --shots + 1 facts (the message suggests the largest --shots that works), an adapter made
for another base model.
"""

from __future__ import annotations

from pathlib import Path

import typer

from forgetless.cli.options import ADAPTER_BASE_OR_EMBEDDED, model_option
from forgetless.errors import OutputError

CACHE_SUBDIR = "cache"


def probe(
    facts: Path = typer.Option(..., "--facts", help="JSONL fact file (subject, relation, object, ...)."),
    output: Path = typer.Option(..., "--output", "-o", help="Output directory (resumes its own cache)."),
    model: str = model_option(ADAPTER_BASE_OR_EMBEDDED),
    adapter: Path = typer.Option(None, "--adapter", help="Adapter directory to probe on top of the base."),
    exemplar_sets: int = typer.Option(10, "--exemplar-sets", help="Few-shot prompts per fact."),
    shots: int = typer.Option(4, "--shots", help="Exemplars (same relation, other facts) per prompt."),
    samples: int = typer.Option(16, "--samples", help="Samples per prompt at T=0.5, top-40 (0 = greedy only)."),
    max_new_tokens: int = typer.Option(32, "--max-new-tokens", help="Tokens to generate per answer."),
    match: str = typer.Option("substring", "--match", help="Answer matching: substring (paper) or exact."),
    batch_size: int = typer.Option(64, "--batch-size", help="Decoded rows per generation batch."),
    seed: int = typer.Option(0, "--seed", help="Seed for exemplar draws and sampling."),
) -> None:
    """Probe which facts a model (optionally with an adapter) knows, SliCK-style; resumable."""
    from forgetless.adapters.loading import load_with_adapter
    from forgetless.knowledge.facts import load_facts
    from forgetless.knowledge.probe_cache import cache_key, model_key
    from forgetless.knowledge.slick import ProbeSettings, check_facts, probe_facts, write_probe_outputs
    from forgetless.utils.console import progress

    settings = ProbeSettings(
        n_exemplar_sets=exemplar_sets,
        shots=shots,
        samples=samples,
        max_new_tokens=max_new_tokens,
        match=match,
        seed=seed,
    ).validate()
    fact_list = load_facts(facts)
    check_facts(fact_list, settings)  # before the (slow) model load
    check_probe_output(output, key=None)  # cheap check before loading the model
    loaded, tokenizer, info = load_with_adapter(model, str(adapter) if adapter else None)
    key_model = model_key(info.model_id, adapter, info.fingerprint)
    check_probe_output(output, key=cache_key(key_model, settings.to_dict()))
    with progress() as bar:
        task = bar.add_task("probing facts", total=len(fact_list))
        probes = probe_facts(
            loaded,
            tokenizer,
            fact_list,
            settings,
            cache_dir=output / CACHE_SUBDIR,
            model_key=key_model,
            on_progress=lambda n: bar.advance(task, n),
            batch_size=batch_size,
        )
    meta = {"model": key_model, "facts": str(facts), "settings": settings.to_dict()}
    summary = write_probe_outputs(probes, output, meta=meta)
    print_summary(summary)


def check_probe_output(output: Path, key: str | None) -> Path:
    """Accept a missing/empty --output, or one holding this run's cache (resume); else OutputError.

    With `key=None` only the model-independent part is checked (a file, or a non-empty dir with no cache).
    """
    if output.exists() and not output.is_dir():
        raise OutputError(f"{output}: --output exists and is a file; choose a directory path")
    if not output.is_dir() or not any(output.iterdir()):
        return output
    cache = output / CACHE_SUBDIR
    if not cache.is_dir():
        raise OutputError(f"{output}: --output is not empty and holds no probe cache; pick another --output")
    if key is None or (cache / f"{key}.jsonl").is_file() or (cache / f"{key}.meta.json").is_file():
        return output
    if not any(cache.glob("*.jsonl")) and not any(cache.glob("*.meta.json")):
        return output  # a run killed before its first row was cached: nothing of another probe to keep
    raise OutputError(
        f"{output}: --output holds a probe of another model, adapter or settings; "
        "rerun with the same options to resume, or pick another --output"
    )


def print_summary(summary: dict) -> None:
    """The relation x category table on stdout."""
    from rich.table import Table

    from forgetless.knowledge.slick import CATEGORIES
    from forgetless.utils.console import out_console

    table = Table(title=f"SliCK categories ({summary['total']} facts, mean P_correct {summary['mean_p_correct']})")
    for name in ("relation", *CATEGORIES, "total"):
        table.add_column(name, justify="left" if name == "relation" else "right")
    for relation, row in summary["by_relation"].items():
        table.add_row(relation, *(str(row[c]) for c in CATEGORIES), str(row["total"]))
    totals = [str(summary["categories"][c]) for c in CATEGORIES]
    table.add_row("all", *totals, str(summary["total"]), style="bold")
    out_console.print(table)
