"""Injection sweeps: a grid of n x mixture x k x seed from YAML, one injection per cell, one table.

    forgetless inject --config configs/inject_sweep.yaml

Any of `unknown`, `mixture`, `k`, `seed` may be a list; every combination runs into
`OUTPUT/n{n}_{mixture}_k{k}_s{seed}/` (cells already complete are skipped, so a killed sweep resumes),
sharing one probe cache. `OUTPUT/results.json` holds one row per cell and `OUTPUT/report.md` the table
(shaped like the paper's Tables 2-4 and 7) with plots: reliability vs n and MMLU vs n.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from forgetless.knowledge.inject import InjectConfig
from forgetless.utils.fileio import write_json_atomic, write_text_atomic

GRID_KEYS = frozenset({"unknown", "mixture", "k", "seed", "recipe"})


def cell_name(unknown: int, mixture: str, k: int, seed: int, recipe: str | None = None) -> str:
    """A cell's directory name under the sweep output, e.g. `n50_known_k1_s0` (`..._s0_paper` when the grid
    has a recipe axis)."""
    return f"n{unknown}_{mixture}_k{k}_s{seed}" + (f"_{recipe}" if recipe else "")


def cells(base: InjectConfig, grid: dict[str, list]) -> list[InjectConfig]:
    """One config per grid combination; `k` is forced to 0 for the `none` mixture (deduplicated)."""
    keys = sorted(grid)
    out: dict[str, InjectConfig] = {}
    for values in itertools.product(*(grid[k] for k in keys)):
        cfg = replace(base, **dict(zip(keys, values, strict=True)))
        if cfg.recipe != base.recipe:  # a recipe axis: each recipe trains with its own defaults
            cfg = replace(cfg, train=None)
        if cfg.mixture == "none":
            cfg = replace(cfg, k=0)
        name = cell_name(cfg.unknown, cfg.mixture, cfg.k, cfg.seed, cfg.recipe if "recipe" in grid else None)
        out[name] = replace(cfg, output=str(Path(base.output) / name))
    return list(out.values())


def run_sweep(base: InjectConfig, grid: dict[str, list], on_cell=None) -> list[dict[str, Any]]:
    """Run every cell (skipping finished ones) and write the sweep table and plots."""
    from forgetless.knowledge.runs import run_injection

    rows = []
    for cfg in cells(base, grid):
        done = Path(cfg.output) / "results.json"
        result = json.loads(done.read_text()) if done.is_file() else run_injection(cfg.validate())
        rows.append(_row(cfg, result))
        if on_cell:
            on_cell(rows[-1])
        write_json_atomic(Path(base.output) / "results.json", rows)
    write_sweep_report(rows, Path(base.output))
    return rows


def _row(cfg: InjectConfig, result: dict[str, Any]) -> dict[str, Any]:
    keep = ("reliability", "reliability_all_correct", "mmlu_before", "mmlu_after", "mmlu_delta", "mmlu_delta_stderr")
    keep += ("reliability_zero_shot", "generalization", "highly_known_kept")
    row = {"unknown": cfg.unknown, "mixture": cfg.mixture, "k": cfg.k, "seed": cfg.seed, "recipe": cfg.recipe}
    row.update({k: result.get(k) for k in keep})
    row.update(shifts=result["shifts"], refusal_before=result["refusal_before"], refusal_after=result["refusal_after"])
    row.update(unique_before=result["answers_before"]["unique"], unique_after=result["answers_after"]["unique"])
    row["transitions"] = result["transitions"]
    return row


def sweep_table(rows: list[dict[str, Any]]) -> str:
    head = "| n | mixture | k | seed | reliability | all correct | MMLU before → after (Δ ± s.e.) "
    head += "| shifts +/− | refusals | unique answers |"
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        mmlu = "—"
        if r.get("mmlu_before") is not None:
            delta = f"({r['mmlu_delta']:+.3f} ± {r['mmlu_delta_stderr']:.3f})"
            mmlu = f"{r['mmlu_before']:.3f} → {r['mmlu_after']:.3f} {delta}"
        lines.append(
            f"| {r['unknown']} | {r['mixture']} | {r['k']} | {r['seed']} | {r['reliability']:.3f} | "
            f"{r['reliability_all_correct']:.3f} | {mmlu} | {r['shifts']['positive']}/{r['shifts']['negative']} | "
            f"{r['refusal_before']:.1%} → {r['refusal_after']:.1%} | {r['unique_before']} → {r['unique_after']} |"
        )
    return "\n".join(lines)


def write_sweep_report(rows: list[dict[str, Any]], output: Path) -> Path:
    _plot(rows, output / "sweep.png")
    text = ["# Knowledge injection sweep", "", sweep_table(rows), "", "![reliability and MMLU vs n](sweep.png)", ""]
    return write_text_atomic(output / "report.md", "\n".join(text))


def _plot(rows: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from forgetless.utils.plots import save_figure

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for (mixture, k), group in _groups(rows).items():
        label = mixture if mixture == "none" else f"{mixture} k={k}"
        ns = sorted({r["unknown"] for r in group})
        axes[0].plot(ns, [_mean(group, n, "reliability") for n in ns], marker="o", label=label)
        if group[0].get("mmlu_after") is not None:
            axes[1].plot(ns, [_mean(group, n, "mmlu_after") for n in ns], marker="o", label=label)
    before = [r["mmlu_before"] for r in rows if r.get("mmlu_before") is not None]
    if before:
        axes[1].axhline(before[0], color="gray", linestyle="--", label="base")
        axes[1].legend()
    seeds = len({r["seed"] for r in rows})
    titles = ("reliability on trained facts", "MMLU after")
    titles = tuple(f"{t} (mean of {seeds} seeds)" for t in titles) if seeds > 1 else titles
    for ax, title in zip(axes, titles, strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("unknown facts injected (n)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend()
    return save_figure(fig, path)


def _groups(rows):
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault((r["mixture"], r["k"]), []).append(r)
    return groups


def _mean(group, n, key) -> float:
    values = [r[key] for r in group if r["unknown"] == n and r.get(key) is not None]
    return sum(values) / len(values) if values else float("nan")
