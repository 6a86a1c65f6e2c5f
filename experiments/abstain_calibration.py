"""Abstain-threshold rules for the prototype switch side by side (issue 14), switch alone, no LLM, CPU.

    OMP_NUM_THREADS=1 .venv/bin/python experiments/abstain_calibration.py                # ~2 min, seeds 0-2
    OMP_NUM_THREADS=1 .venv/bin/python experiments/abstain_calibration.py --seeds 3,4,5,6,7,8,9  # ~4 min
    OMP_NUM_THREADS=1 .venv/bin/python experiments/abstain_calibration.py --cached       # rules only
    OMP_NUM_THREADS=1 .venv/bin/python experiments/abstain_calibration.py --readme-only  # README from the JSONs

For each suite of `continual_switch.py` (built-in, phrasing) and seed (the data split, calibration sample and
switch seed of its switch-alone rows), it encodes every task's switch prompts, held-out calibration prompts
and eval prompts, and the foreign prompts (20 chat + 40 MMLU), once (saved under work/); fits the prototype
head; then applies each threshold rule at keep 0.99. A rule sees only the tasks' held-out calibration
prompts, never a foreign prompt. Targets (issue 14): <= 1% of task eval prompts abstained and >= 90% of
foreign prompts abstained, on both suites and every seed. Seeds 0-2 chose the rule; 3-9 check it.
Writes experiments/results/abstain_calibration/{README.md, results_s<seeds>.json}.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path
from statistics import NormalDist

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "results" / "abstain_calibration"
WORK = ROOT / "experiments" / "results" / "continual_switch" / "work"
KEEP = 0.99
CHOSEN = "md: library per_task_thresholds"


def features_path(seeds: tuple[int, ...]) -> Path:
    return OUT / "work" / f"features_s{'-'.join(map(str, seeds))}.pt"


def dump_features(seeds: tuple[int, ...], path: Path) -> dict:
    """{(suite, seed): {"tasks": {name: {"switch", "calibration", "eval": [n, d]}}, "ood": [n, d]}}."""
    import shutil

    import continual_switch  # experiments/ is on sys.path when run as a script
    import torch

    from forgetless.adapters.switch import make_encoder
    from forgetless.continual.data import prepare_tasks
    from forgetless.continual.general import ood_prompts
    from forgetless.continual.switch_stage import CachedEncoder

    out, encoder = {}, None
    for suite, cfg in continual_switch.suite_configs(False, WORK).items():
        encoder = encoder or CachedEncoder(make_encoder(cfg.switch_encoder))
        for seed in seeds:
            base = replace(cfg, seed=seed, output=str(OUT / "work" / f"{suite}_s{seed}"))
            shutil.rmtree(base.output, ignore_errors=True)  # prepare_tasks keeps built-in data files it finds
            data, ood = prepare_tasks(base, Path(base.output)), ood_prompts(base)
            tasks = {
                name: {
                    "switch": encoder.encode(td.switch_prompts),
                    "calibration": encoder.encode(td.calibration),
                    "eval": encoder.encode(td.eval_prompts),
                    "eval_prompts": td.eval_prompts,
                }
                for name, td in data.items()
            }
            out[(suite, seed)] = {"tasks": tasks, "ood": encoder.encode(ood), "ood_prompts": ood}
            sizes = ", ".join(f"{n} {len(t['calibration'])}" for n, t in tasks.items())
            print(f"{suite} seed {seed}: held-out prompts {sizes}", file=sys.stderr)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, path)
    return out


# ---- rules: f(one task's calibration values, all tasks' values) -> limit; values: larger = farther


def normal_log(x: np.ndarray, keep: float) -> float:
    """The old rule: the keep quantile of a normal fit of log d²."""
    logs = np.log(x)
    return float(math.exp(logs.mean() + NormalDist().inv_cdf(keep) * logs.std(ddof=1)))


def normal_raw(x: np.ndarray, keep: float) -> float:
    return float(x.mean() + NormalDist().inv_cdf(keep) * x.std(ddof=1))


def conformal(x: np.ndarray, keep: float, beyond: float = math.inf) -> float:
    """Split conformal: the ⌈(n+1)·keep⌉-th smallest value; `beyond` when that rank exceeds n."""
    k = math.ceil((len(x) + 1) * keep - 1e-9)
    return float(np.sort(x)[k - 1]) if k <= len(x) else beyond


def scipy_fit(x: np.ndarray, keep: float, family: str) -> float:
    from scipy import stats

    if family == "t_log":
        df, loc, scale = stats.t.fit(np.log(x))
        return float(math.exp(stats.t.ppf(keep, df, loc, scale)))
    if family == "gamma":  # d² of a Gaussian: a scaled chi², i.e. a gamma law
        a, loc, scale = stats.gamma.fit(x, floc=0)
        return float(stats.gamma.ppf(keep, a, loc, scale))
    if family == "gumbel_log":
        loc, scale = stats.gumbel_r.fit(np.log(x))
        return float(math.exp(stats.gumbel_r.ppf(keep, loc, scale)))
    if family == "gev_log":
        c, loc, scale = stats.genextreme.fit(np.log(x))
        return float(math.exp(stats.genextreme.ppf(keep, c, loc, scale)))
    raise ValueError(family)


def pooled_z(cal: dict, keep: float, loo: bool) -> dict:
    """Per-task normal fit of log d² (location, spread); the tail z = split-conformal rank of the standardised
    values of every task pooled (leave-one-out residuals when loo), never below Φ⁻¹(keep)."""
    z_all, fits = [], {}
    for name, x in cal.items():
        logs = np.log(x)
        n, m, s = len(logs), logs.mean(), logs.std(ddof=1)
        if loo:
            loo_m = (logs.sum() - logs) / (n - 1)
            loo_s = np.array([np.delete(logs, i).std(ddof=1) for i in range(n)])
            z_all += ((logs - loo_m) / (loo_s * math.sqrt(1 + 1 / (n - 1)))).tolist()
            s *= math.sqrt(1 + 1 / n)
        else:
            z_all += ((logs - m) / s).tolist()
        fits[name] = (m, s)
    z = max(conformal(np.array(z_all), keep, max(z_all)), NormalDist().inv_cdf(keep))
    return {name: float(math.exp(m + z * s)) for name, (m, s) in fits.items()}


def library(cal: dict, keep: float) -> dict:
    """The switch's own rule (scores.per_task_thresholds) on −½ d², returned as d² limits."""
    from forgetless.adapters.switch.scores import per_task_thresholds

    out = per_task_thresholds({n: -0.5 * x for n, x in cal.items()}, keep, distance=True)
    return {n: -2 * v for n, v in out.items()}


