"""The SwitchCIT switch inside a continual run: build, update, calibrate, measure, and save it with the run.

    switch = new_switch(cfg)                          # encoder features cached across updates and stats
    calibration["plural"] = held_out_plural_prompts
    add_task_to_switch(switch, "plural", prompts, "adapters/plural", calibration, keep=0.95)  # + recalibrate
    stats = switch_stats(switch, {"plural": eval_prompts}, foreign_prompts)   # accuracy, abstain, AUROC
    save_switch(switch, run_dir, calibration); switch, calibration = load_switch(run_dir)

The switch directory of a run (`RUN/switch/`) is `Switch.save`'s layout plus `calibration.json`: the
held-out prompts of every task (never trained on) that set the abstain threshold. Adapters are stored
relative to the run directory (`adapters/<task>`), so a run directory can be moved; `RunDir`
(continual/run_dir.py) reads it back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from forgetless.adapters.names import BASE
from forgetless.adapters.switch import Switch, make_encoder, ood_metrics
from forgetless.continual.config import ContinualConfig
from forgetless.continual.routing_loss import routing_breakdown
from forgetless.continual.run_dir import RunDir
from forgetless.errors import DataError
from forgetless.utils.fileio import write_json_atomic

CALIBRATION_FILE = "calibration.json"


class CachedEncoder:
    """Any prompt encoder, remembering each prompt's vector (the same prompts are encoded many times)."""

    def __init__(self, inner: Any):
        self.inner, self.name, self.dim = inner, inner.name, inner.dim
        self._cache: dict[str, Any] = {}

    def encode(self, prompts: list[str], batch_size: int = 64) -> Any:
        import torch

        missing = list(dict.fromkeys(p for p in prompts if p not in self._cache))
        if missing:
            self._cache.update(zip(missing, self.inner.encode(missing, batch_size=batch_size), strict=True))
        if not prompts:
            return torch.zeros((0, self.dim), dtype=torch.float32)
        return torch.stack([self._cache[p] for p in prompts])


def new_switch(cfg: ContinualConfig, encoder: Any = None) -> Switch:
    """An empty switch with the run's options (pass an encoder to share its cache between switches)."""
    encoder = encoder or CachedEncoder(make_encoder(cfg.switch_encoder))
    return Switch(
        encoder=encoder,
        fraction=cfg.rehearsal,
        score=cfg.switch_score or ("energy" if cfg.switch_type == "mlp" else None),
        epochs=cfg.switch_epochs,
        seed=cfg.seed,
        balanced=cfg.switch_balanced,
        switch_type=cfg.switch_type,
        shrinkage=cfg.switch_shrinkage,
    )


def load_switch(run_dir: Path) -> tuple[Switch, dict[str, list[str]]]:
    """A run's saved switch (with a caching encoder) and its calibration prompts per task."""
    run = RunDir(run_dir)
    manifest = run.switch_manifest()
    try:
        spec = manifest["encoder"]
    except (KeyError, TypeError) as exc:
        raise DataError(f"{run.switch_manifest_path}: cannot read the switch manifest ({exc})") from None
    switch = Switch.load(run.switch_dir, encoder=CachedEncoder(make_encoder(spec)))
    return switch, read_calibration(run.switch_dir)


def read_calibration(switch_dir: Path) -> dict[str, list[str]]:
    path = switch_dir / CALIBRATION_FILE
    if not path.is_file():
        return {}
    try:
        return {k: list(v) for k, v in json.loads(path.read_text(encoding="utf-8")).items()}
    except (OSError, json.JSONDecodeError, AttributeError) as exc:
        raise DataError(f"{path}: cannot read the switch's calibration prompts ({exc})") from None


def add_task_to_switch(
    switch: Switch,
    name: str,
    prompts: list[str],
    adapter: str,
    calibration: dict[str, list[str]],
    keep: float | None,
    per_task: bool = True,
) -> dict[str, Any]:
    """Add the task to the switch (mlp: retrain on its prompts + the memory), then set the thresholds again."""
    losses = switch.update(name, prompts, adapter)
    threshold = recalibrate(switch, calibration, keep, per_task)
    return {"switch_loss": losses[-1] if losses else None, "threshold": threshold, "memory": len(switch.memory)}


