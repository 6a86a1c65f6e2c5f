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
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgetless.adapters.names import BASE
from forgetless.adapters.switch.classifier import OFFICIAL_EPOCHS, OFFICIAL_HIDDEN, SwitchHead
from forgetless.adapters.switch.encoder import DEFAULT_ENCODER, PromptEncoder, make_encoder
from forgetless.adapters.switch.memory import RehearsalMemory
from forgetless.adapters.switch.scores import SCORE_TYPES, id_scores, keep_threshold, ood_metrics
from forgetless.errors import ConfigError, DataError, ModelError
from forgetless.utils.fileio import temp_sibling, write_json_atomic

SWITCH_VERSION = 1
MANIFEST, HEAD_FILE, MEMORY_FILE = "switch.json", "switch_head.safetensors", "memory.json"

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
        score: str = "max_softmax",
        hidden: int = OFFICIAL_HIDDEN,
        seed: int = 0,
        epochs: int = OFFICIAL_EPOCHS,
        balanced: bool = False,
    ):
        if score not in SCORE_TYPES:
            raise ConfigError(f"unknown switch score {score!r}; use one of {', '.join(SCORE_TYPES)}")
        self.encoder = encoder if isinstance(encoder, PromptEncoder) else make_encoder(encoder)
        self.memory = RehearsalMemory(fraction=fraction, seed=seed)
        self.score, self.hidden, self.seed, self.epochs, self.balanced = score, hidden, seed, epochs, balanced
        self.adapters: dict[str, str] = {}  # task name -> adapter dir, in task-id order
        self.head: SwitchHead | None = None
        self.threshold: float | None = None

    @property
    def task_names(self) -> list[str]:
        """Task names; the index is the task id."""
        return list(self.adapters)

    def task_id(self, task_name: str) -> int:
        """The id of a known task."""
        if task_name not in self.adapters:
            raise ConfigError(f"switch has no task {task_name!r}; known: {', '.join(self.adapters) or '-'}")
        return self.task_names.index(task_name)

    def _new_head(self) -> SwitchHead:
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
        old_prompts, old_labels = self.memory.prompts_and_labels()
        features = self.encoder.encode(old_prompts + prompts, batch_size=batch_size)
        labels = old_labels + [len(self.adapters)] * len(prompts)
        head = self.head or self._new_head()
        history = head.fit(features, labels)
        self.head, self.adapters[task_name], self.threshold = head, str(adapter_dir), None
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
        self.threshold = keep_threshold(self.scores(held_out_prompts, batch_size), keep)
        return self.threshold

    def route(self, prompts: list[str], batch_size: int = 64) -> list[Route]:
        """Pick a task (and adapter) per prompt; below the threshold, the base model (`__base__`)."""
        if not prompts:
            return []
        logits = self._logits(prompts, batch_size)
        confidence, ids = logits.softmax(dim=-1).max(dim=-1)
        scores, names = id_scores(logits, self.score), self.task_names
        routes = []
        for task_id, conf, score in zip(ids.tolist(), confidence.tolist(), scores.tolist(), strict=True):
            if self.threshold is not None and score < self.threshold:
                routes.append(Route(BASE, None, conf, True, score))
            else:
                routes.append(Route(names[task_id], self.adapters[names[task_id]], conf, False, score))
        return routes

    def manifest(self) -> dict[str, Any]:
        """The content of switch.json."""
        tasks = [{"id": i, "name": n, "adapter": a} for i, (n, a) in enumerate(self.adapters.items())]
        return {
            "version": SWITCH_VERSION,
            "encoder": self.encoder.name,
            "dim": self.encoder.dim,
            "score": self.score,
            "threshold": self.threshold,
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
        if self.head is not None:
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
        switch.hidden, switch.seed = meta["hidden"], meta["seed"]
        switch.epochs, switch.balanced = meta["epochs"], meta["balanced"]
        switch.adapters = {t["name"]: t["adapter"] for t in sorted(meta["tasks"], key=lambda t: t["id"])}
        switch.memory = RehearsalMemory.load(directory / MEMORY_FILE)
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
    if meta["score"] not in SCORE_TYPES:
        raise DataError(f"{path}: unknown score type {meta['score']!r}")
    return meta


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
