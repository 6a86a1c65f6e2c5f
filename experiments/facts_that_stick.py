"""Facts that stick, knowledge that stays: the forgetless recipe against the paper's, and its ablation.

    .venv/bin/python experiments/facts_that_stick.py [--ns 20 50 100] [--seeds 0 1 2] [--arms ...] [--report-only]

On the embedded SmolLM2-135M-Instruct, on the CPU, through `forgetless.knowledge.runs.run_injection` (the
code of `forgetless inject`):
- facts: a seeded sample of `--per-relation` real countryinfo facts for each demo relation (capital,
  currency, demonym, region), probed once on the base (SliCK, 3 exemplar sets, greedy; cached);
- arms: `paper` (rank 1, +1 HighlyKnown per fact, as the demo); `forgetless` (the default recipe: its
  numbers are those of the scoped adapter, as `generate`/`serve` run it, and the table also shows the
  same adapter unscoped, as vLLM or plain PEFT run it); the default without one ingredient:
  `without_anchors` (and so without KL), `without_kl` (anchors by cross-entropy only), `without_phrasings`
  (the probe question only), `without_gate` (all 15 epochs), `without_fact_shots` (no few-shot fact
  records); `subject_anchors` (the default + half of the taught subjects' other known facts as anchors,
  the other half left in the retention set); `v1` (the recipe of 2026-11-29: zero-shot records only,
  no scope) and v1 without KL (`no_kl`); v1 + a candidate: `fact_shots` (one few-shot record per fact),
  `few_shot_gate`
  (the gate also waits for few-shot P_correct 0.95, or a 2-check plateau; `few_shot_gate_no_plateau`),
  `kl1` and `kl20` (the KL weight), `layers_0_14` /
  `kl1_layers_0_14` (LoRA on the FFN of the first 15 of 30 layers); `no_kl_*` (v1 before the KL term);
  `loramoe` (the recipe's records, anchors typed `world`, new facts `task`, LoRAMoE + LBC) at n = 50 only;
- per cell: reliability (few-shot P_correct), zero-shot reliability, generalization (held-out phrasing),
  HighlyKnown facts kept (never trained), the exact McNemar test, MMLU (114 q, 0-shot) with its paired
  s.e., exploded answers (over all facts, and over the facts never trained: the collapse onto trained
  answers), steps and wall time.
Writes experiments/results/facts_that_stick/{README.md, results.json, stick.png}; cells live in .../work/
(not committed) and a killed run resumes. Run two processes with OMP_NUM_THREADS=1 and disjoint --arms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from forgetless.demos.knowledge_audit import DEMO_RELATIONS
from forgetless.knowledge.countries import sample_country_facts
from forgetless.knowledge.facts import save_facts
from forgetless.knowledge.inject import InjectConfig
from forgetless.knowledge.recipe import RecipeSettings, forgetless_train_args
from forgetless.utils.fileio import write_json_atomic, write_text_atomic

OUT = Path(__file__).parent / "results" / "facts_that_stick"
V1 = {"fact_shots": 0, "scope": False}  # the recipe before few-shot fact records and the scope (2026-11-29)
ARMS = {
    "paper": None,
    "forgetless": RecipeSettings(),  # the default: v1 + one few-shot record per fact + the subject scope
    # the default recipe without one ingredient (its scope: the table's `kept, adapter alone` column)
    "without_anchors": RecipeSettings(anchor_facts=0),  # no anchors, hence no KL either
    "without_kl": RecipeSettings(),  # anchors by cross-entropy on the base's answers only (TRAIN_OVERRIDES)
    "without_phrasings": RecipeSettings(phrasings=1),  # the probe question only (+ its few-shot record)
    "without_gate": RecipeSettings(gate=False),  # all 15 epochs
    "without_fact_shots": RecipeSettings(fact_shots=0),  # zero-shot fact records only
    # a candidate: half the taught subjects' other known facts made anchors (the other half measured)
    "subject_anchors": RecipeSettings(subject_anchors=0.5),
    "v1": RecipeSettings(**V1),
    # v1 without one ingredient, or with a candidate (the rows measured before the scope existed)
    "no_kl": RecipeSettings(**V1),  # anchors by cross-entropy on the base's answers only (TRAIN_OVERRIDES)
    "few_shot_gate": RecipeSettings(**V1, gate_few_shot=0.95),  # the gate also waits for few-shot P_correct
    "few_shot_gate_no_plateau": RecipeSettings(**V1, gate_few_shot=0.95, gate_patience=1000),
    "fact_shots": RecipeSettings(**{**V1, "fact_shots": 4}),  # v1 + the few-shot fact records
    "kl1": RecipeSettings(**V1),
    "kl20": RecipeSettings(**V1),
    "layers_0_14": RecipeSettings(**V1),  # LoRA on the FFN of the first 15 of 30 layers
    "kl1_layers_0_14": RecipeSettings(**V1),
    # v1 before the KL term (anchor_kl 0), as first measured
    "no_kl_no_anchors": RecipeSettings(**V1, anchor_facts=0),
    "no_kl_no_phrasings": RecipeSettings(**V1, phrasings=1),
    "no_kl_no_gate": RecipeSettings(**V1, gate=False),
    "no_kl_few_shot_anchors": RecipeSettings(**V1, anchor_shots=4),
    "loramoe": RecipeSettings(),
}
NO_KL = {"anchor_kl": 0.0}
FIRST_HALF_FFN = r".*layers\.([0-9]|1[0-4])\.mlp\.(gate_proj|up_proj|down_proj)"
TRAIN_OVERRIDES = {"kl1": {"anchor_kl": 1.0}, "kl20": {"anchor_kl": 20.0}}
TRAIN_OVERRIDES["layers_0_14"] = {"target_modules": FIRST_HALF_FFN}
TRAIN_OVERRIDES["kl1_layers_0_14"] = {"anchor_kl": 1.0, "target_modules": FIRST_HALF_FFN}
TRAIN_OVERRIDES |= {arm: NO_KL for arm in ARMS if arm.startswith("no_kl") or arm == "without_kl"}
MEASURES = ("reliability", "reliability_zero_shot", "generalization", "highly_known_kept")
TARGETS = {"reliability": 0.95, "reliability_zero_shot": 0.95, "generalization": 0.85, "highly_known_kept": 0.95}


def sample_facts(per_relation: int, path: Path) -> Path:
    return save_facts(path, sample_country_facts(DEMO_RELATIONS, per_relation, "stick"))


def cell_config(arm: str, n: int, seed: int, facts: Path) -> InjectConfig:
    paper = arm == "paper"
    cfg = InjectConfig(
        facts=str(facts),
        output=str(OUT / "work" / f"{arm}_n{n}_s{seed}"),
        unknown=n,
        mixture="known" if paper else "none",
        k=1 if paper else 0,
        recipe="paper" if paper else "forgetless",
        seed=seed,
        exemplar_sets=3,
        samples=0,
        mmlu=114,
        mmlu_shots=0,
        general=32,
        overwrite=True,
    )
    if arm == "loramoe":
        cfg.train = forgetless_train_args()
        cfg.train.method, cfg.train.rank, cfg.train.alpha = "loramoe", None, None
    for name, value in TRAIN_OVERRIDES.get(arm, {}).items():
        setattr(cfg.train, name, value)
    return cfg


def run_cell(arm: str, n: int, seed: int, facts: Path) -> dict:
    from forgetless.knowledge.runs import run_injection

    cfg = cell_config(arm, n, seed, facts)
    done = Path(cfg.output) / "results.json"
    if done.is_file():
        return row_of(arm, n, seed, json.loads(done.read_text()))
    start = time.perf_counter()
    result = run_injection(cfg, ARMS[arm])
    result["wall_seconds"] = round(time.perf_counter() - start, 1)
    write_json_atomic(done, result)
    return row_of(arm, n, seed, result)


def row_of(arm: str, n: int, seed: int, result: dict) -> dict:
    row = {"arm": arm, "n": n, "seed": seed, **{m: result[m] for m in MEASURES}}
    row.update(kept_ci95=result["highly_known_kept_ci95"], mcnemar=result["known_mcnemar"])
    row.update(mmlu_delta=result.get("mmlu_delta"), mmlu_delta_stderr=result.get("mmlu_delta_stderr"))
    row.update(exploded=[e["answer"] for e in result["exploded_answers"]], steps=result.get("train_steps"))
    untrained = result.get("exploded_untrained")  # cells run before 2026-11-30 (later) lack it
    row.update(exploded_untrained=None if untrained is None else [e["answer"] for e in untrained])
    row.update(seconds=result.get("wall_seconds"), records=result["train_records"])
    alone = result.get("unscoped") or result  # the adapter on every prompt (a cell without a scope is that)
    row.update(
        kept_unscoped=alone["highly_known_kept"], exploded_unscoped=[e["answer"] for e in alone["exploded_answers"]]
    )
    row.update(scoped="scope" in result)
    return row


def table(rows: list[dict]) -> str:
    lines = [
        "| arm | n | seeds | reliability | zero-shot | held-out | HighlyKnown kept | kept, adapter alone | MMLU Δ "
        "| exploded | exploded, untrained facts | steps |"
    ]
    lines.append("|" + "---|" * 12)
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["arm"], row["n"]), []).append(row)
    for (arm, n), group in groups.items():
        cells = [_mean(group, m) for m in MEASURES]
        if len(group) == 1:  # one seed: show the exact interval of the retention share
            low, high = group[0]["kept_ci95"]
            cells[-1] += f" [{low:.2f}, {high:.2f}]"
        cells.append(_mean(group, "kept_unscoped") if all(r["scoped"] for r in group) else "(same)")
        mmlu = _mean(group, "mmlu_delta", signed=True) if group[0]["mmlu_delta"] is not None else "—"
        exploded = sum(len(r["exploded"]) for r in group)
        untrained = [r.get("exploded_untrained") for r in group]
        collapse = "—" if None in untrained else str(sum(len(u) for u in untrained))
        steps = statistics.mean(r["steps"] or 0 for r in group)
        tail = f" | {mmlu} | {exploded} | {collapse} | {steps:.0f} |"
        lines.append(f"| {arm} | {n} | {len(group)} | " + " | ".join(cells) + tail)
    return "\n".join(lines)


def _mean(group: list[dict], key: str, signed: bool = False) -> str:
    values = [r[key] for r in group]
    text = f"{statistics.mean(values):+.3f}" if signed else f"{statistics.mean(values):.3f}"
    return text + (f" ({min(values):.2f}–{max(values):.2f})" if len(values) > 1 else "")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from forgetless.utils.plots import save_figure

    arms = list(dict.fromkeys(r["arm"] for r in rows))
    fig, ax = plt.subplots(figsize=(max(10, 0.9 * len(arms)), 4.5))
    width = 0.8 / len(MEASURES)
    for i, measure in enumerate(MEASURES):
        means = [statistics.mean(r[measure] for r in rows if r["arm"] == a) for a in arms]
        ax.bar([x + i * width for x in range(len(arms))], means, width, label=measure)
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(arms))], arms, rotation=30, ha="right", fontsize=8)
    ax.axhline(0.95, color="grey", linestyle="--", linewidth=0.8)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    ax.set_title("facts that stick: mean over the cells run (dashed: the 0.95 target)")
    save_figure(fig, path)


def findings(rows: list[dict]) -> list[str]:
    """Each arm against its reference (same n and seed): what it teaches and what it keeps."""
    ours = {(r["n"], r["seed"]): r for r in rows if r["arm"] == "forgetless"}
    v1 = {(r["n"], r["seed"]): r for r in rows if r["arm"] == "v1"}
    lines = [
        "## Against the reference (same n, same seed): v1 for its variants, the forgetless recipe for the rest",
        "",
    ]
    for r in rows:
        v1_variant = r["arm"] != "v1" and ARMS[r["arm"]] is not None and not ARMS[r["arm"]].scope
        base = (v1 if v1_variant else ours).get((r["n"], r["seed"]))
        if base is None or base is r:
            continue
        lines.append(
            f"- {r['arm']} vs {base['arm']} (n={r['n']}, seed {r['seed']}): reliability {r['reliability']:.2f} vs "
            f"{base['reliability']:.2f}; held-out {r['generalization']:.2f} vs {base['generalization']:.2f}; "
            f"HighlyKnown kept {r['highly_known_kept']:.2f} vs {base['highly_known_kept']:.2f} "
            f"(lost/gained {r['mcnemar']['lost']}/{r['mcnemar']['gained']} vs "
            f"{base['mcnemar']['lost']}/{base['mcnemar']['gained']})." + same_facts(r, base)
        )
    return lines + verdict([r for r in ours.values() if r["n"] == 50])


def same_facts(row: dict, base: dict) -> str:
    """When two cells drew other anchors, their retention sets differ: the facts lost among those both
    measure (" " + sentence), or "" when the sets are the same or cannot be rebuilt."""
    kept = [retention_after(r) for r in (row, base)]
    if None in kept or kept[0].keys() == kept[1].keys():
        return ""
    common = kept[0].keys() & kept[1].keys()
    lost = [sum(after[i] != "HighlyKnown" for i in common) for after in kept]
    return f" On the {len(common)} HighlyKnown facts both measure (other anchors): lost {lost[0]} vs {lost[1]}."


def retention_after(row: dict) -> dict[str, str] | None:
    """{retention fact id: its category after} of a recipe cell, the anchors drawn again as the run drew them."""
    from forgetless.knowledge.facts import load_facts
    from forgetless.knowledge.recipe import choose_anchors

    settings, folder = ARMS[row["arm"]], OUT / "work" / f"{row['arm']}_n{row['n']}_s{row['seed']}"
    if settings is None or not (folder / "facts_after.jsonl").is_file():
        return None
    facts = load_facts(OUT / "work" / "facts.jsonl")
    before, after = (_categories(folder / f"facts_{when}.jsonl") for when in ("before", "after"))
    trained = set(json.loads((folder / "results.json").read_text())["trained_fact_ids"])
    new = [f for f in facts if f.id in trained]
    _, retention = choose_anchors(facts, before, new, settings.anchor_facts, row["seed"], settings.subject_anchors)
    return {f.id: after[f.id] for f in retention if f.id in after}


def _categories(path: Path) -> dict[str, str]:
    return {row["fact_id"]: row["category"] for row in map(json.loads, path.read_text().splitlines())}


def verdict(cells: list[dict]) -> list[str]:
    """The targets against the mean of the forgetless recipe's n = 50 cells, and every cell below one."""
    if not cells:
        return []
    means = {m: statistics.mean(r[m] for r in cells) for m in TARGETS}
    said = [f"{m} {means[m]:.3f} ({'met' if means[m] >= TARGETS[m] else 'MISSED'})" for m in TARGETS]
    below = [f"{m} {r[m]:.3f} (seed {r['seed']})" for r in cells for m in TARGETS if r[m] < TARGETS[m]]
    lines = ["", f"**Targets, n = 50, mean of {len(cells)} seeds:** " + "; ".join(said) + "."]
    return lines + ([f"Cells below a target: {'; '.join(below)}."] if below else [])


