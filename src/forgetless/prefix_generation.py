"""Batched generation that computes a shared prompt prefix once: the engine behind fast SliCK probing.

    from forgetless.prefix_generation import generate_shared_prefix
    answers = generate_shared_prefix(model, tokenizer, conversations, SamplingConfig(max_new_tokens=32))

Few-shot probes ask thousands of questions behind a handful of identical prefixes (system prompt plus the
same k exemplar turns). On a CPU the prompt's forward pass is most of the cost of a short answer, and
batching alone does not share it. Here conversations are grouped by their prefix (every message but the
last, rendered with the chat template, grown over the tokens all its questions start with); each prefix
runs through the model once, and only the suffixes (the question + the generation prompt) and the
answers run per row:

- cascade attention (`forgetless.prefix_attention`): rows read their prefix's KV cache in place, so a
  row's cache holds only its own tokens; models whose attention cannot take it get the prefix cache
  broadcast to the rows instead (same answers, more copying);
- continuous batching (`forgetless.prefix_batching`): rows leave when done and new rows, of the same
  or the next prefix, join once half the batch has left, so the batch stays full to the end;
- only the last position's logits are computed; with `stop_at_newline` a row also stops at the first
  line break after some text (the probe reads the first line only).

Position ids continue from the prefix and left padding is masked, so each row computes what its full
unpadded prompt would (tested equal to `generate_texts` in fp32). Rows whose token ids do not start with
their prefix's ids (a template that re-tokenizes across the boundary) and, when one answer per prompt is
drawn, prefixes used by a single conversation go through plain `generate_texts`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache

from forgetless.data.chat import render_prompt, tokenize_prompt
from forgetless.generation import SamplingConfig, generate_texts, inference_weights
from forgetless.prefix_batching import Decoder, decode_groups


def generate_shared_prefix(
    model,
    tokenizer,
    conversations: Sequence[list[dict[str, str]]],
    sampling: SamplingConfig | None = None,
    batch_size: int = 32,
    stop_at_newline: bool = False,
) -> list[list[str]]:
    """Same contract as `generate_texts`: `num_return_sequences` answers per conversation, input order.

    `batch_size` counts decoded rows (a conversation with 4 samples takes 4 rows).
    """
    from forgetless.models import contiguous_head_input

    sampling = (sampling or SamplingConfig()).validate()
    contiguous_head_input(model)  # models not loaded by `load_model` too: a frozen head copies otherwise
    groups, fallback = _group_by_prefix(tokenizer, conversations, sampling.num_return_sequences == 1)
    results: list[list[str]] = [[] for _ in conversations]
    if fallback:
        texts = generate_texts(model, tokenizer, [conversations[i] for i in fallback], sampling, batch_size)
        for index, answers in zip(fallback, texts, strict=True):
            results[index] = answers
    generator = _generator(model, sampling.seed)
    with inference_weights(model, sampling.precision):
        _decode_groups(model, tokenizer, groups, sampling, batch_size, stop_at_newline, generator, results)
    return results


def _decode_groups(model, tokenizer, groups, sampling, batch_size, stop_at_newline, generator, results) -> None:
    """Decode every group, with cascade attention where the model allows it, else broadcast prefixes."""
    from forgetless.prefix_attention import UnsupportedAttention, shared_prefix_attention

    per = sampling.num_return_sequences
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    stops = _stop_tokens(tokenizer, _vocab_size(model, tokenizer), stop_at_newline)
    prefixes = [list(prefix) for prefix in groups]
    suffixes = [[suffix for _, suffix in members] for members in groups.values()]

    def decode(segments):
        decoder = Decoder(model, sampling, generator, stops, _pick, pad, prefixes, prefix_kv_cache, segments)
        return decode_groups(decoder, suffixes, batch_size)

    rows = None
    with shared_prefix_attention(model) as segments, _decoding(model, sampling.precision):
        try:
            rows = decode(segments) if segments is not None else None
        except UnsupportedAttention:
            rows = None
    if rows is None:
        with _decoding(model, sampling.precision):
            rows = decode(None)
    for members, group_rows in zip(groups.values(), rows, strict=True):
        for offset, (index, _) in enumerate(members):
            results[index] = [_text(tokenizer, row, stops) for row in group_rows[offset * per : (offset + 1) * per]]


def _group_by_prefix(tokenizer, conversations, singletons_apart: bool = True) -> tuple[dict, list[int]]:
    """{prefix ids: [(index, suffix ids)]} for shareable conversations, and the indices of the rest.

    A prefix that only one conversation uses gains nothing from the cache when one answer is drawn, so
    with `singletons_apart` it goes to plain batched generation; with several samples per conversation it
    stays, as its prefix is then computed once for all of them."""
    groups: dict[tuple[int, ...], list] = {}
    prefix_ids: dict[tuple, list[int]] = {}  # few-shot probes repeat a handful of prefixes many times
    for index, conv in enumerate(conversations):
        full = tokenize_prompt(tokenizer, render_prompt(tokenizer, conv))
        key = tuple((message["role"], message["content"]) for message in conv[:-1])
        if key not in prefix_ids:
            prefix_ids[key] = _prefix_ids(tokenizer, conv[:-1]) if len(conv) > 1 else []
        prefix = prefix_ids[key]
        if prefix and len(prefix) < len(full) and full[: len(prefix)] == prefix:
            groups.setdefault(tuple(prefix), []).append((index, full[len(prefix) :]))
        else:
            groups.setdefault((), []).append((index, full))
    fallback = [index for index, _ in groups.pop((), [])]
    for key in [k for k, members in groups.items() if len(members) == 1 and singletons_apart]:
        fallback.append(groups.pop(key)[0][0])
    return dict(_extend(prefix, members) for prefix, members in groups.items()), sorted(fallback)


def common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """Length of the token prefix all `sequences` share, leaving at least one token of each after it."""
    limit = min(len(s) for s in sequences) - 1
    common = 0
    while common < limit and all(s[common] == sequences[0][common] for s in sequences):
        common += 1
    return common


def _extend(prefix: tuple[int, ...], members: list) -> tuple[tuple[int, ...], list]:
    """Grow a group's prefix over the tokens all its suffixes start with (e.g. "<|im_start|>user\nQuestion:
    What is the capital of"), keeping at least one suffix token per member."""
    suffixes = [suffix for _, suffix in members]
    common = common_prefix_length(suffixes)
    return prefix + tuple(suffixes[0][:common]), [(index, suffix[common:]) for index, suffix in members]


