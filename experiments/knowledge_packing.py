"""How much knowledge can a LoRA pack without harm? (Pletenev et al., 2025) on the embedded 135M model.

    .venv/bin/python experiments/knowledge_packing.py [--ns 10 50 100 250] [--seeds 0] [--per-relation 100]

The sweep of the paper's Tables 2-4 on SmolLM2-135M-Instruct, on the CPU, through the same code as
`forgetless inject --config` (`forgetless.knowledge.sweep.run_sweep`):
- facts: a seeded sample of `--per-relation` real countryinfo facts for each of 7 relations;
- probe the base (SliCK, 3 few-shot exemplar sets, greedy) once; every cell shares that probe and the
  base's MMLU / answer snapshot (cached);
- cells: n in --ns Unknown facts (seeded sample), mixtures unknown-only, +1 HighlyKnown per unknown fact,
  +1 paraphrase per unknown fact; the paper's LoRA (rank 1, alpha 2, rsLoRA, gate/up/down, lr 1e-3,
  10 epochs), loss on the answer;
- after each cell: reliability on the n facts, re-probe of the n facts + a seeded sample of
  --audit-facts others shared by all cells (transition matrix, shifts on the facts not injected),
  zero-shot answer distribution and refusals on those, MMLU (--mmlu questions, 2 per topic, 0-shot
  loglik: 5-shot prompts are ~5x longer, too slow for 12 cells on a CPU) with a paired s.e.
  `--mixtures` runs a part of the grid (two processes can share the work; finished cells are reused).
Writes experiments/results/knowledge_packing/{README.md, results.json, sweep.png, shifts.png} and checks
each of the paper's five findings against the numbers. Cells live in .../work/ (not committed); a killed
run resumes (finished cells and probes are reused).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from forgetless.knowledge.countries import sample_country_facts
from forgetless.knowledge.facts import save_facts
from forgetless.knowledge.inject import InjectConfig
from forgetless.knowledge.sweep import cell_name, run_sweep, sweep_table
from forgetless.utils.fileio import write_json_atomic, write_text_atomic

RELATIONS = ("capital", "currency", "demonym", "official_language", "subregion", "calling_code", "region")
MIXTURES = {"none": 0, "known": 1, "paraphrase": 1}
OUT = Path(__file__).parent / "results" / "knowledge_packing"


def sample_facts(per_relation: int, path: Path) -> Path:
    return save_facts(path, sample_country_facts(RELATIONS, per_relation, "packing"))


def run(ns: list[int], seeds: list[int], per_relation: int, mmlu: int, audit: int, mixtures: list[str]) -> list[dict]:
    work = OUT / "work"
    facts = sample_facts(per_relation, work / "facts.jsonl")
    rows = []
    for mixture in mixtures:  # k differs per mixture, so one grid per mixture
        k = MIXTURES[mixture]
        base = InjectConfig(
            recipe="paper",
            facts=str(facts),
            output=str(work / "sweep"),
            mixture=mixture,
            k=k,
            exemplar_sets=3,
            samples=0,
            mmlu=mmlu,
            mmlu_shots=0,
            audit_facts=audit,
        )
        rows += run_sweep(base, {"unknown": ns, "seed": seeds}, on_cell=_print_cell)
    return rows


def finished_rows(ns: list[int], seeds: list[int], mixtures: list[str]) -> list[dict]:
    """Rows of the cells that finished (for --report-only: rebuild the page without training)."""
    from forgetless.knowledge.sweep import _row

    rows = []
    for mixture in mixtures:
        for n in ns:
            for seed in seeds:
                cfg = InjectConfig(unknown=n, mixture=mixture, k=MIXTURES[mixture], seed=seed, recipe="paper")
                done = OUT / "work" / "sweep" / cell_name(n, mixture, cfg.k, seed) / "results.json"
                if done.is_file():
                    rows.append(_row(cfg, json.loads(done.read_text())))
    return rows


def _print_cell(row: dict) -> None:
    print(
        f"n={row['unknown']} {row['mixture']} s{row['seed']}: reliability {row['reliability']:.3f}, "
        f"MMLU {row['mmlu_before']:.3f}->{row['mmlu_after']:.3f}, shifts {row['shifts']}",
        flush=True,
    )


def cell_dir(row: dict) -> Path:
    """Where a sweep row's cell lives (its adapter, probes and results.json)."""
    return OUT / "work" / "sweep" / cell_name(row["unknown"], row["mixture"], row["k"], row["seed"])


