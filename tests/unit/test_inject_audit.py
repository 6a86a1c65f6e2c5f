"""Knowledge injection and audits on the tiny random Llama (every fictional fact is Unknown to it)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from forgetless.errors import ConfigError
from forgetless.knowledge import fictional_facts, write_fictional_facts
from forgetless.knowledge.inject import InjectConfig, choose_unknown, training_records
from forgetless.knowledge.runs import run_audit, run_injection

FAST = dict(epochs=2, exemplar_sets=1, shots=1, mmlu=4, mmlu_shots=0, general=2, recipe="paper")


@pytest.fixture(scope="module")
def facts_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("facts") / "facts.jsonl"
    write_fictional_facts(path, 24, seed=0)
    return path


def test_unknown_facts_are_sampled_with_the_seed_not_taken_first():
    facts = fictional_facts(40, seed=0)
    categories = {f.id: "Unknown" for f in facts}
    first = choose_unknown(categories, facts, 5, seed=0)
    assert first == choose_unknown(categories, facts, 5, seed=0)
    assert first != facts[:5] and first != choose_unknown(categories, facts, 5, seed=1)
    with pytest.raises(ConfigError, match="only 40 facts are Unknown"):
        choose_unknown(categories, facts, 41, seed=0)


def test_mixtures_use_the_papers_format():
    facts = fictional_facts(12, seed=0)
    categories = {f.id: ("HighlyKnown" if i >= 6 else "Unknown") for i, f in enumerate(facts)}
    chosen = facts[:3]
    plain = training_records(chosen, facts, categories, "none", 0, seed=0)
    assert len(plain) == 3
    assert all(r["system"] == "Answer the following question." and r["prompt"].startswith("Question: ") for r in plain)
    assert {r["response"] for r in plain} == {f"Answer: {f.object}" for f in chosen}
    known = training_records(chosen, facts, categories, "known", 2, seed=0)
    assert len(known) == 9 and {r["response"] for r in known} > {f"Answer: {f.object}" for f in facts[6:7]} - set()
    paraphrased = training_records(chosen, facts, categories, "paraphrase", 1, seed=0)
    assert len(paraphrased) == 6 and len({r["prompt"] for r in paraphrased}) == 6
    with pytest.raises(ConfigError, match="no HighlyKnown"):
        training_records(chosen, facts, {f.id: "Unknown" for f in facts}, "known", 1, seed=0)


def test_injection_writes_the_contracted_results(tiny_model_dir, facts_file, tmp_path):
    out = tmp_path / "inj"
    cfg = InjectConfig.from_options(
        facts=str(facts_file), output=str(out), model=str(tiny_model_dir), unknown=4, **FAST
    )
    result = run_injection(cfg)
    saved = json.loads((out / "results.json").read_text())
    for key in ("reliability", "mmlu_before", "mmlu_after", "transitions"):
        assert key in saved
    assert saved["trained_facts"] == 4 and len(saved["trained_fact_ids"]) == 4
    assert sum(map(sum, saved["transitions"])) == 24 == result["facts"]
    assert (out / "report.md").is_file() and (out / "transitions.png").is_file() and (out / "answers.png").is_file()
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert not (tmp_path / ".inj.partial").exists()


def test_audit_subset_keeps_the_trained_facts_and_a_shared_sample(tiny_model_dir, facts_file, tmp_path):
    from forgetless.knowledge.inject import audit_subset

    facts = fictional_facts(40, seed=0)
    a, b = audit_subset(facts, facts[:3], 10, seed=0), audit_subset(facts, facts[5:7], 10, seed=0)
    assert {f.id for f in facts[:3]} <= {f.id for f in a} and {f.id for f in facts[5:7]} <= {f.id for f in b}
    assert len({f.id for f in a} - {f.id for f in facts[:3]} - {f.id for f in facts[5:7]}) <= 10
    assert audit_subset(facts, facts[:3], 0, seed=0) == facts
    cfg = InjectConfig.from_options(
        facts=str(facts_file), output=str(tmp_path / "o"), model=str(tiny_model_dir), unknown=3, audit_facts=5, **FAST
    )
    result = run_injection(cfg)
    assert 5 <= result["facts"] <= 8 and sum(map(sum, result["transitions"])) == result["facts"]
    assert result["answers_before"]["n"] + result["answers_before"]["n_empty"] == result["facts"]


def test_base_snapshot_is_measured_once_per_grid(tiny_model_dir, facts_file, tmp_path, monkeypatch):
    from forgetless.knowledge import audit

    calls: list[int] = []
    real = audit._measure_rest

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(audit, "_measure_rest", counting)
    results = []
    for n in (2, 3):
        cfg = InjectConfig.from_options(
            facts=str(facts_file), output=str(tmp_path / f"n{n}"), model=str(tiny_model_dir), **FAST
        )
        results.append(run_injection(InjectConfig(**{**cfg.__dict__, "unknown": n})))
    assert len(calls) == 3  # base once, then each adapter
    assert results[0]["mmlu_before"] == results[1]["mmlu_before"]
    assert results[0]["answers_before"] == results[1]["answers_before"]


def test_audit_before_is_the_base_model_exactly(tiny_model_dir, facts_file, tmp_path):
    from forgetless.eval.mmlu import sample_mmlu
    from forgetless.eval.textloss import general_texts, mean_token_loss
    from forgetless.knowledge.audit import AuditSettings
    from forgetless.knowledge.slick import ProbeSettings
    from forgetless.models.load import load_model
    from forgetless.train.config import TrainConfig
    from forgetless.train.run import train
    from tests.conftest import QA_ROWS, write_jsonl

    adapter = tmp_path / "adapter"
    data = write_jsonl(tmp_path / "qa.jsonl", QA_ROWS)
    train(TrainConfig(data=str(data), output=str(adapter), model=str(tiny_model_dir), max_steps=6, lr=5e-2))
    settings = AuditSettings(probe=ProbeSettings(n_exemplar_sets=1, shots=1, samples=0), mmlu_n=0, general_n=4)
    result = run_audit(adapter, facts_file, tmp_path / "audit", settings=settings)
    base, tokenizer, _ = load_model(str(tiny_model_dir))
    texts = general_texts([i for i in sample_mmlu(8, seed=1)][:4])
    assert result["general_loss_before"] == pytest.approx(mean_token_loss(base, tokenizer, texts), rel=1e-5)
    assert result["general_loss_after"] != pytest.approx(result["general_loss_before"], rel=1e-5)
    assert (tmp_path / "audit" / "report.md").is_file()


def test_cli_inject_sweep_from_yaml(tiny_model_dir, facts_file, tmp_path):
    config = tmp_path / "sweep.yaml"
    config.write_text(
        f"# forgetless inject --config {config}\nfacts: {facts_file}\noutput: {tmp_path / 'sweep'}\n"
        f"model: {tiny_model_dir}\nunknown: [2, 3]\nmixture: none\nrecipe: paper\nepochs: 1\n"
        "exemplar_sets: 1\nshots: 1\nmmlu: 0\ngeneral: 0\n"
    )
    run = subprocess.run(
        [sys.executable, "-m", "forgetless.cli.app", "inject", "--config", str(config)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    rows = json.loads((tmp_path / "sweep" / "results.json").read_text())
    assert [r["unknown"] for r in rows] == [2, 3]
    assert (tmp_path / "sweep" / "n2_none_k0_s0" / "results.json").is_file()
    assert (tmp_path / "sweep" / "report.md").is_file() and (tmp_path / "sweep" / "sweep.png").is_file()


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--unknown", "0"], "--unknown"),
        (["--mixture", "odd"], "--mixture"),
        (["--unknown", "99"], "fewer than"),
        (["--recipe", "magic"], "--recipe 'magic' is not one of forgetless, paper"),
    ],
)
def test_cli_inject_bad_input_exits_2(tiny_model_dir, facts_file, tmp_path, flags, needle):
    out = tmp_path / "inj"
    args = ["inject", "--facts", str(facts_file), "--output", str(out), "--model", str(tiny_model_dir), "--mmlu", "0"]
    run = subprocess.run(
        [sys.executable, "-m", "forgetless.cli.app", *args, "--exemplar-sets", "1", "--shots", "1", *flags],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()  # a finished probe's progress bar may come first
    errors = [line for line in lines if line.startswith("error:")]
    assert errors == lines[-1:] and needle in errors[0] and "Traceback" not in run.stderr and not out.exists()


def test_forgetless_recipe_reports_the_contract(tiny_model_dir, facts_file, tmp_path, monkeypatch):
    """The tiny model knows no fact, so anchors are drawn as if some were known: the run's plumbing."""
    from forgetless.knowledge import plan

    def pretend_known(facts, categories, new, count, seed, subject_share=0.0):
        others = [f for f in facts if f.id not in {n.id for n in new}]
        return others[:count], others[count:]

    monkeypatch.setattr(plan, "choose_anchors", pretend_known)
    out = tmp_path / "forgetless"
    options = {**FAST, "recipe": "forgetless"}
    result = run_injection(
        InjectConfig.from_options(
            facts=str(facts_file), output=str(out), model=str(tiny_model_dir), unknown=3, **options
        )
    )
    saved = json.loads((out / "results.json").read_text())
    assert saved["recipe"] == "forgetless" and saved["config"]["rank"] == 16  # the recipe's capacity
    for key in ("reliability", "reliability_zero_shot", "generalization", "highly_known_kept"):
        assert 0.0 <= saved[key] <= 1.0, key
    for key in ("mmlu_before", "mmlu_after", "transitions", "known_mcnemar", "gate_curve"):
        assert key in saved, key
    records = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    taught = {
        f"Answer: {f['object']}"
        for f in map(json.loads, facts_file.read_text().splitlines())
        if f["id"] in saved["trained_fact_ids"]
    }
    assert sum(r.get("response") in taught for r in records) == 3 * 2  # 2 phrasings per new fact
    few_shot = [r for r in records if "messages" in r]
    assert len(few_shot) == 3 and all(r["messages"][-1]["content"] in taught for r in few_shot)  # 1 per fact
    assert result["anchors"] > 0 and len(records) <= 3 * 3 + result["anchors"] * 2  # 2 per anchor, if answered
    assert saved["generalization_questions"] == 3  # one held-out phrasing per fact
    assert saved["gate_curve"] and all(0 <= point["answered"] <= 1 for point in saved["gate_curve"])
    assert json.loads((out / "adapter" / "scope.json").read_text())["subjects"]  # the taught subjects
    assert saved["scope"]["facts_in_scope"] >= 3 and saved["unscoped"]["highly_known_kept"] is not None
    assert (out / "facts_after_unscoped.jsonl").is_file()
    assert isinstance(saved["exploded_untrained"], list) and "exploded_untrained" in saved["unscoped"]
    seconds = saved["seconds"]
    assert set(seconds) == {"probe_base", "train", "audit", "gate"} and 0 < seconds["gate"] <= seconds["train"]


