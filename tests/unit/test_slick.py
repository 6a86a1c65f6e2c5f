"""SliCK probing: categories, exemplars, batching, sampling only where needed, cache/resume, bad input, CLI.

    .venv/bin/python -m pytest tests/unit/test_slick.py -q

Most tests inject a scripted `generate_fn` (no model); the last ones run the tiny random Llama, in-process
and through `python -m forgetless.cli.app probe` (exit code 2, one-line error, no cache on bad input).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest
import typer
from typer.testing import CliRunner

from forgetless.cli.probe_cmd import check_probe_output, probe
from forgetless.errors import ConfigError, DataError, OutputError
from forgetless.knowledge import fictional_facts, question_for, save_facts
from forgetless.knowledge.probe_cache import ProbeCache, cache_key, model_key
from forgetless.knowledge.slick import (
    PREFIX_REUSE,
    SYSTEM_PROMPT,
    FactProbe,
    ProbeSettings,
    categorize,
    check_facts,
    exemplar_sets,
    probe_facts,
    summarize,
    write_probe_outputs,
)


class StubGen:
    """A scripted `generate_fn`: answers by (fact, index of its prompt within the call); records calls."""

    def __init__(self, facts, greedy=None, sample=None, fail_on: int | None = None):
        self.by_question = {question_for(f): f for f in facts}
        self.greedy = greedy or (lambda fact, i: "no idea")
        self.sample = sample or (lambda fact, i, n: ["nope"] * n)
        self.fail_on = fail_on
        self.calls: list[dict] = []

    def __call__(self, model, tokenizer, conversations, sampling, batch_size):
        sampled = sampling.temperature > 0
        self.calls.append({"sampled": sampled, "convs": list(conversations), "n": sampling.num_return_sequences})
        if self.fail_on == len(self.calls):
            raise RuntimeError("killed")
        seen: Counter = Counter()
        out = []
        for conv in conversations:
            fact = self.by_question[conv[-1]["content"].removeprefix("Question: ")]
            index = seen[fact.id]
            seen[fact.id] += 1
            if sampled:
                out.append(self.sample(fact, index, sampling.num_return_sequences))
            else:
                out.append([self.greedy(fact, index)])
        return out

    def kind(self, sampled: bool) -> list[dict]:
        return [c for c in self.calls if c["sampled"] == sampled]


@pytest.fixture(scope="module")
def facts():
    return fictional_facts(14, seed=0)  # 7 relations x 2 facts: --shots 1 at most


def _run(facts, gen, **kwargs):
    settings = kwargs.pop("settings", ProbeSettings(n_exemplar_sets=3, shots=1, samples=2))
    return probe_facts(None, None, facts, settings, generate_fn=gen, **kwargs)


def test_categories_from_scripted_answers(facts):
    high, maybe, weak, unknown = facts[:4]

    def greedy(fact, i):
        if fact.id == high.id or (fact.id == maybe.id and i == 0):
            return f"Answer: {fact.object}."
        return "I am not sure"

    def sample(fact, i, n):
        return [fact.object if fact.id == weak.id and i == 1 else "wrong"] + ["wrong"] * (n - 1)

    probes = {p.fact_id: p for p in _run(facts, StubGen(facts, greedy, sample))}
    assert [probes[f.id].category for f in (high, maybe, weak, unknown)] == [
        "HighlyKnown",
        "MaybeKnown",
        "WeaklyKnown",
        "Unknown",
    ]
    assert probes[high.id].p_correct == 1.0 and probes[maybe.id].p_correct == pytest.approx(1 / 3)
    assert probes[high.id].sample_correct is None and probes[maybe.id].sample_correct is None
    assert probes[weak.id].sample_correct == pytest.approx(1 / 6)
    assert probes[unknown.id].sample_correct == 0.0 and probes[unknown.id].p_correct == 0.0
    assert probes[high.id].greedy_answers == [f"{high.object}."] * 3  # extract_answer drops "Answer:"


def test_categorize_rules():
    assert categorize([True, True]) == "HighlyKnown"
    assert categorize([True, False], [False]) == "MaybeKnown"
    assert categorize([False, False], [False, True]) == "WeaklyKnown"
    assert categorize([False], []) == "Unknown"


def test_exact_match_mode(facts):
    gen = StubGen(facts, greedy=lambda fact, i: f"It is {fact.object}")
    settings = ProbeSettings(n_exemplar_sets=2, shots=1, samples=0, match="exact")
    assert {p.category for p in _run(facts, gen, settings=settings)} == {"Unknown"}
    settings.match = "substring"
    assert {p.category for p in _run(facts, gen, settings=settings)} == {"HighlyKnown"}


def test_exemplars_same_relation_never_the_probed_fact():
    many = fictional_facts(40, seed=1)
    by_question = {question_for(f): f for f in many}
    gen = StubGen(many)
    _run(many, gen, settings=ProbeSettings(n_exemplar_sets=3, shots=2, samples=0))
    convs = [conv for call in gen.calls for conv in call["convs"]]
    assert len(convs) == 40 * 3
    for conv in convs:
        assert conv[0] == {"role": "system", "content": SYSTEM_PROMPT}
        assert [m["role"] for m in conv[1:]] == ["user", "assistant"] * 2 + ["user"]
        probed = by_question[conv[-1]["content"].removeprefix("Question: ")]
        shots = [by_question[m["content"].removeprefix("Question: ")] for m in conv[1:-1:2]]
        answers = [m["content"] for m in conv[2:-1:2]]
        assert all(s.relation == probed.relation and s.id != probed.id for s in shots)
        assert answers == [f"Answer: {s.object}" for s in shots]


def test_exemplar_sets_small_pool_and_seeded(facts):
    capital = [f for f in facts if f.relation == "capital"]
    sets = exemplar_sets(capital[0], facts, ProbeSettings(n_exemplar_sets=3, shots=1))
    assert sets == [[capital[1]]] * 3  # the only other fact of that relation
    many = fictional_facts(60, seed=2)
    a = exemplar_sets(many[0], many, ProbeSettings(n_exemplar_sets=4, shots=2, seed=0))
    assert a == exemplar_sets(many[0], list(reversed(many)), ProbeSettings(n_exemplar_sets=4, shots=2, seed=0))
    assert a != exemplar_sets(many[0], many, ProbeSettings(n_exemplar_sets=4, shots=2, seed=1))


def test_exemplar_sets_are_shared_across_a_relation():
    many = [f for f in fictional_facts(80, seed=3) if f.relation == "capital"]
    settings = ProbeSettings(n_exemplar_sets=3, shots=4)
    sets = [exemplar_sets(f, many, settings) for f in many]
    for index in range(3):
        prefixes = Counter(tuple(s.id for s in per_fact[index]) for per_fact in sets)
        shared, count = prefixes.most_common(1)[0]
        assert count >= len(many) - 4  # only the facts drawn as exemplars see another prefix
        for fact, per_fact in zip(many, sets, strict=True):
            ids = [s.id for s in per_fact[index]]
            assert fact.id not in ids and len(set(ids)) == 4
            if fact.id not in shared:
                assert tuple(ids) == shared


def test_prompts_are_batched(facts):
    gen = StubGen(facts)
    _run(facts, gen, settings=ProbeSettings(n_exemplar_sets=3, shots=1, samples=0), batch_size=4)
    greedy = gen.kind(sampled=False)
    assert len(greedy) == 2 and all(len(c["convs"]) <= PREFIX_REUSE * 4 for c in greedy)
    assert sum(len(c["convs"]) for c in greedy) == 14 * 3 and not gen.kind(sampled=True)


def test_samples_only_for_facts_never_right_greedily(facts):
    right = {f.id for f in facts[:6]}
    gen = StubGen(facts, greedy=lambda fact, i: fact.object if fact.id in right else "no")
    _run(facts, gen, settings=ProbeSettings(n_exemplar_sets=3, shots=1, samples=4), batch_size=64)
    sampled = gen.kind(sampled=True)
    assert len(sampled) == 1 and sampled[0]["n"] == 4
    asked = {gen.by_question[c[-1]["content"].removeprefix("Question: ")].id for c in sampled[0]["convs"]}
    assert len(sampled[0]["convs"]) == (14 - 6) * 3 and not asked & right


def test_zero_samples_gives_no_weakly_known(facts):
    gen = StubGen(facts, sample=lambda fact, i, n: [fact.object] * n)
    probes = _run(facts, gen, settings=ProbeSettings(n_exemplar_sets=2, shots=1, samples=0))
    assert {p.category for p in probes} == {"Unknown"} and not gen.kind(sampled=True)
    assert all(p.sample_correct is None for p in probes)


def test_cache_second_run_makes_no_calls(facts, tmp_path):
    gen = StubGen(facts, greedy=lambda fact, i: fact.object if i else "x")
    first = _run(facts, gen, cache_dir=tmp_path, model_key="m")
    again = StubGen(facts)
    second = _run(facts, again, cache_dir=tmp_path, model_key="m")
    assert again.calls == [] and [p.to_dict() for p in first] == [p.to_dict() for p in second]
    assert len(list(tmp_path.glob("*.jsonl"))) == 1 and len(list(tmp_path.glob("*.meta.json"))) == 1


def test_interrupted_run_resumes(facts, tmp_path):
    settings = ProbeSettings(n_exemplar_sets=3, shots=1, samples=0)
    with pytest.raises(RuntimeError, match="killed"):
        _run(facts, StubGen(facts, fail_on=2), settings=settings, batch_size=1, cache_dir=tmp_path)
    (cache_file,) = tmp_path.glob("*.jsonl")
    per_call = PREFIX_REUSE * 1 // 3  # facts per generate call: PREFIX_REUSE batches of 1 prompt, 3 sets each
    assert len(cache_file.read_text().splitlines()) == per_call  # only the first call's facts
    with cache_file.open("a") as handle:
        handle.write('{"fact_id": "half-writ')  # a kill during the write leaves a partial line
    progress: list[int] = []
    gen = StubGen(facts)
    probes = _run(facts, gen, settings=settings, batch_size=1, cache_dir=tmp_path, on_progress=progress.append)
    left = 14 - per_call
    assert len(gen.calls) == -(-left // per_call) and sum(len(c["convs"]) for c in gen.calls) == left * 3
    assert [p.fact_id for p in probes] == [f.id for f in facts] and progress == [per_call] * (len(gen.calls) + 1)
    assert len(cache_file.read_text().splitlines()) == 14


def test_generation_engine_is_part_of_the_cache_key(monkeypatch):
    settings = ProbeSettings(n_exemplar_sets=2, shots=1, samples=0)
    key = cache_key("m", settings.to_dict())
    monkeypatch.setattr("forgetless.knowledge.slick.GENERATION_ENGINE", "another-engine")
    assert cache_key("m", settings.to_dict()) != key


def test_changed_fact_or_settings_is_probed_again(facts, tmp_path):
    settings = ProbeSettings(n_exemplar_sets=2, shots=1, samples=0)
    _run(facts, StubGen(facts), settings=settings, cache_dir=tmp_path, model_key="m")
    other = ProbeSettings(n_exemplar_sets=2, shots=1, samples=0, seed=1)
    assert cache_key("m", settings.to_dict()) != cache_key("m", other.to_dict())
    assert cache_key("m", settings.to_dict()) != cache_key("m2", settings.to_dict())
    gen = StubGen(facts)
    _run(facts, gen, settings=other, cache_dir=tmp_path, model_key="m")
    assert sum(len(c["convs"]) for c in gen.calls) == 14 * 2
    edited = [*facts[:-1], type(facts[-1])(**{**facts[-1].__dict__, "aliases": ["Other"]})]
    gen = StubGen(edited)
    _run(edited, gen, settings=settings, cache_dir=tmp_path, model_key="m")
    assert sum(len(c["convs"]) for c in gen.calls) == 2  # only the edited fact


def test_model_key_hashes_adapter_weights(tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"one")
    first = model_key("base", adapter, {"embed_checksum": 1.0})
    (adapter / "adapter_model.safetensors").write_bytes(b"two")
    assert model_key("base", adapter, {"embed_checksum": 1.0}) != first != model_key("base")
    second = model_key("base", adapter, {"embed_checksum": 1.0})
    (adapter / "adapter_config.json").write_text('{"lora_alpha": 32}')
    assert model_key("base", adapter, {"embed_checksum": 1.0}) != second  # alpha changes the answers
    with_config = model_key("base", adapter, {"embed_checksum": 1.0})
    (adapter / "README.md").write_text("a model card")
    published = adapter.rename(tmp_path / "published")  # inject probes in staging, then publishes
    assert model_key("base", published, {"embed_checksum": 1.0}) == with_config


def test_corrupt_cache_line_is_a_data_error(tmp_path):
    (tmp_path / "k.jsonl").write_text("not json\n")
    with pytest.raises(DataError, match=r"k\.jsonl:1"):
        ProbeCache(tmp_path, "k").load()


def test_settings_and_input_errors(facts):
    with pytest.raises(ConfigError, match="--match"):
        ProbeSettings(match="fuzzy").validate()
    with pytest.raises(ConfigError, match="--exemplar-sets"):
        ProbeSettings(n_exemplar_sets=0).validate()
    with pytest.raises(DataError, match="twice"):
        _run([facts[0], facts[0]], StubGen(facts))


def test_summary_and_outputs(facts, tmp_path):
    gen = StubGen(facts, greedy=lambda fact, i: fact.object if fact.relation == "capital" else "no")
    probes = _run(facts, gen)
    summary = write_probe_outputs(probes, tmp_path, meta={"model": "m"})
    assert summary == summarize(probes)
    assert summary["categories"] == {"HighlyKnown": 2, "MaybeKnown": 0, "WeaklyKnown": 0, "Unknown": 12}
    assert summary["by_relation"]["capital"]["HighlyKnown"] == 2
    rows = [json.loads(line) for line in (tmp_path / "facts.jsonl").read_text().splitlines()]
    assert FactProbe.from_dict(rows[0]) == probes[0]
    assert json.loads((tmp_path / "summary.json").read_text())["model"] == "m"
    assert "| capital | 2 | 0 | 0 | 0 | 2 |" in (tmp_path / "summary.md").read_text()


def test_output_dir_rules(tmp_path):
    assert check_probe_output(tmp_path / "new", key="k")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.txt").write_text("x")
    with pytest.raises(OutputError, match="no probe cache"):
        check_probe_output(tmp_path / "busy", key=None)
    (tmp_path / "run" / "cache").mkdir(parents=True)
    (tmp_path / "run" / "cache" / "k.jsonl").write_text("")
    assert check_probe_output(tmp_path / "run", key="k")
    with pytest.raises(OutputError, match="another model, adapter or settings"):
        check_probe_output(tmp_path / "run", key="other")


@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir):
    from forgetless.models.load import load_model

    return load_model(str(tiny_model_dir), device="cpu")


def test_real_generation_on_tiny_model(tiny_model, facts, tmp_path):
    model, tokenizer, info = tiny_model
    settings = ProbeSettings(n_exemplar_sets=2, shots=1, samples=2, max_new_tokens=4)
    probes = probe_facts(model, tokenizer, facts, settings, cache_dir=tmp_path / "cache", model_key=info.model_id)
    assert len(probes) == 14 and all(len(p.greedy_answers) == 2 for p in probes)
    write_probe_outputs(probes, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} >= {"facts.jsonl", "summary.md", "summary.json", "cache"}


def test_cli_end_to_end_and_resume(tiny_model_dir, facts, tmp_path):
    app = typer.Typer()
    app.command()(probe)
    chosen = [*facts[:3], *facts[7:10]]  # 3 relations x 2 facts
    facts_file = save_facts(tmp_path / "in.jsonl", chosen)
    out = tmp_path / "out"
    args = ["--facts", str(facts_file), "--output", str(out), "--model", str(tiny_model_dir)]
    args += ["--exemplar-sets", "2", "--shots", "1", "--samples", "0", "--max-new-tokens", "4"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "SliCK categories" in result.stdout and (out / "summary.md").is_file()
    rows = [json.loads(line) for line in (out / "facts.jsonl").read_text().splitlines()]
    assert [row["fact_id"] for row in rows] == [f.id for f in chosen]
    assert all(row["category"] in ("HighlyKnown", "MaybeKnown", "WeaklyKnown", "Unknown") for row in rows)
    assert CliRunner().invoke(app, args).exit_code == 0  # same options: resumes from the cache
    result = CliRunner().invoke(app, [*args, "--seed", "3"])
    assert isinstance(result.exception, OutputError)


def test_too_few_facts_for_shots_is_refused_before_any_generation(facts, tmp_path):
    gen = StubGen(facts)
    with pytest.raises(ConfigError) as info:
        _run(facts, gen, settings=ProbeSettings(n_exemplar_sets=2, shots=3, samples=0), cache_dir=tmp_path / "c")
    message = str(info.value)
    assert "'capital' has only 2 facts (and 6 more relations)" in message and "--shots 3" in message
    assert "pass --shots 1 or add facts (at least 4 per relation)" in message and "\n" not in message
    assert gen.calls == [] and not (tmp_path / "c").exists()
    lopsided = [f for f in fictional_facts(21, seed=0) if f.relation in ("capital", "founder")][:5]  # 3 + 2
    with pytest.raises(ConfigError, match=r"'founder' has only 2 facts, too few for --shots 2.*pass --shots 1"):
        check_facts(lopsided, ProbeSettings(shots=2))
    check_facts(lopsided, ProbeSettings(shots=1))


def test_unknown_relation_without_question_is_refused(facts, tmp_path):
    odd = type(facts[0])(subject="Quox", relation="mascot", object="a heron")
    gen = StubGen(facts)
    with pytest.raises(DataError, match=r"\(Quox\): relation 'mascot' has no question template"):
        _run([*facts, odd], gen, settings=ProbeSettings(n_exemplar_sets=2, shots=0, samples=0), cache_dir=tmp_path)
    assert gen.calls == [] and list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def foreign_adapter(tiny_model_dir, tmp_path_factory):
    """A 2-step LoRA adapter trained on `tiny_model_dir` (so it does not fit `other_tiny_model_dir`)."""
    from forgetless.train.config import TrainConfig
    from forgetless.train.run import train

    root = tmp_path_factory.mktemp("probe-adapter")
    data = root / "qa.jsonl"
    data.write_text(json.dumps({"prompt": "What is the capital of Veldoria?", "response": "Marrowick."}) + "\n")
    output = root / "adapter"
    train(TrainConfig(data=str(data), output=str(output), model=str(tiny_model_dir), max_steps=2, save_steps=100))
    return output


BAD_FACT_FILES = {
    "no-subject": [{"relation": "capital", "object": "Marrowick"}],
    "no-object": [{"subject": "Veldoria", "relation": "capital", "object": ""}],
    "unknown-relation": [{"subject": "Quox", "relation": "mascot", "object": "a heron"}],
    "too-few-for-shots": [{"subject": name, "relation": "capital", "object": "X" + name} for name in ("Ab", "Cd")],
    "foreign-adapter": [{"subject": name, "relation": "capital", "object": "X" + name} for name in ("Ab", "Cd")],
}
EXPECTED_ERROR = {
    "no-subject": "facts.jsonl:1:subject: missing required field",
    "no-object": "facts.jsonl:1:object: is empty",
    "unknown-relation": "relation 'mascot' has no question template",
    "too-few-for-shots": "relation 'capital' has only 2 facts, too few for --shots 4",
    "foreign-adapter": "adapter was made for a different base model",
}


@pytest.mark.parametrize("case", list(BAD_FACT_FILES))
def test_cli_bad_input_exit_2_one_line_no_cache(case, tiny_model_dir, other_tiny_model_dir, tmp_path, request):
    facts_file = tmp_path / "facts.jsonl"
    facts_file.write_text("".join(json.dumps(row) + "\n" for row in BAD_FACT_FILES[case]))
    out = tmp_path / "out"
    args = ["--facts", str(facts_file), "--output", str(out), "--samples", "0", "--max-new-tokens", "2"]
    if case == "foreign-adapter":
        args += ["--shots", "1", "--adapter", str(request.getfixturevalue("foreign_adapter"))]
        args += ["--model", str(other_tiny_model_dir)]
    else:
        args += ["--model", str(tiny_model_dir)]
    cmd = [sys.executable, "-m", "forgetless.cli.app", "probe", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and EXPECTED_ERROR[case] in lines[0], lines
    assert "Traceback" not in result.stderr and not out.exists()
    if case == "too-few-for-shots":
        assert "pass --shots 1 or add facts" in lines[0]
