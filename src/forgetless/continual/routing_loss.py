"""Where SwitchCIT's forgetting comes from: the routing-loss breakdown of a continual run.

    from forgetless.continual.routing_loss import routing_breakdown, bwt_split
    routing_breakdown(["a", "a", "b"], ["a", None, "a"])
    # {"a": {"right": 0.5, "misrouted": 0.0, "abstained": 0.5, "misrouted_to": {}},
    #  "b": {"right": 0.0, "misrouted": 1.0, "abstained": 0.0, "misrouted_to": {"a": 1.0}}}
    bwt_split(R, O)   # {"bwt", "bwt_adapter", "bwt_routing", "routing_loss", "routing_loss_per_task"}

SwitchCIT's adapters never change once trained, so what a user loses comes from the switch. Per task and
stage, each eval prompt is answered by its own adapter (`right`), another task's adapter (`misrouted`, by
target task in `misrouted_to`) or the base model (`abstained`). Scores: R[i][j] is task j through the
switch after stage i (what a user gets), O[i][j] the oracle (every prompt on its own task's adapter).
With T tasks and j < T:

    BWT          = mean_j (R[T][j] − R[j][j])
    adapter part = mean_j (O[T][j] − O[j][j])          (0 when the adapters are truly frozen)
    routing part = BWT − adapter part = mean_j ((R[T][j] − O[T][j]) − (R[j][j] − O[j][j]))
    routing loss = mean_j (O[T][j] − R[T][j])           over all T tasks: score lost to routing at the end
"""

from __future__ import annotations

from typing import Any


def routing_breakdown(truth: list[str], routed: list[str | None]) -> dict[str, dict[str, Any]]:
    """Per true task: share right / misrouted (and to which task) / abstained (routed None = the base)."""
    out: dict[str, dict[str, Any]] = {}
    for task in dict.fromkeys(truth):
        got = [r for t, r in zip(truth, routed, strict=True) if t == task]
        n = len(got)
        wrong = [r for r in got if r is not None and r != task]
        to = {other: round(wrong.count(other) / n, 6) for other in sorted(set(wrong))}
        out[task] = {
            "right": got.count(task) / n,
            "misrouted": len(wrong) / n,
            "abstained": got.count(None) / n,
            "misrouted_to": to,
        }
    return out


def oracle_rows(stages: list[dict[str, Any]], tasks: list[str]) -> list[list[float | None]]:
    """O[i][j] for i = 1..len(stages) from each stage's `oracle_score` (None where not scored)."""
    return [[s.get("oracle_score", {}).get(t) for t in tasks] for s in stages]


def bwt_split(rows: list[list[float | None]], oracle: list[list[float | None]]) -> dict[str, Any]:
    """BWT split into adapter and routing parts, plus the final routing loss (see the module docstring).

    `rows` is R with the base row first (T + 1 rows); `oracle` is O without a base row (T rows). Empty when
    the run is not complete or a needed cell is missing."""
    T = len(rows) - 1
    if T < 1 or len(oracle) != T:
        return {}
    final_r, final_o = rows[T], oracle[T - 1]
    if any(v is None for v in final_r) or any(v is None for v in final_o):
        return {}
    loss = [o - r for o, r in zip(final_o, final_r, strict=True)]
    out: dict[str, Any] = {"routing_loss": sum(loss) / T, "routing_loss_per_task": loss}
    if T < 2:
        return out
    diag_r = [rows[j + 1][j] for j in range(T - 1)]
    diag_o = [oracle[j][j] for j in range(T - 1)]
    if any(v is None for v in diag_r + diag_o):
        return out
    bwt = sum(final_r[j] - diag_r[j] for j in range(T - 1)) / (T - 1)
    adapter = sum(final_o[j] - diag_o[j] for j in range(T - 1)) / (T - 1)
    return out | {"bwt": bwt, "bwt_adapter": adapter, "bwt_routing": bwt - adapter}
