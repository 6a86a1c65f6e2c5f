"""Mean next-token loss on general text: a cheap, direct measure of how much an adapter moved the model.

    loss = mean_token_loss(model, tokenizer, texts)    # nats per token, lower is better

The texts used by audits are MMLU questions with their correct answers written out (general English
prose over 57 subjects, shipped offline), never the questions that are scored for accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence

from forgetless.eval.mmlu import MMLUItem, format_question


def general_texts(items: Sequence[MMLUItem]) -> list[str]:
    """MMLU items as plain text: question, choices, and the correct answer."""
    return [f"{format_question(item)} {item.letter}. {item.choices[item.answer]}" for item in items]


def mean_token_loss(model, tokenizer, texts: Sequence[str], batch_size: int = 8, max_length: int = 512) -> float:
    """Token-weighted mean cross-entropy (nats/token) of the model on `texts` (no grad, eval mode)."""
    import torch
    import torch.nn.functional as F

    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(texts), batch_size):
            ids = [
                tokenizer(t, truncation=True, max_length=max_length)["input_ids"]
                for t in texts[start : start + batch_size]
            ]
            width = max(len(x) for x in ids)
            pad = tokenizer.pad_token_id
            input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in ids], device=model.device)
            mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids], device=model.device)
            with torch.inference_mode():
                logits = model(input_ids=input_ids, attention_mask=mask).logits[:, :-1].float()
            targets = input_ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
            total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum"))
            count += int((targets != -100).sum())
    finally:
        model.train(was_training)
    return total / max(count, 1)
