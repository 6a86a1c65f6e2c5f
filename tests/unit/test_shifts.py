"""Shifts between two probing runs: transition matrix, shift counts, answer distributions, refusals, heatmap.

.venv/bin/python -m pytest tests/unit/test_shifts.py -q
"""

from __future__ import annotations

import math
from enum import Enum

import pytest

from forgetless.errors import DataError
from forgetless.knowledge.shifts import (
    CATEGORIES,
    answer_distribution,
    counts_from_matrix,
    entropy,
    exploded_answers,
    plot_transition_heatmap,
    refusal_rate,
    shift_counts,
    transition_matrix,
)

BEFORE = {
    "f1": "HighlyKnown",
    "f2": "MaybeKnown",
    "f3": "Unknown",
    "f4": "WeaklyKnown",
    "f5": "Unknown",
    "y": "Unknown",
}
AFTER = {"f1": "Unknown", "f2": "HighlyKnown", "f3": "Unknown", "f4": "MaybeKnown", "f5": "WeaklyKnown", "x": "Unknown"}


def test_transition_matrix_counts_facts_in_both_runs():
    assert transition_matrix(BEFORE, AFTER) == [
        [0, 0, 0, 1],  # HighlyKnown -> Unknown
        [1, 0, 0, 0],  # MaybeKnown -> HighlyKnown
        [0, 1, 0, 0],  # WeaklyKnown -> MaybeKnown
        [0, 0, 1, 1],  # Unknown -> WeaklyKnown, Unknown -> Unknown
    ]


def test_shift_counts():
    assert shift_counts(BEFORE, AFTER) == {"positive": 3, "negative": 1, "unchanged": 1, "n": 5}
    assert shift_counts({}, {}) == {"positive": 0, "negative": 0, "unchanged": 0, "n": 0}


def test_categories_accept_enums_and_reject_unknown_names():
    category = Enum("Category", {name: name for name in CATEGORIES})
    assert transition_matrix({"a": category.MaybeKnown}, {"a": "MaybeKnown"})[1][1] == 1
    with pytest.raises(DataError, match="unknown knowledge category 'Known'"):
        transition_matrix({"a": "Known"}, {"a": "Unknown"})
    with pytest.raises(DataError, match="4x4"):
        counts_from_matrix([[1, 2], [3, 4]])


def test_answer_distribution_on_a_tiny_list():
    answers = ["Paris.", "paris", "The Paris", "London", "Rome", "...", "rome!"]
    dist = answer_distribution(answers, top_k=2)
    assert (dist["n"], dist["n_empty"], dist["unique"]) == (6, 1, 3)
    assert dist["top"] == [{"answer": "paris", "count": 3}, {"answer": "rome", "count": 2}]
    expected = -(0.5 * math.log(0.5) + (1 / 3) * math.log(1 / 3) + (1 / 6) * math.log(1 / 6))
    assert dist["entropy_nats"] == pytest.approx(expected)
    assert dist["entropy_bits"] == pytest.approx(expected / math.log(2))
    assert entropy({"a": 2, "b": 2}) == pytest.approx(math.log(2))
    assert answer_distribution([])["entropy_bits"] == 0.0 and entropy({"only": 7}) == 0.0


def test_exploded_answer_detected_and_stable_one_not():
    before = ["Paris", "Lyon", "Nice", "Rome", "Rome", "Berlin"]
    after = ["Paris"] * 10 + ["Rome"] * 3 + ["Oslo"] * 2 + ["Berlin"] * 5
    hits = exploded_answers(before, after, factor=5, min_count=3)
    assert hits == [{"answer": "paris", "before": 1, "after": 10}]
    # berlin: 5 < 5 * (1 + 1); rome stayed about as common; oslo is new but under min_count
    assert exploded_answers(before, after, factor=2, min_count=3)[1] == {"answer": "berlin", "before": 1, "after": 5}
    assert exploded_answers(before, after, factor=1, min_count=2)[-1] == {"answer": "oslo", "before": 0, "after": 2}


def test_refusal_rate():
    answers = ["I don't know.", "Paris", "I'm not sure about that", "Unknown", "Rome is the capital"]
    assert refusal_rate(answers) == pytest.approx(3 / 5)
    assert refusal_rate(answers, patterns=[r"\bparis\b"]) == pytest.approx(1 / 5)
    assert refusal_rate([]) == 0.0


def test_heatmap_png_is_written(tmp_path):
    path = plot_transition_heatmap(transition_matrix(BEFORE, AFTER), tmp_path / "plots" / "shifts.png", "demo")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(path.parent.iterdir()) == [path]  # no temp file left behind


def test_exploded_untrained_counts_only_facts_never_trained():
    from forgetless.knowledge.facts import Fact
    from forgetless.knowledge.snapshot_cache import Snapshot
    from forgetless.knowledge.stick import exploded_untrained

    facts = [Fact(f"Country{i}", "region", "Americas" if i < 6 else "Europe", id=f"f{i}") for i in range(12)]
    before = Snapshot([], ["It is in a region."] * 12)
    taught = Snapshot([], ["Americas"] * 6 + ["It is in a region."] * 6)  # the taught facts' own answers
    collapsed = Snapshot([], ["Americas"] * 12)  # the other questions answered with a taught answer too
    trained = {f"f{i}" for i in range(6)}
    assert exploded_untrained(before, taught, facts, trained) == []
    assert [e["answer"] for e in exploded_untrained(before, collapsed, facts, trained)] == ["americas"]