def recalibrate(
    switch: Switch, calibration: dict[str, list[str]], keep: float | None, per_task: bool = True
) -> float | dict[str, float] | None:
    """Abstain threshold(s) keeping at least about `keep` of the held-out prompts (per task, or global); None = never.

    A one-task mlp switch never abstains: its softmax is always 1, and its energy (the single logit) was
    measured useless for telling foreign prompts apart (AUROC 0.43 on the built-in suite). The prototype
    switch's distance works with one task too."""
    held = [p for task in switch.task_names for p in calibration.get(task, [])]
    one_mlp = switch.switch_type == "mlp" and len(switch.task_names) < 2
    if keep is None or not held or one_mlp:
        switch.threshold, switch.thresholds = None, None
        return None
    if per_task:
        return switch.calibrate_per_task(calibration, keep=keep)
    return switch.calibrate(held, keep=keep)


def save_switch(switch: Switch, run_dir: Path, calibration: dict[str, list[str]]) -> Path:
    """Write the switch and the calibration prompts of its tasks into RUN/switch/ (switch.json last)."""
    directory = RunDir(run_dir).switch_dir
    directory.mkdir(parents=True, exist_ok=True)
    write_json_atomic(directory / CALIBRATION_FILE, {t: calibration.get(t, []) for t in switch.task_names})
    return switch.save(directory)


def closed_set_tasks(switch: Switch, prompts: list[str]) -> list[str]:
    """The switch's argmax task per prompt, ignoring the abstain threshold (the paper's routing)."""
    saved = switch.threshold, switch.thresholds
    switch.threshold, switch.thresholds = None, None
    try:
        return [r.task for r in switch.route(prompts)]
    finally:
        switch.threshold, switch.thresholds = saved


def route_names(switch: Switch, prompts: list[str]) -> list[str | None]:
    """Adapter (task) name per prompt as a user gets it: None when the switch abstains to the base model."""
    return [None if r.task == BASE else r.task for r in switch.route(prompts)]


def switch_stats(switch: Switch, eval_prompts: dict[str, list[str]], ood: list[str]) -> dict[str, Any]:
    """Routing quality on the seen tasks' eval prompts and on foreign prompts.

    switch_accuracy: argmax task == true task (closed set, the paper's measure); routed_accuracy: the
    prompt reached its own adapter after abstaining (abstained prompts count as wrong); abstain_id /
    abstain_ood: share of eval / foreign prompts sent to the base; auroc and fpr_at_95_tpr: in-distribution
    (eval prompts of seen tasks) vs foreign, from the switch's score.
    """
    seen = [t for t in switch.task_names if t in eval_prompts]
    prompts = [p for t in seen for p in eval_prompts[t]]
    truth = [t for t in seen for _ in eval_prompts[t]]
    argmax = closed_set_tasks(switch, prompts)
    routed = route_names(switch, prompts)
    per_task = {t: _share(a == t for a, g in zip(argmax, truth, strict=True) if g == t) for t in seen}
    out = {
        "switch_accuracy": _share(a == g for a, g in zip(argmax, truth, strict=True)),
        "routed_accuracy": _share(r == g for r, g in zip(routed, truth, strict=True)),
        "switch_accuracy_per_task": per_task,
        "abstain_id": _share(r is None for r in routed),
        "routing": routing_breakdown(truth, routed),
        "threshold": switch.thresholds if switch.thresholds is not None else switch.threshold,
    }
    if ood:
        ood_routed = route_names(switch, ood)
        out["abstain_ood"] = _share(r is None for r in ood_routed)
        out.update(ood_metrics(switch.scores(prompts), switch.scores(ood)))
    return out


def _share(flags: Any) -> float:
    values = list(flags)
    return sum(bool(v) for v in values) / len(values) if values else 0.0
