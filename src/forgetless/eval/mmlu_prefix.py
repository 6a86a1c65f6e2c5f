"""MMLU scoring behind a shared few-shot prefix: each topic's header + exemplars run once.

    from forgetless.eval.mmlu_prefix import by_shared_prefix, score_group   # used by evaluate_mmlu

Prompts of one topic share everything up to the question being scored (5-shot: ~80% of the tokens). The
shared token prefix runs through the model once; its KV cache is broadcast to batches of questions (see
`forgetless.engine.prefix`), and only the last position's logits are computed. Scores equal those of
whole prompts to float rounding (tested).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from forgetless.engine.prefix_cache import (
    batch_behind_prefix,
    cache_kwargs,
    common_prefix_length,
    prefix_kv_cache,
)


def by_shared_prefix(subjects: Sequence[str], encoded: list[list[int]]) -> list[list[int]]:
    """Indices of subjects with 2+ questions (whose prompts share the header and exemplars), longest first."""
    groups: dict[str, list[int]] = {}
    for index, subject in enumerate(subjects):
        groups.setdefault(subject, []).append(index)
    return [sorted(group, key=lambda i: -len(encoded[i])) for group in groups.values() if len(group) > 1]


def score_group(model, tokenizer, encoded, indices, letters, batch_size, logprobs, on_batch, share) -> None:
    """Score one subject's questions: the shared prefix (header + exemplars) runs once, then the questions
    behind it in batches; a one-question group is scored whole."""
    if not indices:
        return
    sequences = [encoded[i] for i in indices]
    shared = common_prefix_length(sequences) if share else 0
    cache = prefix_kv_cache(model, sequences[0][:shared], "fp32") if shared else None
    for start in range(0, len(indices), batch_size):
        chunk = indices[start : start + batch_size]
        if cache is None:
            rows = letter_logprobs(model, tokenizer, [encoded[i] for i in chunk], letters)
        else:
            rows = _letter_logprobs_behind(
                model, tokenizer, cache, shared, [encoded[i][shared:] for i in chunk], letters
            )
        for index, row in zip(chunk, rows, strict=True):
            logprobs[index] = row
        if on_batch:
            on_batch(len(chunk))


def _letter_logprobs_behind(model, tokenizer, cache, prefix_len: int, suffixes, letters) -> list[list[float]]:
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids, mask, positions, past = batch_behind_prefix(model, cache, prefix_len, suffixes, pad)
    with torch.inference_mode():
        kwargs = cache_kwargs(model, past)
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=1, **kwargs)
    return torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)[:, letters].cpu().tolist()


def letter_logprobs(model: Any, tokenizer: Any, batch: list[list[int]], letters: list[int]) -> list[list[float]]:
    """One forward over the left-padded batch; the log-softmax at the last position, read at `letters`."""
    import torch

    device = getattr(model, "device", "cpu")
    width = max(len(ids) for ids in batch)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in batch], device=device)
    mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch], device=device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        logits = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, logits_to_keep=1).logits
        logits = logits[:, -1, :]
    scores = torch.log_softmax(logits.float(), dim=-1)[:, letters]
    return scores.cpu().tolist()
