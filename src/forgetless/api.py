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
    use_scope: bool = True,
) -> list[str]:
    """Load model (+ adapter) and answer each prompt; returns the first answer per prompt. A facts adapter's
    `scope.json` is applied (prompts naming no taught subject get the base) unless `use_scope` is False."""
    from forgetless.knowledge.scope import FactScope
    from forgetless.knowledge.scoped import generate_in_scope

    scope = FactScope.load(adapter) if adapter and use_scope else None
    loaded, tokenizer, _ = load_with_adapter(model, adapter)
    conversations = [prompt_messages(p, system) for p in prompts]

    def run(convs):
        return generate_texts(loaded, tokenizer, convs, sampling, batch_size)

    return [answers[0] for answers in generate_in_scope(loaded, conversations, scope, run)]