def cell_details(rows: list[dict]) -> list[dict]:
    """Per cell: the untrained-fact shifts and the most frequent answers after (from the cell's results)."""
    for row in rows:
        cell = cell_dir(row)
        result = json.loads((cell / "results.json").read_text())
        row["shifts_untrained"] = result["shifts_untrained"]
        row["top_after"] = result["answers_after"]["top"][:3]
        row["top_before"] = result["answers_before"]["top"][:3]
        row["exploded"] = [e["answer"] for e in result["exploded_answers"]]
        row["trained_objects_in_top"] = _trained_objects_in_top(result, cell)
        row["facts"] = result["facts"]
        row["mmlu_n"] = result.get("mmlu_n")
    return rows


def exemplar_draw_noise(rows: list[dict]) -> str | None:
    """Base-model categories of the same facts under two seeds' exemplar draws (same weights, same engine)."""
    by_seed: dict[int, dict[str, str]] = {}
    for row in rows:
        cell = cell_dir(row)
        for line in (cell / "facts_before.jsonl").read_text().splitlines():
            fact = json.loads(line)
            by_seed.setdefault(row["seed"], {})[fact["fact_id"]] = fact["category"]
    if len(by_seed) < 2:
        return None
    (seed_a, cats_a), (seed_b, cats_b) = sorted(by_seed.items())[:2]
    shared = sorted(set(cats_a) & set(cats_b))
    moved = sum(cats_a[f] != cats_b[f] for f in shared)
    unknown = [f for f in shared if cats_a[f] == "Unknown"]
    not_unknown = sum(cats_b[f] != "Unknown" for f in unknown)
    return (
        f"**SliCK with 3 exemplar sets is noisy.** The base model, same weights, same engine, probed with seed "
        f"{seed_a}'s and seed {seed_b}'s exemplar draws: {moved} of {len(shared)} shared facts change category; "
        f"{not_unknown} of the {len(unknown)} seed-{seed_a} Unknown facts are not Unknown under seed {seed_b}. "
        "Before/after comparisons inside a cell use the same exemplars, so this noise does not enter the "
        "shift counts; for stable categories probe with more sets (`--exemplar-sets`, default 10 as in the paper)."
    )


def _trained_objects_in_top(result: dict, cell: Path) -> int:
    """How many of the 3 most frequent zero-shot answers after training are objects of trained facts."""
    from forgetless.knowledge.answers import normalize_answer

    lines = (cell / "train.jsonl").read_text().splitlines()
    trained = {json.loads(line)["response"].removeprefix("Answer: ") for line in lines}
    trained = {normalize_answer(t) for t in trained}
    return sum(normalize_answer(t["answer"]) in trained for t in result["answers_after"]["top"][:3])


