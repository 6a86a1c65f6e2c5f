"""How to teach new facts: the paper's recipe, and the forgetless recipe that keeps what the model knew.

    forgetless inject --facts F --unknown 20 --recipe forgetless|paper --output D

`paper` (Pletenev et al.) is kept exactly as the sweep ran it: each fact under its one question (plus the
`--mixture`), LoRA rank 1, alpha 2, rsLoRA, 10 epochs. `forgetless` (the default) changes what is trained:

1. **Question diversity.** Each new fact is trained under `phrasings` questions: its probe question and
   other phrasings (relation templates, the fact's own paraphrases), the same number for every fact.
   One more phrasing per fact is held out: training never sees it, and it measures generalization.
2. **Self-replay anchors.** The base model's own answers to `anchor_facts` other known facts of the same
   relations (2 phrasings each; its short few-shot answer, as the probes ask, by default): training keeps
   those answers where they were, which is where a new fact interferes most (without anchors the adapter
   answers the new capital for every country). Anchors, the retention set (every other HighlyKnown
   fact, at least 30) and the new facts are disjoint.
3. **Capacity and gating.** LoRA rank 16 on the FFN layers, lr 1e-3, up to `epochs`; after every
   epoch the new facts are asked zero-shot under their training phrasings (greedy, the probe engine) and
   training stops once all are answered (`forgetless.knowledge.gate`). Optionally (`gate_few_shot`, off:
   measured no gain) it then also waits for the new facts' few-shot P_correct, or a plateau of it.
4. **KL to the base on the anchors.** Besides the base's answer (cross-entropy), the adapter's whole
   next-token distribution on each anchor answer is pulled to the base's (`anchor_kl`, the teacher is the
   same model with the adapter disabled): this is what keeps the answers of facts never trained on.
5. **Few-shot fact records.** One more record per new fact: its probe question behind `fact_shots` (4)
   exemplars of its relation (other new facts, anchors; never retention facts). Learned zero-shot only, a
   fact asked behind exemplars was often answered with an exemplar's answer. Training batches group
   records by length (`group_by_length`), so these few long records do not pad every batch.
6. **The scope** (`scope`, on): the adapter answers only questions naming a taught subject; the base
   answers the rest, bit for bit (`knowledge.scope`, applied by `generate`, `serve` and the audit). Every
   result also reports the adapter used on every prompt (`unscoped`), as plain PEFT or vLLM run it.

Measured and off: `subject_anchors` (a share of the taught subjects' other known facts made anchors
first). It keeps the facts it anchors, but on the retention facts both runs measure it lost about as
many (README, "Facts that stick").
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from forgetless.errors import ConfigError
from forgetless.knowledge.facts import Fact, paraphrases_for, question_for
from forgetless.knowledge.slick import SYSTEM_PROMPT
from forgetless.train.args import TrainArgs

RECIPES = ("forgetless", "paper")
FFN = ("gate_proj", "up_proj", "down_proj")
RETENTION_MIN = 30  # known facts kept aside to measure retention, whatever the user's file holds


@dataclass
class RecipeSettings:
    """The forgetless recipe's knobs (the ablation switches them off one at a time)."""

    phrasings: int = 2  # training questions per new fact (the probe question first); one more is held out
    anchor_facts: int = 40  # other facts of the same relations, answered by the base and replayed
    anchor_phrasings: int = 2
    anchor_answers: str = "probe"  # probe: the base's short few-shot greedy answer; zero_shot: its zero-shot reply
    anchor_shots: int = 0  # > 0: anchors are asked behind this many exemplars (other anchors), as the probes ask
    subject_anchors: float = 0.0  # share of the taught subjects' other known facts made anchors first
    scope: bool = True  # the adapter answers only questions naming a taught subject; the base the rest
    fact_shots: int = 4  # > 0: one more record per new fact, its probe question behind this many exemplars
    gate: bool = True  # stop once every new fact is answered under its training phrasings
    gate_few_shot: float = 0.0  # > 0: ... and its few-shot P_correct (own exemplar draws) reaches this
    gate_patience: int = 2  # few-shot checks without improvement before the gate stops anyway

    def validate(self) -> RecipeSettings:
        if self.phrasings < 1 or self.anchor_phrasings < 1 or self.anchor_facts < 0:
            raise ConfigError("recipe phrasings must be >= 1 and anchor_facts >= 0")
        if self.fact_shots < 0 or self.anchor_shots < 0:
            raise ConfigError("recipe fact_shots and anchor_shots must be >= 0 (0 = zero-shot records only)")
        if not 0.0 <= self.subject_anchors <= 1.0:
            raise ConfigError(f"recipe subject_anchors is a share in [0, 1], got {self.subject_anchors!r}")
        if self.anchor_answers not in ("probe", "zero_shot"):
            raise ConfigError(f"anchor_answers must be probe or zero_shot, got {self.anchor_answers!r}")
        return self


