"""Batched generation that computes a shared prompt prefix once: the engine behind fast SliCK probing.

    from forgetless.prefix_generation import generate_shared_prefix
    answers = generate_shared_prefix(model, tokenizer, conversations, SamplingConfig(max_new_tokens=32))

Few-shot probes ask thousands of questions behind a handful of identical prefixes (system prompt plus the
same k exemplar turns). On a CPU the prompt's forward pass is most of the cost of a short answer, and
batching alone does not share it. Here conversations are grouped by their prefix (every message but the
last, rendered with the chat template); each prefix runs through the model once, its KV cache is
broadcast to a batch of suffixes (the last user turn + the generation prompt), and the batch is decoded
with a small greedy/sampling loop that stops as soon as every row is done. Only the last position's
logits are computed. Layout of a batch row (suffixes are left-padded between prefix and suffix; the
attention mask has a hole there and position ids continue from the prefix, so each row computes what the
full unpadded prompt would):

    [prefix (cached, shared)] [pad ... pad] [suffix tokens] [generated tokens ...]

Rows whose full token ids do not start with their prefix's ids (a template that re-tokenizes across the
boundary) and, when one answer per prompt is drawn, prefixes used by a single conversation go through
plain `generate_texts`. With
`stop_at_newline`, a row also stops at the first line break after some text (callers that only read the
first line, like the probe, save the tokens a rambling model writes after its answer).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from forgetless.data.chat import render_prompt, tokenize_prompt
from forgetless.generation import SamplingConfig, generate_texts, inference_weights


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
    sampling = (sampling or SamplingConfig()).validate()
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
    per_chunk = max(1, batch_size // sampling.num_return_sequences)
    for prefix, members in groups.items():
        cache = prefix_kv_cache(model, list(prefix), sampling.precision)
        members.sort(key=lambda item: len(item[1]))
        for start in range(0, len(members), per_chunk):
            chunk = members[start : start + per_chunk]
            rows = _decode(
                model, tokenizer, cache, len(prefix), [s for _, s in chunk], sampling, generator, stop_at_newline
            )
            per = sampling.num_return_sequences
            for offset, (index, _) in enumerate(chunk):
                results[index] = rows[offset * per : (offset + 1) * per]


def _group_by_prefix(tokenizer, conversations, singletons_apart: bool = True) -> tuple[dict, list[int]]:
    """{prefix ids: [(index, suffix ids)]} for shareable conversations, and the indices of the rest.

    A prefix that only one conversation uses gains nothing from the cache when one answer is drawn, so
    with `singletons_apart` it goes to plain batched generation; with several samples per conversation it
    stays, as its prefix is then computed once for all of them."""
    groups: dict[tuple[int, ...], list] = {}
    for index, conv in enumerate(conversations):
        full = tokenize_prompt(tokenizer, render_prompt(tokenizer, conv))
        prefix = _prefix_ids(tokenizer, conv[:-1]) if len(conv) > 1 else []
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


def _decode(model, tokenizer, prefix_kv, prefix_len, suffixes, sampling, generator, stop_at_newline) -> list[str]:
    """Decode one chunk of suffixes behind the shared prefix; returns num_return_sequences texts per suffix.

    Finished rows leave the batch (their cache rows are dropped), so the long tail of one rambling row
    costs one row's compute, not the whole batch's.
    """
    import torch

    per = sampling.num_return_sequences
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids, mask, positions, cache = batch_behind_prefix(model, prefix_kv, prefix_len, suffixes, pad)
    rows, device = len(suffixes) * per, model.device
    generated: list[list[int]] = [[] for _ in range(rows)]
    active = torch.arange(rows, device=device)  # original row of each batch row
    has_text = torch.zeros(rows, dtype=torch.bool, device=device)
    stops = None
    with torch.inference_mode(), _autocast(model, sampling.precision):
        for step in range(sampling.max_new_tokens):
            out = model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            logits = out.logits[:, -1, :].float()
            if per > 1 and step == 0:  # the samples of a prompt share its suffix's forward pass, then fan out
                logits, mask, positions = (t.repeat_interleave(per, dim=0) for t in (logits, mask, positions))
                cache.batch_repeat_interleave(per)
            stops = stops or _stop_tokens(tokenizer, logits.shape[-1], stop_at_newline)
            token = _pick(logits, sampling, generator)
            for row, value in zip(active.tolist(), token.tolist(), strict=True):
                generated[row].append(value)
            done = stops.is_eos[token] | (stops.is_newline[token] & has_text)
            has_text |= stops.has_text[token]
            if bool(done.all()):
                break
            keep = (~done).nonzero().squeeze(1)
            if len(keep) < len(active):
                cache.batch_select_indices(keep)
                active, has_text, token, mask = active[keep], has_text[keep], token[keep], mask[keep]
                positions = positions[keep]
            ids, positions = token[:, None], positions[:, -1:] + 1
            mask = torch.cat([mask, torch.ones(len(active), 1, dtype=mask.dtype, device=device)], dim=1)
    return [_text(tokenizer, row, stops) for row in generated]


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
    import torch

    if sampling.temperature <= 0:
        return logits.argmax(-1)
    logits = logits / sampling.temperature
    if sampling.top_k:
        kth = logits.topk(min(sampling.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if sampling.top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        drop = sorted_probs.cumsum(-1) - sorted_probs > sampling.top_p
        probs = probs.scatter(1, order, sorted_probs.masked_fill(drop, 0.0))
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


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


def _autocast(model, precision: str):
    import torch

    from forgetless.models import resolve_precision

    bf16 = resolve_precision(precision, model.device.type) == "bf16"
    return torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16)
