"""Add `exploded_untrained` to facts_that_stick cells run before it existed, from their cached snapshots.

    .venv/bin/python experiments/backfill_exploded_untrained.py [CELL ...]    # default: every cell
    .venv/bin/python experiments/facts_that_stick.py --report-only ...        # then re-render the report

No model runs: the base's and each adapter's zero-shot answers are in the cell grid's snapshot cache
(`work/.forgetless-probe-cache/snapshot-*.json`, keyed by the adapter's weights hash); the facts never in
training are recomputed from the cell's plan (same facts, categories, settings and seed), and the scope
from its taught facts. A cell whose adapter snapshot is missing is skipped and said so.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from facts_that_stick import ARMS, OUT  # experiments/ is on sys.path when run as a script

from forgetless.knowledge.facts import load_facts, question_for
from forgetless.knowledge.plan import forgetless_plan, paper_plan
from forgetless.knowledge.probe_cache import adapter_hash
from forgetless.knowledge.scope import FactScope
from forgetless.knowledge.shifts import exploded_answers
from forgetless.utils.fileio import write_json_atomic

WORK = OUT / "work"


def trained_ids(arm: str, result: dict, facts, categories) -> set[str]:
    chosen = [f for f in facts if f.id in set(result["trained_fact_ids"])]
    cfg = result["config"]
    if arm == "paper":
        return paper_plan(chosen, facts, categories, cfg["mixture"], cfg["k"], cfg["seed"]).trained_ids
    plan = forgetless_plan(chosen, facts, categories, ARMS[arm], cfg["seed"], lambda qs: list(qs), {})
    return plan.trained_ids


def backfill(cell: Path, facts, snapshots: list[dict], base: list[str]) -> str:
    result = json.loads((cell / "results.json").read_text())
    if "exploded_untrained" in result:
        return "has it"
    if not (cell / "adapter").is_dir():
        return "skipped: its adapter was not kept"
    weights = adapter_hash(cell / "adapter")
    mine = [s for s in snapshots if s["model"].endswith(f"#{weights}") and f".{cell.name}.partial/" in s["model"]]
    if len(mine) != 1:
        return f"skipped: {len(mine)} cached snapshots of its adapter"
    after = mine[0]["answers"]
    rows = (cell / "facts_before.jsonl").read_text().splitlines()
    categories = {row["fact_id"]: row["category"] for row in map(json.loads, rows)}
    trained = trained_ids(cell.name.rsplit("_n", 1)[0], result, facts, categories)
    chosen = [f for f in facts if f.id in set(result["trained_fact_ids"])]
    scope = FactScope.for_facts(chosen, facts) if "scope" in result else None
    pairs = zip(facts, base, after, strict=True)
    scoped = [a if scope is None or scope.applies(question_for(f)) else b for f, b, a in pairs]
    keep = [i for i, f in enumerate(facts) if f.id not in trained]
    result["exploded_untrained"] = exploded_answers([base[i] for i in keep], [scoped[i] for i in keep])
    if result.get("unscoped"):
        result["unscoped"]["exploded_untrained"] = exploded_answers([base[i] for i in keep], [after[i] for i in keep])
    write_json_atomic(cell / "results.json", result)
    return f"{[e['answer'] for e in result['exploded_untrained']]} (all facts: {len(result['exploded_answers'])})"


def main() -> None:
    facts = load_facts(WORK / "facts.jsonl")
    snapshots = [json.loads(p.read_text()) for p in (WORK / ".forgetless-probe-cache").glob("snapshot-*.json")]
    bases = {tuple(s["answers"]) for s in snapshots if "+" not in s["model"] and len(s["answers"]) == len(facts)}
    if len(bases) != 1:
        sys.exit(f"expected one cached base snapshot of the {len(facts)} facts, found {len(bases)}")
    cells = [WORK / c for c in sys.argv[1:]] or sorted(p.parent for p in WORK.glob("*/results.json"))
    for cell in cells:
        print(cell.name, backfill(cell, facts, snapshots, list(next(iter(bases)))), flush=True)


if __name__ == "__main__":
    main()
