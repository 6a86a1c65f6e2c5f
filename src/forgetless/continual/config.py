"""The continual run's options: a task sequence plus training, switch and evaluation settings, from YAML.

    from forgetless.continual.config import load_continual_config
    cfg = load_continual_config("configs/continual_builtin.yaml", output="runs/cit")

A YAML file lists the tasks IN ORDER under `tasks:`; every other top-level key is a `ContinualConfig`
option (command-line flags override them). A task is `{name, train, eval, metric}` plus optional
`max_train` / `max_eval`; `train` and `eval` are JSONL (or JSON/CSV/Parquet) files of `prompt`/`response`
records, relative to the YAML file, or `datasets` hub names (`org/name`, the `train` split); or
`builtin: <task>` builds them from `forgetless.data.tasks` (`builtin_train` / `builtin_eval` records).
The files written by `forgetless tasks builtin --output DIR` (`DIR/tasks.yaml`) work as they are.

`max_train` caps the records a task's LoRA trains on (a seeded sample); the switch sees every train
PROMPT of the task (prompts are cheap: the paper trains its switch on the whole task), so the rehearsal
memory keeps `max(1, int(N * rehearsal))` of all N prompts.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from forgetless.errors import ConfigError
from forgetless.eval.metrics import TEXT_METRICS
from forgetless.train.args import HoldsTrainArgs, TrainArgs
from forgetless.utils.yamlconfig import coerce

STRATEGIES = ("switch", "sequential", "replay", "multitask")  # what a run compares (YAML/CLI key: `methods`)
TASK_KEYS = ("name", "train", "eval", "metric", "max_train", "max_eval", "builtin")
_TASK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


@dataclass
class ContinualTask:
    """One task of the sequence."""

    name: str
    train: str = ""
    eval: str = ""
    metric: str = "exact_match"
    max_train: int | None = None
    max_eval: int | None = None
    builtin: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def continual_train_args() -> TrainArgs:
    """Every task LoRA of a continual run (the baselines use the same): one epoch at lr 1e-3, rank 16, records
    of at most 256 tokens (the rest are TrainArgs defaults)."""
    return TrainArgs(epochs=1.0, lr=1e-3, rank=16, max_length=256)


@dataclass
class ContinualConfig(HoldsTrainArgs):
    """Every option of `forgetless continual run` (defaults suit the embedded 135M model on 2 CPU cores)."""

    TRAIN_OPTIONS: ClassVar[dict[str, Any]] = {
        "epochs": float,
        "max_steps": int,
        "lr": float,
        "rank": int,
        "alpha": float | None,
        "batch_size": int,
        "max_length": int,
    }

    tasks: list[ContinualTask] = field(default_factory=list)
    output: str = ""
    model: str | None = None  # HF id, local dir, or None for the embedded SmolLM2-135M-Instruct
    methods: list[str] = field(default_factory=lambda: list(STRATEGIES))  # the strategies to run, in order
    seed: int = 0
    train: TrainArgs = field(default_factory=continual_train_args)  # task adapters (TRAIN_OPTIONS are flat)
    max_train: int | None = None  # default cap of every task's LoRA records
    # switch
    rehearsal: float = 0.01  # fraction of each task's prompts kept for the mlp switch (and replayed by `replay`)
    switch_type: str = "prototype"  # or "mlp" (the paper's); measured in experiments/continual_switch.py
    switch_encoder: str = "minilm"
    switch_balanced: bool = True  # mlp: class-weighted loss; measured better than the paper's plain loss, see README
    switch_score: str | None = None  # None: energy for mlp (OOD AUROC 0.995 vs 0.982), max_logit for prototype
    switch_epochs: int = 20  # mlp only
    switch_shrinkage: float | None = None  # prototype: covariance shrinkage in [0, 1]; None = Ledoit-Wolf
    abstain_keep: float | None = 0.99  # at least ~this share of task prompts kept; None: never abstain (closed set)
    abstain_per_task: bool = True  # one threshold per task (see scores.per_task_thresholds); false: one global
    calibration_size: int = 50  # held-out items per task (at most a quarter; all their prompts) that set abstaining
    # evaluation
    max_eval: int | None = None
    eval_all_tasks: bool = False  # also score tasks more than one stage ahead (no metric uses them)
    max_new_tokens: int | None = None  # None: per task, from its longest reference
    eval_batch_size: int = 32
    general_qa: int = 20  # known-fact questions (country facts) for the general-ability check; 0 = off
    mmlu: int = 20  # MMLU questions for the general-ability check; 0 = off
    ood_mmlu: int = 40  # MMLU questions among the out-of-distribution prompts (plus the built-in chat prompts)
    # built-in tasks (`builtin: name`)
    builtin_train: int = 1000
    builtin_eval: int = 30
    reuse_adapters: str | None = None  # another run dir whose matching task adapters are copied, not retrained
    overwrite: bool = False
    resume: bool = False
    source: str = ""  # the YAML file (set by the loader)

    def validate(self) -> ContinualConfig:
        """Raise ConfigError naming the first bad option or task and how to fix it."""
        _check(bool(self.output), "--output is required: pass --output DIR")
        _check(bool(self.tasks), "the task sequence is empty; list tasks under `tasks:` in the YAML")
        unknown = [m for m in self.methods if m not in STRATEGIES]
        _check(not unknown, f"unknown method {unknown[:1]}; choose from {', '.join(STRATEGIES)}")
        _check(bool(self.methods), "methods is empty; choose from " + ", ".join(STRATEGIES))
        _check(0 <= self.rehearsal <= 1, f"rehearsal fraction must be in [0, 1], got {self.rehearsal}")
        self._validate_switch()
        train = self.train
        positive = {"lr": train.lr, "epochs": train.epochs, "rank": train.rank, "batch_size": train.batch_size}
        positive |= {"switch_epochs": self.switch_epochs, "eval_batch_size": self.eval_batch_size}
        positive |= {"calibration_size": self.calibration_size, "builtin_eval": self.builtin_eval}
        for name, value in positive.items():
            _check(value > 0, f"{name} must be positive, got {value}")
        for name in ("general_qa", "mmlu", "ood_mmlu"):
            _check(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("max_train", "max_eval"):  # 0 would leave a task nothing to train on or score
            value = getattr(self, name)
            _check(value is None or value >= 1, f"--{name.replace('_', '-')} / {name} must be >= 1, got {value}")
        _check(self.max_new_tokens is None or self.max_new_tokens > 0, "max_new_tokens must be positive")
        _check(train.max_steps == -1 or train.max_steps > 0, "max_steps must be a positive integer (or -1)")
        seen: set[str] = set()
        for index, task in enumerate(self.tasks):
            _validate_task(task, index, seen)
        return self

    def _validate_switch(self) -> None:
        from forgetless.adapters.switch.scores import MIN_PER_TASK
        from forgetless.adapters.switch.switch import check_switch_type

        check_switch_type(self.switch_type, self.switch_score)
        shrink = self.switch_shrinkage
        _check(shrink is None or 0 <= shrink <= 1, f"switch_shrinkage must be in [0, 1] or null, got {shrink}")
        keep = self.abstain_keep
        _check(keep is None or 0 < keep <= 1, f"abstain_keep must be in (0, 1] or null, got {keep}")
        if keep is not None and self.abstain_per_task:
            _check(keep < 1, "per-task abstain thresholds need abstain_keep < 1 (null: never abstain)")
            _check(
                self.calibration_size >= MIN_PER_TASK,
                f"per-task abstain thresholds need at least {MIN_PER_TASK} held-out calibration prompts per task: "
                f"set calibration_size >= {MIN_PER_TASK} (got {self.calibration_size}), or abstain_per_task: false",
            )

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _validate_task(task: ContinualTask, index: int, seen: set[str]) -> None:
    where = f"tasks[{index}]"
    _check(isinstance(task.name, str) and bool(task.name), f"{where}: every task needs a `name`")
    _check(
        bool(_TASK_NAME.match(task.name)),
        f"{where}: task name {task.name!r} may hold only letters, digits, '_' and '-' (starting with a letter/digit)",
    )
    _check(task.name not in seen, f"{where}: duplicate task name {task.name!r}; every task needs its own name")
    seen.add(task.name)
    _check(
        bool(task.train) or bool(task.builtin),
        f"{where} ({task.name}): no train data; give `train: FILE` (prompt/response JSONL) or `builtin: TASK`",
    )
    _check(
        bool(task.eval) or bool(task.builtin),
        f"{where} ({task.name}): no eval data; give `eval: FILE` (prompt/response JSONL) or `builtin: TASK`",
    )
    _check(
        task.metric in TEXT_METRICS,
        f"{where} ({task.name}): unknown metric {task.metric!r}; choose one of {', '.join(TEXT_METRICS)}",
    )
    for key in ("max_train", "max_eval"):
        value = getattr(task, key)
        _check(value is None or value >= 1, f"{where} ({task.name}): {key} must be >= 1, got {value}")
    if task.builtin:
        from forgetless.data.tasks import BUILTIN_TASKS

        _check(task.builtin in BUILTIN_TASKS, f"{where}: unknown builtin task {task.builtin!r}; use {BUILTIN_TASKS}")


# ------------------------------------------------------------------------------------------------ YAML


def load_continual_config(path: str | Path, **overrides: Any) -> ContinualConfig:
    """Read a task-sequence YAML; keyword `overrides` (not None) win over its values. Validated."""
    path = Path(path)
    data, lines = _read_yaml(path)
    types = ContinualConfig.option_types()
    allowed = sorted(set(types) - {"output", "source", "tasks"})
    options: dict[str, Any] = {}
    for key, value in data.items():
        name, loc = str(key).replace("-", "_"), f"{path}:{lines.get(str(key), '?')}:{key}"
        if name == "tasks":
            options["tasks"] = _parse_tasks(value, path, loc)
        elif name in allowed:
            options[name] = coerce(value, types[name], loc)
        else:
            raise ConfigError(f"{loc}: unknown option; known options: tasks, {', '.join(allowed)}")
    options.update({k: v for k, v in overrides.items() if v is not None})
    return ContinualConfig.from_options(**options, source=str(path)).validate()


def _read_yaml(path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    from forgetless.utils.yamlconfig import read_yaml_mapping

    expected = "expected a mapping with a `tasks:` list (and options); see configs/*.yaml"
    data, lines = read_yaml_mapping(path, "task sequence file", expected)
    if not data:
        raise ConfigError(f"{path}: {expected}")
    return data, lines


def _parse_tasks(value: Any, path: Path, loc: str) -> list[ContinualTask]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{loc}: `tasks` must be a non-empty list of {{name, train, eval, metric}} mappings")
    tasks = []
    for index, raw in enumerate(value):
        where = f"{path}:tasks[{index}]"
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: each task must be a mapping with name, train, eval, metric")
        unknown = [k for k in raw if k not in TASK_KEYS]
        if unknown:
            raise ConfigError(f"{where}: unknown task key {unknown[0]!r}; use {', '.join(TASK_KEYS)}")
        types = {"name": str, "train": str, "eval": str, "metric": str, "builtin": str | None}
        types |= {"max_train": int | None, "max_eval": int | None}
        fields = {k: coerce(v, types[k], f"{where}:{k}") for k, v in raw.items() if v is not None}
        for key in ("train", "eval"):
            if fields.get(key):
                fields[key] = _resolve_data(fields[key], path.parent)
        tasks.append(ContinualTask(**{"name": "", **fields}))
    return tasks


def _resolve_data(value: str, base: Path) -> str:
    """A data path relative to the YAML file; hub names (`org/name`, not a file) are kept as they are."""
    candidate = Path(value).expanduser()
    if candidate.is_absolute():
        return str(candidate)
    local = base / candidate
    if local.exists() or candidate.suffix.lower() in (".jsonl", ".json", ".csv", ".parquet"):
        return str(local)
    return value
