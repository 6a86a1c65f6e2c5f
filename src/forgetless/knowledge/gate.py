"""Probe-gated training: ask the new facts during training and stop once they are learned.

    gate = ProbeGate(tokenizer, {fact_id: (questions, answers)}, every_steps=steps_per_epoch)
    train(cfg, callbacks=[gate])          # stops early; gate.curve holds (step, share answered) pairs

Every `every_steps` optimizer steps the model answers each new fact's training questions zero-shot
(greedy, the shared-prefix engine, the audit's prompt format) and training stops when the share answered
correctly reaches `target` and, with `few_shot` (a function of the model giving the new facts' mean
few-shot P_correct, asked behind exemplar draws of its own, not the final probe's), when that reaches
`few_shot_target` too, or has not improved for `patience` checks in a row (a plateau: more epochs
would cost time and retention for nothing). The curve goes into results.json and the report.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
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

    def __init__(
        self,
        tokenizer,
        items: list[tuple[str, list[str]]],
        every_steps: int,
        target: float = 1.0,
        few_shot: Callable[[Any], float] | None = None,
        few_shot_target: float = 0.95,
        patience: int = 2,
    ):
        self.tokenizer, self.items, self.every, self.target = tokenizer, items, max(1, every_steps), target
        self.few_shot, self.few_shot_target, self.patience = few_shot, few_shot_target, patience
        self._best, self._flat = -1.0, 0
        self.curve: list[dict[str, Any]] = []
        self.seconds = 0.0  # wall time spent in the checks

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every or model is None:
            return control
        was_training, started = model.training, time.perf_counter()
        model.eval()
        point: dict[str, Any] = {"step": state.global_step}
        try:
            point["answered"] = round(share_correct(model, self.tokenizer, self.items), 4)
            done = point["answered"] >= self.target
            if done and self.few_shot is not None:  # asked only once zero-shot is learned (it costs more)
                point["few_shot"] = round(self.few_shot(model), 4)
                self._flat = 0 if point["few_shot"] > self._best else self._flat + 1
                self._best = max(self._best, point["few_shot"])
                done = point["few_shot"] >= self.few_shot_target or self._flat >= self.patience
        finally:
            model.train(was_training)
            self.seconds += time.perf_counter() - started
        self.curve.append(point)
        control.should_training_stop = control.should_training_stop or done
        return control
