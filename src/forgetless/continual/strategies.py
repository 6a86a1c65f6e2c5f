"""The four methods a continual run compares, each a loop over the task sequence that fills one R matrix.

- `switch` (SwitchCIT): a fresh LoRA per task on the frozen base (`RUN/adapters/<task>`, never touched
  again), the switch retrained on the new task's prompts + its rehearsal memory, the abstain threshold
  recalibrated; every task is then answered through the switch (foreign-looking prompts go to the base).
  Each stage also records the routing breakdown and the oracle score (see `routing_loss.py`), so that
  BWT splits into a routing part and an adapter part (`routing_split`).
  `R` is what a user gets (abstaining switch); `closed_set.R` routes every prompt to its argmax task (the
  paper's switch), so the two differ only by the ~5% of task prompts the threshold sends to the base.
- `sequential`: one LoRA trained further on each task in turn (the classic forgetting baseline).
- `replay`: `sequential` with a `rehearsal` fraction of every earlier task's train records mixed in.
- `multitask`: one LoRA on all tasks at once (the upper bound); its R has two rows, base and final.

Stage 1 of `sequential` and `replay` is the same computation as SwitchCIT's first adapter (same data,
options and seed), so that adapter is copied instead of trained again. Baselines keep only their latest
adapter (`RUN/baselines/<method>/stage<i>`).

    summary = run_switch(ctx, run_dir, on_stage)     # -> {"R", "aa", "bwt", ..., "stages": [...]}
"""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from forgetless.adapters.switch.memory import sample_size
from forgetless.continual.data import write_training_file
from forgetless.continual.evaluate import EvalContext, fixed_route, method_summary
from forgetless.continual.routing_loss import bwt_split, oracle_rows
from forgetless.continual.run_dir import RunDir
from forgetless.continual.switch_stage import (
    add_task_to_switch,
    closed_set_tasks,
    new_switch,
    route_names,
    save_switch,
    switch_stats,
)
from forgetless.continual.training import ensure_adapter

OnStage = Callable[[str, dict[str, Any]], None]


def reuse_candidates(ctx: EvalContext, run_dir: Path, task: str) -> list[Path]:
    """Where an identical task adapter may already exist: this run (resume), then `reuse_adapters`."""
    candidates = [RunDir(run_dir).adapter_home(task)]
    if ctx.cfg.reuse_adapters:
        candidates.append(RunDir(ctx.cfg.reuse_adapters).adapter_home(task))
    return candidates


def run_switch(ctx: EvalContext, run_dir: Path, on_stage: OnStage) -> dict[str, Any]:
    """SwitchCIT over the whole sequence; `on_stage(method, summary)` after every stage."""
    run = RunDir(run_dir)
    switch, calibration = new_switch(ctx.cfg, ctx.switch_encoder()), {}
    rows, closed, stages = [ctx.base_row], [ctx.base_row], []
    for i, task in enumerate(ctx.tasks):
        started = time.perf_counter()
        how = ensure_adapter(
            ctx.cfg, ctx.data[task].adapter_data, run.adapter_home(task), reuse_candidates(ctx, run_dir, task)
        )
        ctx.pool.add(task, run.adapter_home(task))
        calibration[task] = ctx.data[task].calibration
        stage = {"stage": i + 1, "task": task, "adapter": how, "seconds": {"train": _since(started)}}
        stage |= add_task_to_switch(
            switch,
            task,
            ctx.data[task].switch_prompts,
            run.recorded_adapter(task),
            calibration,
            ctx.cfg.abstain_keep,
            ctx.cfg.abstain_per_task,
        )
        save_switch(switch, run_dir, calibration)
        started = time.perf_counter()
        rows.append(ctx.score_row(lambda t: route_names(switch, ctx.data[t].eval_prompts), stage=i + 1))
        closed.append(ctx.score_row(lambda t: closed_set_tasks(switch, ctx.data[t].eval_prompts), stage=i + 1))
        stages.append(stage | _switch_stage_stats(ctx, switch, rows[-1], i + 1))
        stages[-1]["seconds"]["eval"] = _since(started)
        on_stage("switch", _switch_summary(ctx, rows, closed, stages))
    return _switch_summary(ctx, rows, closed, stages)


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 1)


def _switch_stage_stats(ctx: EvalContext, switch: Any, row: list, stage: int) -> dict[str, Any]:
    """Routing quality, routed vs oracle scores of the seen tasks, and general ability through the switch."""
    seen = ctx.tasks[:stage]
    stats = switch_stats(switch, {t: ctx.data[t].eval_prompts for t in seen}, ctx.ood)
    stats["routed_score"] = {t: row[j] for j, t in enumerate(seen)}
    stats["oracle_score"] = {t: ctx.score_task(t, [t] * len(ctx.data[t].eval)) for t in seen}
    stats["routing_loss"] = {t: stats["oracle_score"][t] - stats["routed_score"][t] for t in seen}
    stats["general"] = ctx.general.evaluate(ctx.pool, lambda prompts: route_names(switch, prompts))
    return stats


