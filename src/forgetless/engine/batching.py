"""Continuous batching behind shared prefixes: new rows join as soon as there is room for a pass of them.

Used by `forgetless.engine.prefix.generate_shared_prefix` (which groups conversations by prefix and
computes each prefix's KV cache once); run it through that function.

A row's life: its suffix (the tokens after the shared prefix) runs in one forward pass together with the
other rows admitted with it, then it decodes one token per step until end-of-turn, a line break after
some text (`stop_at_newline`) or `max_new_tokens`, and leaves. Rows admitted at different times carry
caches of different lengths; they are left-padded with masked holes (position ids are explicit, so
a hole changes nothing). With cascade attention the cache holds only the rows' own tokens and the prefix
is read from `forgetless.engine.attention`; otherwise each row's cache starts with a copy of the prefix.
Decoding fixed chunks instead left most of the time in the tail of a few rambling rows at batch 1-10
(35% of a probe's time, measured).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from forgetless.engine.attention import PrefixSegments
from forgetless.engine.prefix_cache import batch_behind_prefix, cache_kwargs
from forgetless.engine.sampling import SamplingConfig
from forgetless.engine.tokens import StopTokens


@dataclass
class Decoder:
    """What every row shares: the model, decoding settings and the groups' prefixes."""

    model: Any  # a causal LM (transformers or PEFT)
    sampling: SamplingConfig
    generator: Any  # torch.Generator
    stops: StopTokens
    pick: Callable  # (logits, sampling, generator) -> tokens
    pad: int
    prefix_ids: list[list[int]]  # per group
    prefix_cache: Callable  # (model, ids, precision) -> per-layer (keys, values) of batch 1
    segments: PrefixSegments | None = None  # cascade attention; None: broadcast each prefix
    prefixes: dict = field(default_factory=dict)  # group -> its KV cache, while the group has rows left


@dataclass
class LiveRows:
    """The rows being decoded: per-row cache, its mask, the next input token and bookkeeping."""

    cache: Any  # transformers DynamicCache
    mask: Any  # (rows, cached) 1 where the cache holds a real token
    positions: Any  # (rows,) position id of the next input token
    token: Any  # (rows,) next input token
    owner: Any  # (rows,) index into the generated rows
    group: Any  # (rows,) prefix group; rows of a group are contiguous, groups ascending
    has_text: Any  # (rows,) bool: some visible text was generated
    count: Any  # (rows,) tokens generated so far

    @property
    def size(self) -> int:
        return len(self.owner)


ADMIT_ROWS = 64
FIELDS = ("positions", "token", "owner", "group", "has_text", "count")


def decode_groups(decoder: Decoder, suffixes: list[list[list[int]]], capacity: int) -> list[list[list[int]]]:
    """Generated token ids per group, per suffix (`num_return_sequences` rows per suffix, suffix-major).

    With cascade attention one batch holds rows of several groups (the next group's rows join while the
    last rows of the previous one finish); with broadcast prefixes an admission takes one group's rows.
    """
    per = decoder.sampling.num_return_sequences
    offsets = [0]
    for group in suffixes:
        offsets.append(offsets[-1] + len(group) * per)
    generated: list[list[int]] = [[] for _ in range(offsets[-1])]
    queue = deque((g, i) for g, group in enumerate(suffixes) for i in _by_length(group, reverse=g % 2 == 1))
    left = {g: len(group) * per for g, group in enumerate(suffixes) if group}
    live: LiveRows | None = None
    admit = max(per, min(ADMIT_ROWS, capacity // 2))  # rows per suffix pass: wider passes pad more
    while queue or live is not None:
        if queue and (live is None or live.size + admit <= capacity):
            take = [queue.popleft()]
            room = min(capacity - (live.size if live else 0), admit)
            while (
                queue and (len(take) + 1) * per <= room and (decoder.segments is not None or queue[0][0] == take[0][0])
            ):
                take.append(queue.popleft())
            rows = [(g, offsets[g] + i * per, suffixes[g][i]) for g, i in take]
            live = _merge(live, _admit(decoder, rows, generated, left))
        else:
            live = _step(decoder, live, generated, left)
    return [[generated[offsets[g] + r] for r in range(len(group) * per)] for g, group in enumerate(suffixes)]


def _by_length(group: list[list[int]], reverse: bool) -> list[int]:
    """Suffix order within a group: by length, alternating direction from group to group so that an
    admission crossing a group boundary joins long with long (or short with short) and pads little."""
    return sorted(range(len(group)), key=lambda i: len(group[i]), reverse=reverse)


def _admit(decoder: Decoder, rows: list[tuple[int, int, list[int]]], generated, left) -> LiveRows | None:
    """Run the new rows' suffixes in one pass and pick their first tokens; samples fan out after it."""
    import torch
    from transformers import DynamicCache

    per, device = decoder.sampling.num_return_sequences, decoder.model.device
    groups = [g for g, _, _ in rows]
    if decoder.segments is not None:
        decoder.segments.parts = []  # the prefixes below run with ordinary attention
    for g in groups:
        if g not in decoder.prefixes:
            decoder.prefixes[g] = decoder.prefix_cache(decoder.model, decoder.prefix_ids[g], decoder.sampling.precision)
    suffixes = [suffix for _, _, suffix in rows]
    if decoder.segments is not None:
        width = max(len(s) for s in suffixes)
        ids = torch.tensor([[decoder.pad] * (width - len(s)) + s for s in suffixes], device=device)
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in suffixes], device=device)
        starts = torch.tensor([len(decoder.prefix_ids[g]) for g in groups], device=device)[:, None]
        positions = (starts + mask.cumsum(1) - 1).clamp(min=starts)
        cache = DynamicCache()
    else:
        prefix_len = len(decoder.prefix_ids[groups[0]])
        ids, mask, positions, cache = batch_behind_prefix(
            decoder.model, decoder.prefixes[groups[0]], prefix_len, suffixes, decoder.pad
        )
    group = torch.tensor(groups, device=device)
    logits = _forward(decoder, ids, mask, positions, cache, group)
    first = torch.tensor([row for _, row, _ in rows], device=device)
    owner = (first[:, None] + torch.arange(per, device=device)).reshape(-1)
    positions = positions[:, -1] + 1
    if per > 1:
        logits, mask, positions, group = (t.repeat_interleave(per, dim=0) for t in (logits, mask, positions, group))
        cache.batch_repeat_interleave(per)
    flags, count = torch.zeros(len(owner), dtype=torch.bool, device=device), torch.zeros_like(owner)
    live = LiveRows(cache, mask, positions, None, owner, group, flags, count)
    return _take(decoder, live, logits, generated, left)


