"""lm-evaluation-harness runs on an already loaded model (adapter on or off), as a first-class audit path.

    pip install 'forgetless[lm-eval]'     # lm-eval pins python-dateutil < 3 (pip may downgrade it)
    forgetless audit --adapter runs/x --facts facts.jsonl --output runs/x_audit --lm-eval-tasks mmlu,truthfulqa_mc2
    forgetless export lm-eval-mmlu --output tasks/              # a local MMLU task: no network needed
    forgetless audit ... --lm-eval-include tasks/ --lm-eval-tasks forgetless_mmlu --lm-eval-shots 0

The loaded model itself is wrapped in lm-eval's `HFLM`, so any adapter we can load (PEFT LoRA, ours or
not, and LoRAMoE) is evaluated the same way, and "before" is the same weights with the adapter disabled.
When lm-eval is missing, or a task's data cannot be reached (no network here), the run is skipped with a
one-line message and the result says why; the rest of the audit goes on. Options (`LmEvalOptions`) are
checked before any model loads.
"""

from __future__ import annotations

import subprocess
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forgetless.errors import ConfigError
from forgetless.utils.console import err_console

NOT_METRICS = {"sample_len", "sample_count", "samples"}  # bookkeeping numbers lm-eval puts among the metrics


def parse_tasks(text: str | None) -> list[str]:
    """'mmlu, truthfulqa_mc2' -> ['mmlu', 'truthfulqa_mc2']."""
    return [t.strip() for t in (text or "").split(",") if t.strip()]


@dataclass
class LmEvalOptions:
    """What to run: task names (built-in or from `include`, a folder of task YAMLs or one YAML file),
    examples per task (`limit`, None = all), few-shot count (`shots`, None = each task's default)."""

    tasks: list[str] = field(default_factory=list)
    limit: int | None = None
    shots: int | None = None
    batch_size: int = 8
    include: Path | None = None

    def validate(self) -> LmEvalOptions:
        """ConfigError naming the flag (call it before loading a model)."""
        for flag, value, least in (("--lm-eval-limit", self.limit, 1), ("--lm-eval-shots", self.shots, 0)):
            if value is not None and value < least:
                raise ConfigError(f"{flag} must be >= {least}, got {value}")
        if self.batch_size < 1:
            raise ConfigError(f"--lm-eval-batch-size must be >= 1, got {self.batch_size}")
        if self.include is not None and not Path(self.include).exists():
            raise ConfigError(f"--lm-eval-include {self.include}: no such folder or YAML file")
        given = self.limit is not None or self.shots is not None or self.include is not None
        if given and not self.tasks:
            raise ConfigError("the --lm-eval-* options need --lm-eval-tasks (e.g. --lm-eval-tasks forgetless_mmlu)")
        return self


def run_lm_eval(model, tokenizer, options: LmEvalOptions, log_samples: bool = False, scope=None) -> dict[str, Any]:
    """{"results": {task: {metric: value}}} (and "samples" when `log_samples`), or {"skipped": reason}.
    `scope` (a `FactScope`): only requests naming a taught subject reach the adapter (`lm_eval_scope`);
    the result then says how many did (`scope`: {"in_scope", "requests"})."""
    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
    except ImportError:
        return _skip("lm-evaluation-harness is not installed (pip install 'forgetless[lm-eval]')")
    lm_class = HFLM
    if scope is not None:
        from forgetless.eval.lm_eval_scope import scoped_hflm

        lm_class = scoped_hflm(HFLM, model, scope)
    try:
        wrapped = lm_class(pretrained=model, tokenizer=tokenizer, batch_size=options.batch_size)
        with _quiet_git_probe():
            out = lm_eval.simple_evaluate(
                model=wrapped,
                tasks=options.tasks,
                limit=options.limit,
                num_fewshot=options.shots,
                task_manager=_task_manager(options.include, options.tasks),
                log_samples=log_samples,
            )
    except Exception as exc:  # any failure inside lm-eval (usually unreachable data) skips it
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return _skip(f"lm-eval could not run {','.join(options.tasks)}: {first[:200]}")
    out = out or {}
    result: dict[str, Any] = {"results": {task: _numbers(m) for task, m in out.get("results", {}).items()}}
    if log_samples:
        result["samples"] = out.get("samples", {})
    if scope is not None:
        result["scope"] = dict(lm_class.routed)
    return result


def lm_eval_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Per task and metric: before, after, delta (only metrics present in both); the scope's routing
    counts of the "after" run, when it had one."""
    if "results" not in before or "results" not in after:
        return {"skipped": before.get("skipped") or after.get("skipped")}
    table: dict[str, Any] = {}
    for task, metrics in after["results"].items():
        for name, value in metrics.items():
            old = before["results"].get(task, {}).get(name)
            if old is not None:
                table.setdefault(task, {})[name] = {"before": old, "after": value, "delta": value - old}
    return {"results": table} | ({"scope": after["scope"]} if "scope" in after else {})


def _task_manager(include: Path | None, tasks: list[str]):
    """lm-eval's task index with the local tasks; its ~thousands of built-in task YAMLs are indexed only
    when a requested task is not defined locally (indexing them costs tens of seconds)."""
    if include is None:
        return None
    from lm_eval.tasks import TaskManager

    local = set(local_task_names(Path(include)))
    return TaskManager(include_path=str(Path(include).resolve()), include_defaults=not set(tasks) <= local)


def local_task_names(include: Path) -> list[str]:
    """The `task:` names of the YAML files in `include` (a folder, searched recursively, or one file)."""
    files = [include] if include.is_file() else sorted(include.rglob("*.yaml"))
    names = []
    for path in files:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("task:"):
                names.append(line.split(":", 1)[1].strip().strip("'\""))
    return names


@contextmanager
def _quiet_git_probe():
    """lm-eval runs `git describe` to record a commit and lets git print "fatal: not a git repository"
    outside a repository; run it with git's stderr discarded instead."""
    import lm_eval.evaluator as evaluator

    original = getattr(evaluator, "get_git_commit_hash", None)

    def quiet() -> str | None:
        try:
            done = subprocess.run(["git", "describe", "--always"], capture_output=True, text=True, check=False)
        except OSError:
            return None
        return done.stdout.strip() or None

    if original is not None:
        evaluator.get_git_commit_hash = quiet
    try:
        yield
    finally:
        if original is not None:
            evaluator.get_git_commit_hash = original


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and k.split(",")[0] not in NOT_METRICS
    }


def _skip(reason: str) -> dict[str, Any]:
    err_console.print(f"[yellow]skipping lm-eval:[/yellow] {reason}")
    return {"skipped": reason}
