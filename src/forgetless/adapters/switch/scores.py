"""In-distribution scores for the switch's abstain option, threshold calibration and OOD metrics.

    from forgetless.adapters.switch.scores import id_scores, keep_threshold, ood_metrics
    s = id_scores(logits, "energy")           # higher = more in-distribution, for every score type
    t = keep_threshold(s_held_out, keep=0.95) # at least 95% of s_held_out are >= t
    ood_metrics(s_in, s_out)                  # {"auroc": ..., "fpr_at_95_tpr": ...}

Score types (both oriented so that HIGHER = MORE in-distribution):
- `max_softmax`: the largest softmax probability (Hendrycks & Gimpel 2017), in [1/T, 1].
- `energy`: the NEGATIVE energy, logsumexp(logits) (Liu et al. 2020 define E(x) = −logsumexp(logits),
  low energy = in-distribution; we return −E(x) so that the comparison direction matches max_softmax).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from forgetless.errors import ConfigError, DataError

SCORE_TYPES = ("max_softmax", "energy")


def id_scores(logits: Any, score: str) -> Any:
    """In-distribution score per row of logits [n, T]; higher = more in-distribution."""
    if score == "max_softmax":
        return logits.softmax(dim=-1).max(dim=-1).values
    if score == "energy":
        return logits.logsumexp(dim=-1)
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
