"""Batched generation with the chat template: left padding, greedy by default, optional sampling.

    from forgetless import generate
    generate(["What is the capital of France?"])                  # embedded base model
    generate(["Who founded Zorbland?"], adapter="runs/demo")      # with a trained adapter

`generate_texts` is the lower-level call for an already loaded model (probing, evaluation, serving).
Weights stay fp32; with `precision="auto"` generation runs under bf16 autocast where the hardware does
bf16 fast (measured 1.8-2.4x faster on a 2-core avx512_bf16 CPU, identical greedy answers on 32 few-shot
probe prompts); `precision="fp32"` turns it off.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from forgetless.data.chat import prompt_messages, render_prompt, tokenize_prompt
from forgetless.errors import ConfigError


@dataclass
class SamplingConfig:
    """Decoding options: temperature 0 means greedy."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    num_return_sequences: int = 1
    seed: int | None = None
    precision: str = "auto"  # auto: bf16 autocast where the hardware runs it fast (2x on this CPU), else fp32

    def validate(self) -> SamplingConfig:
        if self.max_new_tokens < 1:
            raise ConfigError(f"--max-new-tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ConfigError(f"--temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"--top-p must be in (0, 1], got {self.top_p}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ConfigError(f"--precision {self.precision!r} is not one of auto, bf16, fp32")
        return self


def generate_texts(
    model,
    tokenizer,
    conversations: Sequence[list[dict[str, str]]],
    sampling: SamplingConfig | None = None,
    batch_size: int = 16,
    on_batch=None,
) -> list[list[str]]:
    """Answers for each conversation (a list of `num_return_sequences` strings per conversation).

    Prompts are sorted by length so that each batch pads little, then returned in input order.
    """
    import torch

    sampling = (sampling or SamplingConfig()).validate()
    if sampling.seed is not None:
        torch.manual_seed(sampling.seed)
    encoded = [tokenize_prompt(tokenizer, render_prompt(tokenizer, c)) for c in conversations]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    results: list[list[str]] = [[] for _ in encoded]
    with inference_weights(model, sampling.precision):
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            texts = _generate_batch(model, tokenizer, [encoded[i] for i in chunk], sampling)
            per = sampling.num_return_sequences
            for offset, index in enumerate(chunk):
                results[index] = texts[offset * per : (offset + 1) * per]
            if on_batch:
                on_batch(len(chunk))
    return results


@contextmanager
def inference_weights(model, precision: str = "auto") -> Iterator[None]:
    """Weights laid out for fast generation inside the block, put back bit for bit on exit.

    - Active PEFT LoRA adapters (plain LoRA on Linear layers) are merged into their base weights and
      their side path switched off: one matmul per layer instead of three, and no per-module Python
      overhead (the adapted model probed ~4x slower than the base without this).
    - Where `precision` resolves to bf16, fp32 parameters are held in bf16: autocast alone re-casts
      every weight at every forward, which costs more than it saves in memory-bound decode steps
      (measured: probing 96 facts took 22.5 s under autocast alone, 13.8 s with bf16 weights, same
      categories). Autocast stays on in the callers for modules that compute in fp32 on purpose.
    The original tensors are kept, not re-computed, so training and fp32 scoring after the block see
    exactly the weights they saw before.
    """
    merged = _merge_active_lora(model)
    try:
        with _bf16_parameters(model, precision):
            yield
    finally:
        for module, weight, data, disabled in reversed(merged):
            weight.data = data
            module._disable_adapters = disabled


@contextmanager
def _bf16_parameters(model, precision: str) -> Iterator[None]:
    import torch

    from forgetless.models import resolve_precision

    if resolve_precision(precision, model.device.type) != "bf16":
        yield
        return
    originals = [(p, p.data) for p in model.parameters() if p.dtype == torch.float32]
    try:
        for param, data in originals:
            param.data = data.to(torch.bfloat16)
        yield
    finally:
        for param, data in originals:
            param.data = data


def _merge_active_lora(model) -> list[tuple]:
    """Fold each active, unmerged plain-LoRA Linear adapter into its base weight; returns what to undo."""
    try:
        from peft.tuners.lora.layer import Linear as LoraLinear
    except ImportError:
        return []
    undo = []
    for module in model.modules():
        if not isinstance(module, LoraLinear) or module.merged or module.disable_adapters:
            continue
        names = [a for a in module.active_adapters if a in module.lora_A and not module.use_dora.get(a)]
        if not names or len(names) != len(module.active_adapters) or getattr(module, "lora_bias", {}).get(names[0]):
            continue
        weight = module.get_base_layer().weight
        delta = sum(module.get_delta_weight(name) for name in names)
        undo.append((module, weight, weight.data, module._disable_adapters))
        weight.data = weight.data + delta.to(weight.dtype)
        module._disable_adapters = True
    return undo


def _generate_batch(model, tokenizer, batch: list[list[int]], sampling: SamplingConfig) -> list[str]:
    import torch

    width = max(len(ids) for ids in batch)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in batch], device=model.device)
    mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch], device=model.device)
    kwargs = {"do_sample": sampling.temperature > 0}
    if kwargs["do_sample"]:
        kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k or None)
    else:
        kwargs.update(temperature=None, top_p=None, top_k=None)
    from forgetless.models import resolve_precision

    bf16 = resolve_precision(sampling.precision, model.device.type) == "bf16"
    with torch.inference_mode(), torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16):
        out = model.generate(
            input_ids=input_ids,
            attention_mask=mask,
            max_new_tokens=sampling.max_new_tokens,
            num_return_sequences=sampling.num_return_sequences,
            pad_token_id=pad,
            eos_token_id=tokenizer.eos_token_id,
            use_cache=True,
            **kwargs,
        )
    return [t.strip() for t in tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)]


def generate(
    prompts: Sequence[str],
    model: str | None = None,
    adapter: str | None = None,
    system: str | None = None,
    sampling: SamplingConfig | None = None,
    batch_size: int = 16,
) -> list[str]:
    """Load model (+ adapter) and answer each prompt; returns the first answer per prompt."""
    from forgetless.adapters.loading import load_with_adapter

    loaded, tokenizer, _ = load_with_adapter(model, adapter)
    conversations = [prompt_messages(p, system) for p in prompts]
    return [answers[0] for answers in generate_texts(loaded, tokenizer, conversations, sampling, batch_size)]
