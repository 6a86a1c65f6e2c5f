"""A shared prefix's KV cache, and a batch of suffixes laid out behind it (broadcast, no cascade).

    kv = prefix_kv_cache(model, prefix_ids, "auto")          # per layer (keys, values), batch 1
    ids, mask, positions, cache = batch_behind_prefix(model, kv, len(prefix_ids), suffixes, pad)

Used by shared-prefix generation (`forgetless.engine.prefix`) and 5-shot MMLU scoring
(`forgetless.eval.mmlu_prefix`).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

from forgetless.models.runtime import autocast


def cache_kwargs(model, cache) -> dict:
    """The forward's keyword for a KV cache: `cache` where transformers renamed it (5.2x warns on
    `past_key_values` at every call), `past_key_values` before."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    forward = getattr(type(base), "forward", None)
    if forward not in _CACHE_KEYWORD:
        _CACHE_KEYWORD[forward] = "cache" if "cache" in inspect.signature(forward).parameters else "past_key_values"
    return {_CACHE_KEYWORD[forward]: cache}


_CACHE_KEYWORD: dict = {}


def common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """Length of the token prefix all `sequences` share, leaving at least one token of each after it."""
    limit = min(len(s) for s in sequences) - 1
    common = 0
    while common < limit and all(s[common] == sequences[0][common] for s in sequences):
        common += 1
    return common


def prefix_kv_cache(model, prefix: list[int], precision: str) -> list[tuple]:
    """Per layer (keys, values) of the prefix, batch 1."""
    import torch

    with torch.inference_mode(), autocast(model.device.type, precision):
        out = model(input_ids=torch.tensor([prefix], device=model.device), use_cache=True, logits_to_keep=1)
    return [(layer.keys, layer.values) for layer in returned_cache(out).layers]


def returned_cache(out):
    """The KV cache a forward returned: `out.cache` where transformers renamed it (reading
    `out.past_key_values` there logs a deprecation warning), `out.past_key_values` before."""
    cache = out.get("cache")  # not out.get("cache", out.past_key_values): that reads the old name anyway
    return cache if cache is not None else out.past_key_values


def batch_behind_prefix(model, prefix_kv, prefix_len: int, suffixes: list[list[int]], pad: int):
    """Left-padded suffix ids, the mask with its hole, continuing position ids, the broadcast prefix cache."""
    import torch
    from transformers import DynamicCache

    rows, width, device = len(suffixes), max(len(s) for s in suffixes), model.device
    ids = torch.tensor([[pad] * (width - len(s)) + s for s in suffixes], device=device)
    real = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in suffixes], device=device)
    mask = torch.cat([torch.ones(rows, prefix_len, dtype=real.dtype, device=device), real], dim=1)
    positions = (prefix_len + real.cumsum(1) - 1).clamp(min=prefix_len)
    expanded = [(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in prefix_kv]
    return ids, mask, positions, DynamicCache(ddp_cache_data=expanded)
