"""Building blocks of a training run: the tokenized dataset and the configured Trainer."""

from __future__ import annotations

from pathlib import Path

from forgetless.data.chat import IGNORE_INDEX, encode_messages
from forgetless.data.records import Record
from forgetless.errors import DataError
from forgetless.train.config import TrainConfig

SAMPLE_TYPE_IDS = {"world": 1, "task": 0, None: -1}


def build_dataset(tokenizer, records: list[Record], cfg: TrainConfig):
    """Tokenize records into a `datasets.Dataset` with input_ids, labels, length, sample_type and
    record_index (the record's position, which keys the anchor-KL teacher cache)."""
    import datasets

    rows = []
    for index, record in enumerate(records):
        messages = record.messages
        if cfg.system and messages[0]["role"] != "system":
            messages = [{"role": "system", "content": cfg.system}, *messages]
        ids, labels = encode_messages(tokenizer, messages, cfg.max_length, cfg.loss_on)
        if all(label == IGNORE_INDEX for label in labels):
            raise DataError(f"{record.source}: the response does not fit in --max-length {cfg.max_length}")
        sample_type = SAMPLE_TYPE_IDS[record.type]
        rows.append(
            {"input_ids": ids, "labels": labels, "length": len(ids), "sample_type": sample_type, "record_index": index}
        )
    return datasets.Dataset.from_list(rows)


def build_trainer(
    model, tokenizer, dataset, cfg: TrainConfig, checkpoints: Path, precision: str, method=None, callbacks=None
):
    """A ForgetlessTrainer with left-padding collation, label-only logits and periodic checkpoints."""
    from transformers import TrainingArguments

    from forgetless.data.collate import LeftPadCollator
    from forgetless.models.runtime import training_attention
    from forgetless.train.dropout import training_dropout
    from forgetless.train.trainer import ForgetlessTrainer

    training_attention(model, model.device.type, max(dataset["length"]))  # eager on the CPU for short records
    training_dropout(model, model.device.type)  # masks from 16 random bits per element on the CPU

    args = TrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        learning_rate=cfg.lr,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        warmup_steps=cfg.warmup_ratio,
        weight_decay=cfg.weight_decay,
        lr_scheduler_type=cfg.scheduler,
        logging_steps=cfg.logging_steps,
        logging_nan_inf_filter=False,  # a non-finite loss must reach the log: ForgetlessTrainer stops the run
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=2,
        seed=cfg.seed,
        bf16=precision == "bf16",
        use_cpu=model.device.type == "cpu",
        # seeded per epoch: --resume replays the exact batches; group_by_length cuts padding when few long
        # records share batches with many short ones (the recipe's few-shot records)
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        remove_unused_columns=False,
        report_to=[],
        dataloader_num_workers=0,
        disable_tqdm=True,  # the rich bar of forgetless.train.progress instead
    )
    return ForgetlessTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=LeftPadCollator(tokenizer.pad_token_id),
        method=method,
        anchor_kl=cfg.anchor_kl,
        callbacks=callbacks,
    )
