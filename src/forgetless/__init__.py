"""forgetless: teach an open LLM new tasks and facts with adapters, and measure what was gained and lost.

Python API (the CLI only wraps these):

    from forgetless import TrainConfig, train, generate, load_model
    result = train(TrainConfig(data="facts.jsonl", output="runs/facts"))
    print(generate(["Who wrote Hamlet?"], adapter="runs/facts"))
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["TrainConfig", "__version__", "generate", "load_model", "train"]


def __getattr__(name: str):
    # Lazy imports keep `import forgetless` (and the CLI's --help) fast: torch loads only when needed.
    if name == "TrainConfig":
        from forgetless.train.config import TrainConfig

        return TrainConfig
    if name == "train":
        from forgetless.train.run import train

        return train
    if name == "generate":
        from forgetless.generation import generate

        return generate
    if name == "load_model":
        from forgetless.models import load_model

        return load_model
    raise AttributeError(name)
