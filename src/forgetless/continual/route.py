"""Use a continual run as a model: route each prompt with the run's switch, answer in mixed batches.

    forgetless route --run runs/cit --prompt "What is the plural of goose?"
    forgetless route --run runs/cit --input prompts.jsonl [--output answers.jsonl]

    from forgetless.continual.route import RoutedModel
    routed = RoutedModel.load("runs/cit")
    routed.answer([prompt_messages("Write 42 in words.")])   # [{"task": "num2words", "answer": ..., ...}]

One base model holds every task adapter; the whole batch is routed at once and generated with
`generate_mixed` (rows of different adapters, and base rows, share each `generate` call). A prompt the
switch is not confident about (score under the calibrated threshold) is answered by the base model and
reported as task `base`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgetless.continual.run_dir import RunDir
from forgetless.engine.sampling import SamplingConfig
from forgetless.errors import DataError

BASE_LABEL = "base"


@dataclass
class RoutedModel:
    """A run's switch + its base model with every task adapter loaded."""

    run_dir: Path
    switch: Any
    model: Any
    tokenizer: Any
    switch_ms_per_prompt: float = 0.0  # the switch's own cost (encoder + head) in the last `answer` call

    @classmethod
    def load(cls, run_dir: str | Path) -> RoutedModel:
        from forgetless.adapters.mixed import load_adapters
        from forgetless.continual.switch_stage import load_switch

        run_dir = Path(run_dir)
        run = RunDir(run_dir)
        manifest = run.manifest()
        switch, _ = load_switch(run_dir)
        adapters = {task: run.locate_adapter(a) for task, a in switch.adapters.items()}
        model, tokenizer, _ = load_adapters(manifest.get("model"), adapters)
        return cls(run_dir, switch, model, tokenizer)

    def answer(
        self, conversations: list[list[dict]], max_new_tokens: int = 64, batch_size: int = 16
    ) -> list[dict[str, Any]]:
        """Route and answer every conversation; one dict per conversation (task, confidence, answer)."""
        from forgetless.adapters.mixed import generate_mixed

        start = time.perf_counter()
        routes = self.switch.route([_user_text(c) for c in conversations])
        routed = time.perf_counter()
        names = [None if r.adapter is None else r.task for r in routes]
        sampling = SamplingConfig(max_new_tokens=max_new_tokens)
        answers = generate_mixed(self.model, self.tokenizer, conversations, names, sampling, batch_size=batch_size)
        self.switch_ms_per_prompt = 1000 * (routed - start) / max(1, len(conversations))
        return [
            {"task": n or BASE_LABEL, "confidence": round(r.confidence, 4), "abstained": r.abstained, "answer": a}
            for n, r, a in zip(names, routes, answers, strict=True)
        ]


def _user_text(conversation: list[dict]) -> str:
    users = [m["content"] for m in conversation if m.get("role") == "user"]
    if not users:
        raise DataError("each prompt needs a user message to route on")
    return users[-1]
