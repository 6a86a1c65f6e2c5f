"""MMLU scoring behind a shared few-shot prefix: each topic's header + exemplars run once.

    from forgetless.eval.mmlu_prefix import by_shared_prefix, score_group   # used by evaluate_mmlu

Prompts of one topic share everything up to the question being scored (5-shot: ~80% of the tokens). The
shared token prefix runs through the model once; its KV cache is broadcast to batches of questions (see
`forgetless.prefix_generation`), and only the last position's logits are computed. Scores equal those of
whole prompts to float rounding (tested).
"""

from __future__ import annotations

from collections.abc import Sequence

from forgetless.eval.mmlu import MMLUItem, letter_logprobs


def by_shared_prefix(scored: Sequence[MMLUItem], encoded: list[list[int]]) -> list[list[int]]:
    """Indices of subjects with 2+ questions (whose prompts share the header and exemplars), longest first."""
    groups: dict[str, list[int]] = {}
    for index, item in enumerate(scored):
        groups.setdefault(item.subject, []).append(index)
    return [sorted(group, key=lambda i: -len(encoded[i])) for group in groups.values() if len(group) > 1]


def score_group(model, tokenizer, encoded, indices, letters, batch_size, logprobs, on_batch, share) -> None:
    """Score one subject's questions: the shared prefix (header + exemplars) runs once, then the questions
    behind it in batches; a one-question group is scored whole."""
    from forgetless.prefix_generation import common_prefix_length, prefix_kv_cache

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

    from forgetless.prefix_generation import batch_behind_prefix

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids, mask, positions, past = batch_behind_prefix(model, cache, prefix_len, suffixes, pad)
    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=past, logits_to_keep=1)
    return torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)[:, letters].cpu().tolist()