def _step(decoder: Decoder, live: LiveRows, generated, left) -> LiveRows | None:
    import torch

    live.mask = torch.cat([live.mask, torch.ones(live.size, 1, dtype=live.mask.dtype, device=live.mask.device)], 1)
    logits = _forward(decoder, live.token[:, None], live.mask, live.positions[:, None], live.cache, live.group)
    live.positions = live.positions + 1
    return _take(decoder, live, logits, generated, left)


def _forward(decoder: Decoder, ids, mask, positions, cache, group):
    import torch

    if decoder.segments is not None:  # contiguous runs of one group -> (its prefix, rows)
        values, counts = torch.unique_consecutive(group, return_counts=True)
        decoder.segments.parts = [
            (decoder.prefixes[g], n) for g, n in zip(values.tolist(), counts.tolist(), strict=True)
        ]
    out = decoder.model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=positions,
        **cache_kwargs(decoder.model, cache),
        use_cache=True,
        logits_to_keep=1,
    )
    return out.logits[:, -1, :].float()


def _take(decoder: Decoder, live: LiveRows, logits, generated, left) -> LiveRows | None:
    """Pick each row's next token, record it, and drop the rows that are done (None when none is left).

    A group's prefix cache is released when its last row is done."""
    token = decoder.pick(logits, decoder.sampling, decoder.generator)
    for row, value in zip(live.owner.tolist(), token.tolist(), strict=True):
        generated[row].append(value)
    live.count = live.count + 1
    stops = decoder.stops
    done = stops.is_eos[token] | (stops.is_newline[token] & live.has_text)
    done |= live.count >= decoder.sampling.max_new_tokens
    live.has_text = live.has_text | stops.has_text[token]
    live.token = token
    for g in live.group[done].tolist():
        left[g] -= 1
        if not left[g]:
            decoder.prefixes.pop(g, None)
    if bool(done.all()):
        return None
    if bool(done.any()):
        _select(live, (~done).nonzero().squeeze(1))
    return live


def _select(live: LiveRows, keep) -> None:
    """Keep only rows `keep`; drop the leading cache columns that no kept row uses."""
    live.cache.batch_select_indices(keep)
    for name in ("mask", *FIELDS):
        setattr(live, name, getattr(live, name)[keep])
    used = live.mask.any(0).nonzero()
    first = int(used[0]) if len(used) else 0
    if first:
        live.mask = live.mask[:, first:]
        for layer in live.cache.layers:
            layer.keys, layer.values = layer.keys[:, :, first:], layer.values[:, :, first:]


def _merge(live: LiveRows | None, new: LiveRows | None) -> LiveRows | None:
    """One batch from two: the shorter caches are left-padded with masked zeros."""
    import torch
    import torch.nn.functional as F

    if live is None or new is None:
        return live or new
    width = max(live.mask.shape[1], new.mask.shape[1])

    def pad(part: LiveRows):
        extra = width - part.mask.shape[1]
        layers = [(F.pad(x.keys, (0, 0, extra, 0)), F.pad(x.values, (0, 0, extra, 0))) for x in part.cache.layers]
        return F.pad(part.mask, (extra, 0)), layers

    (mask_a, kv_a), (mask_b, kv_b) = pad(live), pad(new)
    for layer, (ka, va), (kb, vb) in zip(live.cache.layers, kv_a, kv_b, strict=True):
        layer.keys, layer.values = torch.cat([ka, kb]), torch.cat([va, vb])
    live.mask = torch.cat([mask_a, mask_b])
    for name in FIELDS:
        setattr(live, name, torch.cat([getattr(live, name), getattr(new, name)]))
    return live