def rules(kind: str) -> dict:
    """{name: (joint, f)}: joint f(cal dict) -> limits; else f(task values, all values) -> limit."""
    k = KEEP
    one = {
        "normal fit of log d² (old default)": lambda x, a: normal_log(x, k),
        "normal fit of log d², keep 0.999": lambda x, a: normal_log(x, 0.999),
        "conformal per task (never abstain if rank > n)": lambda x, a: conformal(x, k),
        "conformal per task (max if rank > n)": lambda x, a: conformal(x, k, float(x.max())),
        "max(normal fit, 1.05 · max)": lambda x, a: max(normal_log(x, k), 1.05 * float(x.max())),
        "max(normal fit, 1.10 · max)": lambda x, a: max(normal_log(x, k), 1.10 * float(x.max())),
        "max(normal fit, 1.20 · max)": lambda x, a: max(normal_log(x, k), 1.20 * float(x.max())),
        "Student t fit of log d²": lambda x, a: scipy_fit(x, k, "t_log"),
        "gamma fit of d²": lambda x, a: scipy_fit(x, k, "gamma"),
        "Gumbel fit of log d²": lambda x, a: scipy_fit(x, k, "gumbel_log"),
        "GEV fit of log d²": lambda x, a: scipy_fit(x, k, "gev_log"),
        "global conformal (one limit)": lambda x, a: conformal(a, k, float(a.max())),
        "max(normal fit, global conformal)": lambda x, a: max(normal_log(x, k), conformal(a, k, float(a.max()))),
        "max(normal fit, global normal fit)": lambda x, a: max(normal_log(x, k), normal_log(a, k)),
        "max(normal fit, max, global conformal)": lambda x, a: max(
            normal_log(x, k), float(x.max()), conformal(a, k, float(a.max()))
        ),
    }
    joint = {
        "pooled-z conformal (in-sample z)": lambda cal: pooled_z(cal, k, loo=False),
        "pooled-z conformal (leave-one-out z)": lambda cal: pooled_z(cal, k, loo=True),
        "library per_task_thresholds": lambda cal: library(cal, k),
    }
    if kind == "rmd":  # RMD can be negative: no log; normal fits on the values themselves
        one = {
            "normal fit": lambda x, a: normal_raw(x, k),
            "max(normal fit, global conformal)": lambda x, a: max(normal_raw(x, k), conformal(a, k, float(a.max()))),
            "max(normal fit, max, global conformal)": lambda x, a: max(
                normal_raw(x, k), float(x.max()), conformal(a, k, float(a.max()))
            ),
        }
        joint = {}
    return {name: (False, f) for name, f in one.items()} | {name: (True, f) for name, f in joint.items()}


