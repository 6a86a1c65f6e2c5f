"""Plots only: matplotlib figures saved as PNG (atomically), e.g. the training loss curve; reports embed them."""

from __future__ import annotations

import os
from pathlib import Path

from forgetless.utils.fileio import temp_sibling


def save_figure(fig, path: str | Path) -> Path:
    """Save a matplotlib figure as PNG via a temp file + rename, then close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_sibling(path, ".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
        plt.close(fig)
    return path


def plot_loss_curve(log_history: list[dict], path: str | Path) -> Path:
    """Training loss (and any logged auxiliary losses) against the optimizer step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key in ("loss", "lm_loss", "lbc_loss"):
        points = [(e["step"], e[key]) for e in log_history if key in e and "step" in e]
        if points:  # lm_loss/lbc_loss are logged only when an auxiliary loss is in play
            ax.plot(*zip(*points, strict=True), marker=".", label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("training loss")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)
