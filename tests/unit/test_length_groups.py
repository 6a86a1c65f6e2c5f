"""Length groups: a batch with a few long rows runs as two forwards at their own widths, same loss."""

from __future__ import annotations

import pytest
import torch

from forgetless.adapters.registry import build_method
from forgetless.data.chat import encode_messages
from forgetless.data.collate import LeftPadCollator, length_groups
from forgetless.train.config import TrainConfig
from tests.conftest import QA_ROWS, build_tiny_llama

LONG_PROMPT = " ".join(f"Exemplar {i}: the capital of Veldoria is Marrowick." for i in range(12))


def _batch(tokenizer, types):
    features = []
    for index, kind in enumerate(types):
        row = QA_ROWS[index % len(QA_ROWS)]
        prompt = f"{LONG_PROMPT} {row['prompt']}" if index == 0 else row["prompt"]
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": row["response"]}]
        ids, labels = encode_messages(tokenizer, messages)
        features.append({"input_ids": ids, "labels": labels, "sample_type": kind, "record_index": index})
    return LeftPadCollator(tokenizer.pad_token_id)(features)


def test_length_groups_split_only_when_padding_dominates():
    mask = torch.zeros(4, 10, dtype=torch.long)
    for row, length in enumerate([3, 10, 2, 3]):
        mask[row, 10 - length :] = 1
    assert [g.tolist() for g in length_groups(mask)] == [[1], [0, 2, 3]]
    assert [g.tolist() for g in length_groups(torch.ones(4, 10, dtype=torch.long))] == [[0, 1, 2, 3]]


@pytest.mark.parametrize("anchor_kl", [0.0, 2.0])
def test_split_batch_gives_the_loss_and_gradients_of_the_whole_batch(tokenizer, tmp_path, anchor_kl):
    from transformers import TrainingArguments

    from forgetless.train.trainer import ForgetlessTrainer

    cfg = TrainConfig(data="unused", output=str(tmp_path / "out"), rank=4, dropout=0.0)
    method = build_method(cfg)
    model = method.wrap(build_tiny_llama(tokenizer))
    torch.manual_seed(3)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0, 0.5)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])
    trainer = ForgetlessTrainer(model=model, args=args, method=method, anchor_kl=anchor_kl)
    batch = _batch(tokenizer, [1, 0, 1, 0, 1, 0])
    assert len(length_groups(batch["attention_mask"])) == 2
    results = []
    for separable in (True, False):
        method.row_separable = separable  # instance attribute: False runs the batch as one forward
        trainer.teacher_cache = type(trainer.teacher_cache)()
        model.zero_grad()
        loss = trainer.compute_loss(model, dict(batch), num_items_in_batch=None)
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
        results.append((loss.item(), grads, dict(trainer._logged)))
        trainer._logged = {}
    (split_loss, split_grads, split_log), (whole_loss, whole_grads, whole_log) = results
    assert split_loss == pytest.approx(whole_loss, rel=1e-5)
    for a, b in zip(split_grads, whole_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    if anchor_kl:
        assert split_log["anchor_kl"][0] == pytest.approx(whole_log["anchor_kl"][0], rel=1e-5)
        assert split_log["anchor_kl"][0] > 1e-3
