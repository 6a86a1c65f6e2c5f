"""Does the switch decide the same with the new MiniLM encoder path as with the old one? Both suites, all prompts.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/switch_decisions.py                 # seeds 0-2, new path
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/switch_decisions.py --seeds 0 --paths new,bf16
    ... --runs experiments/results/continual_switch/work/builtin/prototype_1% ...    # + saved switches

The setup of experiments/continual_switch.py's "switch alone" part: for each suite (built-in, phrasing) and
seed, its tasks' prompts (switch training, calibration, eval) and the foreign prompts (chat + MMLU); every
switch type x rehearsal rate fitted on the OLD path's fp32 features (`routing_speed.OldMiniLM`, the encoder
before 2026-11-30), per-task thresholds at every abstain_keep of the experiment. A decision is (task,
abstained). For each path it counts the prompts whose decision differs when the same switch reads that
path's features ("old-fitted": a saved switch keeps deciding the same), and when the switch is also fitted
and calibrated on that path's features ("refitted": what a new run decides). Saved switch folders given with
--runs (fitted by the experiment) route their suite's prompts too. Also printed: the largest feature change,
and for the prototype switches the largest score change vs the smallest |score - threshold| of the old path.

Paths: `new` is `MiniLMEncoder` (length-grouped batches, exact up to float rounding); `bf16` is the new path
with the Linear layers in bfloat16 under CPU autocast, an approximate path that is not used: measured
2026-11-30 (seeds 0-2, both suites), `new` changed 0 of 433,440 decisions and 0 of 36,120 on the 12 saved
switches; `bf16` (~1.7x faster again) changed 186, 530 refitted and 12 on the saved switches.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

import continual_switch as experiment  # noqa: E402  (experiments/ on the path)
from routing_speed import OldMiniLM  # noqa: E402


class FeatureEncoder:
    """An encoder that looks its vectors up (every prompt was encoded once by one path)."""

    name, dim = "minilm", 384

    def __init__(self, features: dict):
        self.features = features

    def encode(self, prompts: list[str], batch_size: int = 64):
        import torch

        return torch.stack([self.features[p] for p in prompts]) if prompts else torch.zeros((0, self.dim))


def bf16_encoder():
    """The new encoder with bfloat16 Linear weights, run under CPU autocast (approximate)."""
    import torch

    from forgetless.adapters.switch.encoder import MiniLMEncoder

    encoder = MiniLMEncoder()
    for module in encoder.model.modules():
        if isinstance(module, torch.nn.Linear):
            module.to(torch.bfloat16)
    embed = encoder._embed

    def autocast_embed(rows):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return embed(rows)

    encoder._embed = autocast_embed
    return encoder


def make_path(name: str):
    from forgetless.adapters.switch.encoder import MiniLMEncoder

    return {"old": OldMiniLM, "new": MiniLMEncoder, "bf16": bf16_encoder}[name]()


def suite_data(cfg, seed: int, work: Path) -> tuple[dict, dict, list[str]]:
    """({task: TaskData}, {task: calibration prompts}, foreign prompts) of one suite and seed."""
    from forgetless.continual.data import prepare_tasks
    from forgetless.continual.general import ood_prompts

    base = replace(cfg, seed=seed, output=str(work / f"s{seed}"))
    data = prepare_tasks(base, Path(base.output))
    return data, {n: td.calibration for n, td in data.items()}, ood_prompts(base)


def all_prompts(data: dict, ood: list[str]) -> list[str]:
    prompts = [p for td in data.values() for p in td.switch_prompts + td.calibration + td.eval_prompts]
    return list(dict.fromkeys(prompts + list(ood)))


def fitted(cfg, kind: str, rate: float, data: dict, calibration: dict, features: dict):
    """A switch of this type and rehearsal rate fitted on `features` (the experiment's switch-alone setup)."""
    from forgetless.continual.switch_stage import add_task_to_switch, new_switch

    switch = new_switch(replace(cfg, switch_type=kind, rehearsal=rate), FeatureEncoder(features))
    for name, td in data.items():
        add_task_to_switch(switch, name, td.switch_prompts, name, calibration, None)
    return switch


def decisions(switch, features: dict, prompts: list[str]) -> list[tuple[str, bool]]:
    switch.encoder = FeatureEncoder(features)
    return [(r.task, r.abstained) for r in switch.route(prompts)]


def margins(switch, old: dict, new: dict, prompts: list[str]) -> dict[str, float]:
    """How far the old features' decisions are from flipping, and how much the new features move them:
    smallest top-1 minus top-2 logit and |score - threshold| (old), largest logit and score change."""
    from forgetless.adapters.switch import id_scores

    before, after = (switch.head.logits(FeatureEncoder(f).encode(prompts)) for f in (old, new))
    top2 = before.topk(2, dim=-1).values if before.shape[1] > 1 else None
    scores, moved = id_scores(before, switch.score), id_scores(after, switch.score)
    limits = [switch.limit(switch.task_names[i]) for i in before.argmax(dim=-1).tolist()]
    gaps = [abs(s - t) for s, t in zip(scores.tolist(), limits, strict=True) if t is not None]
    return {
        "logit_gap": float((top2[:, 0] - top2[:, 1]).min()) if top2 is not None else float("inf"),
        "logit_change": float((after - before).abs().max()),
        "threshold_gap": min(gaps, default=float("inf")),
        "score_change": float((moved - scores).abs().max()),
    }


def calibrated(switch, features: dict, calibration: dict, keep: float):
    from forgetless.continual.switch_stage import recalibrate

    switch.encoder = FeatureEncoder(features)
    recalibrate(switch, calibration, keep, per_task=True)
    return switch


def encode_all(encoder, prompts: list[str]) -> dict:
    return dict(zip(prompts, encoder.encode(prompts), strict=True))


class Tally:
    """Differing decisions and the closest calls, per path."""

    def __init__(self, paths: list[str]):
        counts = ("decisions", "old_fitted", "refitted", "saved_decisions", "saved")
        self.rows = {p: dict.fromkeys(counts, 0) for p in paths}
        self.worst = {
            p: {"logit_gap": 1e9, "logit_change": 0.0, "threshold_gap": 1e9, "score_change": 0.0} for p in paths
        }
        self.features = {p: {"max_abs": 0.0, "min_cos": 1.0} for p in paths}

    def add_margins(self, path: str, m: dict[str, float]) -> None:
        w = self.worst[path]
        for key in ("logit_gap", "threshold_gap"):
            w[key] = min(w[key], m[key])
        for key in ("logit_change", "score_change"):
            w[key] = max(w[key], m[key])

    def add_features(self, path: str, old: dict, new: dict) -> None:
        import torch

        a, b = torch.stack(list(old.values())), torch.stack([new[p] for p in old])
        f = self.features[path]
        f["max_abs"] = max(f["max_abs"], float((a - b).abs().max()))
        f["min_cos"] = min(f["min_cos"], float((a * b).sum(dim=-1).min()))


def differ(a: list, b: list) -> int:
    return sum(x != y for x, y in zip(a, b, strict=True))


def check_variant(cfg, kind: str, rate: float, setup: tuple, features: dict, tally: Tally) -> None:
    """One switch type and rehearsal rate of one suite and seed, at every abstain_keep."""
    data, calibration, prompts = setup
    old = fitted(cfg, kind, rate, data, calibration, features["old"])
    refit = {p: fitted(cfg, kind, rate, data, calibration, features[p]) for p in tally.rows}
    for keep in experiment.KEEPS:
        reference = decisions(calibrated(old, features["old"], calibration, keep), features["old"], prompts)
        for path, row in tally.rows.items():
            row["decisions"] += len(prompts)
            row["old_fitted"] += differ(reference, decisions(old, features[path], prompts))
            if kind == "prototype":
                tally.add_margins(path, margins(old, features["old"], features[path], prompts))
            mine = calibrated(refit[path], features[path], calibration, keep)
            row["refitted"] += differ(reference, decisions(mine, features[path], prompts))


def check_saved(run: Path, prompts: list[str], features: dict, tally: Tally) -> None:
    from forgetless.adapters.switch import Switch
    from forgetless.continual.switch_stage import read_calibration

    saved = {p for ps in read_calibration(run / "switch").values() for p in ps}
    if not saved <= set(prompts):
        print(f"  skipped {run}: its calibration prompts are not this suite's seed-0 prompts (older data?)")
        return
    switch = Switch.load(run / "switch", encoder=FeatureEncoder(features["old"]))
    reference = decisions(switch, features["old"], prompts)
    for path, row in tally.rows.items():
        row["saved_decisions"] += len(prompts)
        row["saved"] += differ(reference, decisions(switch, features[path], prompts))
    print(f"  saved switch {run}: {len(prompts)} prompts checked", flush=True)


def check_suite(suite: str, cfg, args, encoders: dict, tally: Tally, work: Path) -> None:
    import time

    for seed in args.seeds:
        data, calibration, ood = suite_data(cfg, seed, work / suite)
        prompts, features = all_prompts(data, ood), {}
        for name, encoder in encoders.items():
            started = time.perf_counter()
            features[name] = encode_all(encoder, prompts)
            ms = 1000 * (time.perf_counter() - started) / len(prompts)
            print(f"{suite} seed {seed}: {len(prompts)} prompts, {name} path {ms:.2f} ms/prompt", flush=True)
        for path in tally.rows:
            tally.add_features(path, features["old"], features[path])
        for kind in experiment.TYPES:
            for rate in experiment.RATES.values():
                check_variant(cfg, kind, rate, (data, calibration, prompts), features, tally)
        for run in (r for r in args.runs if seed == 0 and f"/{suite}/" in f"/{r.resolve()}/"):
            check_saved(run, prompts, features, tally)


def main() -> None:
    import tempfile

    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=list(experiment.SEEDS))
    parser.add_argument("--paths", default="new", help="comma-separated: new, bf16")
    parser.add_argument("--runs", type=Path, nargs="*", default=[], help="saved continual runs (seed 0) to check")
    args = parser.parse_args()
    torch.set_num_threads(1)
    paths = args.paths.split(",")
    encoders, tally = {name: make_path(name) for name in ["old", *paths]}, Tally(paths)
    with tempfile.TemporaryDirectory(prefix="switch-decisions-") as temp:
        for suite, cfg in experiment.suite_configs(False, Path(temp)).items():
            check_suite(suite, cfg, args, encoders, tally, Path(temp))
    print(f"seeds {args.seeds}; switch types {experiment.TYPES} x rehearsal {list(experiment.RATES)} x keep "
          f"{experiment.KEEPS}; a decision = (task, abstained) of one prompt under one switch")  # fmt: skip
    for path, row in tally.rows.items():
        print(f"{path}: differing decisions {row} | features vs old {tally.features[path]}")
        print(f"{path}: prototype margins (old smallest gap vs largest change) {tally.worst[path]}")


if __name__ == "__main__":
    main()
