"""`forgetless continual run`: train a task sequence with SwitchCIT and the baselines, and measure forgetting.

    forgetless continual run --config configs/continual_builtin.yaml --output runs/cit

    from forgetless.continual import load_continual_config, run_continual
    results = run_continual(load_continual_config("configs/continual_builtin.yaml", output="runs/cit"))

The run directory (see README "Continual instruction tuning"):

    run.json             resolved config, base model id + fingerprint, task order, library version
    data/<task>/         the records each LoRA trained on (+ built-in tasks' train/eval files)
    adapters/<task>/     SwitchCIT's task LoRAs (PEFT layout), never modified after training
    switch/              switch.json (task id <-> adapter), head, rehearsal memory, calibration prompts
    baselines/<method>/  the latest adapter of each baseline
    results.json         R, AA, BWT, FWT, forgetting, switch stats per stage; baselines under `baselines`
    report.md, plots/    the Markdown report and its PNG plots

Everything is written atomically and results.json is rewritten after every stage (`"status": "running"`),
so after an error or Ctrl-C the directory still holds complete adapters, a loadable switch, and results
up to the last finished stage (`"status": "failed: ..."`). `resume=True` reuses every task adapter that
was trained on the same data with the same options; the rest is recomputed.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from forgetless._version import __version__
from forgetless.continual.config import ContinualConfig
from forgetless.continual.data import prepare_tasks
from forgetless.continual.run_dir import RunDir
from forgetless.errors import ConfigError, OutputError
from forgetless.utils.fileio import OUTPUT_MARKER, check_output_dir, mark_output, stale_temps, write_json_atomic

RESULTS_VERSION = 1


def run_continual(cfg: ContinualConfig) -> dict[str, Any]:
    """Run every method of `cfg` over its task sequence; returns the results written to results.json."""
    run_dir, ctx, results = prepare_run(cfg)
    return run_methods(ctx, run_dir, results)


def prepare_run(cfg: ContinualConfig) -> tuple[Path, Any, dict[str, Any]]:
    """Open the run directory, load the data and the base model, and score the base (row 0 of R)."""
    from forgetless.utils.console import status

    cfg.validate()
    run_dir = _open_run_dir(cfg)
    created = {p.name for p in run_dir.iterdir()} <= {OUTPUT_MARKER}  # new: nothing but our marker yet
    try:  # until stage 0 is scored nothing is worth keeping: a new run directory goes away on error
        data = prepare_tasks(cfg, run_dir)  # every data error surfaces before a model is loaded
        with status("loading the base model and scoring it zero-shot (row 0 of R)"):
            from forgetless.continual.evaluate import EvalContext
            from forgetless.continual.pool import AdapterPool

            pool = AdapterPool(cfg.model, batch_size=cfg.eval_batch_size)
            write_run_manifest(run_dir, cfg, pool.info)
            results = new_results(cfg, pool.info, data)
            ctx = EvalContext.build(cfg, data, pool)
    except BaseException:
        if created:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    results["base"] = {"R0": ctx.base_row, "general": ctx.base_general, **ctx.general.summary()}
    return run_dir, ctx, results


def fork_run(ctx: Any, cfg: ContinualConfig) -> tuple[Path, Any, dict[str, Any]]:
    """A second run over the same tasks and base (e.g. another rehearsal rate) sharing `ctx`'s loaded model,
    scored base row and answer cache. Its task adapters come from `cfg.reuse_adapters` when they match."""
    from dataclasses import replace

    cfg.validate()
    if cfg.task_names != ctx.cfg.task_names or cfg.model != ctx.cfg.model:
        raise ConfigError("fork_run needs the same task sequence and base model as the run it shares")
    run_dir = _open_run_dir(cfg)
    data = prepare_tasks(cfg, run_dir)
    write_run_manifest(run_dir, cfg, ctx.pool.info)
    results = new_results(cfg, ctx.pool.info, data)
    results["base"] = {"R0": ctx.base_row, "general": ctx.base_general, **ctx.general.summary()}
    return run_dir, replace(ctx, cfg=cfg, data=data), results


def run_methods(ctx: Any, run_dir: Path, results: dict[str, Any]) -> dict[str, Any]:
    """Run each method of `ctx.cfg` in turn, rewriting results.json after every stage; then the report."""
    from forgetless.continual.report import write_outputs
    from forgetless.continual.strategies import RUNNERS
    from forgetless.utils.console import progress

    started = time.perf_counter()

    def on_stage(method: str, summary: dict[str, Any]) -> None:
        place(results, method, summary)
        write_json_atomic(run_dir / "results.json", results)
        bar.update(task_id, completed=len(summary["stages"]))

    try:
        with progress() as bar:
            for method in ctx.cfg.methods:
                task_id = bar.add_task(method, total=1 if method == "multitask" else len(ctx.tasks))
                place(results, method, RUNNERS[method](ctx, run_dir, on_stage))
        results["status"] = "complete"
    except BaseException as exc:
        results["status"] = f"failed: {type(exc).__name__}: {str(exc)[:300]}"
        raise
    finally:
        results["seconds"] = round(time.perf_counter() - started, 1)
        results["generated_answers"] = ctx.pool.generated
        write_json_atomic(run_dir / "results.json", results)
        write_outputs(results, run_dir)
    return results


def place(results: dict[str, Any], method: str, summary: dict[str, Any]) -> None:
    """SwitchCIT's summary goes to the top level, a baseline's under `baselines.<method>`."""
    if method == "switch":
        results.update(summary)
        results["method"] = "switch"
    else:
        results["baselines"][method] = summary


def new_results(cfg: ContinualConfig, info: Any, data: dict[str, Any]) -> dict[str, Any]:
    """The results skeleton: method `switch` at the top level (null until it runs), baselines below."""
    tasks = [
        {
            "name": name,
            "metric": td.task.metric,
            "train_records": len(td.train),
            "adapter_records": len(td.adapter_train),
            "switch_prompts": len(td.switch_prompts),
            "calibration_prompts": len(td.calibration),
            "eval_records": len(td.eval),
        }
        for name, td in data.items()
    ]
    return {
        "version": RESULTS_VERSION,
        "status": "running",
        "base_model": info.model_id,
        "tasks": tasks,
        "methods": list(cfg.methods),
        "method": "switch" if "switch" in cfg.methods else None,
        "R": None,
        "aa": None,
        "bwt": None,
        "fwt": None,
        "forgetting": None,
        "switch_accuracy": None,
        "baselines": {},
        "config": cfg.to_dict(),
    }


def write_run_manifest(run_dir: Path, cfg: ContinualConfig, info: Any) -> Path:
    """run.json: what `add-task` and `route` need to continue or use the run."""
    import peft
    import torch
    import transformers

    manifest = {
        "version": RESULTS_VERSION,
        "forgetless_version": __version__,
        "base_model": info.model_id,
        "base_fingerprint": info.fingerprint,
        "model": cfg.model,
        "tasks": [t.to_dict() for t in cfg.tasks],
        "config": cfg.to_dict(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
    }
    return write_json_atomic(RunDir(run_dir).manifest_path, manifest)


def _open_run_dir(cfg: ContinualConfig) -> Path:
    """The run directory: new, replaced (`overwrite`), or continued (`resume`, needs its run.json)."""
    run_dir = Path(cfg.output)
    if cfg.resume:
        if RunDir(run_dir).manifest_path.is_file():
            return run_dir
        if not _killed_before_manifest(run_dir):
            raise OutputError(f"{run_dir}: nothing to resume (no run.json); drop --resume to start a new run")
        mark_output(run_dir)  # nothing finished yet: start in place (the data files are written again)
        return run_dir
    check_output_dir(run_dir, cfg.overwrite, inputs=[cfg.source, *_input_paths(cfg)])
    if cfg.overwrite and run_dir.is_dir():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    mark_output(run_dir)
    return run_dir


def _killed_before_manifest(run_dir: Path) -> bool:
    """A run directory of ours whose run was killed before it wrote run.json: empty, or our marker and data/
    (and the temp file of a run.json write the kill interrupted, which the next write removes)."""
    if not run_dir.is_dir():
        return False
    interrupted = {p.name for p in stale_temps(RunDir(run_dir).manifest_path)}
    names = {p.name for p in run_dir.iterdir()} - interrupted
    return names <= {OUTPUT_MARKER, "data"} and (not names or OUTPUT_MARKER in names)


def _input_paths(cfg: ContinualConfig) -> list[str]:
    """The files a run reads (task data, a model folder, a run whose adapters it reuses)."""
    paths = [path for task in cfg.tasks for path in (task.train, task.eval) if path]
    return paths + [p for p in (cfg.model, cfg.reuse_adapters) if p]
