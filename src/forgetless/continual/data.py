"""Task data of a continual run: load (or build) each task's records, then split them by use.

    from forgetless.continual.data import prepare_tasks
    data = prepare_tasks(cfg, run_dir)        # {task name: TaskData}, in sequence order
    data["plural"].adapter_train               # the records its LoRA trains on (max_train sample)

Per task, from N train records: the LoRA trains on a seeded `max_train` sample; `calibration_size`
items are held out of the switch's training (their prompts only set the abstain threshold); the switch
trains on the other prompts. An item is a record's answer: every prompt of a held-out item is held out,
so no calibration prompt asks about something the switch trained on (eval items are unseen too; a
calibration prompt sharing its item with a training prompt sits too close and makes the threshold too
tight). A task with fewer than 4 x MIN_PER_TASK distinct answers (labels, not items) is split by prompt.
Eval records are a seeded `max_eval` sample of the eval file. Built-in tasks are built on every run
and written to `RUN/data/<task>/{train,eval}.jsonl` when those differ; every LoRA's exact training
file is written next to them (`adapter_train.jsonl`, `<baseline>_stage<i>.jsonl`) so each adapter's
`forgetless.json` names real data.
A `datasets` hub name loads its `train` split for `train` and `test` for `eval`; `org/name@split` picks one.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

from forgetless.continual.config import ContinualConfig, ContinualTask
from forgetless.data.records import Record, load_records
from forgetless.errors import DataError
from forgetless.utils.fileio import write_jsonl_atomic, write_text_atomic


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
    existed = folder.exists()
    try:
        return _prepare(cfg, task, folder)
    except BaseException:
        if not existed:  # nothing half-written
            shutil.rmtree(folder, ignore_errors=True)
        raise


def _prepare(cfg: ContinualConfig, task: ContinualTask, folder: Path) -> TaskData:
    train_src, eval_src = task.train, task.eval
    if task.builtin:
        train_src, eval_src = _write_builtin(cfg, task, folder)
    train = _load(train_src, "train", task)
    evals = _sample(_load(eval_src, "test", task), task.max_eval or cfg.max_eval, f"{cfg.seed}:{task.name}:eval")
    cap = task.max_train or cfg.max_train
    adapter_train = _sample(train, cap, f"{cfg.seed}:{task.name}:adapter")
    prompts = list(dict.fromkeys(prompt_text(r) for r in train))
    calibration = _calibration(train, cfg, task.name)
    held = set(calibration)
    switch_prompts = [p for p in prompts if p not in held]
    adapter_data = write_training_file(folder / "adapter_train.jsonl", adapter_train)
    return TaskData(task, train, adapter_train, switch_prompts, calibration, evals, adapter_data)


def _write_builtin(cfg: ContinualConfig, task: ContinualTask, folder: Path) -> tuple[str, str]:
    from forgetless.data.tasks import build_task

    train_path, eval_path = folder / "train.jsonl", folder / "eval.jsonl"
    train, evals = build_task(task.builtin, seed=cfg.seed, n_train=cfg.builtin_train, n_eval=cfg.builtin_eval)
    _write_if_changed(eval_path, evals)  # files from another seed, size or generator version are replaced
    _write_if_changed(train_path, train)
    return str(train_path), str(eval_path)


def _write_if_changed(path: Path, rows: list[dict]) -> None:
    """Write `rows` unless the file already holds exactly them (a resumed run leaves its files untouched)."""
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if not (path.is_file() and path.read_text(encoding="utf-8") == text):
        write_text_atomic(path, text)


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


def prompts_by_item(records: list[Record]) -> dict[str, list[str]]:
    """{item: its distinct prompts}, in file order; the item is the reference answer (`response_text`).

    A prompt is kept under the first item it occurs with (a prompt is never in two groups)."""
    items: dict[str, list[str]] = {}
    seen: set[str] = set()
    for record in records:
        prompt = prompt_text(record)
        if prompt not in seen:
            seen.add(prompt)
            items.setdefault(response_text(record), []).append(prompt)
    return items


def _calibration(train: list[Record], cfg: ContinualConfig, name: str) -> list[str]:
    """Held-out prompts for the abstain threshold: every prompt of `calibration_size` (at most a quarter
    of the) items; none when abstaining is off or the task is too small (see `_check_calibration`)."""
    from forgetless.adapters.switch.scores import MIN_PER_TASK

    if cfg.abstain_keep is None:
        return []
    items = prompts_by_item(train)
    groups = list(items.values())
    n_prompts = sum(len(g) for g in groups)
    _check_calibration(cfg, name, n_prompts, len(items))
    if len(groups) < 4 * MIN_PER_TASK:  # few distinct answers: labels, not items; hold out single prompts
        groups = [[p] for p in dict.fromkeys(prompt_text(r) for r in train)]
    if len(groups) < 4:
        return []
    held = _sample(groups, min(cfg.calibration_size, len(groups) // 4), f"{cfg.seed}:{name}:calibration")
    return [p for group in held for p in group]


def _check_calibration(cfg: ContinualConfig, name: str, n_prompts: int, n_items: int) -> None:
    """Per-task thresholds need MIN_PER_TASK held-out items (or prompts) per task: say how many that takes."""
    from forgetless.adapters.switch.scores import MIN_PER_TASK

    if not cfg.abstain_per_task or n_prompts >= 4 * MIN_PER_TASK:
        return
    raise DataError(
        f"task {name!r}: per-task abstain thresholds need {MIN_PER_TASK} held-out calibration prompts, i.e. at "
        f"least {4 * MIN_PER_TASK} distinct train prompts (a quarter is held out, grouped by answer when "
        f"there are {4 * MIN_PER_TASK} distinct answers); it has {n_prompts} ({n_items} distinct answers). "
        "Add prompts, or set abstain_per_task: false (or abstain_keep: null)"
    )


def write_training_file(path: Path, records: list[Record]) -> Path:
    """Write records (as chat messages) to a JSONL a LoRA trains on."""
    return write_jsonl_atomic(path, [r.to_dict() for r in records])