def findings(rows: list[dict]) -> list[tuple[str, str, str]]:
    """(paper finding, what we measured, holds?) for each of the paper's five findings."""
    rel = min(r["reliability"] for r in rows)
    drops = [(r["mmlu_after"] - r["mmlu_before"], r["mmlu_delta_stderr"], r) for r in rows]
    worst, worst_se, worst_row = min(drops, key=lambda d: d[0])
    best, best_se, _ = max(drops, key=lambda d: d[0])
    beyond = sum(d < -2 * se for d, se, _ in drops)
    up = sum(d > 2 * se for d, se, _ in drops)
    neg_over_pos = sum(r["shifts_untrained"]["negative"] > r["shifts_untrained"]["positive"] for r in rows)
    large = [r for r in rows if r["unknown"] >= 100]
    big_neg = sum(r["shifts_untrained"]["negative"] > r["shifts_untrained"]["positive"] for r in large)
    exploding = sum(bool(r["exploded"]) for r in rows)
    top_trained = sum(r["trained_objects_in_top"] > 0 for r in rows)
    ref_b = max(r["refusal_before"] for r in rows)
    ref_a = [r["refusal_after"] for r in rows]
    big = [r for r in rows if r["unknown"] == max(x["unknown"] for x in rows)]
    return [
        (
            "reliability ≈ 1.0 up to 500 facts (rank-1 LoRA)",
            f"lowest mean reliability over all cells {rel:.3f}; at n={big[0]['unknown']} (per seed): "
            + ", ".join(
                f"{m} " + " / ".join(f"{r['reliability']:.3f}" for r in big if r["mixture"] == m)
                for m in dict.fromkeys(r["mixture"] for r in big)
            ),
            "holds" if rel >= 0.9 else "does not hold",
        ),
        (
            "MMLU drops, by up to 24 points",
            f"largest drop {worst * 100:+.1f} points ± {worst_se * 100:.1f} (n={worst_row['unknown']}, "
            f"{worst_row['mixture']}); base {rows[0]['mmlu_before']:.3f}; largest rise {best * 100:+.1f} ± "
            f"{best_se * 100:.1f}; cells beyond 2 s.e.: {beyond} down, {up} up",
            "holds"
            if beyond
            else "not measurable at this scale (no drop beyond 2 s.e.; a below-chance base rises toward 0.25)"
            if up and rows[0]["mmlu_before"] < 0.25
            else "not measurable at this scale (within 2 s.e.)",
        ),
        (
            "negative shifts usually above positive ones",
            f"negative > positive (facts not injected) in {neg_over_pos}/{len(rows)} cells; "
            f"at n ≥ 100: {big_neg}/{len(large)}",
            "holds" if neg_over_pos > len(rows) / 2 else "does not hold",
        ),
        (
            "answers explode toward a few trained objects",
            f"cells with exploded answers: {exploding}/{len(rows)}; a trained object among the 3 most frequent "
            f"zero-shot answers after: {top_trained}/{len(rows)}",
            "holds" if exploding > len(rows) / 2 else "partly" if exploding else "does not hold",
        ),
        (
            "refusals fall from 15% to near 0",
            f"base refusal rate {ref_b:.1%}; after: {min(ref_a):.1%}–{max(ref_a):.1%}",
            "not testable (the base never refuses)"
            if ref_b < 0.02
            else ("holds" if max(ref_a) < ref_b / 2 else "does not hold"),
        ),
    ]


def write_results(rows: list[dict], minutes: float, args) -> None:
    rows = cell_details(rows)
    write_json_atomic(OUT / "results.json", rows)
    from forgetless.knowledge.sweep import _plot

    _plot(rows, OUT / "sweep.png")
    _plot_shifts(rows, OUT / "shifts.png")
    for row in rows:
        if row["unknown"] == max(args.ns) and row["seed"] == args.seeds[0]:
            cell = cell_dir(row)
            shutil.copyfile(cell / "transitions.png", OUT / f"transitions_{cell.name}.png")
    write_text_atomic(OUT / "README.md", report_text(rows, minutes, args))


def _seed_text(rows: list[dict]) -> str:
    """Which seeds each n ran with, e.g. 'seeds 0, 1 (n=250: seed 0 only)'."""
    seeds_by_n = {
        n: sorted({r["seed"] for r in rows if r["unknown"] == n}) for n in sorted({r["unknown"] for r in rows})
    }
    every = sorted(set.union(*(set(s) for s in seeds_by_n.values())))
    short = [f"n={n}: seed {', '.join(map(str, s))} only" for n, s in seeds_by_n.items() if s != every]
    text = f"seed{'s' if len(every) > 1 else ''} {', '.join(map(str, every))} per cell"
    return text + (f" ({'; '.join(short)})" if short else "")


