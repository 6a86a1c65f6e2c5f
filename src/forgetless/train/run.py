"""End-to-end adapter training: validate everything up front, train with `ForgetlessTrainer`, publish.

    from forgetless import TrainConfig, train
    train(TrainConfig(data="data/demo/new_facts.jsonl", output="runs/demo", max_steps=60))

The run is built in a hidden staging sibling `.OUTPUT.partial/` (checkpoints live there, which is what
`resume=True` continues from) and renamed to OUTPUT only when complete, so a failed run never leaves a
half-written output directory. OUTPUT is a standard PEFT adapter plus `forgetless.json`.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgetless._version import __version__
from forgetless.adapters.registry import build_method
from forgetless.data.records import Record, data_hash, load_records
from forgetless.train.config import TrainConfig
from forgetless.utils.fileio import check_output_dir, publish_dir, staging_dir, write_json_atomic, write_jsonl_atomic


@dataclass
class TrainResult:
    """Where the adapter went and what the run measured."""

    output: Path
    metrics: dict[str, Any]
    log_history: list[dict[str, Any]]


def train(cfg: TrainConfig, callbacks: list | None = None) -> TrainResult:
    """Train an adapter as `cfg` says and publish it atomically to `cfg.output`; `callbacks` are extra
    `transformers.TrainerCallback`s (e.g. the probe gate of the forgetless recipe)."""
    cfg.validate()
    output = Path(cfg.output)
    stage = staging_dir(output)
    checkpoints = stage / "checkpoints"
    resuming = cfg.resume and _last_checkpoint(checkpoints) is not None
    if not resuming:
        check_output_dir(output, cfg.overwrite)
    records = load_records(cfg.data)  # all data errors surface before any model is loaded
    method = build_method(cfg)
    method.check_types(records)
    if not resuming:
        shutil.rmtree(stage, ignore_errors=True)
    try:
        result = _train_into(cfg, method, records, stage, resuming, callbacks)
    except BaseException:
        if _last_checkpoint(checkpoints) is None:
            shutil.rmtree(stage, ignore_errors=True)
        raise
    final_files = stage / "adapter"
    publish_dir(final_files, output)
    shutil.rmtree(stage, ignore_errors=True)
    return TrainResult(output, result["metrics"], result["log_history"])


def _train_into(
    cfg: TrainConfig, method, records: list[Record], stage: Path, resuming: bool, callbacks
) -> dict[str, Any]:
    from transformers import set_seed

    from forgetless.models.load import load_model
    from forgetless.models.runtime import pick_device, resolve_precision
    from forgetless.train.setup import build_dataset, build_trainer

    set_seed(cfg.seed)  # before the adapter is initialised, so runs are reproducible
    device = pick_device()
    precision = resolve_precision(cfg.precision, device)
    model, tokenizer, info = load_model(cfg.model, device=device)
    dataset = build_dataset(tokenizer, records, cfg)
    adapted = method.wrap(model)
    trainer = build_trainer(adapted, tokenizer, dataset, cfg, stage / "checkpoints", precision, method, callbacks)
    start = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=_last_checkpoint(stage / "checkpoints") if resuming else None)
    seconds = time.perf_counter() - start
    adapter_dir = stage / "adapter"
    method.save(adapted, adapter_dir, info)
    trainable = sum(p.numel() for p in adapted.parameters() if p.requires_grad)
    metrics = {**output.metrics, "train_seconds": round(seconds, 2), "records": len(dataset)}
    metrics["trainable_params"] = trainable
    write_json_atomic(adapter_dir / "forgetless.json", run_manifest(cfg, info, records, precision, metrics))
    write_jsonl_atomic(adapter_dir / "train_log.jsonl", trainer.state.log_history)
    return {"metrics": metrics, "log_history": trainer.state.log_history}


def run_manifest(cfg: TrainConfig, info, records: list[Record], precision: str, metrics: dict) -> dict:
    """The resolved run config saved next to the adapter: enough to reproduce and to check the base."""
    import peft
    import torch
    import transformers

    return {
        "forgetless_version": __version__,
        "method": cfg.method,
        "base_model": info.model_id,
        "base_fingerprint": info.fingerprint,
        "data": str(cfg.data),
        "data_sha256": data_hash(records),
        "config": {**cfg.to_dict(), "rank": cfg.resolved_rank, "alpha": cfg.lora_alpha},
        "precision": precision,
        "metrics": metrics,
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
        },
    }


def _last_checkpoint(checkpoints: Path) -> str | None:
    if not checkpoints.is_dir():
        return None
    found = sorted(checkpoints.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return str(found[-1]) if found else None


def describe_partial(output: str | Path) -> str | None:
    """A hint when an interrupted run left checkpoints that `--resume` can continue."""
    stage = staging_dir(output)
    last = _last_checkpoint(stage / "checkpoints")
    return f"{stage} holds {Path(last).name}; rerun with --resume to continue" if last else None


__all__ = ["TrainResult", "describe_partial", "train"]
