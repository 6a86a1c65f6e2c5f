"""The forgetless recipe's parts: phrasings with a held-out one, disjoint anchors, significance tests.

.venv/bin/python -m pytest tests/unit/test_recipe.py -q
"""

from __future__ import annotations

import pytest

from forgetless.errors import ConfigError
from forgetless.eval.significance import clopper_pearson, mcnemar_exact, proportion
from forgetless.knowledge.countries import country_facts
from forgetless.knowledge.facts import Fact, question_for
from forgetless.knowledge.recipe import (
    RETENTION_MIN,
    check_recipe,
    choose_anchors,
    forgetless_records,
    phrasings_of,
    split_phrasings,
)


@pytest.fixture(scope="module")
def capitals() -> list[Fact]:
    return [f for f in country_facts() if f.relation == "capital"][:80]


def test_training_phrasings_hold_one_out_and_keep_the_probe_question(capitals):
    train, held = split_phrasings(capitals[:10], per_fact=2, seed=0)
    for fact in capitals[:10]:
        assert train[fact.id][0] == question_for(fact)  # reliability asks the probe question
        assert len(train[fact.id]) == 2 and len(held[fact.id]) == 1
        assert not set(held[fact.id]) & set(train[fact.id])
        assert set(train[fact.id]) | set(held[fact.id]) <= set(phrasings_of(fact))
    assert split_phrasings(capitals[:10], 2, seed=0) == (train, held)
    assert split_phrasings(capitals[:10], 2, seed=1) != (train, held)


def test_a_fact_with_one_phrasing_is_trained_that_many_times_and_has_no_held_out():
    lone = Fact("Zorbland", "founder", "Ilsa", question="Who founded Zorbland?")
    train, held = split_phrasings([lone], per_fact=3, seed=0)
    assert train[lone.id] == ["Who founded Zorbland?"] * 3 and held[lone.id] == []


def test_anchors_retention_and_new_facts_are_disjoint(capitals):
    new = capitals[:5]
    categories = {f.id: ("HighlyKnown" if i % 2 else "MaybeKnown") for i, f in enumerate(capitals)}
    anchors, retention = choose_anchors(capitals, categories, new, count=20, seed=0)
    ids = [{f.id for f in group} for group in (new, anchors, retention)]
    assert not ids[0] & ids[1] and not ids[0] & ids[2] and not ids[1] & ids[2]
    assert len(anchors) == 20 and len(retention) >= RETENTION_MIN
    assert all(categories[f.id] == "HighlyKnown" for f in retention)


def test_subject_anchors_take_a_share_of_the_taught_subjects_known_facts_and_leave_the_rest_measured():
    facts = [f for f in country_facts() if f.relation in ("capital", "currency", "demonym")][:240]
    new = [f for f in facts if f.relation == "capital"][:10]
    subjects = {f.subject for f in new}
    categories = {f.id: "HighlyKnown" for f in facts if f not in new}
    mine = {f.id for f in facts if f.subject in subjects and f not in new}
    assert len(mine) >= 10  # each taught country's currency and demonym
    plain, _ = choose_anchors(facts, categories, new, count=20, seed=0)
    anchors, retention = choose_anchors(facts, categories, new, count=20, seed=0, subject_share=0.5)
    anchored = {f.id for f in anchors} & mine
    assert len(anchored) == len(mine) // 2 > len({f.id for f in plain} & mine)
    assert {f.id for f in retention} & mine == mine - anchored  # the other half measures the protection
    assert len(anchors) == 20 and not {f.id for f in anchors} & {f.id for f in retention}
    assert choose_anchors(facts, categories, new, count=20, seed=0, subject_share=0.0)[0] == plain


def test_too_few_known_facts_is_a_clear_error(capitals):
    categories = {f.id: "HighlyKnown" for f in capitals[:10]}
    with pytest.raises(ConfigError, match=f"needs at least {RETENTION_MIN}"):
        choose_anchors(capitals, categories, capitals[10:12], count=5, seed=0)


def test_records_are_answers_only_in_the_probe_format(capitals):
    train, _ = split_phrasings(capitals[:3], per_fact=2, seed=0)
    rows = forgetless_records(capitals[:3], train, [("What is the capital of Peru?", "Lima"), ("Q?", "")], seed=0)
    assert len(rows) == 7  # 3 facts x 2 phrasings + 1 anchor (an empty base answer is not replayed)
    assert all(r["prompt"].startswith("Question: ") and r["response"].startswith("Answer: ") for r in rows)
    assert {"Answer: Lima"} | {f"Answer: {f.object}" for f in capitals[:3]} == {r["response"] for r in rows}


def test_unknown_recipe_is_refused():
    assert check_recipe("paper") == "paper"
    with pytest.raises(ConfigError, match="not one of forgetless, paper"):
        check_recipe("magic")


