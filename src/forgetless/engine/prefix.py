"""Batched generation that computes a shared prompt prefix once: the engine behind fast SliCK probing.

    from forgetless.engine.prefix import generate_shared_prefix
    answers = generate_shared_prefix(model, tokenizer, conversations, SamplingConfig(max_new_tokens=32))

Few-shot probes ask thousands of questions behind a handful of identical prefixes (system prompt plus the
same k exemplar turns). On a CPU the prompt's forward pass is most of the cost of a short answer, and
batching alone does not share it. Here conversations are grouped by their prefix (every message but the
last, rendered with the chat template, grown over the tokens all its questions start with); each prefix
runs through the model once, and only the suffixes (the question + the generation prompt) and the
answers run per row:

- cascade attention (`forgetless.engine.attention`): rows read their prefix's KV cache in place, so a
  row's cache holds only its own tokens; models whose attention cannot take it get the prefix cache
  broadcast to the rows instead (same answers, more copying);
- continuous batching (`forgetless.engine.batching`): rows leave when done and new rows, of the same
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

from forgetless.data.chat import render_prompt, tokenize_prompt
from forgetless.engine.attention import UnsupportedAttention, shared_prefix_attention
from forgetless.engine.batching import Decoder, decode_groups
from forgetless.engine.generate import generate_texts
from forgetless.engine.prefix_cache import common_prefix_length, prefix_kv_cache
from forgetless.engine.sampling import SamplingConfig, pick_tokens
from forgetless.engine.tokens import stop_tokens, text_until_eos, vocab_size
from forgetless.engine.weights import inference_weights
from forgetless.models.runtime import autocast, contiguous_head_input


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
    per = sampling.num_return_sequences
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    stops = stop_tokens(tokenizer, vocab_size(model, tokenizer), stop_at_newline)
    prefixes = [list(prefix) for prefix in groups]
    suffixes = [[suffix for _, suffix in members] for members in groups.values()]

    def decode(segments):
        decoder = Decoder(model, sampling, generator, stops, pick_tokens, pad, prefixes, prefix_kv_cache, segments)
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
            results[index] = [
                text_until_eos(tokenizer, row, stops) for row in group_rows[offset * per : (offset + 1) * per]
            ]


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


def _generator(model, seed: int | None):
    import torch

    generator = torch.Generator(device=model.device)
    generator.manual_seed(0 if seed is None else seed)
    return generator


@contextmanager
def _decoding(model, precision: str) -> Iterator[None]:
    import torch

    with torch.inference_mode(), autocast(model.device.type, precision):
        yield
