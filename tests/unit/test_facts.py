"""Fact records: JSONL round trip, validation errors naming file:line:field, relation templates."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from forgetless.errors import ConfigError, DataError
from forgetless.knowledge import (
    Fact,
    RelationTemplates,
    fact_id,
    load_facts,
    paraphrases_for,
    question_for,
    save_facts,
)


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _good(**extra) -> str:
    return json.dumps({"subject": "France", "relation": "capital", "object": "Paris", **extra})


def test_fact_id_is_stable_and_answers_deduplicated():
    fact = Fact("France", "capital", "Paris", aliases=["Paris", "", "  ", "Paname"])
    assert fact.id == fact_id("France", "capital", "Paris") == Fact("France", "capital", "Paris").id
    assert len(fact.id) == 12 and re.fullmatch(r"[0-9a-f]{12}", fact.id)
    # the id is sha1("relation|subject|object")[:12]; it is saved in fact files, so its value is pinned
    assert fact.id == hashlib.sha1(b"capital|France|Paris").hexdigest()[:12] == "b526e8537967"
    assert fact.answers == ["Paris", "Paname"]
    assert Fact("France", "capital", "Lyon").id != fact.id
    swapped = [fact_id("Paris", "capital", "France"), fact_id("France", "currency", "Paris")]
    assert len({fact.id, *swapped}) == 3  # each field counts, in its own place


def test_round_trip(tmp_path):
    facts = [
        Fact("France", "capital", "Paris", aliases=["Paname"], paraphrases=["Which city is its capital?"]),
        Fact("Velmoria", "founder", "Ada Quill", question="Who founded Velmoria?", id="custom-1"),
    ]
    path = save_facts(tmp_path / "out" / "facts.jsonl", facts)
    assert load_facts(path) == facts
    assert not list(path.parent.glob(".*.tmp"))  # atomic write left no temp file


def test_blank_lines_skipped_and_defaults(tmp_path):
    path = _write(tmp_path / "f.jsonl", ["", _good(), "   "])
    [fact] = load_facts(path)
    assert (fact.aliases, fact.paraphrases, fact.question) == ([], [], None)
    assert fact.id == fact_id("France", "capital", "Paris")


@pytest.mark.parametrize(
    ("lines", "line", "field"),
    [
        (['{"subject": "France", "relation": "capital"'], 1, None),  # malformed JSON
        ([_good(), "[1, 2]"], 2, None),  # not an object
        ([_good(), json.dumps({"relation": "capital", "object": "Paris"})], 2, "subject"),
        ([json.dumps({"subject": "France", "object": "Paris"})], 1, "relation"),
        ([json.dumps({"subject": "France", "relation": "capital"})], 1, "object"),
        ([json.dumps({"subject": "France", "relation": "capital", "object": ""})], 1, "object"),
        ([json.dumps({"subject": 3, "relation": "capital", "object": "Paris"})], 1, "subject"),
        ([_good(aliases="Paname")], 1, "aliases"),
        ([_good(aliases=["Paname", 7])], 1, "aliases"),
        ([_good(paraphrases=[None])], 1, "paraphrases"),
        ([_good(question=5)], 1, "question"),
        ([_good(id=12)], 1, "id"),
        ([_good(alias=["Paname"])], 1, "alias"),  # unknown field (typo)
        ([_good(), _good()], 2, "id"),  # duplicate fact
    ],
)
def test_bad_records_name_file_line_field(tmp_path, lines, line, field):
    path = _write(tmp_path / "bad.jsonl", lines)
    with pytest.raises(DataError) as info:
        load_facts(path)
    message = str(info.value)
    expected = f"{path}:{line}" + (f":{field}" if field else "")
    assert expected in message
    assert "\n" not in message


def test_unknown_field_suggests_the_right_one(tmp_path):
    path = _write(tmp_path / "bad.jsonl", [_good(alias=["Paname"])])
    with pytest.raises(DataError, match="did you mean 'aliases'"):
        load_facts(path)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_facts(tmp_path / "nope.jsonl")
    empty = _write(tmp_path / "empty.jsonl", ["", "  "])
    with pytest.raises(DataError, match=f"{empty}: facts file is empty"):
        load_facts(empty)


# ------------------------------------------------------------------------------------------ templates


def test_question_from_template_or_fact():
    templates = RelationTemplates()
    fact = Fact("France", "capital", "Paris")
    assert question_for(fact, templates) == "What is the capital of France?"
    assert question_for(fact, templates, variant=1) == "Which city is the capital of France?"
    assert question_for(fact, templates, variant=3) == question_for(fact, templates, variant=0)  # wraps
    custom = Fact("France", "capital", "Paris", question="Capital of France?")
    assert question_for(custom, templates) == "Capital of France?"
    assert question_for(custom, templates, variant=1) == "Which city is the capital of France?"


def test_paraphrases_are_the_other_phrasings():
    templates = RelationTemplates()
    fact = Fact("France", "capital", "Paris")
    paraphrases = paraphrases_for(fact, templates)
    assert question_for(fact, templates) not in paraphrases
    assert paraphrases == ["Which city is the capital of France?", "Name the capital city of France."]
    given = Fact("France", "capital", "Paris", paraphrases=["Where does France's president work?"])
    assert paraphrases_for(given, templates) == ["Where does France's president work?"]


def test_unknown_relation_without_question_is_an_error():
    fact = Fact("Velmoria", "founder", "Ada Quill")
    with pytest.raises(DataError, match="no question template"):
        question_for(fact, RelationTemplates())
    asked = Fact("Velmoria", "founder", "Ada Quill", question="Who?", paraphrases=["Who, again?"])
    assert question_for(asked, RelationTemplates()) == "Who?"
    assert question_for(asked, RelationTemplates(), variant=1) == "Who, again?"
    assert paraphrases_for(Fact("X", "founder", "Y"), RelationTemplates()) == []


def test_templates_from_yaml(tmp_path):
    path = tmp_path / "templates.yaml"
    path.write_text(
        "founder:\n  - Who founded {subject}?\n  - '{subject} was founded by whom?'\n"
        "capital:\n  - Which city governs {subject}?\n",
        encoding="utf-8",
    )
    templates = RelationTemplates.from_yaml(path)
    assert templates.render("founder", "Acme", 1) == "Acme was founded by whom?"
    assert templates.render("capital", "France") == "Which city governs France?"  # replaces built-in
    assert "currency" in templates  # other built-ins kept
    assert "currency" not in RelationTemplates.from_yaml(path, include_builtin=False)


@pytest.mark.parametrize(
    ("text", "field", "hint"),
    [
        ("founder:\n  - Who founded {subject}?\n  - Who founded it?\n", "founder[1]", "{subject}"),
        ("founder: ['Who founded {company}, {subject}?']\n", "founder[0]", "placeholder"),
        ("founder: []\n", "founder", "non-empty list"),
        ("founder: 3\n", "founder", "non-empty list"),
    ],
)
def test_bad_templates_name_file_and_field(tmp_path, text, field, hint):
    path = tmp_path / "t.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        RelationTemplates.from_yaml(path)
    assert f"{path}:{field}" in str(info.value) and hint in str(info.value)


def test_bad_template_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        RelationTemplates.from_yaml(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="mapping"):
        RelationTemplates.from_yaml(tmp_path / "list.yaml")
    (tmp_path / "broken.yaml").write_text("founder: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="malformed YAML"):
        RelationTemplates.from_yaml(tmp_path / "broken.yaml")
