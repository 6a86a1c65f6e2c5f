"""Built-in fact sets: real country facts from countryinfo, and invented (fictional) facts."""

from __future__ import annotations

from collections import Counter

import pytest

from forgetless.errors import ConfigError
from forgetless.knowledge import (
    COUNTRY_RELATIONS,
    country_facts,
    fictional_facts,
    is_correct,
    load_facts,
    write_country_facts,
    write_fictional_facts,
)
from forgetless.knowledge.countries import country_names


@pytest.fixture(scope="module")
def facts():
    return country_facts()


def _lookup(facts, subject, relation):
    [fact] = [f for f in facts if f.subject == subject and f.relation == relation]
    return fact


def test_country_facts_size_and_coverage(facts):
    assert len(facts) >= 1000
    assert len({f.subject for f in facts}) >= 240
    counts = Counter(f.relation for f in facts)
    assert set(counts) == set(COUNTRY_RELATIONS)
    assert all(count >= 200 for count in counts.values()), counts


def test_country_facts_are_clean(facts):
    assert len({f.id for f in facts}) == len(facts)
    assert len({(f.subject, f.relation) for f in facts}) == len(facts)
    for fact in facts:
        assert fact.object.strip() and all(alias.strip() for alias in fact.aliases), fact
        assert fact.question and fact.subject in fact.question
        assert len(fact.paraphrases) >= 2


def test_known_facts(facts):
    france_capital = _lookup(facts, "France", "capital")
    assert france_capital.object == "Paris"
    assert france_capital.question == "What is the capital of France?"
    assert _lookup(facts, "Japan", "currency").object == "Japanese yen"
    assert {"JPY", "yen"} <= set(_lookup(facts, "Japan", "currency").aliases)
    assert _lookup(facts, "Croatia", "currency").object == "Euro"
    assert set(_lookup(facts, "Switzerland", "official_language").answers) == {"German", "French", "Italian"}
    assert _lookup(facts, "Colombia", "capital").aliases == ["Bogota"]
    assert _lookup(facts, "Germany", "calling_code").object == "+49"
    assert _lookup(facts, "Jamaica", "calling_code").object == "+1-876"
    assert _lookup(facts, "France", "tld").object == ".fr"
    assert _lookup(facts, "France", "iso_alpha3").object == "FRA"
    assert is_correct("Washington", _lookup(facts, "United States", "capital").answers)


def test_fund_codes_and_stale_entries_are_skipped(facts):
    currency_answers = {a for f in facts if f.relation == "currency" for a in f.answers}
    assert not {"USN", "USS", "CHE", "CHW", "BOV", "CLF", "UYI", "HRK"} & currency_answers
    subjects = {f.subject for f in facts}
    assert "Wales" not in subjects  # only duplicated the UK's ISO code
    assert not any(f.relation == "demonym" and f.object == f.subject for f in facts)


def test_country_facts_are_deterministic(facts, tmp_path):
    assert [f.to_dict() for f in country_facts()] == [f.to_dict() for f in facts]
    path = tmp_path / "countries.jsonl"
    assert write_country_facts(path) == len(facts)
    assert load_facts(path) == facts


# ------------------------------------------------------------------------------------------ fictional


def test_fictional_reproducible_and_seeded():
    first = fictional_facts(60, seed=7)
    assert [f.to_dict() for f in fictional_facts(60, seed=7)] == [f.to_dict() for f in first]
    other = fictional_facts(60, seed=8)
    assert [f.subject for f in other] != [f.subject for f in first]
    assert [f.to_dict() for f in fictional_facts(30, seed=7)] == [f.to_dict() for f in first[:30]]


def test_fictional_facts_are_well_formed():
    facts = fictional_facts(400, seed=0)
    assert len(facts) == 400
    assert len({f.subject.casefold() for f in facts}) == 400
    assert len({f.id for f in facts}) == 400
    assert len({f.relation for f in facts}) >= 5
    for fact in facts:
        assert fact.object.strip() and all(alias.strip() for alias in fact.aliases)
        assert fact.question and 2 <= len(fact.paraphrases) <= 3
        assert fact.question not in fact.paraphrases
        assert all(fact.subject.casefold() in text.casefold() for text in [fact.question, *fact.paraphrases])


def test_fictional_names_are_not_real():
    real = {name.casefold() for name in country_names()}
    real |= {f.object.casefold() for f in country_facts() if f.relation == "capital"}
    for fact in fictional_facts(2000, seed=3):
        assert fact.subject.casefold() not in real
        assert fact.object.casefold() not in real


def test_fictional_write_and_bad_count(tmp_path):
    path = tmp_path / "fictional.jsonl"
    assert write_fictional_facts(path, 25, seed=1) == 25
    assert load_facts(path) == fictional_facts(25, seed=1)
    assert fictional_facts(0, seed=1) == []
    with pytest.raises(ConfigError, match="non-negative"):
        fictional_facts(-1, seed=1)
