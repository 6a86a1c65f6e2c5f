"""`forgetless continual add-task`: teach a finished run one more task without touching what it has.

    forgetless continual add-task --run runs/cit --task capitals2 --train c.jsonl --eval c_eval.jsonl
    forgetless continual add-task --run runs/cit --task dates --builtin date_format

    from forgetless.continual.add_task import add_task
    add_task("runs/cit", ContinualTask("dates", builtin="date_format"))

A fresh LoRA is trained for the new task with the run's options (RUN/adapters/<task>); the switch takes
the new task (mlp: retrained on the new prompts plus its rehearsal memory, the only old data it keeps;
prototype: the new task's statistics are added, no other task's file is rewritten), is recalibrated on
the held-out prompts of all its tasks, and saved. Old adapters are never opened for writing. An mlp
switch with no memory (rehearsal 0) is refused: it would forget every old task. Then every task
is scored through the updated switch and the result is appended to results.json under `added_tasks`.
A `model` other than the run's base is refused (ModelError) before anything is trained.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from forgetless.continual.config import ContinualConfig, ContinualTask
from forgetless.continual.run_dir import RunDir
from forgetless.errors import ConfigError, ModelError
from forgetless.utils.fileio import write_json_atomic


def run_config(run_dir: Path, manifest: dict[str, Any]) -> ContinualConfig:
    """The run's resolved config, its tasks included, pointed at `run_dir`."""
    known = ContinualConfig.option_types()
    options = {k: v for k, v in manifest.get("config", {}).items() if k in known and k != "tasks"}
    options |= {"output": str(run_dir), "resume": False, "overwrite": False, "reuse_adapters": None}
    tasks = [ContinualTask(**t) for t in manifest.get("tasks", [])]
    return ContinualConfig.from_options(tasks=tasks, **options)


def check_same_base(manifest: dict[str, Any], model: str | None) -> None:
    """Refuse a base model other than the run's: its adapters and switch were made for that one."""
    if model is None:
        return
    from forgetless.models.load import load_model, same_base

    _, _, info = load_model(model)
    if not same_base(manifest.get("base_fingerprint", {}), info.fingerprint):
        raise ModelError(
            f"{model!r} is not the base model of this run ({manifest.get('base_model')}); "
            "a run's tasks must share its base: omit --model or start a new run"
        )


def check_switch_can_grow(switch: Any) -> None:
    """Refuse a switch that cannot take a task without forgetting: an mlp switch with no rehearsal memory."""
    if switch.switch_type == "mlp" and len(switch.memory) == 0 and switch.task_names:
        raise ConfigError(
            "this run's mlp switch keeps no rehearsal memory (rehearsal 0): retrained on the new task alone it "
            "would forget every old task; start a new run with switch_type: prototype (or rehearsal > 0)"
        )


def add_task(run_dir: str | Path, task: ContinualTask, model: str | None = None, evaluate: bool = True) -> dict:
    """Train the new task's adapter, update and save the switch, optionally score every task; returns a summary."""
    from forgetless.continual.data import prepare_task
    from forgetless.continual.switch_stage import add_task_to_switch, load_switch, save_switch
    from forgetless.continual.training import ensure_adapter

    run_dir = Path(run_dir)
    run = RunDir(run_dir)
    manifest = run.manifest()
    cfg = run_config(run_dir, manifest)
    if task.name in cfg.task_names:
        raise ConfigError(f"task {task.name!r} is already in {run_dir}; pick a new task name")
    cfg.tasks.append(task)
    cfg.validate()
    check_same_base(manifest, model)
    switch, calibration = load_switch(run_dir)
    check_switch_can_grow(switch)
    td = prepare_task(cfg, task, run_dir)
    started = time.perf_counter()
    ensure_adapter(cfg, td.adapter_data, run.adapter_home(task.name), reuse=[])
    trained = time.perf_counter()
    calibration[task.name] = td.calibration
    update = add_task_to_switch(
        switch,
        task.name,
        td.switch_prompts,
        run.recorded_adapter(task.name),
        calibration,
        cfg.abstain_keep,
        cfg.abstain_per_task,
    )
    save_switch(switch, run_dir, calibration)
    write_json_atomic(run.manifest_path, manifest | {"tasks": [t.to_dict() for t in cfg.tasks]})
    summary = {"task": task.name, **update, "seconds": {"train": round(trained - started, 1)}}
    if evaluate:
        summary |= _evaluate(cfg, run_dir, switch)
    _append_result(run_dir, summary)
    return summary


def _evaluate(cfg: ContinualConfig, run_dir: Path, switch: Any) -> dict[str, Any]:
    """Every task through the updated switch, the new task's oracle score, and the switch's stats."""
    from forgetless.continual.data import prepare_tasks
    from forgetless.continual.evaluate import max_new_tokens
    from forgetless.continual.pool import AdapterPool
    from forgetless.continual.switch_stage import route_names, switch_stats
    from forgetless.eval.metrics import score

    data = prepare_tasks(cfg, run_dir)
    run = RunDir(run_dir)
    pool = AdapterPool(cfg.model, batch_size=cfg.eval_batch_size)
    for name, adapter in switch.adapters.items():
        pool.add(name, run.locate_adapter(adapter))
    scores = {}
    for name, td in data.items():
        answers = pool.generate(
            td.eval_conversations, route_names(switch, td.eval_prompts), max_new_tokens(cfg, td, pool.tokenizer)
        )
        scores[name] = score(td.task.metric, answers, td.eval_references, sources=td.eval_prompts)
    stats = switch_stats(switch, {n: td.eval_prompts for n, td in data.items()}, [])
    return {"routed_score": scores, **stats}


def _append_result(run_dir: Path, summary: dict[str, Any]) -> None:
    import json

    path = run_dir / "results.json"
    results = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    results.setdefault("added_tasks", []).append(summary)
    write_json_atomic(path, results)