ANCHOR_KL = 5.0  # weight of KL(base || adapter) on the anchors' answers (see forgetless_train_args)


def forgetless_train_args() -> TrainArgs:
    """Capacity of the forgetless recipe: LoRA rank 16 (alpha 32) on the FFN (gate/up/down_proj), lr 1e-3,
    at most 15 epochs (the gate usually stops it after 2-4), no dropout (a handful of records per fact),
    and KL to the base on the anchors' answers (`anchor_kl`, weight ANCHOR_KL).
    Measured on the demo's 20 facts: FFN-only kept more HighlyKnown facts than all linear layers (0.64 vs
    0.57 with zero-shot anchors) at equal reliability; rank 4 learned less (0.77 vs 0.93) and kept the same.
    On the ablation's 400 facts (n=20, seed 0) the KL weight moved HighlyKnown kept 0.57 (0) -> 0.75 (1)
    -> 0.83 (5): the base's whole answer distribution is kept, not only its greedy answer."""
    return TrainArgs(
        rank=16,
        alpha=32.0,
        lr=1e-3,
        epochs=15.0,
        dropout=0.0,
        target_modules=list(FFN),
        anchor_kl=ANCHOR_KL,
        group_by_length=True,
    )


def check_recipe(name: str) -> str:
    if name not in RECIPES:
        raise ConfigError(f"--recipe {name!r} is not one of {', '.join(RECIPES)}")
    return name


def phrasings_of(fact: Fact) -> list[str]:
    """Every distinct question for a fact: its probe question first, then templates and paraphrases."""
    return list(dict.fromkeys([question_for(fact), *paraphrases_for(fact)]))


def split_phrasings(facts: list[Fact], per_fact: int, seed: int) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """({fact id: training questions}, {fact id: held-out questions}).

    The probe question is always trained (reliability asks it); of the other phrasings one is held out
    (seeded), the next `per_fact - 1` are trained, cycling when a fact has too few so that every fact gets
    the same number of training records. A fact with a single phrasing has no held-out question."""
    rng = random.Random(f"phrasings/{seed}")
    train, held = {}, {}
    for fact in facts:
        first, *others = phrasings_of(fact)
        rng.shuffle(others)
        held[fact.id] = others[:1]
        rest = [first, *others[1:]]
        train[fact.id] = [rest[i % len(rest)] for i in range(per_fact)]
    return train, held


