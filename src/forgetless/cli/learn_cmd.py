"""`forgetless learn`: teach your own facts with the forgetless recipe and audit what it cost.

Flags default to None (not given): the defaults are LearnConfig's (forgetless.knowledge.learn).
"""

from __future__ import annotations

from pathlib import Path

import typer

from forgetless.cli.options import model_option


def learn(
    facts: str = typer.Option(None, "--facts", help="Your new facts (JSONL: subject, relation, object, question)."),
    output: str = typer.Option(None, "--output", "-o", help="Output directory (adapter, results.json, report)."),
    known: str = typer.Option(None, "--known", help="Facts to keep (JSONL; default: built-in country facts)."),
    model: str = model_option("Base model (default: embedded)."),
    method: str = typer.Option(None, "--method", help="Adapter method: lora (default) or loramoe."),
    seed: int = typer.Option(None, "--seed", help="Seed of phrasings, anchors and training."),
    mmlu: int = typer.Option(None, "--mmlu", help="MMLU questions before and after (0 skips)."),
    overwrite: bool = typer.Option(None, "--overwrite", help="Replace a non-empty output."),
) -> None:
    """Teach every fact of --facts (phrasings, self-replay anchors, gating), then audit the cost."""
    from forgetless.cli.audit_cmd import print_summary
    from forgetless.knowledge.learn import LearnConfig, run_learn

    given = {key: value for key, value in locals().items() if key in LearnConfig.__dataclass_fields__}
    cfg = LearnConfig(**{key: value for key, value in given.items() if value is not None}).validate()
    result = run_learn(cfg)
    print_summary(result, Path(cfg.output))