def write_report(rows: list[dict], args) -> None:
    write_json_atomic(OUT / "results.json", rows)
    plot(rows, OUT / "stick.png")
    text = [
        "# Facts that stick, knowledge that stays",
        "",
        f"Command: `OMP_NUM_THREADS=1 .venv/bin/python experiments/facts_that_stick.py {_flags(args)}` "
        f"(the cells took {sum(r['seconds'] or 0 for r in rows) / 60:.0f} min, one torch thread each, two processes "
        "on the 2-core machine)."
        + (" Only the cells that were run are listed (`--report-only`)." if args.report_only else ""),
        "",
        "Targets (n = 50, 3 seeds): " + ", ".join(f"{k} ≥ {v}" for k, v in TARGETS.items()) + ".",
        "",
        "Measures are those of the adapter as `forgetless generate` and `serve` run it: with its scope when the "
        "arm has one (questions that name no taught subject go to the base). `kept, adapter alone`: the same "
        "adapter on every prompt (plain PEFT, vLLM); `(same)`: the arm has no scope.",
        "",
        table(rows),
        "",
        "![measures per arm](stick.png)",
        "",
        *findings(rows),
        "",
        "Per-cell numbers, intervals and McNemar tests are in `results.json`.",
    ]
    write_text_atomic(OUT / "README.md", "\n".join(text) + "\n")


def _flags(args) -> str:
    ns, seeds = " ".join(map(str, args.ns)), " ".join(map(str, args.seeds))
    return f"--ns {ns} --seeds {seeds} --arms {' '.join(args.arms)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ns", type=int, nargs="+", default=[20, 50, 100])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--per-relation", type=int, default=100)
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    facts = sample_facts(args.per_relation, OUT / "work" / "facts.jsonl")
    rows = []
    for arm in args.arms:
        for n in [50] if arm == "loramoe" else args.ns:
            for seed in args.seeds:
                done = Path(cell_config(arm, n, seed, facts).output) / "results.json"
                if args.report_only and not done.is_file():
                    continue
                rows.append(run_cell(arm, n, seed, facts))
                print(json.dumps(rows[-1]), flush=True)
    write_report(rows, args)


if __name__ == "__main__":
    main()
