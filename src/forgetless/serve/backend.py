"""Generation backends for `forgetless serve`: one batched `generate` per batch, adapters mixed per row.

    backend, info = build_backend(None, {"plural": "runs/c/adapters/plural", "numbers": "runs/c/adapters/numbers"})
    backend.generate(rows)      # rows: forgetless.serve.batching.Row (blocking; streams through row.feed)

`HFBackend` wraps a loaded transformers model:
- `peft`: a PeftModel holding every LoRA adapter by name (loaded by `forgetless.adapters.mixed`); each
  batch is ONE `generate` call with PEFT's `adapter_names=[...]` (base rows `"__base__"`), so rows of
  different adapters share the batch, as in `mixed.generate_mixed` (which has no streaming, per-row
  `max_tokens`, stop strings or cancellation, hence this backend's own loop).
- `single`: one LoRAMoE adapter (our own format, not PEFT-native). LoRAMoE rows and base rows cannot
  share a forward, so a batch is split into an adapter group and a base group (the base group runs with
  the LoRAMoE layers disabled). Mixing a LoRAMoE adapter with other adapters in one server is refused.
- `base`: no adapter at all.

Per-row work happens in a `StoppingCriteria` that sees every new token: it detokenizes incrementally,
streams text to the row, and stops a row at EOS, at its own `max_tokens`, at a stop string or when its
client went away, while the other rows of the batch go on. The prompt is prefilled in chunks of
`prefill_chunk` tokens, and before every forward (each prefill chunk, each decode step) a hook checks
the rows: once all of them are cancelled the batch stops there, so a client that hangs up during a long
prefill frees the model within one chunk. `EchoBackend` is a model-free stand-in with the same
behaviour (tests, HTTP-layer benchmarks).

Both backends are also the `PromptMeter` of `forgetless.serve.limits`: `context`, `max_token_chars`,
`prompt_text` and `tokenize`, so the server can refuse a request that does not fit before queueing it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from transformers import StoppingCriteria

from forgetless.adapters.loading import adapter_disabled, load_with_adapter, read_adapter_meta
from forgetless.adapters.mixed import adapter_names_of, load_adapters
from forgetless.adapters.names import BASE
from forgetless.adapters.registry import adapter_kind, method_class, method_names
from forgetless.data.chat import render_prompt, tokenize_prompt
from forgetless.errors import ConfigError, ModelError
from forgetless.models.load import ModelInfo, load_model
from forgetless.models.runtime import resolve_precision
from forgetless.serve.batching import GenRequest, Row
from forgetless.serve.limits import max_token_chars

PREFILL_CHUNK = 512  # prompt tokens per prefill forward: the longest a hung-up client can keep the model


class EchoBackend:
    """A model-free backend: answers `echo[<adapter>]: <words of the prompt>` one word per step.
    Its tokens are the words of the last message (or the prompt); its context is `context` of them."""

    max_token_chars = None  # a word can be any length

    def __init__(self, model_id: str = "echo", step_s: float = 0.0, context: int = 4096):
        self.model_id, self.step_s, self.context = model_id, step_s, context
        self.batch_sizes: list[int] = []

    def prompt_text(self, request: GenRequest) -> str:
        return request.prompt if request.messages is None else request.messages[-1]["content"]

    def tokenize(self, text: str) -> list[int]:
        return [len(word) for word in text.split()]

    def generate(self, rows: Sequence[Row]) -> None:
        self.batch_sizes.append(len(rows))
        words = {id(r): self._words(r) for r in rows}
        done: dict[int, str] = {}
        sent = dict.fromkeys(words, 0)
        step = 0
        while len(done) < len(rows):
            if self.step_s:
                time.sleep(self.step_s)
            for row in rows:
                if id(row) in done:
                    continue
                if row.stopped or step >= len(words[id(row)]):
                    done[id(row)] = "stop"
                elif step >= row.request.max_tokens:
                    done[id(row)] = "length"
                else:
                    row.feed(words[id(row)][step])
                    sent[id(row)] += 1
            step += 1
        for row in rows:
            row.complete(done[id(row)], len(self._text(row).split()), sent[id(row)])

    def _text(self, row: Row) -> str:
        return self.prompt_text(row.request)

    def _words(self, row: Row) -> list[str]:
        words = f"echo[{row.adapter or 'base'}]: {self._text(row)}".split()
        return [w if i == 0 else " " + w for i, w in enumerate(words)]


class HFBackend:
    """Batched generation on a loaded transformers model (see the module docstring for the modes)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        model_id: str,
        mode: str = "peft",
        precision: str = "auto",
        prefill_chunk: int = PREFILL_CHUNK,
    ):
        if mode not in ("peft", "single", "base"):
            raise ConfigError(f"backend mode must be peft, single or base, not {mode!r}")
        self.model, self.tokenizer, self.model_id, self.mode = model, tokenizer, model_id, mode
        self.bf16 = resolve_precision(precision, model.device.type) == "bf16"
        self.prefill_chunk = prefill_chunk
        self.context = context_length(model, tokenizer)
        self.max_token_chars = max_token_chars(tokenizer)
        eos = tokenizer.eos_token_id
        generation_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        self.eos_ids = {i for i in _as_list(eos) + _as_list(generation_eos) if i is not None}

    def generate(self, rows: Sequence[Row]) -> None:
        for row in rows:
            if row.stopped:
                row.complete("cancelled", 0, 0)
        live = [row for row in rows if not row.stopped]
        for group in self._groups(live):
            self._generate(group)

    def _groups(self, rows: list[Row]) -> list[list[Row]]:
        if self.mode == "peft" or not rows:
            return [rows] if rows else []
        groups: dict[str | None, list[Row]] = {}
        for row in rows:
            groups.setdefault(row.adapter, []).append(row)
        return list(groups.values())

    def prompt_text(self, request: GenRequest) -> str:
        """The text the model sees: the chat template applied to the messages, or the raw prompt."""
        if request.messages is not None:
            return render_prompt(self.tokenizer, request.messages)
        return request.prompt or ""

    def tokenize(self, text: str) -> list[int]:
        return tokenize_prompt(self.tokenizer, text)

    def _encode(self, row: Row) -> list[int]:
        request = row.request
        ids = request.prompt_ids or self.tokenize(self.prompt_text(request))
        room = max(1, self.context - request.max_tokens)
        return ids[-room:]  # the server's limits refuse what does not fit; other callers lose the start

    def _adapter_context(self, adapter: str | None):
        if self.mode == "single" and adapter is None:
            return adapter_disabled(self.model)
        return nullcontext()

    def _generate(self, rows: list[Row]) -> None:
        import torch
        from transformers import StoppingCriteriaList

        encoded = [self._encode(row) for row in rows]
        width, pad = max(len(ids) for ids in encoded), self.tokenizer.pad_token_id
        device = self.model.device
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in encoded], device=device)
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in encoded], device=device)
        first = rows[0].request
        kwargs: dict[str, Any] = {"do_sample": first.temperature > 0}
        if kwargs["do_sample"]:
            kwargs.update(temperature=first.temperature, top_p=first.top_p, top_k=None)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if self.mode == "peft":
            kwargs["adapter_names"] = [row.adapter or BASE for row in rows]
        if first.seed is not None:
            torch.manual_seed(first.seed)
        tracker = RowTracker(rows, self.tokenizer, self.eos_ids)
        hook = self.model.get_input_embeddings().register_forward_pre_hook(_stop_when_all_stopped(rows))
        try:
            with (
                self._adapter_context(rows[0].adapter),
                torch.inference_mode(),
                torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16),
            ):
                self.model.generate(
                    input_ids=input_ids,
                    attention_mask=mask,
                    max_new_tokens=max(row.request.max_tokens for row in rows),
                    stopping_criteria=StoppingCriteriaList([tracker]),
                    pad_token_id=pad,
                    eos_token_id=sorted(self.eos_ids) or None,
                    use_cache=True,
                    prefill_chunk_size=self.prefill_chunk,
                    **kwargs,
                )
        except BatchStopped:
            pass  # every row was cancelled: their clients are gone
        finally:
            hook.remove()
        tracker.finish([len(ids) for ids in encoded])


