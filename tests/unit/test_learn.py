"""`forgetless learn`: a user's own facts; bad input is one line, exit 2, nothing written.

.venv/bin/python -m pytest tests/unit/test_learn.py -q
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from forgetless.knowledge import write_fictional_facts
from forgetless.knowledge.learn import builtin_known, check_learnable
from tests.conftest import write_jsonl


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "forgetless.cli.app", "learn", *args], capture_output=True, text=True)


def _one_error(run: subprocess.CompletedProcess, needle: str) -> None:
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert errors == lines[-1:] and needle in errors[0] and "Traceback" not in run.stderr


@pytest.fixture
def new_facts(tmp_path):
    path = tmp_path / "new.jsonl"
    write_fictional_facts(path, 30, seed=0)
    return path


def test_a_fact_without_question_or_template_is_refused(tmp_path):
    rows = [{"subject": f"Thing {i}", "relation": "mascot", "object": f"Owl {i}"} for i in range(6)]
    out = tmp_path / "out"
    _one_error(_cli("--facts", str(write_jsonl(tmp_path / "new.jsonl", rows)), "--output", str(out)), "no question")
    assert not out.exists()


def test_known_facts_that_overlap_the_new_ones_are_refused(new_facts, tmp_path):
    known = tmp_path / "known.jsonl"
    known.write_text(new_facts.read_text().splitlines()[0] + "\n")
    out = tmp_path / "out"
    _one_error(_cli("--facts", str(new_facts), "--known", str(known), "--output", str(out)), "--known holds 1")
    assert not out.exists()


def test_an_unknown_method_is_refused_before_any_model_loads(new_facts, tmp_path):
    _one_error(_cli("--facts", str(new_facts), "--output", str(tmp_path / "o"), "--method", "dora"), "--method")


def test_too_few_known_facts_say_how_many_are_needed(new_facts, tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    known = tmp_path / "known.jsonl"
    known.write_text("".join(json.dumps(f.to_dict()) + "\n" for f in builtin_known(5, seed=0)))
    args = ["--facts", str(new_facts), "--known", str(known), "--output", str(out), "--model", str(tiny_model_dir)]
    _one_error(_cli(*args, "--mmlu", "0"), "needs at least 30")  # the tiny model knows no fact
    assert not out.exists()


def test_builtin_known_facts_are_a_seeded_sample_of_four_relations():
    facts = builtin_known(10, seed=0)
    assert len(facts) == 40 and {f.relation for f in facts} == {"capital", "currency", "demonym", "region"}
    assert [f.id for f in facts] == [f.id for f in builtin_known(10, seed=0)] != [f.id for f in builtin_known(10, 1)]
    check_learnable(facts[:8], facts[8:], shots=4)  # disjoint, askable: no error
