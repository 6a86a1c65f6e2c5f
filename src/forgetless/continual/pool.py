"""One base model holding every adapter a continual run evaluates, with a generation cache.

    pool = AdapterPool(model=None)                 # the base (embedded default), no adapters yet
    pool.add("plural", "runs/cit/adapters/plural")
    answers = pool.generate(conversations, ["plural", None, ...], max_new_tokens=16)

Evaluation asks the same (adapter, prompt) pair many times: the switch routes most prompts of a task to
the same frozen adapter at every later stage, the oracle score asks for it once more, and stage 1 of the
sequential and replay baselines IS SwitchCIT's first adapter. Greedy answers are therefore cached by
(sha256 of the adapter's weights, max_new_tokens, conversation); cache hits cost nothing and the misses
of one call go to ONE `generate_mixed` call. A name can only be loaded once, with one set of weights.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from forgetless.adapters.mixed import adapter_names_of, add_adapter, generate_mixed, load_adapters
from forgetless.engine.sampling import SamplingConfig
from forgetless.errors import ModelError


def weights_digest(adapter: str | Path) -> str:
    """sha256 of an adapter's weights file (what makes two adapter directories the same adapter)."""
    import hashlib

    weights = Path(adapter) / "adapter_model.safetensors"
    if not weights.is_file():
        raise ModelError(f"{adapter}: no adapter_model.safetensors; pass a PEFT LoRA adapter directory")
    digest = hashlib.sha256()
    with weights.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class AdapterPool:
    """A PeftModel (or the bare base before the first adapter) plus a greedy-answer cache."""

    def __init__(self, model: str | None, batch_size: int = 16, precision: str = "auto"):
        self.model, self.tokenizer, self.info = load_adapters(model, {})
        self.batch_size, self.precision = batch_size, precision
        self.cache: dict[tuple[str, int, str], str] = {}  # (weights sha256 or "" = base, budget, prompt)
        self.generated = 0  # answers actually generated (cache misses)
        self.digests: dict[str, str] = {}  # adapter name -> sha256 of its weights file

    @property
    def names(self) -> list[str]:
        return adapter_names_of(self.model)

    def add(self, name: str, path: str | Path) -> None:
        """Load an adapter under `name`; a no-op when the same weights are already loaded under it."""
        digest = weights_digest(path)
        if name in self.names:
            if self.digests.get(name) != digest:
                raise ModelError(f"{path}: other weights are already loaded as {name!r}; answers would mix them up")
            return
        self.model = add_adapter(self.model, name, path, self.info)
        self.digests[name] = digest

    def remove(self, name: str) -> None:
        """Unload an adapter (the pool keeps at least one adapter once it has one: add before removing)."""
        if name in self.names and len(self.names) > 1:
            with warnings.catch_warnings():  # peft warns that another adapter becomes the active one
                warnings.simplefilter("ignore")
                self.model.delete_adapter(name)

    def generate(
        self, conversations: list[list[dict]], names: list[str | None], max_new_tokens: int, on_batch: Any = None
    ) -> list[str]:
        """Greedy answers, row i with adapter names[i] (None = base); cached rows are not generated again."""
        keys = [
            (self.digests[n] if n else "", max_new_tokens, json.dumps(c, sort_keys=True))
            for n, c in zip(names, conversations, strict=True)
        ]
        missing = list(dict.fromkeys(k for k in keys if k not in self.cache))
        if missing:
            index = {k: i for i, k in enumerate(keys)}
            sampling = SamplingConfig(max_new_tokens=max_new_tokens, precision=self.precision)
            answers = generate_mixed(
                self.model,
                self.tokenizer,
                [conversations[index[k]] for k in missing],
                [names[index[k]] for k in missing],
                sampling,
                batch_size=self.batch_size,
                on_batch=on_batch,
            )
            self.cache.update(zip(missing, answers, strict=True))
            self.generated += len(missing)
        return [self.cache[k] for k in keys]

    def activate(self, name: str | None) -> Any:
        """A context in which a plain forward uses adapter `name` alone (None: the base alone)."""
        from contextlib import nullcontext

        if not self.names:
            return nullcontext()
        if name is None:
            return self.model.disable_adapter()
        self.model.set_adapter(name)
        return nullcontext()
