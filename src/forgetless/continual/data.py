"""Task data of a continual run: load (or build) each task's records, then split them by use.

    from forgetless.continual.data import prepare_tasks
    data = prepare_tasks(cfg, run_dir)        # {task name: TaskData}, in sequence order
    data["plural"].adapter_train               # the records its LoRA trains on (max_train sample)

Per task, from N train records: the LoRA trains on a seeded `max_train` sample; `calibration_size`
prompts are held out of the switch's training (they only set the abstain threshold); the switch trains
on the other prompts. Eval records are a seeded `max_eval` sample of the eval file. Built-in tasks are
written to `RUN/data/<task>/{train,eval}.jsonl`; every LoRA's exact training file is written next to them
(`adapter_train.jsonl`, `<baseline>_stage<i>.jsonl`) so each adapter's `forgetless.json` names real data.
A `datasets` hub name loads its `train` split for `train` and `test` for `eval`; `org/name@split` picks one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from forgetless.continual.config import ContinualConfig, ContinualTask
from forgetless.data.records import Record, load_records
from forgetless.errors import DataError
from forgetless.utils.fileio import write_jsonl_atomic


@dataclass
class TaskData:
    """One task's records, split by what uses them."""

    task: ContinualTask
    train: list[Record]
    adapter_train: list[Record]
    switch_prompts: list[str]
    calibration: list[str]
    eval: list[Record]
    adapter_data: Path  # the JSONL the task's LoRA trains on

    @property
    def name(self) -> str:
        return self.task.name

    @property
    def train_prompts(self) -> list[str]:
        return [prompt_text(r) for r in self.train]

    @property
    def eval_prompts(self) -> list[str]:
        return [prompt_text(r) for r in self.eval]

    @property
    def eval_conversations(self) -> list[list[dict[str, str]]]:
        return [r.prompt_messages for r in self.eval]

    @property
    def eval_references(self) -> list[str]:
        return [response_text(r) for r in self.eval]


def prompt_text(record: Record) -> str:
    """The text the switch routes on: the last user message before the answer."""
    users = [m["content"] for m in record.prompt_messages if m["role"] == "user"]
    return users[-1] if users else record.prompt_messages[-1]["content"]


def response_text(record: Record) -> str:
    """The reference answer: the last assistant message."""
    return [m["content"] for m in record.messages if m["role"] == "assistant"][-1]


def prepare_tasks(cfg: ContinualConfig, run_dir: Path) -> dict[str, TaskData]:
    """Load, sample and split every task's data (DataError names the task and file on a problem)."""
    return {task.name: prepare_task(cfg, task, run_dir) for task in cfg.tasks}


def prepare_task(cfg: ContinualConfig, task: ContinualTask, run_dir: Path) -> TaskData:
    """Load one task (building a built-in one into RUN/data/<task>/) and split its records."""
    folder = run_dir / "data" / task.name
    train_src, eval_src = task.train, task.eval
    if task.builtin:
        train_src, eval_src = _write_builtin(cfg, task, folder)
    train = _load(train_src, "train", task)
    evals = _sample(_load(eval_src, "test", task), task.max_eval or cfg.max_eval, f"{cfg.seed}:{task.name}:eval")
    cap = task.max_train or cfg.max_train
    adapter_train = _sample(train, cap, f"{cfg.seed}:{task.name}:adapter")
    prompts = list(dict.fromkeys(prompt_text(r) for r in train))
    calibration = _calibration(prompts, cfg, task.name)
    held = set(calibration)
    switch_prompts = [p for p in prompts if p not in held]
    adapter_data = write_training_file(folder / "adapter_train.jsonl", adapter_train)
    return TaskData(task, train, adapter_train, switch_prompts, calibration, evals, adapter_data)


def _write_builtin(cfg: ContinualConfig, task: ContinualTask, folder: Path) -> tuple[str, str]:
    from forgetless.data.tasks import build_task

    train_path, eval_path = folder / "train.jsonl", folder / "eval.jsonl"
    if not (train_path.is_file() and eval_path.is_file()):
        train, evals = build_task(task.builtin, seed=cfg.seed, n_train=cfg.builtin_train, n_eval=cfg.builtin_eval)
        write_jsonl_atomic(eval_path, evals)
        write_jsonl_atomic(train_path, train)
    return str(train_path), str(eval_path)


def _load(source: str, default_split: str, task: ContinualTask) -> list[Record]:
    path, split = source, default_split
    if not Path(source).exists() and "@" in source:
        path, _, split = source.rpartition("@")
    try:
        return load_records(path, split=split)
    except DataError as exc:
        raise DataError(f"task {task.name!r}: {exc}") from None


def _sample(records: list, cap: int | None, seed: str) -> list:
    """A seeded sample of at most `cap` items, kept in file order."""
    if cap is None or cap >= len(records):
        return list(records)
    keep = sorted(random.Random(seed).sample(range(len(records)), cap))
    return [records[i] for i in keep]


def _calibration(prompts: list[str], cfg: ContinualConfig, name: str) -> list[str]:
    """Held-out prompts for the abstain threshold; none when abstaining is off or the task is too small."""
    if cfg.abstain_keep is None or len(prompts) < 4:
        return []
    size = min(cfg.calibration_size, len(prompts) // 4)
    return _sample(prompts, size, f"{cfg.seed}:{name}:calibration")


def write_training_file(path: Path, records: list[Record]) -> Path:
    """Write records (as chat messages) to a JSONL a LoRA trains on."""
    return write_jsonl_atomic(path, [r.to_dict() for r in records])