def _switch_summary(ctx: EvalContext, rows: list, closed: list, stages: list) -> dict[str, Any]:
    """R through the switch as a user gets it (abstaining), plus `closed_set`: the paper's argmax routing."""
    last = stages[-1]
    extra = {"switch_accuracy": last["switch_accuracy"], "routed_accuracy": last["routed_accuracy"]}
    extra |= {k: last.get(k) for k in ("abstain_id", "abstain_ood", "auroc", "fpr_at_95_tpr")}
    extra |= {"rehearsal": ctx.cfg.rehearsal, "switch_type": ctx.cfg.switch_type}
    paper = method_summary(closed, [], len(ctx.tasks))
    extra["closed_set"] = {k: paper[k] for k in ("R", "aa", "bwt", "fwt", "forgetting")}
    oracle = oracle_rows(stages, ctx.tasks)
    extra["oracle_R"] = oracle
    extra["routing_split"] = bwt_split(rows, oracle) if len(rows) == len(ctx.tasks) + 1 else {}
    extra["closed_set"]["routing_split"] = bwt_split(closed, oracle) if len(rows) == len(ctx.tasks) + 1 else {}
    return method_summary(rows, stages, len(ctx.tasks), **extra)


def run_sequential(ctx: EvalContext, run_dir: Path, on_stage: OnStage, replay: bool = False) -> dict[str, Any]:
    """One LoRA trained further task after task (with `replay`: plus a sample of every earlier task)."""
    method = "replay" if replay else "sequential"
    rows, stages = [ctx.base_row], []
    previous: tuple[Path, str] | None = None
    for i, task in enumerate(ctx.tasks):
        started = time.perf_counter()
        records = list(ctx.data[task].adapter_train)
        replayed = _replay_records(ctx, ctx.tasks[:i]) if replay else []
        data_file = write_training_file(run_dir / "data" / task / f"{method}_stage{i + 1}.jsonl", records + replayed)
        out = run_dir / "baselines" / method / f"stage{i + 1}"
        reuse = reuse_candidates(ctx, run_dir, task) if i == 0 else []
        how = ensure_adapter(ctx.cfg, data_file, out, reuse, init_from=previous[0] if previous else None)
        trained = time.perf_counter()
        name = f"__{method}_s{i + 1}__"
        ctx.pool.add(name, out)
        if previous:
            ctx.pool.remove(previous[1])
            shutil.rmtree(previous[0], ignore_errors=True)
        previous = (out, name)
        rows.append(ctx.score_row(ctx.fixed(name), stage=i + 1))
        stage = {"stage": i + 1, "task": task, "adapter": how, "replayed_records": len(replayed)}
        stage["general"] = ctx.general.evaluate(ctx.pool, fixed_route(name))
        stage["seconds"] = {"train": round(trained - started, 1), "eval": round(time.perf_counter() - trained, 1)}
        stages.append(stage)
        on_stage(method, method_summary(rows, stages, len(ctx.tasks), switch_accuracy=None))
    return method_summary(rows, stages, len(ctx.tasks), switch_accuracy=None)


def _replay_records(ctx: EvalContext, earlier: list[str]) -> list:
    """`rehearsal` of each earlier task's train records (at least one each), seeded per task."""
    out = []
    for task in earlier:
        train = ctx.data[task].train
        rng = random.Random(f"{ctx.cfg.seed}:{task}:replay")
        out += rng.sample(train, sample_size(len(train), ctx.cfg.rehearsal))
    return out


def run_multitask(ctx: EvalContext, run_dir: Path, on_stage: OnStage) -> dict[str, Any]:
    """One LoRA on every task's records at once; R = [base row, final row], no sequence metrics."""
    started = time.perf_counter()
    records = [r for task in ctx.tasks for r in ctx.data[task].adapter_train]
    data_file = write_training_file(run_dir / "data" / "multitask.jsonl", records)
    out = run_dir / "baselines" / "multitask" / "adapter"
    ensure_adapter(ctx.cfg, data_file, out, [out] if ctx.cfg.resume else [])
    trained = time.perf_counter()
    ctx.pool.add("__multitask__", out)
    row = ctx.score_row(ctx.fixed("__multitask__"))
    stage = {
        "stage": len(ctx.tasks),
        "task": "all",
        "general": ctx.general.evaluate(ctx.pool, fixed_route("__multitask__")),
    }
    stage["seconds"] = {"train": round(trained - started, 1), "eval": round(time.perf_counter() - trained, 1)}
    summary = {
        "R": [ctx.base_row, row],
        "aa": sum(row) / len(row),
        "bwt": None,
        "fwt": None,
        "forgetting": None,
        "switch_accuracy": None,
        "complete": True,
        "stages": [stage],
        "note": "trained once on all tasks together: R rows are the base and the final model; BWT/FWT do not apply",
    }
    on_stage("multitask", summary)
    return summary


RUNNERS = {
    "switch": run_switch,
    "sequential": run_sequential,
    "replay": lambda ctx, run_dir, on_stage: run_sequential(ctx, run_dir, on_stage, replay=True),
    "multitask": run_multitask,
}
