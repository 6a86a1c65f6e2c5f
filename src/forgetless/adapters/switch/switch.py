"""The SwitchCIT switch: route each prompt to the LoRA adapter of the task it belongs to, or to the base.

    from forgetless.adapters.switch import Switch
    switch = Switch(encoder="minilm", fraction=0.01, score="max_softmax")
    switch.update("simp", simp_prompts, "runs/lora-simp")    # after training each task's adapter
    switch.update("emdg", emdg_prompts, "runs/lora-emdg")
    switch.calibrate(held_out_prompts, keep=0.95)           # optional: enables abstaining
    for r in switch.route(["Simplify: ..."]):
        print(r.task, r.adapter, r.confidence, r.abstained)  # task "__base__", adapter None = no adapter
    switch.save("runs/switch"); switch = Switch.load("runs/switch")

`update` trains the head on ALL prompts of the new task plus the rehearsal memory of the earlier tasks
(every earlier task, the first included), then keeps a `fraction` sample of the new task in memory; that
memory is the only old data the switch holds. Retraining warm-starts the head and expands its output
layer (see `classifier.py`). A retrained head has new scores, so `update` clears the abstain threshold:
call `calibrate` again after the last update.

Abstaining (beyond the paper, which always routes to some task): a score (see `scores.py`, higher = more
in-distribution) below the calibrated threshold routes the prompt to `__base__`, the base model alone.

A saved switch directory holds `switch.json` (task ↔ id ↔ adapter, encoder spec and dim, score type,
threshold, head config, version), `switch_head.safetensors` and `memory.json`; each file is written
atomically and `switch.json`, the manifest, last. `Switch.load` rebuilds the encoder from its spec (or
takes one) and raises ModelError when its dimension differs from the saved one.

Switch types (`switch_type`):
- `mlp` (the paper's): the MLP head above, retrained on the new task + the rehearsal memory.
- `prototype`: a Gaussian per task with a shared shrunk covariance (`prototype.py`), scored by Mahalanobis
  distance (`max_logit` = −½ d² to the nearest task). A new task adds its statistics file
  `prototypes/<task>.safetensors`; no other task's file is rewritten, the rehearsal memory is not read.

Abstain thresholds: `calibrate` sets one global threshold; `calibrate_per_task` one per task (used for the
prompts routed to that task), from the tasks' held-out prompts (see `scores.per_task_thresholds`; prototype:
the most lenient of the task's normal fit, its farthest held-out prompt and the pooled conformal quantile;
mlp: the normal fit).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgetless.adapters.names import BASE
from forgetless.adapters.switch.classifier import OFFICIAL_EPOCHS, OFFICIAL_HIDDEN, SwitchHead
from forgetless.adapters.switch.encoder import DEFAULT_ENCODER, PromptEncoder, make_encoder
from forgetless.adapters.switch.memory import RehearsalMemory
from forgetless.adapters.switch.prototype import PrototypeHead, read_statistics, write_statistics
from forgetless.adapters.switch.scores import SCORE_TYPES, id_scores, keep_threshold, ood_metrics, per_task_thresholds
from forgetless.errors import ConfigError, DataError, ModelError
from forgetless.utils.fileio import temp_sibling, write_json_atomic

SWITCH_VERSION = 1
MANIFEST, HEAD_FILE, MEMORY_FILE = "switch.json", "switch_head.safetensors", "memory.json"
STATS_DIR = "prototypes"  # prototype switch: one statistics file per task, written once
SWITCH_TYPES = ("mlp", "prototype")
DEFAULT_SCORE = {"mlp": "max_softmax", "prototype": "max_logit"}


def stats_file(task_id: int, name: str) -> str:
    """Where a prototype switch keeps one task's statistics, relative to the switch directory."""
    return f"{STATS_DIR}/{task_id:03d}-{re.sub(r'[^A-Za-z0-9_-]', '_', name)}.safetensors"


