"""LoRA training for the continual runner: a fresh adapter per task, or one adapter trained further.

    from forgetless.continual.training import train_lora, reusable
    train_lora(cfg, data_file, "runs/cit/adapters/plural")                          # fresh LoRA (SwitchCIT)
    train_lora(cfg, data_file, "runs/cit/baselines/sequential/adapter", init_from=previous_adapter)

A fresh adapter goes through `forgetless.train.train` unchanged (response-only loss, EOS appended to
every response, atomic publication). Training further (`init_from`, the sequential and replay baselines)
loads the previous adapter as trainable and uses the same dataset, collator and Trainer, with a fresh
optimizer per stage; the adapter is published atomically the same way.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from forgetless.continual.config import ContinualConfig
from forgetless.data.records import data_hash, load_records
from forgetless.train.config import TrainConfig
from forgetless.utils.fileio import publish_dir, staging_dir, write_json_atomic


def train_config(cfg: ContinualConfig, data: Path, output: Path) -> TrainConfig:
    """The `TrainConfig` every LoRA of a continual run uses (same options for all strategies)."""
    # no mid-run checkpoints: a task adapter is cheap to retrain
    run = {"model": cfg.model, "seed": cfg.seed, "save_steps": 10**9, "logging_steps": 5, "overwrite": True}
    return TrainConfig.from_args(cfg.train, data=str(data), output=str(output), **run)


def train_lora(cfg: ContinualConfig, data: Path, output: Path, init_from: Path | None = None) -> Path:
    """Train a LoRA on `data` into `output` (fresh, or starting from the adapter `init_from`)."""
    from forgetless.train.run import train

    tcfg = train_config(cfg, data, output)
    if init_from is None:
        return train(tcfg).output
    return _train_further(tcfg, Path(init_from))


def _train_further(cfg: TrainConfig, init_from: Path) -> Path:
    from peft import PeftModel
    from transformers import set_seed

    from forgetless.adapters.lora import LoraMethod
    from forgetless.models.load import load_model
    from forgetless.models.runtime import pick_device, resolve_precision
    from forgetless.train.run import run_manifest
    from forgetless.train.setup import build_dataset, build_trainer

    cfg.validate()
    output, records = Path(cfg.output), load_records(cfg.data)
    stage = staging_dir(output)
    shutil.rmtree(stage, ignore_errors=True)
    try:
        set_seed(cfg.seed)
        device = pick_device()
        precision = resolve_precision(cfg.precision, device)
        base, tokenizer, info = load_model(cfg.model, device=device)
        model = PeftModel.from_pretrained(base, str(init_from), is_trainable=True)
        dataset = build_dataset(tokenizer, records, cfg)
        method = LoraMethod(cfg)
        trainer = build_trainer(model, tokenizer, dataset, cfg, stage / "checkpoints", precision, method)
        result = trainer.train()
        model.save_pretrained(stage / "adapter", safe_serialization=True, save_embedding_layers=False)
        metrics = {**result.metrics, "records": len(dataset)}
        manifest = run_manifest(cfg, info, records, precision, metrics) | {"init_from": str(init_from)}
        write_json_atomic(stage / "adapter" / "forgetless.json", manifest)
        publish_dir(stage / "adapter", output)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return output


def ensure_adapter(
    cfg: ContinualConfig, data: Path, output: Path, reuse: list[Path], init_from: Path | None = None
) -> str:
    """Copy the first adapter of `reuse` trained on exactly this data and options, else train one.

    Returns "reused" or "trained". An adapter trained further (`init_from`) is never taken from `reuse`.
    """
    if init_from is None:
        for candidate in reuse:
            if candidate.is_dir() and reusable(candidate, cfg, data):
                if candidate.resolve() != output.resolve():
                    stage = staging_dir(output)
                    shutil.rmtree(stage, ignore_errors=True)
                    shutil.copytree(candidate, stage)
                    publish_dir(stage, output)
                return "reused"
    train_lora(cfg, data, output, init_from)
    return "trained"


def training_signature(cfg: ContinualConfig, data: Path) -> dict:
    """What an adapter's result depends on: its data and the training options (for reuse checks)."""
    tcfg = train_config(cfg, data, Path("x"))
    options = {**tcfg.to_dict(), "rank": tcfg.resolved_rank, "alpha": tcfg.lora_alpha}
    keep = ("model", "epochs", "max_steps", "lr", "rank", "alpha", "batch_size", "max_length", "seed")
    return {"data_sha256": data_hash(load_records(data)), **{k: options[k] for k in keep}}


def reusable(adapter: Path, cfg: ContinualConfig, data: Path) -> bool:
    """Whether `adapter` was trained on exactly this data with exactly these options."""
    manifest_file = adapter / "forgetless.json"
    if not (manifest_file.is_file() and (adapter / "adapter_model.safetensors").is_file()):
        return False
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    if manifest.get("init_from"):
        return False
    want = training_signature(cfg, data)
    config = manifest.get("config", {})
    have = {"data_sha256": manifest.get("data_sha256"), **{k: config.get(k) for k in want if k != "data_sha256"}}
    return have == want
