"""`forgetless demo`: the main job on the embedded model (see forgetless.demos.knowledge_audit)."""

from __future__ import annotations

import typer

from forgetless.demos.knowledge_audit import DemoSettings


def demo(
    output: str = typer.Option(DemoSettings.output, "--output", "-o", help="Where the adapter, results and report go."),
    unknown: int = typer.Option(DemoSettings.unknown, "--unknown", "-n", help="Unknown facts to inject."),
    per_relation: int = typer.Option(
        DemoSettings.per_relation, "--per-relation", help="Country facts probed per relation (4 relations)."
    ),
    mixture: str = typer.Option(DemoSettings.mixture, "--mixture", help="none | known | paraphrase."),
    k: int = typer.Option(DemoSettings.k, "--k", help="HighlyKnown facts or paraphrases mixed in per unknown fact."),
    mmlu: int = typer.Option(DemoSettings.mmlu, "--mmlu", help="MMLU questions before and after (0 skips)."),
    fictional: bool = typer.Option(False, "--fictional", help="The 3-minute demo: 8 invented facts instead."),
) -> None:
    """Probe real country facts, inject Unknown ones with a LoRA, audit what it taught and what it cost."""
    if fictional:
        from forgetless.demos.fictional import run_demo as run_fictional

        run_fictional(output)
        return
    from forgetless.demos.knowledge_audit import run_demo

    settings = DemoSettings(output=output, unknown=unknown, per_relation=per_relation, mixture=mixture, k=k, mmlu=mmlu)
    run_demo(settings)
