"""On-disk cache of audit snapshots (zero-shot answers, MMLU predictions, general-text loss).

    snapshot = load_snapshot(cache_dir, key, facts, settings, probes)   # None on a miss
    save_snapshot(cache_dir, key, facts, settings, snapshot)            # atomic JSON

One JSON file per (model key, fact contents, audit settings): `<cache_dir>/snapshot-<hash>.json`. The
probes themselves live in the per-fact probe cache (probe_cache.py) and are passed in, not stored twice.
A sweep's cells share the base model's key, so the base is measured once for the whole grid.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from forgetless.knowledge.probe_cache import _digest, fact_hash
from forgetless.knowledge.slick import FactProbe
from forgetless.utils.fileio import write_json_atomic

SNAPSHOT_VERSION = 3  # bump when how a snapshot is measured changes (3: the cascade-attention engine)


@dataclass
class Snapshot:
    """Everything measured on one model state."""

    probes: list[FactProbe]
    answers: list[str]
    mmlu: Any = None  # MMLUResult
    general_loss: float | None = None


def snapshot_path(cache_dir: Path, key: str, facts, settings) -> Path:
    ident = {
        "version": SNAPSHOT_VERSION,
        "model": key,
        "facts": [fact_hash(f.to_dict()) for f in facts],
        "settings": asdict(settings),
    }
    return Path(cache_dir) / f"snapshot-{_digest(ident)}.json"


def save_snapshot(cache_dir: Path, key: str, facts, settings, snapshot) -> Path:
    """Write the non-probe parts of `snapshot`."""
    mmlu = snapshot.mmlu
    row: dict[str, Any] = {
        "model": key,
        "answers": snapshot.answers,
        "general_loss": snapshot.general_loss,
        "mmlu": None
        if mmlu is None
        else {
            **{k: v for k, v in asdict(mmlu).items() if k != "predictions"},
            "predictions": [asdict(p) for p in mmlu.predictions],
        },
    }
    return write_json_atomic(snapshot_path(cache_dir, key, facts, settings), row)


def load_snapshot(cache_dir: Path, key: str, facts, settings, probes):
    """The cached snapshot with `probes` filled in, or None when there is none (or it is unreadable)."""
    from forgetless.eval.mmlu import MMLUPrediction, MMLUResult

    path = snapshot_path(cache_dir, key, facts, settings)
    try:
        row = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    mmlu = row.get("mmlu")
    if mmlu is not None:
        predictions = [MMLUPrediction(**p) for p in mmlu.pop("predictions")]
        mmlu = MMLUResult(**mmlu, predictions=predictions)
    return Snapshot(probes, row["answers"], mmlu, row.get("general_loss"))