def test_forgetless_recipe_needs_known_facts_for_retention(tiny_model_dir, facts_file, tmp_path):
    cfg = InjectConfig.from_options(
        facts=str(facts_file),
        output=str(tmp_path / "o"),
        model=str(tiny_model_dir),
        unknown=3,
        **{**FAST, "recipe": "forgetless"},
    )
    with pytest.raises(ConfigError, match="needs at least 30"):
        run_injection(cfg)
    assert not (tmp_path / "o").exists()


def test_audit_of_a_scoped_adapter_takes_out_of_scope_facts_from_the_base(tiny_model_dir, facts_file, tmp_path):
    from forgetless.knowledge.audit import AuditSettings
    from forgetless.knowledge.facts import load_facts
    from forgetless.knowledge.scope import FactScope
    from forgetless.knowledge.slick import ProbeSettings
    from forgetless.train.config import TrainConfig
    from forgetless.train.run import train
    from tests.conftest import QA_ROWS, write_jsonl

    adapter = tmp_path / "adapter"
    data = write_jsonl(tmp_path / "qa.jsonl", QA_ROWS)
    train(TrainConfig(data=str(data), output=str(adapter), model=str(tiny_model_dir), max_steps=6, lr=5e-2))
    facts = load_facts(facts_file)
    FactScope.for_facts(facts[:3], facts).save(adapter)
    settings = AuditSettings(probe=ProbeSettings(n_exemplar_sets=1, shots=1, samples=0), mmlu_n=4, general_n=0)
    scoped = run_audit(adapter, facts_file, tmp_path / "scoped", settings=settings)
    plain = run_audit(adapter, facts_file, tmp_path / "plain", settings=settings, use_scope=False)
    assert scoped["scope"]["facts_in_scope"] == 3 and "scope" not in plain
    after = [json.loads(line) for line in (tmp_path / "scoped" / "facts_after.jsonl").read_text().splitlines()]
    before = [json.loads(line) for line in (tmp_path / "scoped" / "facts_before.jsonl").read_text().splitlines()]
    unscoped = [json.loads(line) for line in (tmp_path / "plain" / "facts_after.jsonl").read_text().splitlines()]
    assert after[3:] == before[3:] and after[:3] == unscoped[:3]  # out of scope: the base, bit for bit
    assert scoped["unscoped"]["shifts"] == plain["shifts"] and scoped["mmlu_delta"] == 0.0  # no MMLU item in scope
    assert after != unscoped  # the adapter changed some out-of-scope answer, so the scope is what kept them
