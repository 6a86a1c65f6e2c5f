"""Rehearsal memory for the switch: a small seeded sample of each past task's prompts.

    from forgetless.adapters.switch.memory import RehearsalMemory
    memory = RehearsalMemory(fraction=0.01, seed=0)   # the paper used 1% and 0.01% (fraction=0.0001); 0 keeps none
    memory.add_task("simp", simp_prompts)             # keeps max(1, int(len * fraction)) prompts
    prompts, labels = memory.prompts_and_labels()     # labels = task ids in the order tasks were added
    memory.save("out/memory.json"); RehearsalMemory.load("out/memory.json")

This memory is the ONLY old data the switch keeps; prompts only, never responses. Every task added is
present in `prompts_and_labels()`, the first one included (the official code dropped task 0 from the
switch's training data). The sample for a task depends only on `seed`, the task name and its prompts.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

from forgetless.errors import ConfigError, DataError
from forgetless.utils.fileio import write_json_atomic

MEMORY_VERSION = 1


def sample_size(n: int, fraction: float) -> int:
    """How many of `n` prompts a task keeps: max(1, int(n * fraction)), never more than n; 0 when fraction is 0."""
    return 0 if fraction == 0 else min(n, max(1, int(n * fraction)))


class RehearsalMemory:
    """Per-task prompt samples, in the order the tasks were added."""

    def __init__(self, fraction: float = 0.01, seed: int = 0):
        if not 0 <= fraction <= 1:
            raise ConfigError(f"rehearsal fraction must be in [0, 1], got {fraction}")
        self.fraction, self.seed = float(fraction), int(seed)
        self._tasks: dict[str, list[str]] = {}
        self._seen: dict[str, int] = {}

    @property
    def task_names(self) -> list[str]:
        """Task names in the order they were added (index = task id)."""
        return list(self._tasks)

    def prompts_of(self, task_name: str) -> list[str]:
        """The kept prompts of one task."""
        if task_name not in self._tasks:
            raise ConfigError(f"rehearsal memory has no task {task_name!r}; known: {', '.join(self._tasks) or '-'}")
        return list(self._tasks[task_name])

    def __len__(self) -> int:
        return sum(len(p) for p in self._tasks.values())

    def add_task(self, task_name: str, prompts: list[str]) -> list[str]:
        """Sample and keep prompts of a new task; returns the kept sample."""
        if not isinstance(task_name, str) or not task_name:
            raise ConfigError("task name must be a non-empty string")
        if task_name in self._tasks:
            raise ConfigError(f"task {task_name!r} is already in the rehearsal memory")
        prompts = list(prompts)
        if not prompts or any(not isinstance(p, str) for p in prompts):
            raise DataError(f"task {task_name!r}: rehearsal memory needs a non-empty list of prompt strings")
        rng = random.Random(f"{self.seed}:{task_name}")
        kept = rng.sample(prompts, sample_size(len(prompts), self.fraction))
        self._tasks[task_name], self._seen[task_name] = kept, len(prompts)
        return list(kept)

    def prompts_and_labels(self) -> tuple[list[str], list[int]]:
        """All kept prompts with their task ids (0 = first task added), every task included."""
        prompts: list[str] = []
        labels: list[int] = []
        for task_id, kept in enumerate(self._tasks.values()):
            prompts.extend(kept)
            labels.extend([task_id] * len(kept))
        return prompts, labels

    def to_json(self) -> dict[str, Any]:
        """The JSON form written by `save`."""
        tasks = [{"name": n, "n_seen": self._seen[n], "prompts": p} for n, p in self._tasks.items()]
        return {"version": MEMORY_VERSION, "fraction": self.fraction, "seed": self.seed, "tasks": tasks}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the memory as JSON, atomically."""
        return write_json_atomic(path, self.to_json())

    @classmethod
    def from_json(cls, obj: Any, source: str = "memory") -> RehearsalMemory:
        """Rebuild a memory from `to_json()` output; DataError when it is malformed."""
        try:
            if obj.get("version") != MEMORY_VERSION:
                raise DataError(f"{source}: unsupported rehearsal memory version {obj.get('version')!r}")
            memory = cls(fraction=obj["fraction"], seed=obj["seed"])
            for task in obj["tasks"]:
                name, prompts = task["name"], task["prompts"]
                if not isinstance(name, str) or not isinstance(prompts, list):
                    raise DataError(f"{source}: malformed task entry {str(name)[:40]!r}")
                if name in memory._tasks:
                    raise DataError(f"{source}: task {name!r} appears twice")
                memory._tasks[name] = [str(p) for p in prompts]
                memory._seen[name] = int(task.get("n_seen", len(prompts)))
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{source}: malformed rehearsal memory ({type(exc).__name__}: {exc})") from exc
        return memory

    @classmethod
    def load(cls, path: str | os.PathLike) -> RehearsalMemory:
        """Read a memory written by `save`."""
        path = Path(path)
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise DataError(f"{path}: rehearsal memory file not found") from exc
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"{path}: cannot read rehearsal memory JSON ({exc})") from exc
        return cls.from_json(obj, source=str(path))