def report_text(rows: list[dict], minutes: float, args) -> str:
    lines = [
        "# Knowledge packing on SmolLM2-135M-Instruct",
        "",
        f"`.venv/bin/python experiments/knowledge_packing.py --ns {' '.join(map(str, args.ns))} "
        f"--seeds {' '.join(map(str, args.seeds))} --per-relation {args.per_relation} "
        f"--audit-facts {args.audit_facts} --mmlu {args.mmlu}` "
        f"({'page rebuilt from the finished cells' if args.report_only else f'{minutes:.0f} min'}; "
        f"finished cells are reused). {len(RELATIONS)} relations x {args.per_relation} real country facts, "
        f"re-probed after: the n trained + {args.audit_facts} shared others; SliCK with 3 few-shot exemplar sets, "
        "greedy; the paper's LoRA recipe "
        f"(rank 1, alpha 2, rsLoRA, gate/up/down, lr 1e-3, 10 epochs, batch 8, loss on the answer); MMLU "
        f"{rows[0].get('mmlu_n', '?')} questions 0-shot loglik; {_seed_text(rows)}.",
    ]
    missing = [
        f"n={n} {m}"
        for m in MIXTURES
        for n in args.ns
        if not any(r["unknown"] == n and r["mixture"] == m for r in rows)
    ]
    if missing:
        lines += ["", f"**Not run (out of time on the 2-core CPU):** {', '.join(missing)}."]
    lines += [
        "",
        "## The paper's findings at our scale",
        "",
        "| finding (Llama-3.1-8B) | measured here | verdict |",
        "|---|---|---|",
    ]
    lines += [f"| {a} | {b} | **{c}** |" for a, b, c in findings(rows)]
    noise = exemplar_draw_noise(rows)
    lines += ["", noise] if noise else []
    lines += ["", "## Results (Tables 2-4 shape)", "", sweep_table(rows), "", "Shifts on facts not injected:", ""]
    lines += ["| n | mixture | seed | positive | negative | top-3 answers after | exploded |", "|---|" * 7]
    for r in rows:
        top = ", ".join(f"{t['answer']} ({t['count']})" for t in r["top_after"])
        s = r["shifts_untrained"]
        lines.append(
            f"| {r['unknown']} | {r['mixture']} | {r['seed']} | {s['positive']} | {s['negative']} | {top} | "
            f"{', '.join(r['exploded'][:4]) or '—'} |"
        )
    lines += ["", "![reliability and MMLU vs n](sweep.png)", "", "![shifts vs n](shifts.png)", ""]
    lines += [f"![{p.stem}]({p.name})" for p in sorted(OUT.glob("transitions_*.png"))]
    return "\n".join(lines) + "\n"


def _plot_shifts(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from forgetless.utils.plots import save_figure

    fig, ax = plt.subplots(figsize=(6, 3.8))
    for mixture in MIXTURES:
        group = sorted((r for r in rows if r["mixture"] == mixture), key=lambda r: r["unknown"])
        ns = [r["unknown"] for r in group]
        line = ax.plot(ns, [r["shifts_untrained"]["negative"] for r in group], marker="o", label=f"{mixture} −")
        ax.plot(
            ns,
            [r["shifts_untrained"]["positive"] for r in group],
            marker="x",
            ls="--",
            color=line[0].get_color(),
            label=f"{mixture} +",
        )
    ax.set_xscale("log")
    ax.set_xlabel("unknown facts injected (n)")
    ax.set_ylabel("facts (not injected) that shifted")
    ax.set_title("negative (−) vs positive (+) category shifts")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ns", type=int, nargs="+", default=[10, 50, 100, 250])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--per-relation", type=int, default=100)
    parser.add_argument("--mmlu", type=int, default=114)
    parser.add_argument("--audit-facts", type=int, default=280, help="facts re-probed after, besides the trained")
    parser.add_argument("--mixtures", nargs="+", default=list(MIXTURES), choices=list(MIXTURES))
    parser.add_argument("--report-only", action="store_true", help="rebuild the page from finished cells")
    args = parser.parse_args()
    start = time.time()
    if args.report_only:
        rows = finished_rows(args.ns, args.seeds, args.mixtures)
    else:
        rows = run(args.ns, args.seeds, args.per_relation, args.mmlu, args.audit_facts, args.mixtures)
    write_results(rows, (time.time() - start) / 60, args)
    print((OUT / "README.md").read_text())


if __name__ == "__main__":
    main()
