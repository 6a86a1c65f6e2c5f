"""End-to-end adapter training: validate everything up front, train with `ForgetlessTrainer`, publish.

    from forgetless import TrainConfig, train
    train(TrainConfig(data="data/demo/new_facts.jsonl", output="runs/demo", max_steps=60))

The run is built in a hidden staging sibling `.OUTPUT.partial/` (checkpoints live there, which is what
`resume=True` continues from) and renamed to OUTPUT only when complete, so a failed run never leaves a
half-written output directory. OUTPUT is a standard PEFT adapter plus `forgetless.json`. A kill after
publication leaves nothing to resume: `resume=True` then returns the published adapter when it is this
same run's (same data and options), so repeating `--resume` until it succeeds is always safe.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgetless._version import __version__
from forgetless.adapters.card import write_model_card
from forgetless.adapters.registry import build_method
from forgetless.data.records import Record, data_hash, load_records
from forgetless.errors import ConfigError, OutputError
from forgetless.train.config import TrainConfig
from forgetless.utils.fileio import (
    check_output_dir,
    discard_dir,
    publish_dir,
    staging_dir,
    write_json_atomic,
    write_jsonl_atomic,
)


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
        if cfg.resume and not cfg.overwrite and (done := _published(cfg, output)) is not None:
            discard_dir(stage)  # a kill after publication left (part of) the staging folder
            return done
        check_output_dir(output, cfg.overwrite, inputs=[cfg.data, cfg.model or ""])
        if _last_checkpoint(checkpoints) is not None and not cfg.overwrite:
            raise OutputError(
                f"{output}: an interrupted run left checkpoints in {checkpoints}; pass --resume to continue it "
                "or --overwrite to start over"
            )
    records = load_records(cfg.data)  # all data errors surface before any model is loaded
    method = build_method(cfg)
    method.check_types(records)
    fingerprint = _resume_fingerprint(cfg, records)
    main = is_main_process()  # under torchrun / accelerate launch only rank 0 touches the output
    if resuming:
        _check_resume_matches(stage / RESUME_FILE, fingerprint, output)
    elif main:
        discard_dir(stage)
        write_json_atomic(stage / RESUME_FILE, fingerprint)
    try:
        result = _train_into(cfg, method, records, stage, resuming, callbacks, main)
    except BaseException:
        if main and _last_checkpoint(checkpoints) is None:
            discard_dir(stage)
        raise
    if main:
        publish_dir(stage / "adapter", output)
        discard_dir(stage)  # renamed first: a kill while deleting never leaves a torn checkpoint to resume
    _barrier()  # every rank returns once the adapter is published
    return TrainResult(output, result["metrics"], result["log_history"])


def is_main_process() -> bool:
    """Rank 0 of a torchrun / accelerate launch (or a plain single process)."""
    return int(os.environ.get("RANK", "0")) == 0


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _train_into(
    cfg: TrainConfig, method, records: list[Record], stage: Path, resuming: bool, callbacks, main: bool = True
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
    if not main:
        return {"metrics": dict(output.metrics), "log_history": trainer.state.log_history}
    adapter_dir = stage / "adapter"
    method.save(adapted, adapter_dir, info)
    trainable = sum(p.numel() for p in adapted.parameters() if p.requires_grad)
    metrics = {**output.metrics, "train_seconds": round(seconds, 2), "records": len(dataset)}
    metrics["trainable_params"] = trainable
    write_json_atomic(adapter_dir / "forgetless.json", run_manifest(cfg, info, records, precision, metrics))
    write_model_card(adapter_dir)  # replaces peft's placeholder card
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
        "base_model_hub_id": info.hub_id,
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


RESUME_FILE = "resume.json"  # in the staging dir: what --resume must match (data hash, resolved options)
_FREE_ON_RESUME = ("data", "resume", "overwrite", "logging_steps")  # may differ between a run and its resume


def _resume_fingerprint(cfg: TrainConfig, records: list[Record]) -> dict[str, Any]:
    options = {k: v for k, v in cfg.to_dict().items() if k not in _FREE_ON_RESUME}
    return {"data_sha256": data_hash(records), "options": options}


def _published(cfg: TrainConfig, output: Path) -> TrainResult | None:
    """The result of this very run when it already finished and published `output` (a kill after that
    makes `--resume` find no checkpoint): same data and same options. None otherwise."""
    try:
        manifest = json.loads((output / "forgetless.json").read_text(encoding="utf-8"))
        if manifest.get("data_sha256") != data_hash(load_records(cfg.data)):
            return None
    except (OSError, ValueError, AttributeError):  # no manifest, or not one of ours
        return None
    config = {**cfg.to_dict(), "rank": cfg.resolved_rank, "alpha": cfg.lora_alpha}
    now = {k: v for k, v in json.loads(json.dumps(config)).items() if k not in _FREE_ON_RESUME}
    if {k: v for k, v in manifest.get("config", {}).items() if k not in _FREE_ON_RESUME} != now:
        return None
    log = output / "train_log.jsonl"
    history = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    return TrainResult(output, manifest.get("metrics", {}), history)


def _check_resume_matches(path: Path, now: dict[str, Any], output: Path) -> None:
    """ConfigError naming the first difference between the interrupted run and this --resume."""
    try:
        before = json.loads(path.read_text())
    except (OSError, ValueError):
        return  # a run of an older forgetless: nothing recorded to compare with
    if before.get("data_sha256") != now["data_sha256"]:
        raise ConfigError(
            f"{output}: --resume with different --data than the interrupted run (sha256 differs); "
            "use the same data or --overwrite to start over"
        )
    for key, value in now["options"].items():
        if key in before.get("options", {}) and before["options"][key] != value:
            raise ConfigError(
                f"{output}: --resume changes {key}: {before['options'][key]!r} -> {value!r}; "
                "resume with the same options or --overwrite to start over"
            )


def _last_checkpoint(checkpoints: Path) -> str | None:
    """The newest COMPLETE checkpoint: the Trainer writes `trainer_state.json` last, so a checkpoint
    whose state file is missing or truncated (a kill while it was written) is skipped."""
    if not checkpoints.is_dir():
        return None
    found = sorted(checkpoints.glob("checkpoint-*[0-9]"), key=lambda p: int(p.name.split("-")[-1]))
    complete = [path for path in found if _complete(path)]
    return str(complete[-1]) if complete else None


def _complete(checkpoint: Path) -> bool:
    try:
        json.loads((checkpoint / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return True


def describe_partial(output: str | Path) -> str | None:
    """A hint when an interrupted run left checkpoints that `--resume` can continue."""
    stage = staging_dir(output)
    last = _last_checkpoint(stage / "checkpoints")
    return f"{stage} holds {Path(last).name}; rerun with --resume to continue" if last else None


__all__ = ["TrainResult", "describe_partial", "train"]
