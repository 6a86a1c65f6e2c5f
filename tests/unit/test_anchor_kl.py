"""`anchor_kl`: KL(base || adapter) on the answers of `world` records, with the base as its own teacher."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from forgetless.adapters.registry import build_method
from forgetless.data.chat import IGNORE_INDEX, encode_messages
from forgetless.data.collate import LeftPadCollator
from forgetless.train.config import TrainConfig
from tests.conftest import QA_ROWS, build_tiny_llama


def _batch(tokenizer, types, order=None, indexed=False):
    features = []
    for index in order or range(len(types)):
        row, kind = QA_ROWS[index], types[index]
        messages = [{"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": row["response"]}]
        ids, labels = encode_messages(tokenizer, messages)
        features.append({"input_ids": ids, "labels": labels, "sample_type": kind})
        if indexed:
            features[-1]["record_index"] = index
    return LeftPadCollator(tokenizer.pad_token_id)(features)


def _trainer(tokenizer, tmp_path, anchor_kl):
    from transformers import TrainingArguments

    from forgetless.train.trainer import ForgetlessTrainer

    cfg = TrainConfig(data="unused", output=str(tmp_path / "out"), rank=4, dropout=0.0)
    method = build_method(cfg)
    model = method.wrap(build_tiny_llama(tokenizer))
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])
    return ForgetlessTrainer(model=model, args=args, method=method, anchor_kl=anchor_kl), model


def _perturb(model):
    torch.manual_seed(3)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0, 0.5)


def _reference_kl(model, batch, rows):
    """KL(base || adapter) over the labelled tokens of `rows`, on full logits."""
    ids, mask, labels = batch["input_ids"][rows], batch["attention_mask"][rows], batch["labels"][rows]
    positions = batch["position_ids"][rows]
    student = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, :-1]
    with model.disable_adapter():
        teacher = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, :-1]
    per_token = F.kl_div(F.log_softmax(student, -1), F.log_softmax(teacher, -1), log_target=True, reduction="none")
    labelled = labels[:, 1:] != IGNORE_INDEX
    return (per_token.sum(-1) * labelled).sum() / labelled.sum()


def test_anchor_kl_is_zero_for_an_untrained_adapter_and_exact_after(tokenizer, tmp_path):
    trainer, model = _trainer(tokenizer, tmp_path, anchor_kl=1.0)
    batch = _batch(tokenizer, [1, 0, 1, 0])
    with torch.no_grad():
        trainer.compute_loss(model, dict(batch))
    assert trainer._logged["anchor_kl"][-1] == pytest.approx(0.0, abs=1e-6)  # LoRA B starts at zero
    _perturb(model)
    with torch.no_grad():
        trainer.compute_loss(model, dict(batch))
        reference = _reference_kl(model, batch, torch.tensor([True, False, True, False]))
    assert reference > 1e-3
    assert trainer._logged["anchor_kl"][-1] == pytest.approx(reference.item(), rel=1e-4)


def test_anchor_kl_adds_weight_times_kl_and_skips_batches_without_anchors(tokenizer, tmp_path):
    plain, model = _trainer(tokenizer, tmp_path, anchor_kl=0.0)
    _perturb(model)
    weighted = _trainer(tokenizer, tmp_path, anchor_kl=2.0)[0]
    mixed, task_only = _batch(tokenizer, [1, 0, 1, 0]), _batch(tokenizer, [0, 0, 0, 0])
    with torch.no_grad():
        base_loss = plain.compute_loss(model, dict(mixed))
        with_kl = weighted.compute_loss(model, dict(mixed))
        kl = _reference_kl(model, mixed, torch.tensor([True, False, True, False]))
        assert with_kl.item() == pytest.approx(base_loss.item() + 2.0 * kl.item(), rel=1e-4)
        assert weighted.compute_loss(model, dict(task_only)).item() == pytest.approx(
            plain.compute_loss(model, dict(task_only)).item(), rel=1e-6
        )
    assert "anchor_kl" in weighted._logged and len(weighted._logged["anchor_kl"]) == 1


def test_teacher_runs_once_per_record_and_cached_kl_is_exact(tokenizer, tmp_path):
    trainer, model = _trainer(tokenizer, tmp_path, anchor_kl=1.0)
    _perturb(model)
    teacher_calls = []
    disabled = trainer.method.disabled

    def counting(m):
        teacher_calls.append(1)
        return disabled(m)

    trainer.method.disabled = counting
    types = [1, 0, 1, 1]
    first = _batch(tokenizer, types, indexed=True)
    regrouped = _batch(tokenizer, types, order=[3, 2], indexed=True)  # other rows, other padding
    with torch.no_grad():
        trainer.compute_loss(model, dict(first))
        assert trainer._logged["anchor_kl"][-1] == pytest.approx(
            _reference_kl(model, first, torch.tensor([True, False, True, True])).item(), rel=1e-4
        )
        trainer.compute_loss(model, dict(regrouped))
        assert trainer._logged["anchor_kl"][-1] == pytest.approx(
            _reference_kl(model, regrouped, torch.tensor([True, True])).item(), rel=1e-4
        )
    assert len(teacher_calls) == 1 and len(trainer.teacher_cache) == 3


def test_teacher_cache_past_its_budget_computes_instead_of_storing():
    from forgetless.train.teacher import TeacherCache

    cache, calls = TeacherCache(budget_bytes=2 * 5 * 4), []  # room for one record: 2 tokens x 5 floats
    labelled = torch.tensor([[True, True], [True, True]])
    values = torch.arange(20, dtype=torch.float32).reshape(2, 2, 5)

    def compute(which):
        calls.append(which.tolist())
        return values[which]

    expected = values.reshape(4, 5)
    assert torch.equal(cache.log_probs([7, 8], labelled, compute), expected)
    assert torch.equal(cache.log_probs([7, 8], labelled, compute), expected)
    assert calls == [[True, True], [False, True]] and len(cache) == 1 and cache.full


def test_anchor_kl_must_not_be_negative(tmp_path):
    from forgetless.errors import ConfigError

    with pytest.raises(ConfigError, match="anchor-kl"):
        TrainConfig(data="d.jsonl", output=str(tmp_path / "o"), anchor_kl=-1).validate()
