"""In-distribution scores for the switch's abstain option, threshold calibration and OOD metrics.

    from forgetless.adapters.switch.scores import id_scores, keep_threshold, ood_metrics
    s = id_scores(logits, "energy")           # higher = more in-distribution, for every score type
    t = keep_threshold(s_held_out, keep=0.95) # at least 95% of s_held_out are >= t
    ood_metrics(s_in, s_out)                  # {"auroc": ..., "fpr_at_95_tpr": ...}

Score types (both oriented so that HIGHER = MORE in-distribution):
- `max_softmax`: the largest softmax probability (Hendrycks & Gimpel 2017), in [1/T, 1].
- `energy`: the NEGATIVE energy, logsumexp(logits) (Liu et al. 2020 define E(x) = −logsumexp(logits),
  low energy = in-distribution; we return −E(x) so that the comparison direction matches max_softmax).
- `max_logit`: the largest logit (Hendrycks et al. 2022). For the prototype switch the logits are −½ d²
  (squared Mahalanobis distance to each task mean), so it is −½ of the distance to the nearest task.

Thresholds: `keep_threshold` is the global empirical quantile (one threshold for every task);
`per_task_threshold` fits one task's held-out scores with a normal law (of log d² for distance scores,
whose spread grows with their size) and returns its (1 − keep) quantile, so that a task with wider
prompts is not penalised and 10 prompts per task (`MIN_PER_TASK`) are enough for a 0.99 quantile.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from forgetless.errors import ConfigError, DataError

SCORE_TYPES = ("max_softmax", "energy", "max_logit")
MIN_PER_TASK = 10  # held-out prompts per task that a per-task threshold needs (a mean and a spread)


def id_scores(logits: Any, score: str) -> Any:
    """In-distribution score per row of logits [n, T]; higher = more in-distribution."""
    if score == "max_softmax":
        return logits.softmax(dim=-1).max(dim=-1).values
    if score == "energy":
        return logits.logsumexp(dim=-1)
    if score == "max_logit":
        return logits.max(dim=-1).values
    raise ConfigError(f"unknown switch score {score!r}; use one of {', '.join(SCORE_TYPES)}")


def _as_array(scores: Any, label: str) -> np.ndarray:
    if hasattr(scores, "detach"):
        scores = scores.detach().cpu().double().numpy()
    array = np.asarray(scores, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise DataError(f"{label} scores are empty")
    if not np.isfinite(array).all():
        raise DataError(f"{label} scores contain NaN or infinity")
    return array


def keep_threshold(scores: Any, keep: float = 0.95) -> float:
    """The largest threshold t with at least `keep` of `scores` >= t."""
    if not 0 < keep <= 1:
        raise ConfigError(f"keep must be in (0, 1], got {keep}")
    array = np.sort(_as_array(scores, "calibration"))
    n_keep = math.ceil(keep * array.size - 1e-9)
    return float(array[array.size - n_keep])


def per_task_threshold(scores: Any, keep: float, distance: bool = False) -> float:
    """The (1 − keep) quantile of a normal fit to one task's held-out scores (higher = more in-distribution).

    distance=True: scores are −½ d² (prototype switch); the fit is on log d², the threshold is returned as
    a score again. DataError with the number needed when fewer than MIN_PER_TASK scores are given.
    """
    from statistics import NormalDist

    if not 0 < keep < 1:
        raise ConfigError(f"per-task thresholds need keep in (0, 1), got {keep}")
    array = _as_array(scores, "calibration")
    if array.size < MIN_PER_TASK:
        raise DataError(
            f"per-task abstain thresholds need at least {MIN_PER_TASK} held-out calibration prompts per task, "
            f"got {array.size}"
        )
    z = NormalDist().inv_cdf(keep)
    if distance:
        logs = np.log(np.maximum(-2 * array, 1e-12))
        return float(-0.5 * math.exp(logs.mean() + z * logs.std(ddof=1)))
    return float(array.mean() - z * array.std(ddof=1))


def auroc(in_scores: Any, out_scores: Any) -> float:
    """P(in > out) + 0.5 P(in == out): the area under the ROC curve for "in-distribution is positive"."""
    pos, neg = _as_array(in_scores, "in-distribution"), np.sort(_as_array(out_scores, "out-of-distribution"))
    below = np.searchsorted(neg, pos, side="left")
    ties = np.searchsorted(neg, pos, side="right") - below
    return float((below.sum() + 0.5 * ties.sum()) / (pos.size * neg.size))


def fpr_at_tpr(in_scores: Any, out_scores: Any, tpr: float = 0.95) -> float:
    """Share of OOD scores kept (>= t) at the threshold t that keeps `tpr` of the in-distribution scores."""
    threshold = keep_threshold(in_scores, tpr)
    return float((_as_array(out_scores, "out-of-distribution") >= threshold).mean())


def ood_metrics(in_scores: Any, out_scores: Any) -> dict[str, float]:
    """AUROC and FPR at 95% TPR, in-distribution being the positive class (higher score = more ID)."""
    return {"auroc": auroc(in_scores, out_scores), "fpr_at_95_tpr": fpr_at_tpr(in_scores, out_scores, 0.95)}
