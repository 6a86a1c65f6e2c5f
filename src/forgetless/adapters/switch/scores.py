"""In-distribution scores for the switch's abstain option, threshold calibration and OOD metrics.

    from forgetless.adapters.switch.scores import id_scores, keep_threshold, ood_metrics, per_task_thresholds
    s = id_scores(logits, "energy")           # higher = more in-distribution, for every score type
    t = keep_threshold(s_held_out, keep=0.95) # at least 95% of s_held_out are >= t
    ts = per_task_thresholds({"a": s_a, "b": s_b}, keep=0.99, distance=True)  # one per task
    ood_metrics(s_in, s_out)                  # {"auroc": ..., "fpr_at_95_tpr": ...}

Score types (both oriented so that HIGHER = MORE in-distribution):
- `max_softmax`: the largest softmax probability (Hendrycks & Gimpel 2017), in [1/T, 1].
- `energy`: the NEGATIVE energy, logsumexp(logits) (Liu et al. 2020 define E(x) = −logsumexp(logits),
  low energy = in-distribution; we return −E(x) so that the comparison direction matches max_softmax).
- `max_logit`: the largest logit (Hendrycks et al. 2022). For the prototype switch the logits are −½ d²
  (squared Mahalanobis distance to each task mean), so it is −½ of the distance to the nearest task.

Thresholds: `keep_threshold` is the global empirical quantile (one threshold for every task).
`per_task_thresholds` gives each task of the prototype switch (distance scores) the most lenient of three
limits, each of which alone aims to keep about `keep` of the task's prompts (a prompt abstains only when
it is below all three); the mlp switch's scores get the first only:
1. `normal_threshold`: the (1 − keep) quantile of a normal fit to the task's held-out scores (of log d² for
   distance scores, whose spread grows with their size), so that a task with wider prompts is not
   penalised; 10 prompts per task (`MIN_PER_TASK`) give a mean and a spread.
2. the task's lowest held-out score: no prompt as far as one of its own held-out prompts abstains.
3. `conformal_threshold` of every task's held-out scores pooled: the ⌈(N+1)·keep⌉-th largest (split
   conformal; the smallest when that rank exceeds N).
The normal fit alone underestimates heavy in-distribution tails (built-in suite: 3.1% of task prompts
abstained at keep 0.99, seeds 0-2; experiments/abstain_calibration.py); 2 and 3 catch them without looking
at any foreign prompt, and as every task is scored by the same shared distance, a task whose held-out
prompts are tight gets no tighter limit than the pooled tail of all tasks. Not for the mlp switch: its
held-out prompts include misrouted, unconfident ones (it forgets), whose low scores made 2 and 3 let
foreign prompts through (full runs, 1% rehearsal, foreign abstained: phrasing 0.917 -> 0.017, built-in
0.950 -> 0.733).
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


def conformal_threshold(scores: Any, keep: float) -> float:
    """Split conformal: the ⌈(n+1)·keep⌉-th largest score, so that a new score exchangeable with these is >= it
    with probability >= keep; the smallest score when that rank exceeds n (n < keep / (1 − keep))."""
    if not 0 < keep < 1:
        raise ConfigError(f"conformal thresholds need keep in (0, 1), got {keep}")
    array = np.sort(_as_array(scores, "calibration"))[::-1]
    rank = min(math.ceil((array.size + 1) * keep - 1e-9), array.size)
    return float(array[rank - 1])


def per_task_thresholds(scores: dict[str, Any], keep: float, distance: bool = False) -> dict[str, float]:
    """One threshold per task from each task's held-out scores (higher = more in-distribution).

    distance=True (prototype switch, scores −½ d²): the lowest of the task's normal-fit threshold (of log d²),
    its lowest held-out score and the conformal threshold of all tasks' scores pooled. distance=False (mlp
    switch): the normal-fit threshold alone. DataError naming the task and the number needed when a task
    has fewer than MIN_PER_TASK scores.
    """
    arrays = {}
    for task, task_scores in scores.items():
        try:
            arrays[task] = _enough(task_scores)
        except DataError as exc:
            raise DataError(f"task {task!r}: {exc}") from None
    if not distance:
        return {task: normal_threshold(a, keep) for task, a in arrays.items()}
    if not arrays:
        return {}
    pooled = conformal_threshold(np.concatenate(list(arrays.values())), keep)
    return {task: min(normal_threshold(a, keep, distance), float(a.min()), pooled) for task, a in arrays.items()}


def _enough(scores: Any) -> np.ndarray:
    array = _as_array(scores, "calibration") if len(scores) else np.zeros(0)
    if array.size < MIN_PER_TASK:
        raise DataError(
            f"per-task abstain thresholds need at least {MIN_PER_TASK} held-out calibration prompts per task, "
            f"got {array.size}"
        )
    return array


def normal_threshold(scores: Any, keep: float, distance: bool = False) -> float:
    """The (1 − keep) quantile of a normal fit to one task's held-out scores (higher = more in-distribution).

    distance=True: scores are −½ d² (prototype switch); the fit is on log d², the threshold is returned as
    a score again. DataError with the number needed when fewer than MIN_PER_TASK scores are given.
    """
    from statistics import NormalDist

    if not 0 < keep < 1:
        raise ConfigError(f"per-task thresholds need keep in (0, 1), got {keep}")
    array = _enough(scores)
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
