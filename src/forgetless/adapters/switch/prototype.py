"""The prototype switch head: one Gaussian per task on frozen prompt features, a shared shrunk covariance.

    from forgetless.adapters.switch.prototype import PrototypeHead
    head = PrototypeHead(in_dim=384)                  # shrinkage=None: Ledoit-Wolf, from the statistics
    head.add_task(features_a); head.add_task(features_b)  # one call per task; old tasks are never touched
    logits = head.logits(features)                    # [n, T] = -1/2 Mahalanobis distance² to each task mean

Class-incremental by construction (as SimpleCIL / RanPAC-style continual learners): a task is summarised
by its sufficient statistics, computed once from its own prompts and never changed afterwards:

    count n_t,  sum s_t = Σ x,  scatter M_t = Σ (x − μ_t)(x − μ_t)ᵀ,  fourth q_t = Σ ‖x − μ_t‖⁴

(float64). The shared covariance is the pooled within-task covariance S = Σ_t M_t / N (N = Σ n_t), shrunk
towards a scaled identity: Σ = (1 − λ) S + λ (tr S / d) I. λ is fixed when `shrinkage` is given, else the
Ledoit-Wolf (2004) estimate computed EXACTLY from the statistics above (it needs Σ_k ‖x_k‖⁴ of the centred
rows, hence q_t; the same formula as `sklearn.covariance.ledoit_wolf_shrinkage` on the task-centred rows).
Adding a task therefore recomputes Σ exactly, with no old prompt kept: rehearsal is not needed.

Logits are log-likelihoods up to a shared constant (linear discriminant analysis with equal priors), so
argmax = the nearest task mean, softmax = the posterior, and the max logit, −½ min_t d²_t(x), is the
in-distribution score the abstain threshold uses (the same distance that routes).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from forgetless.errors import ConfigError, DataError

STAT_KEYS = ("count", "sum", "scatter", "fourth")


def task_statistics(features: Any) -> dict[str, Any]:
    """The sufficient statistics of one task's feature rows [n, d] (float64 tensors)."""
    import torch

    x = torch.as_tensor(features).double()
    if x.ndim != 2 or len(x) == 0:
        raise DataError(f"a task needs a non-empty [n, d] feature matrix, got {list(x.shape)}")
    centred = x - x.mean(dim=0)
    return {
        "count": torch.tensor([len(x)], dtype=torch.int64),
        "sum": x.sum(dim=0),
        "scatter": centred.T @ centred,
        "fourth": (centred.pow(2).sum(dim=1) ** 2).sum().reshape(1),
    }


def ledoit_wolf(scatter: Any, fourth: float, n: int) -> float:
    """Ledoit-Wolf shrinkage towards (tr S / d) I of S = scatter / n, for centred rows with Σ‖x‖⁴ = fourth."""
    d = scatter.shape[0]
    cov = scatter / n
    mu = float(cov.trace()) / d
    delta_ = float((cov**2).sum())  # ‖S‖²_F
    beta = (fourth / n - delta_) / (d * n)
    delta = (delta_ - d * mu * mu) / d
    if delta <= 0:
        return 1.0
    return float(min(max(beta, 0.0), delta) / delta)


class PrototypeHead:
    """Task means + a shared shrunk covariance; logits = −½ Mahalanobis distance² to each task mean."""

    def __init__(self, in_dim: int, shrinkage: float | None = None):
        if int(in_dim) < 1:
            raise ConfigError(f"prototype head in_dim must be >= 1, got {in_dim}")
        if shrinkage is not None and not 0 <= shrinkage <= 1:
            raise ConfigError(f"switch shrinkage must be in [0, 1] or null (Ledoit-Wolf), got {shrinkage}")
        self.in_dim, self.shrinkage = int(in_dim), shrinkage
        self.stats: list[dict[str, Any]] = []
        self._cache: tuple[Any, Any] | None = None  # (Cholesky factor of Σ, whitened means [T, d])
        self.used_shrinkage: float | None = None

    @property
    def num_tasks(self) -> int:
        return len(self.stats)

    def add_task(self, features: Any) -> dict[str, Any]:
        """Append a task from its feature rows [n, in_dim]; returns its statistics (never changed later)."""
        stats = task_statistics(features)
        if stats["sum"].shape[0] != self.in_dim:
            raise DataError(f"prototype head expects {self.in_dim}-d features, got {stats['sum'].shape[0]}-d")
        self.add_statistics(stats)
        return stats

    def add_statistics(self, stats: dict[str, Any]) -> None:
        """Append a task from saved statistics (see `task_statistics`)."""
        missing = [k for k in STAT_KEYS if k not in stats]
        if missing or stats["scatter"].shape != (self.in_dim, self.in_dim) or int(stats["count"][0]) < 1:
            raise DataError(f"task statistics lack {missing or 'the right shapes'} for a {self.in_dim}-d head")
        self.stats.append({k: stats[k] for k in STAT_KEYS})
        self._cache = None

    def covariance(self) -> Any:
        """The shared covariance Σ (float64 [d, d]): pooled within-task scatter, shrunk."""
        import torch

        n = sum(int(s["count"][0]) for s in self.stats)
        scatter = sum(s["scatter"] for s in self.stats)
        fourth = float(sum(float(s["fourth"][0]) for s in self.stats))
        lam = self.shrinkage if self.shrinkage is not None else ledoit_wolf(scatter, fourth, n)
        self.used_shrinkage = lam
        cov = scatter / n
        target = float(cov.trace()) / self.in_dim or 1.0  # one prompt per task: no scatter, unit sphere
        return (1 - lam) * cov + lam * target * torch.eye(self.in_dim, dtype=torch.float64)

    def _whitened(self) -> tuple[Any, Any]:
        import torch

        if self._cache is None:
            chol = torch.linalg.cholesky(self.covariance())
            means = torch.stack([s["sum"] / int(s["count"][0]) for s in self.stats])  # [T, d]
            self._cache = (chol, torch.linalg.solve_triangular(chol, means.T, upper=False).T)
        return self._cache

    def distances(self, features: Any) -> Any:
        """Squared Mahalanobis distance of each row to each task mean, float64 [n, T]."""
        import torch

        if not self.stats:
            raise DataError("the prototype head has no tasks yet")
        x = torch.as_tensor(features).double()
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise DataError(f"prototype head expects features [n, {self.in_dim}], got {list(x.shape)}")
        chol, means = self._whitened()
        z = torch.linalg.solve_triangular(chol, x.T, upper=False).T  # [n, d]
        return torch.cdist(z, means).pow(2)

    def logits(self, features: Any) -> Any:
        """−½ d² [n, T] as float32: log-likelihoods up to one shared constant."""
        return (-0.5 * self.distances(features)).float()

    def config(self) -> dict[str, Any]:
        return {"in_dim": self.in_dim, "shrinkage": self.shrinkage, "num_tasks": self.num_tasks}


def stats_bytes(stats: dict[str, Any]) -> bytes:
    """The safetensors bytes of one task's statistics (deterministic for the same statistics)."""
    from safetensors.torch import save

    return save({k: stats[k].contiguous() for k in STAT_KEYS}, metadata={"format": "pt"})


def write_statistics(path: Path, stats: dict[str, Any]) -> bool:
    """Write one task's statistics file unless it already holds exactly these bytes; True when written."""
    from forgetless.utils.fileio import temp_sibling

    data = stats_bytes(stats)
    if path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_sibling(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def read_statistics(path: Path) -> dict[str, Any]:
    """One task's statistics from its safetensors file; DataError when unreadable."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise DataError(f"{path}: cannot read the task's routing statistics ({exc})") from exc
