"""SwitchCIT vs sequential / replay / multitask LoRA on the five built-in tasks, embedded SmolLM2-135M, CPU.

    .venv/bin/python experiments/continual_switch.py            # full run, ~25 min on 2 CPU cores
    .venv/bin/python experiments/continual_switch.py --smoke    # 2 tasks, tiny sizes, ~3 min: plumbing only

What it does (settings: configs/continual_builtin.yaml):
1. One continual run with every method at the paper's 1% rehearsal (work/rehearsal_1pct/).
2. The switch alone again at 0.01% rehearsal (work/rehearsal_0.01pct/). Task adapters do not depend on the
   rehearsal rate, so they are copied from run 1, and the loaded model and answer cache are shared.
3. Switch-only ablation (no LLM): the class-balanced loss (our default) vs the paper's plain loss, at both
   rates: final closed-set accuracy and OOD AUROC.
Writes experiments/results/continual_switch/{README.md, results.json, *.png}.

Goals (issue 5): switch accuracy >= 0.97 at 1%; BWT >= -0.01 for SwitchCIT and clearly negative for
sequential fine-tuning.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "results" / "continual_switch"
CONFIG = ROOT / "configs" / "continual_builtin.yaml"
RATES = {"1%": 0.01, "0.01%": 0.0001}
STAGE_KEYS = ("switch_accuracy", "routed_accuracy", "abstain_id", "abstain_ood", "auroc", "fpr_at_95_tpr")


def smoke_overrides() -> dict:
    """Plumbing only: two tasks, a few records (2 optimizer steps per adapter: see `configs`)."""
    return dict(
        builtin_train=200, builtin_eval=6, max_train=16, general_qa=4, mmlu=4, ood_mmlu=4, calibration_size=5,
    )  # fmt: skip


def configs(smoke: bool, work: Path):
    from forgetless.continual import load_continual_config

    cfg = load_continual_config(CONFIG, output=str(work / "rehearsal_1pct"), overwrite=True)
    if smoke:
        cfg = replace(cfg, tasks=cfg.tasks[:2], train=replace(cfg.train, max_steps=2), **smoke_overrides())
    low = replace(
        cfg,
        output=str(work / "rehearsal_0.01pct"),
        methods=["switch"],
        rehearsal=RATES["0.01%"],
        reuse_adapters=cfg.output,
    )
    return cfg, low


def run_both(cfg, low):
    """Every method at 1%, then the switch alone at 0.01% sharing the model, answers and task adapters."""
    from forgetless.continual.runner import fork_run, prepare_run, run_methods

    run_dir, ctx, results = prepare_run(cfg)
    high = run_methods(ctx, run_dir, results)
    low_dir, low_ctx, low_results = fork_run(ctx, low)
    return ctx, high, run_methods(low_ctx, low_dir, low_results)


def switch_ablation(ctx) -> list[dict]:
    """Closed-set accuracy and AUROC of the final switch: balanced vs plain loss, at both rehearsal rates."""
    from forgetless.continual.switch_stage import add_task_to_switch, new_switch, switch_stats

    cfg, data, encoder, ood, rows = ctx.cfg, ctx.data, ctx.switch_encoder(), ctx.ood, []
    for rate_name, rate in RATES.items():
        for balanced in (True, False):
            run_cfg = replace(cfg, rehearsal=rate, switch_balanced=balanced)
            switch, calibration = new_switch(run_cfg, encoder), {}
            for name, td in data.items():
                calibration[name] = td.calibration
                add_task_to_switch(switch, name, td.switch_prompts, name, calibration, cfg.abstain_keep)
            stats = switch_stats(switch, {n: td.eval_prompts for n, td in data.items()}, ood)
            rows.append({"rehearsal": rate_name, "loss": "balanced" if balanced else "plain (paper)", **stats})
    return rows


def fmt(value, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def summary_rows(high: dict, low: dict) -> list[list[str]]:
    rows = []
    entries = [("SwitchCIT, 1% rehearsal", high), ("SwitchCIT, 0.01% rehearsal", low)]
    entries += [(f"… {label} closed set (no abstain)", s["closed_set"]) for label, s in (("1%", high), ("0.01%", low))]
    entries += [(f"{name} LoRA", s) for name, s in high["baselines"].items()]
    for label, s in entries:
        general = s["stages"][-1].get("general", {}) if s.get("stages") else {}
        metrics = [fmt(s["aa"]), fmt(s["bwt"], True), fmt(s["fwt"], True), fmt(s["forgetting"])]
        rows.append([label, *metrics, fmt(s.get("switch_accuracy")), fmt(general.get("qa")), fmt(general.get("mmlu"))])
    return rows


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def write_readme(high: dict, low: dict, ablation: list[dict], seconds: float, smoke: bool) -> str:
    tasks = [t["name"] for t in high["tasks"]]
    base = high["base"]
    head = ["method", "AA", "BWT", "FWT", "forgetting", "switch acc.", "QA kept", "MMLU"]
    lines = [
        "# SwitchCIT on the built-in task suite" + (" (SMOKE RUN: plumbing only, no meaning)" if smoke else ""),
        "",
        f"`{' '.join(['.venv/bin/python', 'experiments/continual_switch.py'] + (['--smoke'] if smoke else []))}`"
        f" — {seconds / 60:.1f} min; tasks in order: {', '.join(tasks)}; base `{high['base_model']}`.",
        f"Per task: {high['tasks'][0]['adapter_records']} LoRA records, {high['tasks'][0]['switch_prompts']} switch "
        f"prompts, {high['tasks'][0]['eval_records']} eval prompts; settings: `configs/continual_builtin.yaml`.",
        "",
        *table(head, summary_rows(high, low)),
        f"| base model (zero-shot) | {fmt(sum(base['R0']) / len(base['R0']))} | | | | | "
        f"{fmt(base['general'].get('qa'))} | {fmt(base['general'].get('mmlu'))} |",
        "",
        'AA / BWT / FWT / forgetting: see the formulas in the README ("Continual instruction tuning"). '
        "Switch acc.: closed-set task-id accuracy on all tasks' eval prompts after the last task. "
        "SwitchCIT rows route as a user gets it (prompts under the abstain threshold go to the base model); "
        "closed-set rows send every prompt to its argmax task (the paper's switch). "
        "QA kept: share of known facts (answered right by the base) still answered right; MMLU: zero-shot.",
        "",
        "## SwitchCIT per stage (1% rehearsal)",
        "",
    ]
    stage_rows = [[str(s["stage"]), s["task"], *(fmt(s.get(k)) for k in STAGE_KEYS)] for s in high["stages"]]
    lines += table(["stage", "task", "switch acc.", "routed right", "abstain (tasks)", "abstain (foreign)",
                    "AUROC", "FPR@95"], stage_rows)  # fmt: skip
    lines += ["", "## Switch loss: class-balanced (default) vs the paper's plain cross-entropy", ""]
    ab_rows = [
        [r["rehearsal"], r["loss"], fmt(r["switch_accuracy"]), fmt(r.get("auroc")), fmt(r.get("fpr_at_95_tpr"))]
        for r in ablation
    ]
    lines += table(["rehearsal", "switch loss", "switch acc.", "AUROC", "FPR@95"], ab_rows)
    lines += ["", "## Plots", "", "![R matrices](R_switch.png) ![](R_sequential.png)", "", "![](task_scores.png)", ""]
    return "\n".join(lines)


def publish(high: dict, low: dict, ablation: list[dict], seconds: float, smoke: bool, work: Path) -> None:
    from forgetless.utils.fileio import write_json_atomic, write_text_atomic

    for png in (work / "rehearsal_1pct" / "plots").glob("*.png"):
        shutil.copyfile(png, OUT / png.name)
    keep = ("R", "aa", "bwt", "fwt", "forgetting", "switch_accuracy", "closed_set", "stages", "note")
    slim = {
        "smoke": smoke,
        "seconds": round(seconds, 1),
        "tasks": high["tasks"],
        "base": high["base"],
        "switch_1pct": {k: high.get(k) for k in keep},
        "switch_0.01pct": {k: low.get(k) for k in keep},
        "baselines": {n: {k: s.get(k) for k in keep} for n, s in high["baselines"].items()},
        "switch_loss_ablation": ablation,
    }
    write_json_atomic(OUT / "results.json", slim)
    write_text_atomic(OUT / "README.md", write_readme(high, low, ablation, seconds, smoke))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="2 tasks, tiny sizes: check the plumbing (~3 min)")
    args = parser.parse_args()
    work = OUT / "work"
    OUT.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    cfg, low = configs(args.smoke, work)
    ctx, high_results, low_results = run_both(cfg, low)
    ablation = switch_ablation(ctx)
    seconds = time.perf_counter() - start
    publish(high_results, low_results, ablation, seconds, args.smoke, work)
    print((OUT / "README.md").read_text())
    if not args.smoke:
        ok = high_results["switch_accuracy"] >= 0.97 and high_results["bwt"] >= -0.01
        print("goals met" if ok else "GOALS NOT MET (see the table)", file=sys.stderr)


if __name__ == "__main__":
    main()
