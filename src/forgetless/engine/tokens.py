"""Token classes the decoders stop on (end-of-sequence, line breaks, visible text), and decoding a row.

stops = stop_tokens(tokenizer, vocab_size(model, tokenizer), stop_at_newline=True)
text = text_until_eos(tokenizer, generated_ids, stops)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any


def text_until_eos(tokenizer, row: list[int], stops) -> str:
    """Decoded text up to (not including) the first end-of-sequence token."""
    for position, token in enumerate(row):
        if bool(stops.is_eos[token]):
            row = row[:position]
            break
    return tokenizer.decode(row, skip_special_tokens=True).strip()


@dataclass
class StopTokens:
    """Per token id (bool tensors): ends the sequence, holds a line break, holds visible text."""

    is_eos: Any
    is_newline: Any
    has_text: Any


def stop_tokens(tokenizer, vocab_size: int, stop_at_newline: bool) -> StopTokens:
    import torch

    eos, newline, text = token_classes(tokenizer, vocab_size)
    is_newline = torch.tensor(newline) if stop_at_newline else torch.zeros(len(newline), dtype=torch.bool)
    return StopTokens(torch.tensor(eos), is_newline, torch.tensor(text))


@lru_cache(maxsize=4)
def token_classes(tokenizer, vocab_size: int) -> tuple[list[bool], list[bool], list[bool]]:
    """Per token id (the model's vocabulary, which may be larger than the tokenizer's): is it an
    end-of-sequence token, does it hold a line break, does it hold visible text."""
    size = max(vocab_size, len(tokenizer))
    eos_ids = tokenizer.eos_token_id
    eos_ids = set(eos_ids if isinstance(eos_ids, list) else [eos_ids]) - {None}
    pieces = tokenizer.batch_decode([[i] for i in range(len(tokenizer))]) + [""] * (size - len(tokenizer))
    eos = [i in eos_ids for i in range(size)]
    return eos, ["\n" in p for p in pieces], [bool(p.strip()) for p in pieces]


def vocab_size(model, tokenizer) -> int:
    """Width of the model's logits (the tokenizer's vocabulary may be smaller)."""
    head = model.get_output_embeddings()
    weight = getattr(head, "weight", None)
    return int(weight.shape[0]) if weight is not None else max(model.config.vocab_size, len(tokenizer))
