"""The continual run's Markdown report and plots, from results.json alone.

    from forgetless.continual.report import write_outputs
    write_outputs(json.load(open("runs/cit/results.json")), Path("runs/cit"))   # report.md + plots/*.png

Plots: `plots/R_<method>.png` (the R matrix as a heatmap, one per method) and `plots/task_scores.png`
(each task's score after every stage, one line per method). A partial results.json (a failed or running
run) gives a partial report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from forgetless.utils.fileio import write_text_atomic

FORMULAS = """\
R[i][j] = score on task j after training through task i (row 0 = the base model, zero-shot); tasks 1..T.

- AA = (1/T) · Σ_j R[T][j]
- BWT = 1/(T−1) · Σ_{j<T} (R[T][j] − R[j][j])  (negative = forgetting)
- FWT = 1/(T−1) · Σ_{j≥2} (R[j−1][j] − R[0][j])  (against the zero-shot base)
- forgetting (Chaudhry) = 1/(T−1) · Σ_{j<T} (max_{i=j..T−1} R[i][j] − R[T][j])
"""


def methods_of(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{method: summary} for every method that has produced at least one stage."""
    out = {}
    if results.get("R"):
        out["switch"] = results
    for name, summary in results.get("baselines", {}).items():
        if summary.get("R"):
            out[name] = summary
    return out


def write_outputs(results: dict[str, Any], run_dir: Path) -> Path:
    """Write plots/*.png and report.md into `run_dir`; returns the report path."""
    plots = write_plots(results, run_dir / "plots")
    return write_text_atomic(run_dir / "report.md", render_report(results, plots))


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:+.{digits}f}" if digits < 0 else f"{value:.{digits}f}"
    return str(value)


def _signed(value: Any) -> str:
    return "–" if value is None else f"{value:+.3f}"


def render_report(results: dict[str, Any], plots: list[Path]) -> str:
    """The Markdown report text."""
    tasks = [t["name"] for t in results.get("tasks", [])]
    lines = [f"# Continual instruction tuning: {', '.join(tasks)}", ""]
    lines += [f"Base model `{results.get('base_model')}`; status **{results.get('status')}**.", ""]
    lines += _task_table(results) + _summary_table(results) + ["## Formulas", "", FORMULAS]
    lines += _switch_table(results) + _routing_table(results) + _general_table(results)
    for method, summary in methods_of(results).items():
        lines += _r_table(method, summary, tasks)
    lines += ["## Plots", ""] + [f"![{p.stem}](plots/{p.name})" for p in plots] + [""]
    return "\n".join(lines)


def _task_table(results: dict[str, Any]) -> list[str]:
    lines = ["| task | metric | train records | LoRA records | switch prompts | eval |", "|---|---|---|---|---|---|"]
    for t in results.get("tasks", []):
        row = [t["name"], t["metric"], t["train_records"], t["adapter_records"], t["switch_prompts"], t["eval_records"]]
        lines.append("| " + " | ".join(str(v) for v in row) + " |")
    return [*lines, ""]


def _summary_table(results: dict[str, Any]) -> list[str]:
    lines = ["## Summary", "", "| method | AA | BWT | FWT | forgetting | switch accuracy | QA kept | MMLU |"]
    lines.append("|---|---|---|---|---|---|---|---|")
    base = results.get("base", {}).get("general", {})
    for method, s in methods_of(results).items():
        general = s["stages"][-1].get("general", {}) if s.get("stages") else {}
        cells = [_fmt(s.get("aa")), _signed(s.get("bwt")), _signed(s.get("fwt")), _fmt(s.get("forgetting"))]
        cells += [_fmt(s.get("switch_accuracy")), _fmt(general.get("qa")), _fmt(general.get("mmlu"))]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
        if s.get("closed_set", {}).get("R"):
            c = s["closed_set"]
            cells = [_fmt(c.get("aa")), _signed(c.get("bwt")), _signed(c.get("fwt")), _fmt(c.get("forgetting"))]
            lines.append("| switch, closed set (no abstain) | " + " | ".join(cells) + " | | | |")
    lines.append(f"| base (zero-shot) | {_fmt(_mean(results.get('base', {}).get('R0')))} | | | | | ")
    lines[-1] += f"{_fmt(base.get('qa'))} | {_fmt(base.get('mmlu'))} |"
    lines += [
        "",
        "QA kept: accuracy on known facts the base answered right (base = 1.0); MMLU: zero-shot accuracy.",
        "switch: as a user gets it (prompts under the abstain threshold go to the base model); closed set:",
        "every prompt to its argmax task, the paper's switch.",
        "",
    ]
    return lines


def _mean(values: list[float] | None) -> float | None:
    return sum(values) / len(values) if values else None


def _switch_table(results: dict[str, Any]) -> list[str]:
    stages = results.get("stages") if results.get("R") else None
    if not stages:
        return []
    lines = ["## SwitchCIT per stage", ""]
    header = "| stage | task | switch acc. | routed right | abstain (tasks) | abstain (foreign) | AUROC | FPR@95 |"
    lines.append(header + " routed score | oracle score |")
    lines.append("|---" * 10 + "|")
    for s in stages:
        routed, oracle = _mean(list(s["routed_score"].values())), _mean(list(s["oracle_score"].values()))
        cells = [s["stage"], s["task"], _fmt(s["switch_accuracy"]), _fmt(s["routed_accuracy"]), _fmt(s["abstain_id"])]
        cells += [_fmt(s.get("abstain_ood")), _fmt(s.get("auroc")), _fmt(s.get("fpr_at_95_tpr")), _fmt(routed)]
        cells.append(_fmt(oracle))
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += [
        "",
        "switch acc.: argmax task = true task on the seen tasks' eval prompts (closed set, the paper's measure);",
        "routed right: reached its own adapter after the abstain threshold; abstain: share sent to the base;",
        "AUROC / FPR@95: seen tasks' eval prompts vs foreign prompts (chat + MMLU) by the switch's score;",
        "routed / oracle score: mean over seen tasks through the switch / with each task's own adapter.",
        "",
    ]
    return lines