def check_switch_type(switch_type: str, score: str | None = None) -> str:
    """The switch's score (its type's default when None); ConfigError on an unknown type or a bad pair."""
    if switch_type not in SWITCH_TYPES:
        raise ConfigError(f"unknown switch_type {switch_type!r}; use one of {', '.join(SWITCH_TYPES)}")
    score = score or DEFAULT_SCORE[switch_type]
    if score not in SCORE_TYPES:
        raise ConfigError(f"unknown switch score {score!r}; use one of {', '.join(SCORE_TYPES)}")
    if switch_type == "prototype" and score != "max_logit":
        raise ConfigError(f"the prototype switch scores by its distance: use switch_score max_logit, not {score!r}")
    return score


__all__ = ["Route", "Switch", "ood_metrics"]


@dataclass(frozen=True)
class Route:
    """Where one prompt goes: `task` (or `__base__`), its adapter (None for the base), softmax confidence."""

    task: str
    adapter: str | None
    confidence: float
    abstained: bool
    score: float


class Switch:
    """Task-id classifier over prompt features, with rehearsal memory and an optional abstain threshold."""

    def __init__(
        self,
        encoder: PromptEncoder | str | None = DEFAULT_ENCODER,
        fraction: float = 0.01,
        score: str | None = None,
        hidden: int = OFFICIAL_HIDDEN,
        seed: int = 0,
        epochs: int = OFFICIAL_EPOCHS,
        balanced: bool = False,
        switch_type: str = "mlp",
        shrinkage: float | None = None,
    ):
        score = check_switch_type(switch_type, score)
        self.encoder = encoder if isinstance(encoder, PromptEncoder) else make_encoder(encoder)
        self.memory = RehearsalMemory(fraction=fraction, seed=seed)
        self.score, self.hidden, self.seed, self.epochs, self.balanced = score, hidden, seed, epochs, balanced
        self.switch_type, self.shrinkage = switch_type, shrinkage
        self.adapters: dict[str, str] = {}  # task name -> adapter dir, in task-id order
        self.head: SwitchHead | PrototypeHead | None = None
        self.threshold: float | None = None
        self.thresholds: dict[str, float] | None = None  # per task; when set, `threshold` is not used

    @property
    def task_names(self) -> list[str]:
        """Task names; the index is the task id."""
        return list(self.adapters)

    def task_id(self, task_name: str) -> int:
        """The id of a known task."""
        if task_name not in self.adapters:
            raise ConfigError(f"switch has no task {task_name!r}; known: {', '.join(self.adapters) or '-'}")
        return self.task_names.index(task_name)

    def _new_head(self) -> SwitchHead | PrototypeHead:
        if self.switch_type == "prototype":
            return PrototypeHead(self.encoder.dim, self.shrinkage)
        return SwitchHead(self.encoder.dim, 1, self.hidden, epochs=self.epochs, seed=self.seed, balanced=self.balanced)

    def update(
        self, task_name: str, prompts: list[str], adapter_dir: str | os.PathLike, batch_size: int = 64
    ) -> list[float]:
        """Add a task: retrain the head on its prompts + the memory, then remember a sample. Returns epoch losses."""
        if task_name in self.adapters or task_name == BASE:
            raise ConfigError(f"task {task_name!r} is already in the switch (or reserved); pick a new task name")
        prompts = list(prompts)
        if not prompts or any(not isinstance(p, str) for p in prompts):
            raise DataError(f"task {task_name!r}: update needs a non-empty list of prompt strings")
        head = self.head or self._new_head()
        if isinstance(head, PrototypeHead):  # its own statistics only: no memory, no other task touched
            head.add_task(self.encoder.encode(prompts, batch_size=batch_size))
            history: list[float] = []
        else:
            old_prompts, old_labels = self.memory.prompts_and_labels()
            features = self.encoder.encode(old_prompts + prompts, batch_size=batch_size)
            history = head.fit(features, old_labels + [len(self.adapters)] * len(prompts))
        self.head, self.adapters[task_name], self.threshold, self.thresholds = head, str(adapter_dir), None, None
        self.memory.add_task(task_name, prompts)
        return history

    def _logits(self, prompts: list[str], batch_size: int) -> Any:
        if self.head is None:
            raise ModelError("the switch has no tasks yet; call update(task, prompts, adapter_dir) first")
        return self.head.logits(self.encoder.encode(list(prompts), batch_size=batch_size))

    def scores(self, prompts: list[str], batch_size: int = 64) -> Any:
        """In-distribution score of each prompt (higher = more in-distribution), a float tensor [n]."""
        return id_scores(self._logits(prompts, batch_size), self.score)

    def calibrate(self, held_out_prompts: list[str], keep: float = 0.95, batch_size: int = 64) -> float:
        """Set the threshold so that `keep` of these in-distribution (not trained-on) prompts are kept."""
        if not held_out_prompts:
            raise DataError("calibrate needs held-out in-distribution prompts")
        self.threshold, self.thresholds = keep_threshold(self.scores(held_out_prompts, batch_size), keep), None
        return self.threshold

    def calibrate_per_task(
        self, held_out: dict[str, list[str]], keep: float = 0.99, batch_size: int = 64
    ) -> dict[str, float]:
        """One threshold per task from the held-out prompts: (at least) about `keep` of a task's prompts are kept
        (see `scores.per_task_thresholds`; prototype: often more, and every held-out prompt of the task).

        DataError naming the task and the number needed when a task has too few held-out prompts."""
        prompts = {task: list(held_out.get(task, [])) for task in self.task_names}
        scores = {task: self.scores(p, batch_size) if p else [] for task, p in prompts.items()}
        thresholds = per_task_thresholds(scores, keep, self.switch_type == "prototype")
        self.threshold, self.thresholds = None, thresholds
        return thresholds

    def limit(self, task_name: str) -> float | None:
        """The abstain threshold that applies to prompts routed to `task_name` (None: never abstain)."""
        return self.thresholds.get(task_name) if self.thresholds else self.threshold

    def route(self, prompts: list[str], batch_size: int = 64) -> list[Route]:
        """Pick a task (and adapter) per prompt; below the threshold, the base model (`__base__`)."""
        if not prompts:
            return []
        logits = self._logits(prompts, batch_size)
        confidence, ids = logits.softmax(dim=-1).max(dim=-1)
        scores, names = id_scores(logits, self.score), self.task_names
        routes = []
        for task_id, conf, score in zip(ids.tolist(), confidence.tolist(), scores.tolist(), strict=True):
            limit = self.limit(names[task_id])
            if limit is not None and score < limit:
                routes.append(Route(BASE, None, conf, True, score))
            else:
                routes.append(Route(names[task_id], self.adapters[names[task_id]], conf, False, score))
        return routes

    def manifest(self) -> dict[str, Any]:
        """The content of switch.json."""
        tasks = [{"id": i, "name": n, "adapter": a} for i, (n, a) in enumerate(self.adapters.items())]
        if self.switch_type == "prototype":
            tasks = [t | {"stats": stats_file(t["id"], t["name"])} for t in tasks]
        return {
            "version": SWITCH_VERSION,
            "encoder": self.encoder.name,
            "dim": self.encoder.dim,
            "score": self.score,
            "threshold": self.threshold,
            "thresholds": self.thresholds,
            "switch_type": self.switch_type,
            "shrinkage": self.shrinkage,
            "hidden": self.hidden,
            "seed": self.seed,
            "epochs": self.epochs,
            "balanced": self.balanced,
            "fraction": self.memory.fraction,
            "head": self.head.config() if self.head else None,
            "tasks": tasks,
        }

    def save(self, directory: str | os.PathLike) -> Path:
        """Write switch.json, switch_head.safetensors and memory.json into `directory` (each atomically)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.memory.save(directory / MEMORY_FILE)
        if isinstance(self.head, PrototypeHead):  # a task's file is written once, then never again
            for entry, stats in zip(self.manifest()["tasks"], self.head.stats, strict=True):
                write_statistics(directory / entry["stats"], stats)
        elif self.head is not None:
            _save_tensors_atomic(directory / HEAD_FILE, self.head.state_tensors())
        write_json_atomic(directory / MANIFEST, self.manifest())
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike, encoder: PromptEncoder | None = None) -> Switch:
        """Read a saved switch; the encoder is rebuilt from its spec unless given. ModelError on a dim mismatch."""
        directory = Path(directory)
        meta = _read_manifest(directory)
        encoder = encoder or make_encoder(meta["encoder"])
        if encoder.dim != meta["dim"]:
            raise ModelError(
                f"{directory}: switch was trained on {meta['dim']}-d features of {meta['encoder']!r} "
                f"but encoder {encoder.name!r} gives {encoder.dim}-d; load it with the same encoder"
            )
        switch = cls.__new__(cls)
        switch.encoder, switch.score, switch.threshold = encoder, meta["score"], meta["threshold"]
        switch.thresholds = meta.get("thresholds")
        switch.switch_type, switch.shrinkage = meta.get("switch_type", "mlp"), meta.get("shrinkage")
        switch.hidden, switch.seed = meta["hidden"], meta["seed"]
        switch.epochs, switch.balanced = meta["epochs"], meta["balanced"]
        tasks = sorted(meta["tasks"], key=lambda t: t["id"])
        switch.adapters = {t["name"]: t["adapter"] for t in tasks}
        switch.memory = RehearsalMemory.load(directory / MEMORY_FILE)
        if switch.switch_type == "prototype":
            switch.head = _load_prototypes(directory, meta, tasks) if tasks else None
        else:
            switch.head = _load_head(directory, meta["head"]) if meta["head"] else None
        if switch.memory.task_names != switch.task_names:
            raise DataError(f"{directory / MEMORY_FILE}: memory tasks do not match {MANIFEST}")
        return switch


_REQUIRED = ("version", "encoder", "dim", "score", "threshold", "hidden", "seed", "epochs", "balanced", "head", "tasks")


def _read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelError(f"{directory}: not a saved switch ({MANIFEST} is missing)") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read switch manifest ({exc})") from exc
    missing = [key for key in _REQUIRED if not isinstance(meta, dict) or key not in meta]
    if missing:
        raise DataError(f"{path}: switch manifest lacks {', '.join(missing)}")
    if meta["version"] != SWITCH_VERSION:
        raise DataError(f"{path}: unsupported switch version {meta['version']!r} (this build reads {SWITCH_VERSION})")
    try:
        check_switch_type(meta.get("switch_type", "mlp"), meta["score"])
    except ConfigError as exc:
        raise DataError(f"{path}: {exc}") from None
    return meta


def _load_prototypes(directory: Path, meta: dict[str, Any], tasks: list[dict[str, Any]]) -> PrototypeHead:
    head = PrototypeHead(meta["dim"], meta.get("shrinkage"))
    for task in tasks:
        if "stats" not in task:
            raise DataError(f"{directory / MANIFEST}: task {task['name']!r} has no statistics file")
        head.add_statistics(read_statistics(directory / task["stats"]))
    return head


def _load_head(directory: Path, config: dict[str, Any]) -> SwitchHead:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(directory / HEAD_FILE))
    except (OSError, SafetensorError) as exc:
        raise DataError(f"{directory / HEAD_FILE}: cannot read switch head weights ({exc})") from exc
    return SwitchHead.from_state(config, tensors)


def _save_tensors_atomic(path: Path, tensors: dict[str, Any]) -> Path:
    from safetensors.torch import save_file

    fd, tmp = temp_sibling(path)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"format": "pt"})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
