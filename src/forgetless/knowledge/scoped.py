"""The audit of a scoped adapter, as `forgetless generate` and `serve` run it: adapter answers in scope, base elsewhere.

    scoped, coverage = scoped_snapshot(before, after, facts, scope, settings)

Every measured item (a fact's probes and zero-shot answer, an MMLU question) is answered by one model
state or the other, decided by its own question alone, so the scoped snapshot is composed from the
"before" (base) and "after" (adapter on everything) snapshots without running anything again. The
general-text loss is one number over many texts: it is the base's when no text is in scope, and the
unscoped adapter's (the upper bound of the change) otherwise; `coverage` says which.
"""

from __future__ import annotations

from typing import Any

from forgetless.knowledge.facts import Fact, question_for
from forgetless.knowledge.scope import FactScope
from forgetless.knowledge.snapshot_cache import Snapshot


def scoped_snapshot(
    before: Snapshot, after: Snapshot, facts: list[Fact], scope: FactScope, settings
) -> tuple[Snapshot, dict[str, Any]]:
    """(the scoped snapshot, how many items of each kind were in scope). `before` and `after` hold the
    same `facts` in the same order (`audit.restrict` keeps the file order)."""
    in_scope = {f.id for f in facts if scope.applies(question_for(f))}
    before_probes = {p.fact_id: p for p in before.probes}
    probes = [p if p.fact_id in in_scope else before_probes[p.fact_id] for p in after.probes]
    answers = [a if f.id in in_scope else b for f, b, a in zip(facts, before.answers, after.answers, strict=True)]
    mmlu, mmlu_in_scope = _scoped_mmlu(before.mmlu, after.mmlu, scope, settings)
    general, general_in_scope = _scoped_general(before, after, scope, settings)
    coverage = {
        "facts_in_scope": len(in_scope),
        "facts": len(facts),
        "mmlu_in_scope": mmlu_in_scope,
        "general_texts_in_scope": general_in_scope,
    }
    return Snapshot(probes, answers, mmlu, general), coverage


def _scoped_mmlu(before, after, scope: FactScope, settings):
    if before is None or after is None:
        return after, 0
    from forgetless.eval.mmlu import MMLUResult, format_question, sample_mmlu

    items = {i.id: i for i in sample_mmlu(settings.mmlu_n, seed=settings.seed, shots=settings.mmlu_shots)}
    was = {p.id: p for p in before.predictions}
    hits = {p.id for p in after.predictions if p.id in items and scope.applies(format_question(items[p.id]))}
    predictions = [p if p.id in hits else was[p.id] for p in after.predictions]
    per_subject: dict[str, list[bool]] = {}
    for p in predictions:
        per_subject.setdefault(p.subject, []).append(p.correct)
    accuracy = sum(p.correct for p in predictions) / max(1, len(predictions))
    per = {s: sum(v) / len(v) for s, v in per_subject.items()}
    return MMLUResult(accuracy, per, len(predictions), predictions), len(hits)


def _scoped_general(before: Snapshot, after: Snapshot, scope: FactScope, settings):
    if before.general_loss is None or after.general_loss is None or not settings.general_n:
        return after.general_loss, 0
    from forgetless.eval.mmlu import sample_mmlu
    from forgetless.eval.textloss import general_texts

    scored = {item.id for item in sample_mmlu(settings.mmlu_n, seed=settings.seed)} if settings.mmlu_n else set()
    pool = [i for i in sample_mmlu(settings.general_n * 2, seed=settings.seed + 1) if i.id not in scored]
    hits = sum(scope.applies(text) for text in general_texts(pool[: settings.general_n]))
    return (after.general_loss if hits else before.general_loss), hits


def answer_in_scope(model, tokenizer, questions: list[str], scope: FactScope | None) -> list[str]:
    """Greedy zero-shot answers as the scoped adapter gives them: questions in scope with the adapter on,
    the others by the base (the adapter disabled); every question with the adapter when `scope` is None."""
    from forgetless.knowledge.gate import answer_questions

    conversations = [[{"role": "user", "content": q}] for q in questions]
    return generate_in_scope(
        model, conversations, scope, lambda convs: answer_questions(model, tokenizer, [c[0]["content"] for c in convs])
    )


def generate_in_scope(model, conversations: list, scope: FactScope | None, generate) -> list:
    """`generate(conversations)` with the adapter on for conversations in scope and off (the base) for the
    rest, results back in input order; everything with the adapter when `scope` is None."""
    from forgetless.eval.lm_eval_scope import route_by_scope

    if scope is None:
        return generate(conversations)
    inside = [scope.applies_to_conversation(conv) for conv in conversations]
    return route_by_scope(conversations, inside, generate, model)
