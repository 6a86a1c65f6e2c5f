"""Markdown report with PNG plots for an audit or an injection run (`report.md` in the output dir)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from forgetless.knowledge.shifts import CATEGORIES, plot_transition_heatmap
from forgetless.utils.fileio import write_text_atomic


def summary_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    """(measure, value) pairs: the short summary printed by the CLI and shown in the report."""
    rows = []
    if "reliability" in result:
        rows.append(("reliability on trained facts (mean P_correct)", f"{result['reliability']:.3f}"))
        rows.append(("trained facts always correct", f"{result['reliability_all_correct']:.3f}"))
    rows += _stick_rows(result)
    if "mmlu_before" in result:
        rows.append(("MMLU before", f"{result['mmlu_before']:.3f} ± {result['mmlu_before_stderr']:.3f}"))
        rows.append(("MMLU after", f"{result['mmlu_after']:.3f} ± {result['mmlu_after_stderr']:.3f}"))
        rows.append(("MMLU delta (paired s.e.)", f"{result['mmlu_delta']:+.3f} ± {result['mmlu_delta_stderr']:.3f}"))
    if "general_loss_before" in result:
        rows.append(
            ("loss on general text", f"{result['general_loss_before']:.3f} → {result['general_loss_after']:.3f}")
        )
    shifts = result["shifts"]
    rows.append(("knowledge shifts (positive / negative / unchanged)", _shift_text(shifts)))
    rows.append(("refusals", f"{result['refusal_before']:.1%} → {result['refusal_after']:.1%}"))
    before, after = result["answers_before"], result["answers_after"]
    rows.append(("unique answers", f"{before['unique']} → {after['unique']}"))
    rows.append(("answer entropy (bits)", f"{before['entropy_bits']:.2f} → {after['entropy_bits']:.2f}"))
    rows.append(("exploded answers", ", ".join(_exploded(result)) or "none"))
    if result.get("seconds"):
        rows.append(("wall time", ", ".join(f"{phase} {value:.0f} s" for phase, value in result["seconds"].items())))
    rows += _lm_eval_rows(result.get("lm_eval"))
    return rows


def _stick_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    """Zero-shot reliability, generalization and retention with their exact 95% intervals."""
    rows = []
    for key, name in (
        ("reliability_zero_shot", "trained facts answered zero-shot"),
        ("generalization", "held-out phrasings answered (generalization)"),
        ("highly_known_kept", "HighlyKnown facts kept (never trained)"),
    ):
        if key in result:
            low, high = result[f"{key}_ci95"]
            rows.append((name, f"{result[key]:.3f} [{low:.3f}, {high:.3f}]"))
    if "known_mcnemar" in result:
        test = result["known_mcnemar"]
        rows.append(
            (
                "HighlyKnown lost / gained (exact McNemar p)",
                f"{test['lost']} / {test['gained']} (p={test['p_value']:.3g})",
            )
        )
    if result.get("exploded_wrong"):
        wrong = ", ".join(f"{e['answer']!r} {e['wrong']}/{e['after']}" for e in result["exploded_wrong"][:6])
        rows.append(("exploded answers: wrong where given / given", wrong))
    if "exploded_untrained" in result:
        untrained = [f"{e['answer']!r} ({e['before']}→{e['after']})" for e in result["exploded_untrained"][:8]]
        rows.append(("exploded answers among facts never trained", ", ".join(untrained) or "none"))
    rows += _scope_rows(result)
    if result.get("gate_curve"):
        curve = ", ".join(f"{p['step']}:{p['answered']:.2f}" for p in result["gate_curve"])
        rows.append(("gate: step:share answered", curve))
    return rows


def _scope_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    """The scope's coverage, and the numbers of the same adapter used on every prompt (exported, unscoped)."""
    scope, unscoped = result.get("scope"), result.get("unscoped")
    if not scope or not unscoped:
        return []
    covered = f"{scope['facts_in_scope']}/{scope['facts']} / {scope['mmlu_in_scope']}"
    rows = [("scope: facts / MMLU questions in scope", covered)]
    for key, name in (
        ("reliability", "reliability"),
        ("reliability_zero_shot", "answered zero-shot"),
        ("generalization", "generalization"),
        ("highly_known_kept", "HighlyKnown kept"),
        ("mmlu_delta", "MMLU delta"),
    ):
        if unscoped.get(key) is not None:
            rows.append(
                (
                    f"without the scope (plain PEFT, vLLM): {name}",
                    f"{unscoped[key]:+.3f}" if key == "mmlu_delta" else f"{unscoped[key]:.3f}",
                )
            )
    shifts = unscoped.get("shifts")
    if shifts:
        rows.append(("without the scope: knowledge shifts (positive / negative / unchanged)", _shift_text(shifts)))
    return rows


