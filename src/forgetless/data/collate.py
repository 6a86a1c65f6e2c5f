"""Batch collation for training: LEFT padding, so every row's answer ends at the right edge.

With answers right-aligned, the positions that carry labels are the last K of the batch for a small K,
and the model computes logits only there (`logits_to_keep=K`): on SmolLM2 the 49k-vocab LM head is a
fifth of the FLOPs, most of them spent on prompt tokens that carry no loss. Explicit `position_ids`
(counting from the first real token) keep left padding exact for absolute-position models too.
"""

from __future__ import annotations

from typing import Any

from forgetless.data.chat import IGNORE_INDEX


class LeftPadCollator:
    """Pads `input_ids`/`labels` on the left and adds `attention_mask`, `position_ids` (and `sample_type`)."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        ids, labels, mask = [], [], []
        for feature in features:
            pad = width - len(feature["input_ids"])
            ids.append([self.pad_token_id] * pad + list(feature["input_ids"]))
            labels.append([IGNORE_INDEX] * pad + list(feature["labels"]))
            mask.append([0] * pad + [1] * len(feature["input_ids"]))
        attention_mask = torch.tensor(mask)
        batch = {
            "input_ids": torch.tensor(ids),
            "labels": torch.tensor(labels),
            "attention_mask": attention_mask,
            "position_ids": (attention_mask.cumsum(-1) - 1).clamp(min=0),
        }
        if "sample_type" in features[0]:
            batch["sample_type"] = torch.tensor([f["sample_type"] for f in features])
        return batch


def label_window(labels) -> int:
    """How many trailing positions need logits: from the one predicting the first label to the end."""
    has_label = (labels != IGNORE_INDEX).any(dim=0).nonzero()
    if has_label.numel() == 0:
        return 1
    first = max(int(has_label[0]), 1)  # position 0 has no predecessor: its label can never be predicted
    return labels.shape[1] - first + 1
