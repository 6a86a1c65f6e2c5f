"""Report of a LoRAMoE router analysis: heatmap PNG, Markdown table with the verdict, JSON.

from forgetless.adapters.loramoe.analysis import router_usage
from forgetless.adapters.loramoe.analysis_report import write_router_report
write_router_report(router_usage(model, tokenizer, records), "runs/moe/router_analysis")
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from forgetless.adapters.loramoe.analysis import RouterUsage, format_weight


def _short(name: str) -> str:
    for prefix in ("base_model.model.", "model.layers.", "model.model.layers."):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def plot_router_heatmap(usage: RouterUsage, path: str | os.PathLike) -> Path:
    """Heatmap PNG: rows layers, columns experts, one panel per sample type, a line at the group boundary."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from forgetless.utils.plots import save_figure

    n_layers, n_types = max(len(usage.layers), 1), max(len(usage.types), 1)
    height = min(max(2.5, 0.18 * n_layers + 1.5), 30)
    width = 1.2 + n_types * max(2.2, 0.45 * usage.num_experts + 1.0)
    fig, axes = plt.subplots(1, n_types, figsize=(width, height), squeeze=False, sharey=True, layout="constrained")
    finite = usage.means[np.isfinite(usage.means)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if vmax <= vmin:
        vmin, vmax = vmin - 1e-6, vmax + 1e-6
    image = None
    for j, ax in enumerate(axes[0]):
        if j < len(usage.types):
            data = usage.means[:, j, :] if usage.layers else np.zeros((1, usage.num_experts))
            image = ax.imshow(data, aspect="auto", cmap="viridis", vmin=vmin, vmax=vmax, interpolation="nearest")
            ax.set_title(f"{usage.types[j]} samples (n={usage.samples.get(usage.types[j], 0)})", fontsize=9)
        if 0 < usage.world_experts < usage.num_experts:
            ax.axvline(usage.world_experts - 0.5, color="white", linewidth=2)
            ax.axvline(usage.world_experts - 0.5, color="red", linewidth=1, linestyle="--")
        ax.set_xlabel("expert", fontsize=8)
        ax.set_xticks(range(usage.num_experts))
        ax.set_xticklabels(
            [f"W{n}" if n < usage.world_experts else f"T{n}" for n in range(usage.num_experts)], fontsize=7
        )
    axes[0][0].set_yticks(range(len(usage.layers)))
    axes[0][0].set_yticklabels([_short(n) for n in usage.layers], fontsize=5 if n_layers > 30 else 7)
    axes[0][0].set_ylabel("LoRAMoE layer", fontsize=8)
    if image is not None:
        fig.colorbar(image, ax=list(axes[0]), shrink=min(0.8, 6 / height + 0.3), label="mean router weight")
    fig.suptitle(
        f"LoRAMoE router usage ({usage.token_mode} tokens); experts W = world group, T = task group",
        fontsize=10,
    )
    return save_figure(fig, path)


def write_router_report(usage: RouterUsage, output_dir: str | os.PathLike) -> Path:
    """Write `router_usage.md` (tables, verdict, heatmap), `router_heatmap.png` and `router_usage.json`.

    Every file is written atomically; returns the markdown report's path.
    """
    from forgetless.utils.fileio import write_json_atomic, write_text_atomic

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot_router_heatmap(usage, out / "router_heatmap.png")
    write_json_atomic(out / "router_usage.json", usage.to_dict())
    counts = ", ".join(f"{usage.samples[t]} {t} ({usage.tokens[t]} tokens)" for t in usage.types)
    text = (
        "# LoRAMoE router usage\n\n"
        f"Mean router weight over {'response' if usage.token_mode == 'response' else 'all non-padding'} "
        f"tokens of {counts or 'no samples'}. World group: {_span(0, usage.world_experts)}; task group: "
        f"{_span(usage.world_experts, usage.num_experts)}; uniform routing gives "
        f"{1 / usage.num_experts:.4f} per expert.\n\n"
        f"**Verdict:** {usage.verdict()}\n\n"
        "## Averaged over layers\n\n"
        f"{usage.to_markdown()}\n"
        "![router heatmap](router_heatmap.png)\n\n"
        "## Per layer\n\n"
        f"{_per_layer_table(usage)}"
    )
    return write_text_atomic(out / "router_usage.md", text)


def _span(start: int, stop: int) -> str:
    if stop <= start:
        return "no experts"
    return f"expert {start}" if stop - start == 1 else f"experts {start}-{stop - 1}"


def _per_layer_table(usage: RouterUsage) -> str:
    lines = [
        "| layer | sample type | world per expert | task per expert | world share |",
        "|---|---|---:|---:|---:|",
    ]
    for layer, by_type in usage.group_means().items():
        for t, g in by_type.items():
            lines.append(
                f"| `{layer}` | {t} | {format_weight(g.world_per_expert)} | {format_weight(g.task_per_expert)} | "
                f"{format_weight(g.world_share, pct=True)} |"
            )
    return "\n".join(lines) + "\n"
