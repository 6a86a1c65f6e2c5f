"""Did the facts stick, and did what the model knew stay? The measures every injection reports.

    numbers = stick_metrics(adapted, tokenizer, new, held_out, before, after, trained_ids)

- `reliability_zero_shot`: share of new facts whose greedy zero-shot answer to the training question
  (the probe question) is correct;
- `generalization`: share of held-out phrasings (never trained) answered correctly, zero-shot;
- `highly_known_kept`: share of base-HighlyKnown facts never in training (neither new, anchor nor
  mixture) that are still HighlyKnown after training;
- each with an exact (Clopper-Pearson) 95% interval, and an exact McNemar test of known -> not known
  against not known -> known over the facts never in training;
- `exploded_wrong`: of each exploded zero-shot answer (see `knowledge.shifts.exploded_answers`), how
  often it is given where it is wrong. The base answers zero-shot in sentences, so a short correct answer
  ("Africa" to a region question) explodes by format alone; collapse is a wrong answer repeated.
- `exploded_untrained`: exploded answers counted over the facts never in training only, the collapse the
  paper warns of (other questions answered with a trained answer); teaching ten facts whose answer is
  "Americas" makes "americas" explode over all facts by itself.
Answers are generated and matched (substring, aliases), never teacher-forced.
"""

from __future__ import annotations

from typing import Any

from forgetless.eval.significance import mcnemar_exact, proportion
from forgetless.knowledge.answers import is_correct
from forgetless.knowledge.facts import Fact, question_for

KNOWN = "HighlyKnown"


def stick_metrics(
    model,
    tokenizer,
    new: list[Fact],
    held_out: dict[str, list[str]],
    before,
    after,
    trained_ids: set[str],
    scope=None,
) -> dict[str, Any]:
    """The measures above for an adapted model; `before`/`after` are the audit snapshots. With a `scope`
    (`knowledge.scope.FactScope`) questions out of scope are answered by the base, as `generate` does."""
    zero_shot = _answered(model, tokenizer, [(question_for(f), f) for f in new], scope)
    held = [(q, f) for f in new for q in held_out.get(f.id, [])]
    generalization = _answered(model, tokenizer, held, scope)
    kept = _kept(before, after, trained_ids)
    return {
        "reliability_zero_shot": zero_shot["value"],
        "reliability_zero_shot_ci95": zero_shot["ci95"],
        "generalization": generalization["value"],
        "generalization_ci95": generalization["ci95"],
        "generalization_questions": generalization["trials"],
        "highly_known_kept": kept["value"],
        "highly_known_kept_ci95": kept["ci95"],
        "highly_known_retention_facts": kept["trials"],
        "known_mcnemar": _mcnemar(before, after, trained_ids),
    }


def exploded_untrained(before, after, facts: list[Fact], trained_ids: set[str]) -> list[dict[str, Any]]:
    """`exploded_answers` over the zero-shot answers of the facts never trained (snapshots of `facts`)."""
    from forgetless.knowledge.shifts import exploded_answers

    keep = [i for i, fact in enumerate(facts) if fact.id not in trained_ids]
    return exploded_answers([before.answers[i] for i in keep], [after.answers[i] for i in keep])


def exploded_wrong(exploded: list[dict], facts: list[Fact], answers: list[str]) -> list[dict[str, Any]]:
    """Each exploded answer with the number of zero-shot answers where it is given and wrong."""
    from forgetless.knowledge.answers import normalize_answer

    out = []
    for entry in exploded:
        given = [f for f, a in zip(facts, answers, strict=True) if normalize_answer(a) == entry["answer"]]
        wrong = sum(not is_correct(entry["answer"], f.answers, mode="substring") for f in given)
        out.append({"answer": entry["answer"], "after": entry["after"], "wrong": wrong})
    return out


def _answered(model, tokenizer, items: list[tuple[str, Fact]], scope=None) -> dict[str, Any]:
    from forgetless.knowledge.scoped import answer_in_scope

    if not items:
        return proportion(0, 0)
    answers = answer_in_scope(model, tokenizer, [question for question, _ in items], scope)
    right = sum(is_correct(a, f.answers, mode="substring") for a, (_, f) in zip(answers, items, strict=True))
    return proportion(right, len(items))


def _categories(snapshot) -> dict[str, str]:
    return {p.fact_id: p.category for p in snapshot.probes}


def _kept(before, after, trained_ids: set[str]) -> dict[str, Any]:
    cat_before, cat_after = _categories(before), _categories(after)
    pool = [i for i, c in cat_before.items() if c == KNOWN and i not in trained_ids and i in cat_after]
    return proportion(sum(cat_after[i] == KNOWN for i in pool), len(pool))


def _mcnemar(before, after, trained_ids: set[str]) -> dict[str, Any]:
    cat_before, cat_after = _categories(before), _categories(after)
    shared = [i for i in cat_before if i in cat_after and i not in trained_ids]
    lost = sum(cat_before[i] == KNOWN and cat_after[i] != KNOWN for i in shared)
    gained = sum(cat_before[i] != KNOWN and cat_after[i] == KNOWN for i in shared)
    return mcnemar_exact(lost, gained)
