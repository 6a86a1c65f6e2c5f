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
    """Pads `input_ids`/`labels` on the left and adds `attention_mask`, `position_ids` (and passes
    `sample_type` and `record_index` through)."""

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
        for key in ("sample_type", "record_index"):
            if key in features[0]:
                batch[key] = torch.tensor([f[key] for f in features])
        return batch


def label_window(labels) -> int:
    """How many trailing positions need logits: from the one predicting the first label to the end."""
    has_label = (labels != IGNORE_INDEX).any(dim=0).nonzero()
    if has_label.numel() == 0:
        return 1
    first = max(int(has_label[0]), 1)  # position 0 has no predecessor: its label can never be predicted
    return labels.shape[1] - first + 1


def length_groups(attention_mask, min_saving: float = 0.3) -> list:
    """Row indices of a left-padded batch in one or two groups by real length: two when running each group
    at its own width would skip at least `min_saving` of the batch's padded positions.

    A few long records in a batch of short ones pad every row to the long width; on the CPU the padding
    costs as much as real tokens. Losses that are sums over rows are unchanged by the split."""
    import torch

    lengths = attention_mask.sum(dim=1)
    order = torch.argsort(lengths, descending=True, stable=True)
    ranked = lengths[order].tolist()
    rows, width = len(ranked), attention_mask.shape[1]
    best, cut = rows * width, rows
    for split in range(1, rows):  # the first `split` rows run at ranked[0], the others at ranked[split]
        area = split * ranked[0] + (rows - split) * ranked[split]
        if area < best:
            best, cut = area, split
    if cut == rows or best > (1 - min_saving) * rows * width:
        return [torch.arange(rows)]
    return [order[:cut].sort().values, order[cut:].sort().values]