def evaluate(store: dict) -> list[dict]:
    """One row per (score and rule, suite, seed)."""
    import torch

    from forgetless.adapters.switch.prototype import PrototypeHead
    from forgetless.adapters.switch.scores import auroc

    rows = []
    for (suite, seed), item in store.items():
        names = list(item["tasks"])
        head = PrototypeHead(item["ood"].shape[1])
        for name in names:
            head.add_task(item["tasks"][name]["switch"])
        # Relative Mahalanobis (Ren et al. 2021): a background Gaussian on every task's features. It must use the
        # task head's shrinkage: with its own Ledoit-Wolf estimate the score is inverted (AUROC 0.005).
        head.covariance()
        background = PrototypeHead(head.in_dim, shrinkage=head.used_shrinkage)
        background.add_task(torch.cat([item["tasks"][n]["switch"] for n in names]))

        def nearest(x, kind, head=head, background=background):
            d = head.distances(x).numpy()
            far = d.min(1) if kind == "md" else d.min(1) - background.distances(x).numpy()[:, 0]
            return d.argmin(1), far  # routing is the nearest task mean for both scores

        for kind in ("md", "rmd"):
            cal = {n: nearest(item["tasks"][n]["calibration"], kind)[1] for n in names}
            pooled = np.concatenate(list(cal.values()))
            evals = {n: nearest(item["tasks"][n]["eval"], kind) for n in names}
            ood_ids, ood_far = nearest(item["ood"], kind)
            for rule, (joint, f) in rules(kind).items():
                limits = f(cal) if joint else {n: f(cal[n], pooled) for n in names}
                abstained, own, right, per_task, in_far = [], [], [], {}, []
                for t, n in enumerate(names):
                    ids, far = evals[n]
                    flags = [far[i] > limits[names[ids[i]]] for i in range(len(far))]
                    abstained += flags
                    own += [not a and i == t for a, i in zip(flags, ids, strict=True)]
                    right += (ids == t).tolist()
                    per_task[n] = float(np.mean(flags))
                    in_far += far.tolist()
                ood_flags = [ood_far[i] > limits[names[ood_ids[i]]] for i in range(len(ood_far))]
                rows.append({
                    "rule": f"{kind}: {rule}", "suite": suite, "seed": seed,
                    "abstain_id": float(np.mean(abstained)), "abstain_ood": float(np.mean(ood_flags)),
                    "routed_accuracy": float(np.mean(own)), "switch_accuracy": float(np.mean(right)),
                    "auroc": auroc([-v for v in in_far], (-ood_far).tolist()), "per_task_abstain": per_task,
                })  # fmt: skip
    return rows


def _spread(values: list[float]) -> str:
    return f"{np.mean(values):.3f} [{min(values):.3f}, {max(values):.3f}]"


def met(r: dict) -> bool:
    return r["abstain_id"] <= 0.01 and r["abstain_ood"] >= 0.9


