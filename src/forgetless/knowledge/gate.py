"""Probe-gated training: ask the new facts during training and stop once they are learned.

    gate = ProbeGate(tokenizer, {fact_id: (questions, answers)}, every_steps=steps_per_epoch)
    train(cfg, callbacks=[gate])          # stops early; gate.curve holds (step, share answered) pairs

Every `every_steps` optimizer steps the model answers each new fact's training questions zero-shot
(greedy, the shared-prefix engine, the audit's prompt format) and training stops when the share answered
correctly reaches `target`. The curve goes into results.json and the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from transformers import TrainerCallback

from forgetless.data.chat import prompt_messages
from forgetless.engine.prefix import generate_shared_prefix
from forgetless.engine.sampling import SamplingConfig
from forgetless.knowledge.answers import extract_answer, is_correct
from forgetless.knowledge.slick import SYSTEM_PROMPT


def answer_questions(model, tokenizer, questions: Sequence[str], max_new_tokens: int = 24) -> list[str]:
    """Greedy zero-shot answers in the probes' format (system prompt, "Question: q"), first line only."""
    convs = [prompt_messages(f"Question: {q}", SYSTEM_PROMPT) for q in questions]
    sampling = SamplingConfig(max_new_tokens=max_new_tokens)
    out = generate_shared_prefix(model, tokenizer, convs, sampling, 64, stop_at_newline=True)
    return [extract_answer(answers[0]) for answers in out]


def share_correct(model, tokenizer, items: Sequence[tuple[str, list[str]]]) -> float:
    """Share of (question, accepted answers) pairs answered correctly (substring match)."""
    if not items:
        return 0.0
    answers = answer_questions(model, tokenizer, [question for question, _ in items])
    return sum(is_correct(a, ok, mode="substring") for a, (_, ok) in zip(answers, items, strict=True)) / len(items)


class ProbeGate(TrainerCallback):
    """Stops training when the new facts are answered under their training phrasings."""

    def __init__(self, tokenizer, items: list[tuple[str, list[str]]], every_steps: int, target: float = 1.0):
        self.tokenizer, self.items, self.every, self.target = tokenizer, items, max(1, every_steps), target
        self.curve: list[dict[str, Any]] = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every or model is None:
            return control
        was_training = model.training
        model.eval()
        try:
            share = share_correct(model, self.tokenizer, self.items)
        finally:
            model.train(was_training)
        self.curve.append({"step": state.global_step, "answered": round(share, 4)})
        if share >= self.target:
            control.should_training_stop = True
        return control