def test_significance_matches_known_values():
    assert clopper_pearson(0, 10) == (0.0, 0.3085)
    assert clopper_pearson(10, 10) == (0.6915, 1.0)
    low, high = clopper_pearson(17, 20)
    assert low < 0.85 < high and (low, high) == (0.6211, 0.9679)
    assert mcnemar_exact(5, 1)["p_value"] == 0.21875  # 2 * P(X >= 5), X ~ Bin(6, 0.5)
    assert mcnemar_exact(0, 0)["p_value"] == 1.0
    assert proportion(3, 4)["value"] == 0.75 and proportion(0, 0)["ci95"] == [0.0, 1.0]


def test_few_shot_anchors_use_only_other_anchors_as_exemplars(capitals):
    from forgetless.knowledge.plan import few_shot_anchors
    from forgetless.knowledge.recipe import RecipeSettings, anchor_questions

    anchors = capitals[:6]
    pairs = anchor_questions(anchors, per_fact=1)
    replay = [(question, fact.object) for question, fact in pairs]
    rows = few_shot_anchors(pairs, replay, RecipeSettings(anchor_shots=3), seed=0)
    assert len(rows) == 6 and all(row["type"] == "world" for row in rows)
    allowed = {f"Answer: {f.object}" for f in anchors}
    for row, fact in zip(rows, anchors, strict=True):
        answers = [m["content"] for m in row["messages"] if m["role"] == "assistant"]
        assert len(answers) == 4 and answers[-1] == f"Answer: {fact.object}" and set(answers) <= allowed
        assert answers.count(answers[-1]) == 1  # the asked anchor is not its own exemplar


def test_the_gate_waits_for_few_shot_reliability_once_zero_shot_is_learned(monkeypatch):
    from types import SimpleNamespace

    from forgetless.knowledge import gate as gate_module

    zero_shot = iter([0.5, 1.0, 1.0])
    monkeypatch.setattr(gate_module, "share_correct", lambda model, tokenizer, items: next(zero_shot))
    asked = []

    def few_shot(model):
        asked.append(len(asked))
        return [0.8, 0.96][len(asked) - 1]

    gate = gate_module.ProbeGate(None, [("q", ["a"])], every_steps=1, few_shot=few_shot, few_shot_target=0.95)
    model = SimpleNamespace(training=True, eval=lambda: None, train=lambda mode: None)
    stops = []
    for step in (1, 2, 3):
        control = SimpleNamespace(should_training_stop=False)
        gate.on_step_end(None, SimpleNamespace(global_step=step), control, model=model)
        stops.append(control.should_training_stop)
    assert stops == [False, False, True]
    assert asked == [0, 1]  # not asked while zero-shot answers are still wrong
    assert gate.curve == [
        {"step": 1, "answered": 0.5},
        {"step": 2, "answered": 1.0, "few_shot": 0.8},
        {"step": 3, "answered": 1.0, "few_shot": 0.96},
    ]


def test_the_gate_stops_on_a_few_shot_plateau(monkeypatch):
    from types import SimpleNamespace

    from forgetless.knowledge import gate as gate_module

    monkeypatch.setattr(gate_module, "share_correct", lambda model, tokenizer, items: 1.0)
    values = iter([0.80, 0.90, 0.90, 0.85, 0.99])
    gate = gate_module.ProbeGate(None, [("q", ["a"])], 1, few_shot=lambda model: next(values), patience=2)
    model = SimpleNamespace(training=True, eval=lambda: None, train=lambda mode: None)
    stops = []
    for step in range(1, 5):
        control = SimpleNamespace(should_training_stop=False)
        gate.on_step_end(None, SimpleNamespace(global_step=step), control, model=model)
        stops.append(control.should_training_stop)
    assert stops == [False, False, False, True]  # 0.90 then two checks without improvement


def test_few_shot_fact_records_use_other_new_facts_and_anchors_as_exemplars(capitals):
    from forgetless.knowledge.plan import few_shot_facts
    from forgetless.knowledge.recipe import anchor_questions

    new, anchors = capitals[:5], capitals[5:9]
    pairs = anchor_questions(anchors, per_fact=1)
    replay = [(question, f"base says {fact.object}") for question, fact in pairs]
    rows = few_shot_facts(new, pairs, replay, shots=4, seed=0)
    assert len(rows) == 5 and all(row["type"] == "task" for row in rows)
    allowed = {f"Answer: {f.object}" for f in new} | {f"Answer: {answer}" for _, answer in replay}
    for row in rows:
        users = [m["content"] for m in row["messages"] if m["role"] == "user"]
        answers = [m["content"] for m in row["messages"] if m["role"] == "assistant"]
        asked = next(f for f in new if users[-1] == f"Question: {question_for(f)}")
        assert len(answers) == 5 and answers[-1] == f"Answer: {asked.object}" and set(answers) <= allowed
        assert users.count(users[-1]) == 1  # the fact is not its own exemplar
