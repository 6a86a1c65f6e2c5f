"""What a recipe trains on: the records, which facts they touch, the held-out questions and the gate.

    plan = paper_plan(chosen, facts, categories, mixture, k, seed)
    plan = forgetless_plan(chosen, facts, categories, RecipeSettings(), seed, base_answers, probe_answers)

Self-replay anchors answer as the base did: `probe_answers` {fact id: the base's few-shot greedy answer}
(short, as the probes ask; the default), or `base_answers(questions)`, the base's zero-shot replies to
each phrasing. A plan is built while the base model is loaded, before training.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from forgetless.knowledge.facts import Fact, question_for
from forgetless.knowledge.inject import training_records
from forgetless.knowledge.recipe import (
    RecipeSettings,
    anchor_questions,
    choose_anchors,
    few_shot_anchor,
    forgetless_records,
    phrasings_of,
    split_phrasings,
)


@dataclass
class TrainingPlan:
    """Records to train on, and what the audit needs to know about them."""

    rows: list[dict[str, Any]]
    trained_ids: set[str]  # new, anchor and mixture facts: never counted in retention
    held_out: dict[str, list[str]]  # fact id -> questions training never saw
    gate_items: list[tuple[str, list[str]]] = field(default_factory=list)  # (question, answers); [] = no gate
    anchors: int = 0
    gate_few_shot: float = 0.0  # > 0: the gate also waits for this few-shot P_correct on the new facts
    gate_patience: int = 2
    scoped: bool = False  # the adapter answers only questions naming a taught subject (knowledge.scope)


def paper_plan(chosen: list[Fact], facts: list[Fact], categories: dict[str, str], mixture: str, k: int, seed: int):
    """The paper's records (as the sweep ran them); held out = every phrasing the records do not ask."""
    rows = training_records(chosen, facts, categories, mixture, k, seed)
    asked = {row["prompt"].removeprefix("Question: ") for row in rows}
    trained = {f.id for f in facts if question_for(f) in asked} | {f.id for f in chosen}
    held = {f.id: [q for q in phrasings_of(f) if q not in asked] for f in chosen}
    return TrainingPlan(rows, trained, held)


def forgetless_plan(
    chosen: list[Fact],
    facts: list[Fact],
    categories: dict[str, str],
    settings: RecipeSettings,
    seed: int,
    base_answers: Callable[[list[str]], list[str]],
    probe_answers: dict[str, str],
) -> TrainingPlan:
    """Phrasings with a held-out one per fact, self-replay anchors of the same relations, the gate."""
    train_questions, held = split_phrasings(chosen, settings.phrasings, seed)
    anchors, _ = choose_anchors(facts, categories, chosen, settings.anchor_facts, seed, settings.subject_anchors)
    pairs = anchor_questions(anchors, settings.anchor_phrasings)
    if settings.anchor_answers == "probe":
        replay = [(question, probe_answers.get(fact.id, "")) for question, fact in pairs]
    else:
        questions = [question for question, _ in pairs]
        replay = list(zip(questions, base_answers(questions), strict=True)) if questions else []
    rows = forgetless_records(chosen, train_questions, replay, seed)
    if settings.anchor_shots:
        rows = [row for row in rows if row.get("type") != "world"] + few_shot_anchors(pairs, replay, settings, seed)
    if settings.fact_shots:
        rows += few_shot_facts(chosen, pairs, replay, settings.fact_shots, seed)
    trained = {f.id for f in chosen} | {f.id for f in anchors}
    gate = [(q, f.answers) for f in chosen for q in train_questions[f.id]] if settings.gate else []
    few_shot = settings.gate_few_shot if settings.gate else 0.0
    patience = settings.gate_patience
    return TrainingPlan(
        rows,
        trained,
        held,
        gate,
        len(anchors),
        gate_few_shot=few_shot,
        gate_patience=patience,
        scoped=settings.scope,
    )


def few_shot_anchors(pairs, replay, settings: RecipeSettings, seed: int) -> list[dict[str, Any]]:
    """Each anchor question behind `anchor_shots` exemplars drawn from the other anchors of its relation."""
    rng = random.Random(f"anchor-shots/{seed}")
    by_relation: dict[str, list[tuple[str, str, str]]] = {}
    for (question, fact), (_, answer) in zip(pairs, replay, strict=True):
        if answer:
            by_relation.setdefault(fact.relation, []).append((fact.id, question, answer))
    rows = []
    for items in by_relation.values():
        for fact_id, question, answer in items:
            others = [(q, a) for i, q, a in items if i != fact_id]
            shots = rng.sample(others, min(settings.anchor_shots, len(others)))
            rows.append(few_shot_anchor(question, answer, shots))
    return rows


def few_shot_facts(chosen: list[Fact], pairs, replay, shots: int, seed: int) -> list[dict[str, Any]]:
    """Each new fact's probe question behind `shots` exemplars of its relation: other new facts (their true
    answers) and anchors (the base's answers), never retention facts. The probes ask facts this way, and
    a fact learned only zero-shot is often pulled to an exemplar's answer ("West African CFA franc")."""
    rng = random.Random(f"fact-shots/{seed}")
    pool: dict[str, list[tuple[str, str, str]]] = {}
    for fact in chosen:
        pool.setdefault(fact.relation, []).append((fact.id, question_for(fact), fact.object))
    for (question, fact), (_, answer) in zip(pairs, replay, strict=True):
        if answer:
            pool.setdefault(fact.relation, []).append((fact.id, question, answer))
    rows = []
    for fact in chosen:
        others = [(q, a) for i, q, a in pool[fact.relation] if i != fact.id]
        exemplars = rng.sample(others, min(shots, len(others)))
        rows.append(few_shot_anchor(question_for(fact), fact.object, exemplars, kind="task"))
    rng.shuffle(rows)
    return rows