def _prefix_ids(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    else:
        text = render_prompt(tokenizer, messages).removesuffix("Assistant: ")
    return tokenize_prompt(tokenizer, text)


def prefix_kv_cache(model, prefix: list[int], precision: str) -> list[tuple]:
    """Per layer (keys, values) of the prefix, batch 1."""
    import torch

    with torch.inference_mode(), _autocast(model, precision):
        out = model(input_ids=torch.tensor([prefix], device=model.device), use_cache=True, logits_to_keep=1)
    return [(layer.keys, layer.values) for layer in out.past_key_values.layers]


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


def _pick(logits, sampling: SamplingConfig, generator):
    """Greedy, or a sample after temperature, top-k and top-p. With top-k the draw is made among the k
    best tokens only (`torch.multinomial` over a 49k vocabulary cost 60 ms per step for 64 rows)."""
    import torch

    if sampling.temperature <= 0:
        return logits.argmax(-1)
    logits, indices = logits / sampling.temperature, None
    if sampling.top_k and sampling.top_k < logits.shape[-1]:
        logits, indices = logits.topk(sampling.top_k, dim=-1)
    probs = torch.softmax(logits, dim=-1)
    if sampling.top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        drop = sorted_probs.cumsum(-1) - sorted_probs > sampling.top_p
        probs = probs.scatter(1, order, sorted_probs.masked_fill(drop, 0.0))
    if indices is None:  # exponential race: an exact categorical draw, without multinomial's slow path
        choice = (probs / torch.empty_like(probs).exponential_(generator=generator)).argmax(-1)
    else:
        choice = torch.multinomial(probs, 1, generator=generator).squeeze(1)
    return choice if indices is None else indices.gather(1, choice[:, None]).squeeze(1)


def _text(tokenizer, row: list[int], stops) -> str:
    """Decoded text up to (not including) the first end-of-sequence token."""
    for position, token in enumerate(row):
        if bool(stops.is_eos[token]):
            row = row[:position]
            break
    return tokenizer.decode(row, skip_special_tokens=True).strip()


class _StopTokens:
    def __init__(self, is_eos, is_newline, has_text):
        self.is_eos, self.is_newline, self.has_text = is_eos, is_newline, has_text


def _stop_tokens(tokenizer, vocab_size: int, stop_at_newline: bool) -> _StopTokens:
    import torch

    eos, newline, text = _token_classes(tokenizer, vocab_size)
    is_newline = torch.tensor(newline) if stop_at_newline else torch.zeros(len(newline), dtype=torch.bool)
    return _StopTokens(torch.tensor(eos), is_newline, torch.tensor(text))


@lru_cache(maxsize=4)
def _token_classes(tokenizer, vocab_size: int) -> tuple[list[bool], list[bool], list[bool]]:
    """Per token id (the model's vocabulary, which may be larger than the tokenizer's): is it an
    end-of-sequence token, does it hold a line break, does it hold visible text."""
    size = max(vocab_size, len(tokenizer))
    eos_ids = tokenizer.eos_token_id
    eos_ids = set(eos_ids if isinstance(eos_ids, list) else [eos_ids]) - {None}
    pieces = tokenizer.batch_decode([[i] for i in range(len(tokenizer))]) + [""] * (size - len(tokenizer))
    eos = [i in eos_ids for i in range(size)]
    return eos, ["\n" in p for p in pieces], [bool(p.strip()) for p in pieces]


def _generator(model, seed: int | None):
    import torch

    generator = torch.Generator(device=model.device)
    generator.manual_seed(0 if seed is None else seed)
    return generator


def _vocab_size(model, tokenizer) -> int:
    """Width of the model's logits (the tokenizer's vocabulary may be smaller)."""
    head = model.get_output_embeddings()
    weight = getattr(head, "weight", None)
    return int(weight.shape[0]) if weight is not None else max(model.config.vocab_size, len(tokenizer))


@contextmanager
def _decoding(model, precision: str) -> Iterator[None]:
    import torch

    with torch.inference_mode(), _autocast(model, precision):
        yield


def _autocast(model, precision: str):
    import torch

    from forgetless.models import resolve_precision

    bf16 = resolve_precision(precision, model.device.type) == "bf16"
    return torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16)