def _routing_table(results: dict[str, Any]) -> list[str]:
    """Per stage and task: right adapter / misrouted (to which task) / abstained, and the BWT split."""
    stages = results.get("stages") if results.get("R") else None
    if not stages or "routing" not in stages[0]:
        return []
    split = results.get("routing_split") or {}
    lines = ["## Routing loss", ""]
    if "bwt" in split:
        lines += [
            f"BWT {_signed(split['bwt'])} = adapter part {_signed(split['bwt_adapter'])} "
            f"+ routing part {_signed(split['bwt_routing'])}; score lost to routing after the last task: "
            f"{_fmt(split['routing_loss'])} (mean over tasks of oracle − routed).",
            "",
        ]
    lines += ["| stage | task | right adapter | misrouted | misrouted to | abstained | routed | oracle |"]
    lines.append("|---" * 8 + "|")
    for s in stages:
        for task, r in s["routing"].items():
            to = ", ".join(f"{k} {v:.2f}" for k, v in r["misrouted_to"].items()) or "–"
            cells = [s["stage"], task, _fmt(r["right"]), _fmt(r["misrouted"]), to, _fmt(r["abstained"])]
            cells += [_fmt(s["routed_score"].get(task)), _fmt(s["oracle_score"].get(task))]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += [
        "",
        "Shares of each task's eval prompts answered by its own adapter, another task's adapter or the base",
        "model; routed: the task's score through the switch, oracle: every prompt on its own adapter.",
        "",
    ]
    return lines


def _general_table(results: dict[str, Any]) -> list[str]:
    methods = methods_of(results)
    if not methods:
        return []
    lines = ["## General ability after each stage", "", "| method | stage | QA kept | MMLU |", "|---|---|---|---|"]
    base = results.get("base", {}).get("general", {})
    lines.append(f"| base | 0 | {_fmt(base.get('qa'))} | {_fmt(base.get('mmlu'))} |")
    for method, summary in methods.items():
        for s in summary.get("stages", []):
            g = s.get("general", {})
            lines.append(f"| {method} | {s['stage']} | {_fmt(g.get('qa'))} | {_fmt(g.get('mmlu'))} |")
    return [*lines, ""]


def _r_table(method: str, summary: dict[str, Any], tasks: list[str]) -> list[str]:
    rows = summary["R"]
    labels = ["base"] + (["all tasks"] if method == "multitask" else [f"after {t}" for t in tasks])
    lines = [f"## R matrix: {method}", "", "| | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
    for label, row in zip(labels, rows, strict=False):
        lines.append(f"| {label} | " + " | ".join("·" if v is None else f"{v:.3f}" for v in row) + " |")
    if any(v is None for row in rows for v in row):
        lines += ["", "·: not scored (a task more than one stage ahead; no metric reads it)."]
    if summary.get("note"):
        lines += ["", summary["note"]]
    return [*lines, ""]


# ------------------------------------------------------------------------------------------------ plots


def write_plots(results: dict[str, Any], folder: Path) -> list[Path]:
    """R heatmaps per method and per-task scores across stages; [] when nothing is scored yet."""
    methods = methods_of(results)
    if not methods:
        return []
    tasks = [t["name"] for t in results.get("tasks", [])]
    paths = [plot_r_matrix(method, s["R"], tasks, folder / f"R_{method}.png") for method, s in methods.items()]
    paths.append(plot_task_scores(methods, tasks, folder / "task_scores.png"))
    return paths


def plot_r_matrix(method: str, rows: list[list[float]], tasks: list[str], path: Path) -> Path:
    """R as a heatmap: rows = stages (base first), columns = tasks, value printed in each cell."""
    plt = _pyplot()
    from forgetless.utils.plots import save_figure

    fig, ax = plt.subplots(figsize=(1.3 * len(tasks) + 2, 0.5 * len(rows) + 1.5))
    values = [[float("nan") if v is None else v for v in row] for row in rows]
    image = ax.imshow(values, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    labels = ["base"] + (["all tasks"] if method == "multitask" else [f"after {t}" for t in tasks])
    ax.set_xticks(range(len(tasks)), tasks, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), labels[: len(rows)])
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            if value is not None:
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="white" if value < 0.6 else "black")
    ax.set_title(f"R matrix: {method}")
    fig.colorbar(image, ax=ax, fraction=0.046)
    return save_figure(fig, path)


def plot_task_scores(methods: dict[str, dict[str, Any]], tasks: list[str], path: Path) -> Path:
    """One panel per task: its score after each stage (0 = base), one line per method."""
    plt = _pyplot()
    from forgetless.utils.plots import save_figure

    fig, axes = plt.subplots(1, len(tasks), figsize=(3 * len(tasks), 3), sharey=True, squeeze=False)
    for j, (task, ax) in enumerate(zip(tasks, axes[0], strict=True)):
        for method, summary in methods.items():
            rows = summary["R"]
            stages = [0, len(tasks)] if method == "multitask" else list(range(len(rows)))
            points = [(x, row[j]) for x, row in zip(stages, rows, strict=False) if row[j] is not None]
            ax.plot(*zip(*points, strict=True), marker="o", label=method)
        ax.axvline(j + 1, color="grey", lw=0.8, ls=":")
        ax.set_title(task)
        ax.set_xlabel("stage")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("score")
    axes[0][-1].legend(fontsize=7)
    return save_figure(fig, path)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
