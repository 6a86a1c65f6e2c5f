"""General ability and foreign prompts for a continual run: what the base model knew, and prompts of no task.

    from forgetless.continual.general import GeneralSet, ood_prompts
    general = GeneralSet.build(cfg, pool)      # picks known facts with the base model (stage 0)
    general.evaluate(pool, route)               # {"qa": ..., "mmlu": ..., "mmlu_stderr": ...}

- Known-fact QA: country facts of relations that no built-in task trains (region, subregion, currency,
  official language), closed-book, answer matched by alias as whole words. From a seeded sample of
  candidates the base model is asked first; the first `general_qa` it answers right are THE known facts,
  so the base scores 1.0 and a later score is the share of that knowledge kept.
- MMLU: a seeded, topic-stratified `mmlu`-question sample, zero-shot log-likelihood (`forgetless.eval.mmlu`),
  in batches of 4 under bf16 autocast where the hardware runs it fast, prompts cut to their last 384 tokens
  (10x faster than batches of 32 in fp32 on 2 CPU cores; every stage and the base are scored alike).
- `route(prompts) -> names` picks each prompt's adapter (None = base): the switch for SwitchCIT, one
  fixed adapter for a baseline. MMLU questions are grouped by adapter and each group is scored with that
  adapter alone.
- Out-of-distribution prompts (for the switch's AUROC / FPR@95 and abstain rate): plain chat requests
  below plus `ood_mmlu` other MMLU questions.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from forgetless.continual.config import ContinualConfig
from forgetless.data.chat import prompt_messages

GENERAL_RELATIONS = ("region", "subregion", "currency", "official_language")
QA_MAX_NEW_TOKENS = 24
MMLU_BATCH, MMLU_MAX_LENGTH = 4, 384  # small batches of similar length, long questions cut from the start

CHAT_PROMPTS = (
    "hi, how are you?", "Hello there!", "Good morning! What's up?", "Thanks a lot, bye!",
    "Tell me a joke about programmers.", "Write a haiku about autumn leaves.",
    "How do I sort a list in Python?", "Recommend a good science fiction novel.",
    "Why is the sky blue?", "Explain the causes of the French Revolution.",
    "Summarise the plot of Hamlet in two sentences.", "What should I cook for dinner tonight?",
    "Can you help me write an email to my landlord about a broken heater?",
    "What are some tips for sleeping better?", "Is it going to rain tomorrow?",
    "Give me three ideas for a birthday party.", "How does a refrigerator work?",
    "What is the meaning of life?", "Write a short poem about the sea.",
    "How can I improve my public speaking skills?",
)  # fmt: skip

Route = Callable[[list[str]], list[str | None]]


@dataclass
class GeneralSet:
    """The known facts and MMLU questions every stage is scored on."""

    facts: list[Any] = field(default_factory=list)
    mmlu_items: list[Any] = field(default_factory=list)
    candidates: int = 0

    @classmethod
    def build(cls, cfg: ContinualConfig, pool: Any) -> GeneralSet:
        """Choose the known facts by asking the base model; sample the MMLU questions."""
        from forgetless.eval.mmlu import sample_mmlu

        facts, candidates = _known_facts(cfg, pool) if cfg.general_qa else ([], 0)
        items = sample_mmlu(cfg.mmlu, seed=cfg.seed) if cfg.mmlu else []
        return cls(facts, items, candidates)

    def evaluate(self, pool: Any, route: Route) -> dict[str, Any]:
        """QA accuracy on the known facts and MMLU accuracy, each prompt on its routed adapter."""
        out: dict[str, Any] = {}
        if self.facts:
            questions = [f.question for f in self.facts]
            answers = pool.generate([prompt_messages(q) for q in questions], route(questions), QA_MAX_NEW_TOKENS)
            out["qa"] = _qa_accuracy(self.facts, answers)
            out["qa_n"] = len(self.facts)
        if self.mmlu_items:
            out.update(_mmlu(pool, self.mmlu_items, route))
        return out

    def summary(self) -> dict[str, Any]:
        return {"qa_facts": len(self.facts), "qa_candidates": self.candidates, "mmlu_questions": len(self.mmlu_items)}


def _known_facts(cfg: ContinualConfig, pool: Any) -> tuple[list[Any], int]:
    from forgetless.knowledge.countries import country_facts

    facts = [f for f in country_facts() if f.relation in GENERAL_RELATIONS]
    candidates = random.Random(f"{cfg.seed}:general_qa").sample(facts, min(len(facts), 3 * cfg.general_qa))
    questions = [f.question for f in candidates]
    answers = pool.generate([prompt_messages(q) for q in questions], [None] * len(questions), QA_MAX_NEW_TOKENS)
    known = [f for f, a in zip(candidates, answers, strict=True) if _correct(f, a)]
    return known[: cfg.general_qa], len(candidates)


def _correct(fact: Any, answer: str) -> bool:
    from forgetless.knowledge import extract_answer, is_correct

    return is_correct(extract_answer(answer), fact.answers, mode="substring")


def _qa_accuracy(facts: list[Any], answers: list[str]) -> float:
    return sum(_correct(f, a) for f, a in zip(facts, answers, strict=True)) / len(facts)


def _mmlu(pool: Any, items: list[Any], route: Route) -> dict[str, Any]:
    import torch

    from forgetless.eval.mmlu import evaluate_mmlu, format_question, summarize
    from forgetless.models.runtime import resolve_precision

    device = pool.model.device.type
    bf16 = resolve_precision("auto", device) == "bf16"
    names = route([format_question(item) for item in items])
    predictions = []
    for name in dict.fromkeys(names):
        group = [item for item, n in zip(items, names, strict=True) if n == name]
        with pool.activate(name), torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            result = evaluate_mmlu(pool.model, pool.tokenizer, group, batch_size=MMLU_BATCH, max_length=MMLU_MAX_LENGTH)
        predictions += result.predictions
    result = summarize(predictions)
    return {"mmlu": result.accuracy, "mmlu_stderr": result.stderr, "mmlu_n": len(predictions)}


def ood_prompts(cfg: ContinualConfig) -> list[str]:
    """Prompts that belong to no task: the built-in chat requests and `ood_mmlu` MMLU questions."""
    from forgetless.eval.mmlu import format_question, sample_mmlu

    chosen = {item.id for item in sample_mmlu(cfg.mmlu, seed=cfg.seed)} if cfg.mmlu else set()
    items = sample_mmlu(min(14000, cfg.ood_mmlu + len(chosen)), seed=cfg.seed + 1) if cfg.ood_mmlu else []
    questions = [format_question(i) for i in items if i.id not in chosen][: cfg.ood_mmlu]
    return [*CHAT_PROMPTS, *questions]
