"""The short demo (`forgetless demo --fictional`): teach the embedded model facts it does not know.

1. Ask the base model 8 fictional facts (trained phrasing + an unseen phrasing) and 8 general questions.
2. Self-replay anchors: the base model answers 24 other general questions; its own answers are mixed
   into the training set (known facts mixed with unknown ones is what the knowledge-packing paper found
   to do least harm). Without them the adapter learns "the capital of X is Marrowick" for every X.
3. Train a LoRA adapter on the fictional facts (2 phrasings each) plus the anchors, on the CPU.
4. Ask again with the adapter: were the new facts learned, and did the known answers survive?
5. Write `REPORT.md` with the before/after table and a loss-curve PNG next to the adapter.

    forgetless demo --fictional [--output runs/demo]
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from forgetless.utils.console import err_console, out_console, status


@dataclass
class ProbeRow:
    kind: str
    prompt: str
    expect: str
    before: str = ""
    after: str = ""

    def correct(self, answer: str) -> bool:
        from forgetless.knowledge.answers import is_correct

        return is_correct(answer, self.expect.split("|"), mode="substring")


def resource_path(name: str) -> Path:
    """Path of a data file shipped inside the package."""
    return Path(str(resources.files("forgetless") / "resources" / name))


def run_demo(output: str = "runs/demo", max_steps: int = 60, anchors: bool = True) -> Path:
    """Run the demo end to end and return the adapter directory (which also holds REPORT.md)."""
    from forgetless.adapters.loading import load_with_adapter
    from forgetless.train.config import TrainConfig
    from forgetless.train.run import train

    rows = [ProbeRow(**json.loads(line)) for line in resource_path("demo_probe.jsonl").read_text().splitlines()]
    with status("Asking the base model..."):
        base, tokenizer, _ = load_with_adapter(None, None)
        for row, answer in zip(rows, _answers(base, tokenizer, rows), strict=True):
            row.before = answer
        data = _training_file(Path(output), base, tokenizer, anchors)
    cfg = TrainConfig(
        data=str(data),
        output=output,
        max_steps=max_steps,
        lr=1e-3,
        rank=16,
        batch_size=8,
        logging_steps=5,
        save_steps=1000,
        overwrite=True,
    )
    err_console.print(f"Training LoRA on {cfg.data} for {max_steps} steps...")
    result = train(cfg)
    tuned, tokenizer, _ = load_with_adapter(None, output)
    with status("Asking the adapted model..."):
        for row, answer in zip(rows, _answers(tuned, tokenizer, rows), strict=True):
            row.after = answer
    _print_table(rows)
    _write_report(Path(output), rows, result.log_history)
    return Path(output)


def _training_file(output: Path, model, tokenizer, anchors: bool) -> Path:
    """New facts, plus (with `anchors`) the base model's own answers to other general questions."""
    from forgetless.utils.fileio import write_jsonl_atomic

    records = [json.loads(line) for line in resource_path("demo_new_facts.jsonl").read_text().splitlines()]
    if anchors:
        lines = resource_path("demo_anchors.jsonl").read_text().splitlines()
        questions = [json.loads(line)["prompt"] for line in lines]
        answers = _answers(model, tokenizer, questions, max_new_tokens=48)
        records += [{"prompt": q, "response": a} for q, a in zip(questions, answers, strict=True)]
    return write_jsonl_atomic(output.parent / f"{output.name}_train.jsonl", records)


def _answers(model, tokenizer, prompts: list, max_new_tokens: int = 40) -> list[str]:
    from forgetless.data.chat import prompt_messages
    from forgetless.engine.generate import generate_texts
    from forgetless.engine.sampling import SamplingConfig

    texts = [p.prompt if isinstance(p, ProbeRow) else p for p in prompts]
    convs = [prompt_messages(t) for t in texts]
    out = generate_texts(model, tokenizer, convs, SamplingConfig(max_new_tokens=max_new_tokens), batch_size=24)
    return [" ".join(a[0].split()) for a in out]


def summarize(rows: list[ProbeRow]) -> dict[str, str]:
    """Counts per kind: correct before -> after; for known facts only those the base knew count."""
    summary = {}
    for kind in dict.fromkeys(r.kind for r in rows):
        group = [r for r in rows if r.kind == kind]
        if kind == "known":
            knew = [r for r in group if r.correct(r.before)]
            kept = sum(r.correct(r.after) for r in knew)
            summary[kind] = f"base knew {len(knew)}/{len(group)}; still known after training: {kept}/{len(knew)}"
        else:
            before = sum(r.correct(r.before) for r in group)
            after = sum(r.correct(r.after) for r in group)
            summary[kind] = f"correct before {before}/{len(group)} -> after {after}/{len(group)}"
    return summary


def _print_table(rows: list[ProbeRow]) -> None:
    from rich.table import Table

    table = Table(title="Before and after the adapter", show_lines=False)
    for column in ("kind", "question", "expected", "before", "after"):
        table.add_column(column, overflow="fold")
    for row in rows:
        mark_b = "✓" if row.correct(row.before) else "✗"
        mark_a = "✓" if row.correct(row.after) else "✗"
        table.add_row(row.kind, row.prompt, row.expect, f"{mark_b} {row.before[:60]}", f"{mark_a} {row.after[:60]}")
    out_console.print(table)
    for kind, line in summarize(rows).items():
        out_console.print(f"[bold]{kind}[/bold]: {line}")


def _write_report(output: Path, rows: list[ProbeRow], log_history: list[dict]) -> None:
    from forgetless.utils.fileio import write_text_atomic
    from forgetless.utils.plots import plot_loss_curve

    plot_loss_curve(log_history, output / "loss.png")
    lines = ["# forgetless demo: teaching SmolLM2-135M-Instruct 8 fictional facts", ""]
    lines += [f"- **{kind}**: {line}" for kind, line in summarize(rows).items()]
    lines += ["", "![training loss](loss.png)", "", "| kind | question | expected | before | after |"]
    lines += ["|---|---|---|---|---|"]
    for r in rows:
        cells = [r.kind, r.prompt, r.expect, _mark(r, r.before), _mark(r, r.after)]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    write_text_atomic(output / "REPORT.md", "\n".join(lines) + "\n")
    out_console.print(f"report: {output / 'REPORT.md'}")


def _mark(row: ProbeRow, answer: str) -> str:
    return ("✓ " if row.correct(answer) else "✗ ") + answer[:80]
