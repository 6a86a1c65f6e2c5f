"""`audit`'s caps and lm-eval options: checked before any model loads, and the per-relation cap itself.

.venv/bin/python -m pytest tests/unit/test_audit_options.py -q
"""

from __future__ import annotations

import pytest

from forgetless.knowledge.facts import Fact, cap_per_relation
from tests.unit.test_cli_errors import OUT, assert_nothing_written, assert_user_error, run_cli

AUDIT = ["audit", "--adapter", "ad", "--facts", "f.jsonl", "--output", OUT]


def _facts(per_relation: int, relations=("capital", "currency")) -> list[Fact]:
    return [Fact(f"S{i}", r, f"O{i}") for r in relations for i in range(per_relation)]


def test_cap_per_relation_keeps_a_seeded_sample_in_file_order():
    facts = _facts(10) + _facts(2, relations=("language",))
    capped = cap_per_relation(facts, 3, seed=1)
    counts = {r: sum(f.relation == r for f in capped) for r in ("capital", "currency", "language")}
    assert counts == {"capital": 3, "currency": 3, "language": 2}
    assert capped == [f for f in facts if f in capped]  # file order kept
    assert capped == cap_per_relation(facts, 3, seed=1) and capped != cap_per_relation(facts, 3, seed=2)
    assert cap_per_relation(facts, None) == facts


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--per-relation", "0"], "--per-relation must be >= 1"),
        (["--lm-eval-tasks", "mmlu", "--lm-eval-limit", "0"], "--lm-eval-limit"),
        (["--lm-eval-tasks", "mmlu", "--lm-eval-shots", "-1"], "--lm-eval-shots"),
        (["--lm-eval-tasks", "mmlu", "--lm-eval-batch-size", "0"], "--lm-eval-batch-size"),
        (["--lm-eval-tasks", "x", "--lm-eval-include", "no_such_dir"], "--lm-eval-include no_such_dir"),
        (["--lm-eval-shots", "0"], "need --lm-eval-tasks"),
    ],
)
def test_audit_options_are_checked_before_any_model(tmp_path, args, fragment):
    assert_user_error(run_cli([*AUDIT, *args, "--model", "./nope"], tmp_path), fragment)
    assert_nothing_written(tmp_path)


def test_export_lm_eval_mmlu_refuses_a_bad_size_before_writing(tmp_path):
    assert_user_error(run_cli(["export", "lm-eval-mmlu", "--output", OUT, "--questions", "0"], tmp_path), "--questions")
    assert_nothing_written(tmp_path)
