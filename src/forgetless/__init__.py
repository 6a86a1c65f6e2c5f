"""forgetless: teach an open LLM new tasks and facts with adapters, and measure what was gained and lost.

Python API (the CLI only wraps these; see `forgetless.api`):

    from forgetless import TrainConfig, train, generate, load_model
    result = train(TrainConfig(data="facts.jsonl", output="runs/facts"))
    print(generate(["Who wrote Hamlet?"], adapter="runs/facts"))
"""

from __future__ import annotations

from forgetless._version import __version__

__all__ = ["TrainConfig", "__version__", "generate", "load_model", "train"]


def __getattr__(name: str):
    # Lazy: `import forgetless` (and the CLI's --help) stays fast; torch loads only when the API is used.
    if name in ("TrainConfig", "train", "generate", "load_model"):
        from forgetless import api

        return getattr(api, name)
    raise AttributeError(name)
