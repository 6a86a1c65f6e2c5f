"""Run an injection or an audit end to end and publish its directory atomically.

    from forgetless.knowledge.runs import run_injection, run_audit
    run_injection(InjectConfig(facts="facts.jsonl", unknown=20, output="runs/inj"))
    run_audit(adapter="runs/inj/adapter", facts="facts.jsonl", output="runs/audit")

Both build their output in a hidden `.NAME.partial` sibling and rename it when complete. Probe results
are cached in `.forgetless-probe-cache/` next to the output, keyed by model + adapter + settings, so a
grid of runs probes the base once and a killed run resumes.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import shutil
from pathlib import Path
from typing import Any

from forgetless.adapters.card import write_model_card
from forgetless.knowledge.audit import AuditSettings, compare, measure, restrict
from forgetless.knowledge.facts import Fact, cap_per_relation, load_facts
from forgetless.knowledge.gate import ProbeGate, answer_questions
from forgetless.knowledge.inject import (
    InjectConfig,
    audit_subset,
    choose_unknown,
    reliability,
    train_config,
)
from forgetless.knowledge.plan import TrainingPlan, forgetless_plan, paper_plan
from forgetless.knowledge.recipe import RecipeSettings
from forgetless.knowledge.scope import FactScope
from forgetless.knowledge.scoped import scoped_snapshot
from forgetless.knowledge.slick import ProbeSettings, probe_facts
from forgetless.knowledge.stick import exploded_untrained, exploded_wrong, stick_metrics
from forgetless.utils.clock import PhaseClock
from forgetless.utils.fileio import check_output_dir, publish_dir, staging_dir, write_json_atomic, write_jsonl_atomic


def probe_cache_dir(output: Path) -> Path:
    return output.parent / ".forgetless-probe-cache"


def _settings(cfg: InjectConfig) -> AuditSettings:
    probe = ProbeSettings(n_exemplar_sets=cfg.exemplar_sets, shots=cfg.shots, samples=cfg.samples, seed=cfg.seed)
    return AuditSettings(probe=probe, mmlu_n=cfg.mmlu, mmlu_shots=cfg.mmlu_shots, general_n=cfg.general).validate()


def _key(info, adapter: Path | None = None) -> str:
    from forgetless.knowledge.probe_cache import model_key

    return model_key(info.model_id, adapter, info.fingerprint)


def run_injection(
    cfg: InjectConfig,
    recipe: RecipeSettings | None = None,
    facts: list[Fact] | None = None,
    teach: list[str] | None = None,
) -> dict[str, Any]:
    """Probe, choose, train with `cfg.recipe`, re-measure, and write `results.json` + `report.md`.

    `facts` replaces the facts of `cfg.facts`; `teach` (fact ids) replaces the seeded sample of
    `cfg.unknown` Unknown facts (`forgetless learn` teaches every fact of the user's file)."""
    from forgetless.models.load import load_model
    from forgetless.train.run import train

    cfg.validate()
    settings = _settings(cfg)
    output = check_output_dir(cfg.output, cfg.overwrite, inputs=[cfg.facts, cfg.model or ""])
    facts = facts if facts is not None else load_facts(cfg.facts)
    cache = probe_cache_dir(output)
    stage = staging_dir(output)
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    clock = PhaseClock()
    try:
        with clock("probe_base"):
            model, tokenizer, info = load_model(cfg.model)
            before = measure(model, tokenizer, facts, settings, cache, _key(info), label="base")
        categories = {p.fact_id: p.category for p in before.probes}
        chosen = choose_unknown(categories, facts, cfg.unknown, cfg.seed) if teach is None else _by_id(facts, teach)
        plan = _plan(cfg, recipe, chosen, facts, before, model, tokenizer)
        del model
        gc.collect()
        data = write_jsonl_atomic(stage / "train.jsonl", plan.rows)
        gate = _gate(plan, tokenizer, cfg, few_shot_check(tokenizer, chosen, facts, settings, plan.gate_few_shot))
        with clock("train"):  # the gate's checks included (also alone: `seconds.gate`)
            trained = train(train_config(cfg, data, stage / "adapter"), callbacks=[gate] if gate else None)
        with clock("audit"):
            result, before, after, scope = _audit_run(cfg, info, stage, cache, (facts, chosen), before, plan, settings)
        if scope is not None:
            scope.save(stage / "adapter")
            write_jsonl_atomic(stage / "facts_after_unscoped.jsonl", [_probe_row(p) for p in result.pop("_unscoped")])
        result["seconds"] = {**clock.seconds, "gate": round(gate.seconds, 1) if gate else 0.0}
        result.update(recipe=cfg.recipe, config=cfg.to_dict(), train_records=len(plan.rows), anchors=plan.anchors)
        steps = max((e.get("step", 0) for e in trained.log_history), default=0)
        result.update(train_loss=trained.metrics.get("train_loss"), train_steps=steps)
        result["gate_curve"] = gate.curve if gate else []
        result["trained_fact_ids"] = [f.id for f in chosen]
        result["trained_before"] = {f.id: categories[f.id] for f in chosen}  # categories on the base
        result["already_known"] = [f.id for f in chosen if categories[f.id] == "HighlyKnown"]
        result["shifts_untrained"] = untrained_shifts(before, after, {f.id for f in chosen})
        title = f"Injecting {cfg.unknown} unknown facts (recipe {cfg.recipe}, mixture {cfg.mixture}, k={cfg.k})"
        _write(stage, result, before, after, title)
        write_model_card(stage / "adapter", audit=result)
        publish_dir(stage, output)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return result


def _audit_run(cfg: InjectConfig, info, stage: Path, cache: Path, fact_sets, before, plan: TrainingPlan, settings):
    """(results, before and after snapshots of the audited facts, scope or None) of the trained adapter."""
    from forgetless.adapters.loading import load_with_adapter

    facts, chosen = fact_sets
    adapted, tokenizer, _ = load_with_adapter(info.model_id, stage / "adapter")
    audited = audit_subset(facts, chosen, cfg.audit_facts, cfg.seed)
    key = _key(info, stage / "adapter")
    after = measure(adapted, tokenizer, audited, settings, cache, key, label="adapted", pool=facts)
    before = restrict(before, facts, {f.id for f in audited})
    scope = FactScope.for_facts(chosen, facts) if plan.scoped else None
    result, after = _audit_adapted(adapted, tokenizer, (before, after), (chosen, audited), plan, settings, scope)
    return result, before, after, scope


UNSCOPED_KEYS = (
    "reliability",
    "reliability_zero_shot",
    "generalization",
    "highly_known_kept",
    "highly_known_kept_ci95",
    "known_mcnemar",
    "mmlu_after",
    "mmlu_delta",
    "mmlu_delta_stderr",
    "exploded_answers",
    "exploded_wrong",
    "exploded_untrained",
    "refusal_after",
    "shifts",
)


def _audit_adapted(model, tokenizer, snapshots, facts, plan, settings, scope):
    """(results, the "after" snapshot used): through `scope` when given, with the unscoped numbers under
    `unscoped` (and the unscoped probes under `_unscoped`, for facts_after_unscoped.jsonl)."""
    (before, after), (chosen, audited) = snapshots, facts
    result = _measures(model, tokenizer, before, after, chosen, audited, plan, settings, scope=None)
    if scope is None:
        return result, result.pop("_after")
    unscoped = result
    result = _measures(model, tokenizer, before, after, chosen, audited, plan, settings, scope)
    result["unscoped"] = {k: unscoped.get(k) for k in UNSCOPED_KEYS}
    result["_unscoped"] = after.probes
    return result, result.pop("_after")


def _measures(model, tokenizer, before, after, chosen, audited, plan, settings, scope) -> dict[str, Any]:
    """Audit numbers of the adapted model, through `scope` when given (the adapter answers only questions
    about the taught subjects, as `generate` and `serve` run it); `_after` holds the snapshot used."""
    coverage = None
    if scope is not None:
        after, coverage = scoped_snapshot(before, after, audited, scope, settings)
    result = {**compare(before, after), **reliability(after.probes, {f.id for f in chosen})}
    result.update(stick_metrics(model, tokenizer, chosen, plan.held_out, before, after, plan.trained_ids, scope))
    result["exploded_wrong"] = exploded_wrong(result["exploded_answers"], audited, after.answers)
    result["exploded_untrained"] = exploded_untrained(before, after, audited, plan.trained_ids)
    if coverage is not None:
        result["scope"] = {"subjects": len(scope.subjects), "shadows": list(scope.shadows), **coverage}
    return {**result, "_after": after}


def _by_id(facts: list[Fact], ids: list[str]) -> list[Fact]:
    wanted = set(ids)
    return [f for f in facts if f.id in wanted]


def _plan(cfg: InjectConfig, recipe, chosen, facts, before, model, tokenizer) -> TrainingPlan:
    categories = {p.fact_id: p.category for p in before.probes}
    if cfg.recipe == "paper":
        return paper_plan(chosen, facts, categories, cfg.mixture, cfg.k, cfg.seed)
    settings = (recipe or RecipeSettings()).validate()
    probe_answers = {p.fact_id: _usual(p.greedy_answers) for p in before.probes}

    def zero_shot(questions: list[str]) -> list[str]:
        return answer_questions(model, tokenizer, questions)

    return forgetless_plan(chosen, facts, categories, settings, cfg.seed, zero_shot, probe_answers)


def _usual(answers: list[str]) -> str:
    """The most frequent of a probe's greedy answers (the first among equals)."""
    return max(answers, key=answers.count) if answers else ""


def _gate(plan: TrainingPlan, tokenizer, cfg: InjectConfig, few_shot=None) -> ProbeGate | None:
    """A gate that asks the new facts once per epoch (None when the plan has none)."""
    if not plan.gate_items:
        return None
    steps_per_epoch = max(1, math.ceil(len(plan.rows) / cfg.train.batch_size))
    return ProbeGate(
        tokenizer,
        plan.gate_items,
        steps_per_epoch,
        few_shot=few_shot,
        few_shot_target=plan.gate_few_shot,
        patience=plan.gate_patience,
    )


GATE_EXEMPLAR_SEED = 7919  # added to the probe seed: the gate's exemplar draws are not the final probe's


def few_shot_check(tokenizer, chosen: list, facts: list, settings: AuditSettings, target: float):
    """model -> mean few-shot P_correct of the new facts, behind exemplars drawn with another seed than
    the audit's (the gate must not tune on the test prompts); None when `target` is 0."""
    if target <= 0:
        return None
    probe = dataclasses.replace(settings.probe, seed=settings.probe.seed + GATE_EXEMPLAR_SEED, samples=0)

    def check(model) -> float:
        probes = probe_facts(model, tokenizer, chosen, probe, pool=facts, batch_size=settings.probe_batch_size)
        return sum(p.p_correct for p in probes) / max(1, len(probes))

    return check


def untrained_shifts(before, after, trained: set[str]) -> dict[str, int]:
    """Category shifts of the facts that were not injected: collateral gains and losses."""
    from forgetless.knowledge.shifts import shift_counts

    cat_before = {p.fact_id: p.category for p in before.probes if p.fact_id not in trained}
    cat_after = {p.fact_id: p.category for p in after.probes if p.fact_id not in trained}
    return shift_counts(cat_before, cat_after)


def run_audit(
    adapter: str | Path,
    facts: str | Path,
    output: str | Path,
    model: str | None = None,
    settings=None,
    overwrite=False,
    lm_eval=None,
    use_scope: bool = True,
) -> dict[str, Any]:
    """Compare base (adapter disabled) and base + adapter on facts, MMLU and general text; optionally on
    lm-evaluation-harness tasks too (`lm_eval`: an `LmEvalOptions`; skipped with a message when lm-eval
    or its data is unavailable). An adapter with a `scope.json` is audited as `generate` runs it (only
    prompts in scope reach it) unless `use_scope` is False; its unscoped numbers come alongside."""
    from forgetless.adapters.loading import adapter_disabled, load_with_adapter

    settings = (settings or AuditSettings()).validate()
    if lm_eval is not None:
        lm_eval.validate()
    output = check_output_dir(output, overwrite, inputs=[facts, adapter, model or ""])
    scope = FactScope.load(adapter) if use_scope else None
    fact_list = cap_per_relation(load_facts(facts), settings.per_relation, settings.seed)
    loaded, tokenizer, info = load_with_adapter(model, str(adapter))
    cache = probe_cache_dir(output)
    with adapter_disabled(loaded):
        before = measure(loaded, tokenizer, fact_list, settings, cache, _key(info), label="adapter off")
    after = measure(loaded, tokenizer, fact_list, settings, cache, _key(info, Path(adapter)), label="adapter on")
    result = compare(before, after)
    if scope is not None:  # the adapter as generate and serve run it; the unscoped numbers alongside
        unscoped = result
        after, coverage = scoped_snapshot(before, after, fact_list, scope, settings)
        result = compare(before, after)
        result["scope"] = {"subjects": len(scope.subjects), "shadows": list(scope.shadows), **coverage}
        result["unscoped"] = {k: unscoped.get(k) for k in UNSCOPED_KEYS if k in unscoped}
    result.update(adapter=str(adapter), base_model=info.model_id)
    if lm_eval is not None and lm_eval.tasks:
        result["lm_eval"] = _lm_eval(loaded, tokenizer, lm_eval, scope)
    stage = staging_dir(output)
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:
        _write(stage, result, before, after, f"Audit of {adapter}")
        publish_dir(stage, output)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return result


def _lm_eval(model, tokenizer, options, scope=None) -> dict[str, Any]:
    """lm-eval before (adapter disabled) and after (the adapter under its scope, when it has one)."""
    from forgetless.adapters.loading import adapter_disabled
    from forgetless.eval.lm_eval_bridge import lm_eval_delta, run_lm_eval

    with adapter_disabled(model):
        before = run_lm_eval(model, tokenizer, options)
    if "skipped" in before:
        return before
    return lm_eval_delta(before, run_lm_eval(model, tokenizer, options, scope=scope))


def _write(stage: Path, result: dict, before, after, title: str) -> None:
    from forgetless.knowledge.audit_report import write_audit_report

    write_json_atomic(stage / "results.json", result)
    write_jsonl_atomic(stage / "facts_before.jsonl", [_probe_row(p) for p in before.probes])
    write_jsonl_atomic(stage / "facts_after.jsonl", [_probe_row(p) for p in after.probes])
    write_audit_report(result, stage, title)


def _probe_row(probe) -> dict[str, Any]:
    return {
        "fact_id": probe.fact_id,
        "subject": probe.subject,
        "relation": probe.relation,
        "object": probe.object,
        "category": probe.category,
        "p_correct": probe.p_correct,
        "greedy_answers": probe.greedy_answers,
    }