def _lm_eval_rows(lm_eval: dict[str, Any] | None) -> list[tuple[str, str]]:
    if not lm_eval:
        return []
    if "skipped" in lm_eval:
        return [("lm-eval", f"skipped: {lm_eval['skipped']}")]
    rows = []
    if "scope" in lm_eval:
        routed = lm_eval["scope"]
        reached = f"{routed['in_scope']} of {routed['requests']}"
        rows.append(("lm-eval requests that reached the adapter (its scope)", reached))
    for task, metrics in lm_eval["results"].items():
        for name, v in metrics.items():
            rows.append((f"lm-eval {task} {name}", f"{v['before']:.3f} → {v['after']:.3f} ({v['delta']:+.3f})"))
    return rows


def _shift_text(shifts: dict[str, int]) -> str:
    return f"{shifts.get('positive', 0)} / {shifts.get('negative', 0)} / {shifts.get('unchanged', 0)}"


def _exploded(result: dict[str, Any]) -> list[str]:
    return [f"{e['answer']!r} ({e['before']}→{e['after']})" for e in result.get("exploded_answers", [])[:8]]


def write_audit_report(result: dict[str, Any], output: Path, title: str) -> Path:
    """report.md + transitions.png in `output`."""
    plot_transition_heatmap(result["transitions"], output / "transitions.png", title="SliCK category: before → after")
    lines = [f"# {title}", "", "| measure | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in summary_rows(result)]
    lines += ["", "## Category transitions (rows: before, columns: after)", "", "![transitions](transitions.png)", ""]
    lines += ["| before \\ after | " + " | ".join(CATEGORIES) + " |", "|---|" + "---|" * len(CATEGORIES)]
    for name, row in zip(CATEGORIES, result["transitions"], strict=True):
        lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    plot_answer_tops(result, output / "answers.png")
    lines += ["", "## Most frequent zero-shot answers", "", "![answers before and after](answers.png)", ""]
    lines += ["| answer (after) | count |", "|---|---|"]
    lines += [f"| {t['answer']} | {t['count']} |" for t in result["answers_after"]["top"]]
    lines += [
        "",
        f"Facts probed: {result['facts']}. Results in `results.json`; per-fact categories in",
        "`facts_before.jsonl` and `facts_after.jsonl`.",
    ]
    return write_text_atomic(output / "report.md", "\n".join(lines) + "\n")


def plot_answer_tops(result: dict[str, Any], path: Path) -> Path:
    """Two bar charts: the 10 most frequent zero-shot answers before and after (answer collapse shows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from forgetless.utils.plots import save_figure

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in zip(axes, ("answers_before", "answers_after"), ("before", "after"), strict=True):
        top = result[key]["top"][::-1]
        ax.barh([t["answer"][:28] or "(empty)" for t in top], [t["count"] for t in top], color="tab:blue")
        ax.set_title(f"{title}: {result[key]['unique']} unique of {result[key]['n']}")
        ax.set_xlabel("count")
    fig.tight_layout()
    return save_figure(fig, path)