class BatchStopped(Exception):
    """Every row of a batch is stopped: generation ends before its next forward."""


def _stop_when_all_stopped(rows: Sequence[Row]):
    """A forward pre-hook (on the input embeddings) that stops the batch once no row needs more steps."""

    def hook(module: Any, args: Any) -> None:
        if all(row.stopped for row in rows):
            raise BatchStopped

    return hook


def context_length(model: Any, tokenizer: Any) -> int:
    """The model's context in tokens: its max_position_embeddings, else the tokenizer's model_max_length."""
    config = getattr(model, "config", None)
    positions = getattr(config, "max_position_embeddings", None)
    if positions:
        return int(positions)
    tokenizer_max = getattr(tokenizer, "model_max_length", None) or 0
    return int(tokenizer_max) if 0 < tokenizer_max < 10**7 else 2048  # HF writes 1e30 for "no limit"


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


class RowTracker(StoppingCriteria):
    """Sees each new token of every row: streams its text and says which rows are done."""

    def __init__(self, rows: Sequence[Row], tokenizer: Any, eos_ids: set[int]):
        self.rows, self.tokenizer, self.eos_ids = list(rows), tokenizer, eos_ids
        self.ids: list[list[int]] = [[] for _ in self.rows]
        self.texts = ["" for _ in self.rows]
        self.reasons: list[str | None] = [None for _ in self.rows]

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        last = input_ids[:, -1].tolist()
        for index, row in enumerate(self.rows):
            if self.reasons[index] is None:
                self._step(index, row, last[index])
        return torch.tensor([r is not None for r in self.reasons], dtype=torch.bool, device=input_ids.device)

    def _step(self, index: int, row: Row, token: int) -> None:
        if row.stopped:
            self.reasons[index] = "cancelled" if row.cancelled else "stop"
            return
        if token in self.eos_ids:
            self.reasons[index] = "stop"
            return
        self.ids[index].append(token)
        self._emit(index, row)
        if row.stop_hit:
            self.reasons[index] = "stop"
        elif len(self.ids[index]) >= row.request.max_tokens:
            self.reasons[index] = "length"

    def _emit(self, index: int, row: Row, final: bool = False) -> None:
        text = self.tokenizer.decode(self.ids[index], skip_special_tokens=True)
        if (final or not text.endswith("\ufffd")) and text.startswith(self.texts[index]):
            row.feed(text[len(self.texts[index]) :])
            self.texts[index] = text

    def finish(self, prompt_lengths: list[int]) -> None:
        """Flush held-back text and complete every row."""
        for index, row in enumerate(self.rows):
            if not row.stopped:
                self._emit(index, row, final=True)
            reason = self.reasons[index] or ("cancelled" if row.cancelled else "length")
            row.complete(reason, prompt_lengths[index], len(self.ids[index]))


