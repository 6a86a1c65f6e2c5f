"""Training on the tiny random Llama: label-only logits are exact, round trips are identical, resume works."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from forgetless.data.chat import IGNORE_INDEX, encode_messages
from forgetless.data.collate import LeftPadCollator
from forgetless.train.config import TrainConfig
from forgetless.train.run import train
from tests.conftest import QA_ROWS, build_tiny_llama, interrupt_training_at


def _features(tokenizer, rows):
    out = []
    for row in rows:
        messages = [{"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": row["response"]}]
        ids, labels = encode_messages(tokenizer, messages)
        out.append({"input_ids": ids, "labels": labels})
    return out


def _reference_loss(model, features, pad_id):
    """Plain recipe: right padding, full logits, mean CE over shifted labels."""
    width = max(len(f["input_ids"]) for f in features)
    ids = torch.tensor([f["input_ids"] + [pad_id] * (width - len(f["input_ids"])) for f in features])
    labels = torch.tensor([f["labels"] + [IGNORE_INDEX] * (width - len(f["labels"])) for f in features])
    mask = (torch.arange(width)[None] < torch.tensor([len(f["input_ids"]) for f in features])[:, None]).long()
    logits = model(input_ids=ids, attention_mask=mask).logits
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1))


def test_label_window_loss_equals_full_logits_loss(tokenizer, tmp_path):
    from transformers import TrainingArguments

    from forgetless.train.trainer import ForgetlessTrainer

    model = build_tiny_llama(tokenizer).eval()
    features = _features(tokenizer, QA_ROWS)
    batch = LeftPadCollator(tokenizer.pad_token_id)(features)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])
    trainer = ForgetlessTrainer(model=model, args=args)
    with torch.no_grad():
        ours = trainer.compute_loss(model, dict(batch))
        reference = _reference_loss(model, features, tokenizer.pad_token_id)
    assert ours.item() == pytest.approx(reference.item(), rel=1e-4)


def test_collator_truly_cuts_logits(tokenizer):
    """The label window is much shorter than the sequence for QA data (the point of the optimisation)."""
    from forgetless.data.collate import label_window

    batch = LeftPadCollator(tokenizer.pad_token_id)(_features(tokenizer, QA_ROWS))
    assert label_window(batch["labels"]) < batch["input_ids"].shape[1] / 3


def _cfg(tiny_model_dir, data, output, **kw):
    base = dict(data=str(data), output=str(output), model=str(tiny_model_dir), max_steps=4, lr=1e-2, batch_size=2)
    return TrainConfig(**{**base, "save_steps": 100, "logging_steps": 1, "dropout": 0.0, **kw})


def test_train_writes_peft_adapter_and_manifest(tiny_model_dir, qa_file, tmp_path):
    out = tmp_path / "adapter"
    result = train(_cfg(tiny_model_dir, qa_file, out))
    names = {p.name for p in out.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "forgetless.json"} <= names
    assert not any(n.endswith((".bin", ".pt", ".pkl")) for n in names)
    manifest = json.loads((out / "forgetless.json").read_text())
    assert manifest["base_model"] == str(tiny_model_dir.resolve())
    assert len(manifest["data_sha256"]) == 64 and manifest["forgetless_version"]
    assert manifest["config"]["rank"] == 16
    losses = [e["loss"] for e in result.log_history if "loss" in e]
    assert losses[-1] < losses[0]
    assert not (tmp_path / ".adapter.partial").exists()


def test_reload_gives_identical_logits(tiny_model_dir, qa_file, tmp_path, tokenizer):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from forgetless.adapters.loading import load_with_adapter

    out = tmp_path / "adapter"
    train(_cfg(tiny_model_dir, qa_file, out))
    ids = torch.tensor([tokenizer("What is the capital of Veldoria?")["input_ids"]])
    ours, _, _ = load_with_adapter(None, out)  # base taken from forgetless.json
    plain = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), str(out)).eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    with torch.no_grad():
        a, b, c = ours(input_ids=ids).logits, plain(input_ids=ids).logits, base(input_ids=ids).logits
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)  # the adapter changed something


def test_resume_continues_from_last_checkpoint(tiny_model_dir, qa_file, tmp_path, monkeypatch):
    out = tmp_path / "adapter"
    uninterrupted = tmp_path / "reference"
    train(_cfg(tiny_model_dir, qa_file, uninterrupted, max_steps=6, save_steps=3))
    resume_normally = interrupt_training_at(monkeypatch, step=4)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tiny_model_dir, qa_file, out, max_steps=6, save_steps=3))
    assert not out.exists()
    assert (tmp_path / ".adapter.partial" / "checkpoints" / "checkpoint-3").is_dir()
    resume_normally()
    result = train(_cfg(tiny_model_dir, qa_file, out, max_steps=6, save_steps=3, resume=True))
    steps = [e["step"] for e in result.log_history if "loss" in e]
    assert steps[-1] == 6 and 4 in steps
    from safetensors.torch import load_file

    resumed = load_file(out / "adapter_model.safetensors")
    reference = load_file(uninterrupted / "adapter_model.safetensors")
    for key, value in reference.items():
        torch.testing.assert_close(resumed[key], value, rtol=1e-4, atol=1e-6)


def test_cpu_training_uses_eager_attention_for_short_records_only(tiny_model_dir):
    from forgetless.models.load import load_model
    from forgetless.models.runtime import training_attention

    model, _, _ = load_model(str(tiny_model_dir), device="cpu")
    assert model.config._attn_implementation == "sdpa"
    assert training_attention(model, "cuda", 40) == "sdpa" and training_attention(model, "cpu", 600) == "sdpa"
    assert training_attention(model, "cpu", 40) == "eager" == model.config._attn_implementation


def test_build_trainer_switches_cpu_training_to_eager_attention(tokenizer, tmp_path):
    from forgetless.adapters.registry import build_method
    from forgetless.data.records import Record
    from forgetless.train.setup import build_dataset, build_trainer

    model = build_tiny_llama(tokenizer)
    model.config._attn_implementation = "sdpa"
    cfg = TrainConfig(data="-", output="-", max_steps=1)
    dataset = build_dataset(
        tokenizer, [Record([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}])], cfg
    )
    build_trainer(build_method(cfg).wrap(model), tokenizer, dataset, cfg, tmp_path, "fp32")
    assert model.config._attn_implementation == "eager"


def test_group_by_length_batches_long_records_together(tokenizer, tmp_path):
    """The forgetless recipe's few long (few-shot) records share batches instead of padding every batch."""
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from forgetless.adapters.registry import build_method
    from forgetless.data.records import Record
    from forgetless.train.setup import build_dataset, build_trainer

    def record(words: int) -> Record:
        return Record([{"role": "user", "content": "hi " * words}, {"role": "assistant", "content": "yo"}])

    records = [record(60 if i % 8 == 0 else 2) for i in range(256)]  # one long record per 8
    padded = {}
    for grouped in (False, True):
        cfg = TrainConfig(data="-", output="-", max_steps=1, batch_size=8, group_by_length=grouped)
        dataset = build_dataset(tokenizer, records, cfg)
        model = build_method(cfg).wrap(build_tiny_llama(tokenizer))
        sampler = build_trainer(model, tokenizer, dataset, cfg, tmp_path, "fp32")._get_train_sampler()
        assert isinstance(sampler, LengthGroupedSampler) == grouped
        order = list(sampler)
        batches = [order[i : i + 8] for i in range(0, 256, 8)]
        padded[grouped] = sum(any(j % 8 == 0 for j in batch) for batch in batches)  # batches padded long
    assert padded[True] <= 6 < 12 <= padded[False]  # long records share 4-6 of 32 batches instead of most


def test_checkpoint_saves_ask_no_hub_whether_the_vocabulary_changed(tiny_model_dir, tmp_path, monkeypatch):
    """peft's save_embedding_layers="auto" looks the base's hub id up on every save; ours never do."""
    import peft.utils.save_and_load as peft_saving
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from forgetless.train.trainer import no_hub_lookup_on_save

    asked = []
    monkeypatch.setattr(peft_saving, "check_file_exists_on_hf_hub", lambda repo, name, **kw: asked.append(repo))
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), LoraConfig(r=2))
    model.peft_config["default"].base_model_name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct"  # portable
    with no_hub_lookup_on_save(model):
        model.save_pretrained(tmp_path / "checkpoint")
    assert asked == [] and (tmp_path / "checkpoint" / "adapter_model.safetensors").is_file()
    with pytest.warns(UserWarning, match="Could not find a config file"):  # the stub answers as no network does
        model.save_pretrained(tmp_path / "plain")  # outside: peft's own default, restored
    assert asked == ["HuggingFaceTB/SmolLM2-135M-Instruct"]