def choose_anchors(
    facts: list[Fact], categories: dict[str, str], new: list[Fact], count: int, seed: int, subject_share: float = 0.0
) -> tuple[list[Fact], list[Fact]]:
    """(anchor facts, retention facts): anchors are known facts (HighlyKnown or MaybeKnown), those of the
    new facts' relations first, topped up from other relations (a user's facts may share no relation
    with the known ones); retention is every other HighlyKnown fact. ConfigError when fewer than
    RETENTION_MIN HighlyKnown facts would be left to measure retention on.
    `subject_share` > 0: that share (rounded down, per category) of the known facts about the new facts'
    own subjects comes first: the scope sends their questions to the adapter, so that is where it
    interferes; the rest of them stay in the retention set, which measures how well the anchors protect."""
    new_ids, relations = {f.id for f in new}, {f.relation for f in new}
    others = [f for f in facts if f.id not in new_ids]
    highly = [f for f in others if categories.get(f.id) == "HighlyKnown"]
    if len(highly) < RETENTION_MIN:
        raise ConfigError(
            f"only {len(highly)} HighlyKnown facts besides the new ones; the forgetless recipe needs at least "
            f"{RETENTION_MIN} to measure retention (plus some for anchors): add known facts to the file"
        )
    known = [f for f in others if categories.get(f.id) in ("HighlyKnown", "MaybeKnown")]
    room = max(0, len(highly) - RETENTION_MIN)  # HighlyKnown facts that may become anchors
    rng = random.Random(f"anchors/{seed}")
    rng.shuffle(known)
    known.sort(key=lambda f: f.relation not in relations)  # stable: same relations first, still shuffled
    if subject_share:
        first = _same_subject_share(known, categories, {f.subject for f in new}, subject_share)
        known.sort(key=lambda f: f.id not in first)
    anchors, used_highly = [], 0
    for fact in known:
        if len(anchors) == count:
            break
        if categories.get(fact.id) == "HighlyKnown":
            if used_highly == room:
                continue
            used_highly += 1
        anchors.append(fact)
    anchor_ids = {f.id for f in anchors}
    return anchors, [f for f in highly if f.id not in anchor_ids]


def _same_subject_share(known: list[Fact], categories: dict[str, str], subjects: set[str], share: float) -> set[str]:
    """Ids of the first `share` of the known facts about `subjects`, per category (rounded down)."""
    first: set[str] = set()
    for category in ("HighlyKnown", "MaybeKnown"):
        mine = [f for f in known if f.subject in subjects and categories.get(f.id) == category]
        first |= {f.id for f in mine[: int(len(mine) * share)]}
    return first


def anchor_questions(anchors: list[Fact], per_fact: int) -> list[tuple[str, Fact]]:
    """(question, anchor fact) pairs replayed in training: `per_fact` phrasings of each anchor fact."""
    pairs = []
    for fact in anchors:
        options = phrasings_of(fact)
        pairs += [(options[i % len(options)], fact) for i in range(per_fact)]
    return pairs


def qa_record(question: str, answer: str, kind: str | None = None) -> dict[str, str]:
    """One training record in the probes' format: the answer alone after "Answer:", then EOS. `kind` is
    the LoRAMoE sample type (`task`: a new fact, `world`: an anchor); other methods ignore it."""
    row = {"system": SYSTEM_PROMPT, "prompt": f"Question: {question}", "response": f"Answer: {answer}"}
    return {**row, "type": kind} if kind else row


def few_shot_anchor(
    question: str, answer: str, exemplars: list[tuple[str, str]], kind: str = "world"
) -> dict[str, Any]:
    """A question asked behind (question, answer) exemplars, in the probes' format. Every assistant turn is
    trained: the exemplars are anchors or new facts, never retention facts. `kind`: the LoRAMoE type."""
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    for shot_question, shot_answer in exemplars:
        messages += [
            {"role": "user", "content": f"Question: {shot_question}"},
            {"role": "assistant", "content": f"Answer: {shot_answer}"},
        ]
    messages += [
        {"role": "user", "content": f"Question: {question}"},
        {"role": "assistant", "content": f"Answer: {answer}"},
    ]
    return {"messages": messages, "type": kind}


def forgetless_records(
    new: list[Fact], train_questions: dict[str, list[str]], anchors: list[tuple[str, str]], seed: int
) -> list[dict[str, Any]]:
    """New facts under their training questions plus (question, base answer) anchors, shuffled."""
    rows = [qa_record(q, fact.object, "task") for fact in new for q in train_questions[fact.id]]
    rows += [qa_record(question, answer, "world") for question, answer in anchors if answer]
    random.Random(f"records/{seed}").shuffle(rows)
    return rows
