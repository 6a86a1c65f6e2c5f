"""Cascade attention: rows attend to shared prefix KV caches without a copy of a prefix per row.

    from forgetless.engine.attention import shared_prefix_attention
    with shared_prefix_attention(model) as segments:     # None when the model cannot use it
        segments.parts = [(prefix_kv_a, 12), (prefix_kv_b, 20)]   # rows 0-11 behind prefix a, 12-31 behind b
        out = model(input_ids=suffixes, attention_mask=row_mask, position_ids=..., past_key_values=DynamicCache())

Inside the block the model's attention runs `cascade_attention`: each query attends to its rows' prefix
(per layer (keys, values) of batch 1, always visible) and to its own row's keys (the cache then holds
only the tokens after the prefix, masked as usual), with one softmax over both. Broadcasting a prefix
instead makes every decode step copy `rows x prefix` keys and values per layer (the cache's
concatenation, then the GQA head repeat); on a CPU that copying cost as much as the step's matmuls
(measured with the probe). Rows are grouped by prefix in contiguous segments; with no segments set
(`parts` empty, e.g. while computing a prefix) the layers run ordinary SDPA attention.

Works for models whose attention goes through transformers' `AttentionInterface` (Llama, Qwen2, Mistral,
SmolLM, ...). The block yields None, and the model is left as it was, when the model cannot use it; a
layer asking for features this function does not implement (soft-capping, sliding windows, attention
sinks) raises `UnsupportedAttention` so the caller can fall back to broadcasting the prefix.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

NAME = "forgetless_shared_prefix"


@dataclass
class PrefixSegments:
    """Which prefix each row reads: `parts` is [(per-layer (keys, values) of batch 1, row count)]."""

    parts: list[tuple[list, int]] = field(default_factory=list)


_SEGMENTS: ContextVar[PrefixSegments | None] = ContextVar("forgetless_prefix_segments", default=None)


class UnsupportedAttention(RuntimeError):
    """The model's attention needs something cascade attention does not do; use the broadcast prefix."""


@contextmanager
def shared_prefix_attention(model) -> Iterator[PrefixSegments | None]:
    """Route the model's attention through `cascade_attention` inside the block."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) not in ("sdpa", "eager") or not _register():
        yield None
        return
    previous, segments = config._attn_implementation, PrefixSegments()
    token = _SEGMENTS.set(segments)
    config._attn_implementation = NAME
    try:
        yield segments
    finally:
        config._attn_implementation = previous
        _SEGMENTS.reset(token)


def _register() -> bool:
    try:
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    except ImportError:  # an older transformers without the attention interface
        return False
    ALL_ATTENTION_FUNCTIONS.register(NAME, cascade_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)
    return True


def cascade_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """Attention over [row's prefix | row's own keys], one softmax; returns (output (B, Q, H, D), None).

    query (B, H, Q, D); key/value (B, KVH, S, D), the rows' own tokens; attention_mask a boolean
    (B, 1, Q, S) mask over those (True: attend) or None (all visible, causal among the new tokens).
    """
    import torch

    segments = _SEGMENTS.get()
    if segments is not None and not segments.parts:  # no prefix (e.g. computing one): ordinary attention
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    if segments is None or sum(rows for _, rows in segments.parts) != query.shape[0]:
        raise UnsupportedAttention("cascade attention used without prefix segments covering the batch")
    if any(kwargs.get(name) is not None for name in ("softcap", "sliding_window", "s_aux")):
        raise UnsupportedAttention(f"{type(module).__name__} needs soft-capping, a sliding window or sinks")
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    outputs, start = [], 0
    for prefix_kv, rows in segments.parts:
        part = slice(start, start + rows)
        mask = attention_mask if attention_mask is None or attention_mask.shape[0] == 1 else attention_mask[part]
        with torch.autocast(query.device.type, enabled=False):  # fp32 math, see _attend
            outputs.append(_attend(prefix_kv[module.layer_idx], query[part], key[part], value[part], mask, scaling))
        start += rows
    out = outputs[0] if len(outputs) == 1 else torch.cat(outputs)
    return out.transpose(1, 2).contiguous(), None


def _attend(prefix, query, key, value, attention_mask, scaling):
    """(B, H, Q, D) attention output for rows sharing one prefix, computed in fp32 as SDPA's kernels
    accumulate. In fp32 it equals the broadcast prefix exactly (128/128 probe answers on the embedded
    model); under bf16 weights both agree with fp32 on 117-120 of 128 (near-tied hallucinations)."""
    import torch

    rows, heads, length, dim = query.shape
    kv_heads = key.shape[1]
    groups = heads // kv_heads
    grouped = query.float().reshape(rows, kv_heads, groups * length, dim) * scaling  # head h reads kv h // groups
    prefix_keys, prefix_values = prefix[0][0].float(), prefix[1][0].float()
    # the prefix: one (KVH, rows*G*Q, D) @ (KVH, D, P) product for all rows, nothing copied per row
    flat = grouped.transpose(0, 1).reshape(kv_heads, rows * groups * length, dim)
    prefix_scores = (flat @ prefix_keys.transpose(1, 2)).view(kv_heads, rows, groups * length, -1).transpose(0, 1)
    row_scores = _masked(grouped @ key.float().transpose(2, 3), attention_mask, groups, length)
    probs = torch.softmax(torch.cat([prefix_scores, row_scores], dim=-1), dim=-1)
    prefix_len = prefix_keys.shape[1]
    prefix_probs = probs[..., :prefix_len].transpose(0, 1).reshape(kv_heads, rows * groups * length, prefix_len)
    out = (prefix_probs @ prefix_values).view(kv_heads, rows, groups * length, dim).transpose(0, 1)
    out = out + probs[..., prefix_len:] @ value.float()
    return out.reshape(rows, heads, length, dim).to(query.dtype)


def _masked(scores, attention_mask, groups, length):
    """Scores (B, KVH, G*Q, S) with the rows' mask applied (-inf where not attended)."""
    import torch

    rows, kv_heads, _, keys = scores.shape
    if attention_mask is None:  # all visible but causal among the new tokens
        steps = torch.arange(length, device=scores.device)[:, None] + (keys - length)
        attention_mask = (torch.arange(keys, device=scores.device)[None, :] <= steps)[None, None]
    view = scores.view(rows, kv_heads, groups, length, keys)
    if attention_mask.dtype == torch.bool:
        view = view.masked_fill(~attention_mask[:, :, None], float("-inf"))
    else:
        view = view + attention_mask[:, :, None].float()
    return view.view(rows, kv_heads, groups * length, keys)