def candidates_table(rows: list[dict]) -> list[str]:
    groups: dict[str, dict[str, list[dict]]] = {}
    for r in rows:
        groups.setdefault(r["rule"], {}).setdefault(r["suite"], []).append(r)
    head = ["score: rule"]
    for suite in ("builtin", "phrasing"):
        head += [f"{suite}: task abstain", "foreign abstain", "AUROC", "both met"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for rule, by_suite in groups.items():
        cells = [f"**{rule}**" if rule == CHOSEN else rule]
        for suite in ("builtin", "phrasing"):
            rs = by_suite.get(suite, [])
            cells += [_spread([r[k] for r in rs]) for k in ("abstain_id", "abstain_ood", "auroc")]
            cells.append(f"{sum(met(r) for r in rs)}/{len(rs)}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def write_readme(results: list[dict]) -> str:
    wall = ", ".join(f"seeds {r['seeds'][0]}-{r['seeds'][-1]}: {r['minutes']} min" for r in results)
    lines = [
        "# Abstain thresholds for the prototype switch: candidates side by side (issue 14)",
        "",
        "`OMP_NUM_THREADS=1 .venv/bin/python experiments/abstain_calibration.py [--seeds ...]` on 2 shared CPU",
        f"cores, 1 torch thread; wall time {wall} (MiniLM encoding included).",
        "Switch alone (no LLM), prototype switch (MiniLM features, shared Ledoit-Wolf covariance), keep 0.99.",
        "A rule sees only the tasks' held-out calibration prompts (built-in: 50-233 per task; phrasing: 28-30",
        "per task), never a foreign prompt. Cells: mean [min, max] over seeds;",
        "both met: seeds with task abstain <= 0.01 AND foreign abstain >= 0.90 (issue 14's targets).",
        "md = Mahalanobis d² to the nearest task mean (the switch's score); rmd = relative Mahalanobis",
        "(Ren et al. 2021): d² − d² to one background Gaussian over every task's features (same shrinkage).",
        "Routing (nearest task mean) is the same for every row; own adapter = 1 − task abstain here.",
        "",
    ]
    for report in results:
        rows, seeds = report["rows"], report["seeds"]
        role = "chose the rule" if seeds == [0, 1, 2] else "checked the choice; not used to choose"
        lines += [f"## Seeds {', '.join(map(str, seeds))} ({role})", "", *candidates_table(rows), ""]
    lines += [
        "The chosen rule (bold; `scores.per_task_thresholds`, the switch's default now) is the same as",
        "`max(normal fit, max, global conformal)` in d²: per task the most lenient of the old normal fit of",
        "log d², the farthest of the task's own held-out prompts, and the split-conformal 0.99 quantile of",
        "every task's held-out d² pooled. Why the normal fit alone fails: on the built-in suite the held-out",
        "d² of capital, num2words, plural and translate_country have tails the fit does not see (seeds 0-2:",
        "their largest held-out prompt is 2.5-3.7 standard deviations of log d² above the mean; 1.3-2.3 on",
        "the phrasing suite); eval prompts such as 'Which city is the capital of Swaziland?' land there.",
        "A per-task rule cannot fix it alone: the built-in suite needs about z >= 3 on some tasks while the",
        "phrasing suite lets foreign prompts through above z = 2.3-2.5 (they sit close to antonym and",
        "past_tense). The pooled quantile works in the shared metric, where foreign prompts are farther than",
        "the tasks' held-out tails in absolute d² (seeds 0-2, built-in: foreign >= 1700, held-out <= 1100",
        "except plural's, up to 2550; phrasing: foreign mostly >= 1100, held-out <= 1070).",
    ]
    from forgetless.utils.fileio import write_text_atomic

    return write_text_atomic(OUT / "README.md", "\n".join(lines) + "\n").read_text()


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--cached", action="store_true", help="reuse the saved features of these seeds")
    parser.add_argument("--readme-only", action="store_true", help="re-render README.md from the saved JSONs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    if not args.readme_only:
        seeds = tuple(int(s) for s in args.seeds.split(","))
        path = features_path(seeds)
        store = torch.load(path, weights_only=False) if args.cached and path.is_file() else dump_features(seeds, path)
        rows = evaluate(store)
        OUT.mkdir(parents=True, exist_ok=True)
        report = {"seeds": list(seeds), "minutes": round((time.perf_counter() - started) / 60, 1), "rows": rows}
        (OUT / f"results_s{'-'.join(map(str, seeds))}.json").write_text(json.dumps(report, indent=1))
    print(write_readme([json.loads(p.read_text()) for p in sorted(OUT.glob("results_s*.json"))]))


if __name__ == "__main__":
    main()
