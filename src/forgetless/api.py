"""The Python API: what the CLI calls, for notebooks and scripts too.

from forgetless.api import TrainConfig, train, generate
result = train(TrainConfig(data="facts.jsonl", output="runs/facts"))
print(generate(["Who wrote Hamlet?"], adapter="runs/facts"))
"""

from __future__ import annotations

from collections.abc import Sequence

from forgetless.adapters.loading import load_with_adapter
from forgetless.data.chat import prompt_messages
from forgetless.engine.generate import generate_texts
from forgetless.engine.sampling import SamplingConfig
from forgetless.models.load import load_model
from forgetless.train.config import TrainConfig
from forgetless.train.run import TrainResult, train

__all__ = ["SamplingConfig", "TrainConfig", "TrainResult", "generate", "load_model", "train"]


def generate(
    prompts: Sequence[str],
    model: str | None = None,
    adapter: str | None = None,
    system: str | None = None,
    sampling: SamplingConfig | None = None,
    batch_size: int = 16,
) -> list[str]:
    """Load model (+ adapter) and answer each prompt; returns the first answer per prompt."""
    loaded, tokenizer, _ = load_with_adapter(model, adapter)
    conversations = [prompt_messages(p, system) for p in prompts]
    return [answers[0] for answers in generate_texts(loaded, tokenizer, conversations, sampling, batch_size)]
