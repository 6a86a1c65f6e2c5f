"""Tests of significance for before/after reports, from scipy (no hand-written distributions).

    clopper_pearson(17, 20)               # (0.621, 0.968): exact 95% interval of a proportion
    mcnemar_exact(lost=5, gained=1)       # {"lost": 5, "gained": 1, "p_value": 0.219}: kept->lost vs lost->kept

The exact McNemar test is the two-sided binomial test of the discordant pairs (p = 0.5), which is what
`statsmodels.stats.contingency_tables.mcnemar(exact=True)` computes; scipy's `binomtest` gives it here.
"""

from __future__ import annotations

from typing import Any


def clopper_pearson(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) confidence interval of successes / trials; (0, 1) when trials is 0."""
    from scipy.stats import binomtest

    if trials <= 0:
        return 0.0, 1.0
    interval = binomtest(successes, trials).proportion_ci(confidence_level=confidence, method="exact")
    return round(float(interval.low), 4), round(float(interval.high), 4)


def mcnemar_exact(lost: int, gained: int) -> dict[str, Any]:
    """Exact McNemar test on paired yes/no outcomes: `lost` pairs went yes->no, `gained` went no->yes."""
    from scipy.stats import binomtest

    discordant = lost + gained
    p_value = 1.0 if discordant == 0 else float(binomtest(lost, discordant, 0.5).pvalue)
    return {"lost": lost, "gained": gained, "p_value": round(p_value, 6)}


def proportion(successes: int, trials: int) -> dict[str, Any]:
    """A share with its exact interval, as reports print it."""
    low, high = clopper_pearson(successes, trials)
    share = successes / trials if trials else 0.0
    return {"value": round(share, 4), "successes": successes, "trials": trials, "ci95": [low, high]}