def adapter_method(path: Path) -> str:
    """The registered method (`lora`, `loramoe`, ...) of an adapter directory (ModelError when it is not one)."""
    config, manifest = read_adapter_meta(path)
    if not config.get("method") and str(config.get("peft_type", "")).upper() != "LORA":
        titles = " and ".join(cls.title for cls in map(method_class, method_names()))
        raise ModelError(f"{path}: adapter type {config.get('peft_type')!r} cannot be served; only {titles}")
    return adapter_kind(config, manifest)


def recorded_base(path: Path) -> str | None:
    """The base model an adapter records in its forgetless.json (None when it records none)."""
    _, manifest = read_adapter_meta(path)
    return manifest.get("base_model")


def build_backend(
    model: str | None, adapters: dict[str, Path], precision: str = "auto", device: str | None = None
) -> tuple[HFBackend, ModelInfo]:
    """Load the base and every adapter, and wrap them in the right HFBackend mode."""
    methods = {name: adapter_method(path) for name, path in adapters.items()}
    moe = [name for name, method in methods.items() if not method_class(method).mixable]
    if moe and len(adapters) > 1:
        title = method_class(methods[moe[0]]).title
        raise ConfigError(
            f"adapter {moe[0]!r} is {title}, which cannot share a batch with other adapters; serve it alone "
            f"(`forgetless serve --adapter {moe[0]}=DIR`) and the LoRA adapters in another server"
        )
    if moe:
        loaded, tokenizer, info = load_with_adapter(model, adapters[moe[0]], device=device)
        return HFBackend(loaded, tokenizer, info.model_id, "single", precision), info
    if not adapters:
        loaded, tokenizer, info = load_model(model, device=device)
        return HFBackend(loaded, tokenizer, info.model_id, "base", precision), info
    spec = model if model is not None else next((b for b in map(recorded_base, adapters.values()) if b), None)
    loaded, tokenizer, info = load_lora_adapters(spec, adapters, device)
    return HFBackend(loaded, tokenizer, info.model_id, "peft", precision), info


def load_lora_adapters(
    model: str | None, adapters: dict[str, Path], device: str | None = None
) -> tuple[Any, Any, ModelInfo]:
    """A PeftModel holding every LoRA adapter under its name (`forgetless.adapters.mixed.load_adapters`)."""
    loaded, tokenizer, info = load_adapters(model, dict(adapters), device=device)
    missing = set(adapters) - set(adapter_names_of(loaded))
    if missing:
        raise ModelError(f"adapters {', '.join(sorted(missing))} did not load into the model")
    loaded.eval()
    return loaded, tokenizer, info
