"""What changed between two probing runs: category transitions, answer distributions, refusals.

Knowledge categories (Gekhman et al. 2024, used by Pletenev et al. 2025) are ordered from most to least
known: HighlyKnown, MaybeKnown, WeaklyKnown, Unknown. A positive shift moves a fact to a more-known
category, a negative shift to a less-known one.

    from forgetless.knowledge.shifts import transition_matrix, shift_counts, answer_distribution
    matrix = transition_matrix(before, after)          # before/after: {fact_id: category}; rows = before
    shift_counts(before, after)                        # {"positive": 3, "negative": 5, "unchanged": 40, "n": 48}
    answer_distribution(answers, top_k=10)             # unique answers, most frequent, entropy (nats, bits)
    exploded_answers(before_answers, after_answers)    # answers that became far more frequent after training
    refusal_rate(answers)                              # share of "I don't know"-style answers
    plot_transition_heatmap(matrix, "shifts.png", "before -> after")

Answers are compared after `normalize_answer` (so "Paris." and "paris" are one answer); answers that
normalize to "" are counted in `n_empty` and left out of the distribution.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from forgetless.errors import DataError
from forgetless.knowledge.answers import is_refusal, normalize_answer

CATEGORIES: tuple[str, ...] = ("HighlyKnown", "MaybeKnown", "WeaklyKnown", "Unknown")


def category_index(category: Any) -> int:
    """Position of a category in CATEGORIES (0 = most known); accepts strings or enums with a `.value`."""
    name = str(getattr(category, "value", category))
    if name not in CATEGORIES:
        raise DataError(f"unknown knowledge category {name!r}; use one of {', '.join(CATEGORIES)}")
    return CATEGORIES.index(name)


def transition_matrix(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[list[int]]:
    """4x4 counts: `matrix[i][j]` facts went from CATEGORIES[i] before to CATEGORIES[j] after.

    Only facts present in both runs are counted.
    """
    matrix = [[0] * len(CATEGORIES) for _ in CATEGORIES]
    for fact_id in before.keys() & after.keys():
        matrix[category_index(before[fact_id])][category_index(after[fact_id])] += 1
    return matrix


def shift_counts(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, int]:
    """Facts (in both runs) that moved to a more-known category, to a less-known one, or stayed."""
    return counts_from_matrix(transition_matrix(before, after))


def counts_from_matrix(matrix: Sequence[Sequence[int]]) -> dict[str, int]:
    """Totals of a matrix: positive (below the diagonal: more known after), negative (above), unchanged."""
    _check_matrix(matrix)
    size = len(CATEGORIES)
    positive = sum(matrix[i][j] for i in range(size) for j in range(size) if j < i)
    negative = sum(matrix[i][j] for i in range(size) for j in range(size) if j > i)
    unchanged = sum(matrix[i][i] for i in range(size))
    return {"positive": positive, "negative": negative, "unchanged": unchanged, "n": positive + negative + unchanged}


def _check_matrix(matrix: Sequence[Sequence[int]]) -> None:
    size = len(CATEGORIES)
    if len(matrix) != size or any(len(row) != size for row in matrix):
        raise DataError(f"transition matrix must be {size}x{size} (rows and columns in order {', '.join(CATEGORIES)})")


# ---------------------------------------------------------------------------------------------- answers


def answer_counts(answers: Sequence[str]) -> Counter[str]:
    """How often each normalized, non-empty answer occurs."""
    return Counter(norm for norm in (normalize_answer(answer) for answer in answers) if norm)


def entropy(counts: Mapping[str, int]) -> float:
    """Shannon entropy in nats of the distribution given by `counts` (0 for no or a single answer)."""
    total = sum(counts.values())
    return -sum(c / total * math.log(c / total) for c in counts.values() if c) if total else 0.0


def answer_distribution(answers: Sequence[str], top_k: int = 10) -> dict[str, Any]:
    """Unique answers, the `top_k` most frequent with counts, and the entropy in nats and bits."""
    counts = answer_counts(answers)
    nats = entropy(counts)
    top = sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))[:top_k]
    return {
        "n": sum(counts.values()),
        "n_empty": len(answers) - sum(counts.values()),
        "unique": len(counts),
        "top": [{"answer": answer, "count": count} for answer, count in top],
        "entropy_nats": nats,
        "entropy_bits": nats / math.log(2),
    }


def exploded_answers(
    before_answers: Sequence[str], after_answers: Sequence[str], factor: float = 5, min_count: int = 3
) -> list[dict[str, Any]]:
    """Answers that became much more frequent: count after >= factor * (count before + 1) and >= min_count.

    Sorted by count after, most frequent first (the paper saw answers collapse onto a few outputs).
    """
    old, new = answer_counts(before_answers), answer_counts(after_answers)
    hits = [
        {"answer": answer, "before": old.get(answer, 0), "after": count}
        for answer, count in new.items()
        if count >= min_count and count >= factor * (old.get(answer, 0) + 1)
    ]
    return sorted(hits, key=lambda hit: (-hit["after"], hit["answer"]))


def refusal_rate(answers: Sequence[str], patterns: Sequence[Any] | None = None) -> float:
    """The share of answers that decline to answer (`is_refusal`); 0.0 for no answers."""
    if not answers:
        return 0.0
    return sum(is_refusal(answer, patterns) for answer in answers) / len(answers)


# ---------------------------------------------------------------------------------------------- plot


def plot_transition_heatmap(
    matrix: Sequence[Sequence[int]], path: str | Path, title: str = "category transitions"
) -> Path:
    """A PNG heatmap of the transition matrix (rows: before, columns: after) with each count written in."""
    _check_matrix(matrix)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from forgetless.utils.plots import save_figure

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    image = ax.imshow(matrix, cmap="Blues")
    peak = max(max(row) for row in matrix) or 1
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            color = "white" if count > peak / 2 else "black"
            ax.text(j, i, str(count), ha="center", va="center", color=color)
    ticks = range(len(CATEGORIES))
    ax.set_xticks(ticks, CATEGORIES, rotation=30, ha="right")
    ax.set_yticks(ticks, CATEGORIES)
    ax.set_xlabel("after")
    ax.set_ylabel("before")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046)
    return save_figure(fig, path)
