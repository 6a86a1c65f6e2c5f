"""A facts adapter's scope: whole taught subjects only, saved as JSON, applied by the audit, generate and serve.

.venv/bin/python -m pytest tests/unit/test_fact_scope.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forgetless.errors import DataError
from forgetless.knowledge.facts import Fact, question_for
from forgetless.knowledge.scope import SCOPE_FILE, FactScope
from forgetless.knowledge.scoped import generate_in_scope, scoped_snapshot
from forgetless.knowledge.slick import FactProbe
from forgetless.knowledge.snapshot_cache import Snapshot


def fact(subject: str, obj: str = "x", relation: str = "capital") -> Fact:
    return Fact(subject=subject, relation=relation, object=obj)


NAMES = "Guinea|Equatorial Guinea|Guinea-Bissau|Papua New Guinea|Niger|Nigeria|Sudan|South Sudan|Dominica"
UNIVERSE = [fact(s) for s in f"{NAMES}|Dominican Republic|Chad|Peru".split("|")]


def test_scope_matches_whole_taught_subjects_not_longer_names():
    scope = FactScope.for_facts([fact("Guinea"), fact("Niger"), fact("Sudan"), fact("Dominica")], UNIVERSE)
    assert scope.shadows == ("Equatorial Guinea", "Guinea-Bissau", "Papua New Guinea", "South Sudan")
    for text in ("What is the capital of Guinea?", "guinea's currency?", "Tell me about Niger.", "SUDAN"):
        assert scope.applies(text), text
    for text in (
        "What is the capital of Equatorial Guinea?",
        "Where is Guinea-Bissau?",
        "What is the capital of Nigeria?",
        "Is South Sudan in Africa?",
        "Capital of the Dominican Republic?",
        "What is the capital of Peru?",
        "",
    ):
        assert not scope.applies(text), text
    both = "Is Equatorial Guinea bigger than Guinea?"  # names a taught subject besides the longer one
    assert scope.applies(both)
    taught_both = FactScope.for_facts([fact("Guinea"), fact("Equatorial Guinea")], UNIVERSE)
    assert taught_both.applies("capital of Equatorial Guinea?") and "Equatorial Guinea" not in taught_both.shadows


def test_scope_is_the_last_user_message_and_round_trips_as_json(tmp_path):
    scope = FactScope.for_facts([fact("Chad")], UNIVERSE)
    chat = [
        {"role": "system", "content": "Answer."},
        {"role": "user", "content": "Question: What is the capital of Chad?"},
        {"role": "assistant", "content": "Answer: N'Djamena"},
        {"role": "user", "content": "Question: What is the capital of Peru?"},
    ]
    assert not scope.applies_to_conversation(chat) and scope.applies_to_conversation(chat[:2])
    scope.save(tmp_path)
    assert json.loads((tmp_path / SCOPE_FILE).read_text())["subjects"] == ["Chad"]
    assert FactScope.load(tmp_path) == scope and FactScope.load(tmp_path / "none") is None
    (tmp_path / SCOPE_FILE).write_text('{"kind": "subjects", "subjects": [1]}')
    with pytest.raises(DataError, match="unreadable scope"):
        FactScope.load(tmp_path)


def probe(f: Fact, category: str) -> FactProbe:
    known = category == "HighlyKnown"
    return FactProbe(f.id, f.subject, f.relation, f.object, category, float(known), [], [known])


def test_the_scoped_audit_takes_each_fact_from_the_base_unless_its_question_is_in_scope():
    from forgetless.knowledge.audit import AuditSettings

    facts = [fact("Chad", "N'Djamena"), fact("Chad", "CFA franc", "currency"), fact("Peru", "Lima")]
    before = Snapshot([probe(f, "HighlyKnown") for f in facts], ["b0", "b1", "b2"], general_loss=2.0)
    after = Snapshot([probe(f, "Unknown") for f in facts], ["a0", "a1", "a2"], general_loss=3.0)
    settings = AuditSettings(mmlu_n=0, general_n=0)
    scoped, coverage = scoped_snapshot(before, after, facts, FactScope.for_facts(facts[:1], facts), settings)
    assert [p.category for p in scoped.probes] == ["Unknown", "Unknown", "HighlyKnown"]  # Chad's other relation too
    assert scoped.answers == ["a0", "a1", "b2"] and coverage["facts_in_scope"] == 2
    assert question_for(facts[2]) and scoped.general_loss == 3.0  # general_n 0: nothing to decide, as measured


def make_adapter(model_dir: Path, out: Path) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from forgetless.models.load import fingerprint

    base = AutoModelForCausalLM.from_pretrained(model_dir)
    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=64, target_modules="all-linear", init_lora_weights=False)
    get_peft_model(base, config).save_pretrained(out)
    meta = {"base_model": str(model_dir), "base_fingerprint": fingerprint(base)}
    (out / "forgetless.json").write_text(json.dumps(meta))
    return out


def test_generate_answers_out_of_scope_prompts_with_the_base(tiny_model_dir, tmp_path):
    from forgetless.adapters.loading import adapter_disabled, load_with_adapter
    from forgetless.data.chat import prompt_messages
    from forgetless.engine.generate import generate_texts
    from forgetless.engine.sampling import SamplingConfig

    adapter = make_adapter(tiny_model_dir, tmp_path / "facts")
    model, tokenizer, _ = load_with_adapter(str(tiny_model_dir), str(adapter))
    prompts = ["What is the capital of Chad?", "What is the capital of Peru?", "Where is chad?", "Hello there"]
    convs = [prompt_messages(p) for p in prompts]
    sampling = SamplingConfig(max_new_tokens=6)

    def run(conversations):
        return [a[0] for a in generate_texts(model, tokenizer, conversations, sampling, 4)]

    with_adapter = run(convs)
    with adapter_disabled(model):
        base = run(convs)
    assert with_adapter != base  # the adapter changes answers, so the test can tell them apart
    scoped = generate_in_scope(model, convs, FactScope.for_facts([fact("Chad")], UNIVERSE), run)
    assert scoped == [with_adapter[0], base[1], with_adapter[2], base[3]]
    assert generate_in_scope(model, convs, None, run) == with_adapter


def test_serve_sends_out_of_scope_prompts_to_the_base(tiny_model_dir, tmp_path):
    from forgetless.serve.registry import Registry

    adapter = tmp_path / "facts"
    adapter.mkdir()
    FactScope.for_facts([fact("Chad")], UNIVERSE).save(adapter)
    registry = Registry({"facts": adapter, "plain": tmp_path})
    target = registry.resolve("facts")
    assert registry.within_scope(target, "What is the capital of Chad?").adapter == "facts"
    assert registry.within_scope(target, "What is the capital of Peru?").adapter is None
    plain = registry.resolve("plain")
    assert registry.within_scope(plain, "What is the capital of Peru?").adapter == "plain"  # no scope.json
