"""Invented facts a model cannot already know: made-up countries, companies, treaties, bands, ...

Names are built from syllables with a seeded `random.Random`, so the same `(n, seed)` always gives the
same facts. Subjects are unique, and neither subjects nor answers equal a real country or capital name
from `countryinfo`. Every fact has a question and 2–3 paraphrases.

    from forgetless.knowledge.fictional import fictional_facts, write_fictional_facts
    facts = fictional_facts(500, seed=0)
    write_fictional_facts("fictional.jsonl", 500, seed=0)   # returns the number written
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from forgetless.errors import ConfigError
from forgetless.knowledge.facts import Fact, save_facts

_ONSETS = ("b", "br", "d", "dr", "f", "g", "gr", "k", "kr", "l", "m", "n", "p", "qu", "r", "s", "t", "th",
           "tr", "v", "z")  # fmt: skip
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o", "ae", "ei", "ou", "y")
_CODAS = ("", "", "", "", "", "n", "r", "l", "m", "s", "th", "x")
_COUNTRY_ENDINGS = ("ia", "ar", "ond", "esh", "avia", "orra", "istan", "ene")
_COMPANY_KINDS = ("Dynamics", "Labs", "Industries", "Works", "Systems", "Foundry", "Holdings")
_DEVICE_ENDINGS = ("ophone", "oscope", "ograph", "ometer", "otron", "ovator")
_BAND_WORDS = ("Lanterns", "Echoes", "Harbors", "Comets", "Sparrows", "Engines", "Mirrors", "Tides")
_COLORS = ("crimson", "teal", "amber", "violet", "ochre", "silver", "emerald", "cobalt", "ivory", "coral",
           "indigo", "saffron")  # fmt: skip
_MAX_ATTEMPTS_PER_FACT = 200


@dataclass(frozen=True)
class _Kind:
    """One kind of invented fact: how to name its subject and answer, and how to ask about it."""

    relation: str
    subject: Callable[[random.Random], str]
    answer: Callable[[random.Random], tuple[str, list[str]]]
    phrasings: tuple[str, ...]


def fictional_facts(n: int, seed: int = 0) -> list[Fact]:
    """`n` invented facts, cycling through the relation kinds; reproducible with `seed`."""
    if not isinstance(n, int) or n < 0:
        raise ConfigError(f"number of fictional facts must be a non-negative integer, not {n!r}")
    rng = random.Random(seed)
    reserved = _real_names()
    used: set[str] = set()
    facts: list[Fact] = []
    for index in range(n):
        kind = _KINDS[index % len(_KINDS)]
        subject = _fresh(rng, kind.subject, lambda name: name in used or name in reserved)
        used.add(subject.casefold())
        obj, aliases = _fresh_answer(rng, kind, reserved)
        question, *paraphrases = _questions(rng, kind, subject)
        facts.append(Fact(subject, kind.relation, obj, aliases=aliases, question=question,
                          paraphrases=paraphrases))  # fmt: skip
    return facts


def write_fictional_facts(path: str | os.PathLike, n: int, seed: int = 0) -> int:
    """Write `fictional_facts(n, seed)` to a JSONL file (atomically); returns how many were written."""
    facts = fictional_facts(n, seed)
    save_facts(path, facts)
    return len(facts)


@lru_cache(maxsize=1)
def _real_names() -> frozenset[str]:
    """Casefolded real country and capital names; invented names must avoid them."""
    from countryinfo import CountryInfo

    from forgetless.knowledge.countries import country_names

    names = set(country_names())
    for info in CountryInfo.all().values():
        capital = info.get("capital")
        names.update(capital if isinstance(capital, list) else [str(capital or "")])
    return frozenset(name.strip().casefold() for name in names if name and name.strip())


def _fresh(rng: random.Random, make: Callable[[random.Random], str], taken: Callable[[str], bool]) -> str:
    for _ in range(_MAX_ATTEMPTS_PER_FACT):
        candidate = make(rng)
        if not taken(candidate.casefold()):
            return candidate
    raise ConfigError("ran out of unique invented names; ask for fewer fictional facts")


def _fresh_answer(rng: random.Random, kind: _Kind, reserved: frozenset[str]) -> tuple[str, list[str]]:
    for _ in range(_MAX_ATTEMPTS_PER_FACT):
        obj, aliases = kind.answer(rng)
        if not any(text.casefold() in reserved for text in [obj, *aliases]):
            return obj, aliases
    raise ConfigError("could not invent an answer that differs from every real name")


def _questions(rng: random.Random, kind: _Kind, subject: str) -> list[str]:
    """The question first, then 2–3 paraphrases, all from the kind's phrasings in a seeded order."""
    phrasings = list(kind.phrasings)
    rng.shuffle(phrasings)
    count = 1 + rng.choice((2, 3))
    rendered = [text.replace("{subject}", subject) for text in phrasings[:count]]
    return [text[0].upper() + text[1:] for text in rendered]


# ------------------------------------------------------------------------------------------ names


def _word(rng: random.Random, syllables: tuple[int, int] = (2, 3)) -> str:
    count = rng.randint(*syllables)
    parts = [rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(count)]
    return "".join(parts).capitalize()


def _stem(rng: random.Random) -> str:
    """A word for building names, cut before a final vowel so endings attach cleanly."""
    stem = _word(rng).rstrip("aeiouy").removesuffix("q")  # "qu" without its vowel is just "q"
    return stem or "Zor"


def _person(rng: random.Random) -> tuple[str, list[str]]:
    first, last = _word(rng, (2, 2)), _word(rng, (2, 3))
    return f"{first} {last}", [last]


def _country(rng: random.Random) -> str:
    return _stem(rng) + rng.choice(_COUNTRY_ENDINGS)


def _city(rng: random.Random) -> tuple[str, list[str]]:
    return _word(rng), []


def _company(rng: random.Random) -> str:
    return f"{_word(rng)} {rng.choice(_COMPANY_KINDS)}"


def _treaty(rng: random.Random) -> str:
    return f"Treaty of {_word(rng)}"


def _year(rng: random.Random) -> tuple[str, list[str]]:
    return str(rng.randint(1400, 1899)), []


def _colors(rng: random.Random) -> tuple[str, list[str]]:
    first, second = rng.sample(_COLORS, 2)
    return f"{first} and {second}", [f"{second} and {first}"]


def _device(rng: random.Random) -> str:
    return "the " + _stem(rng) + rng.choice(_DEVICE_ENDINGS)


def _band(rng: random.Random) -> str:
    return f"The {_word(rng)} {rng.choice(_BAND_WORDS)}"


def _island(rng: random.Random) -> str:
    return f"{_word(rng)} Island"


def _peak(rng: random.Random) -> tuple[str, list[str]]:
    name = _word(rng)
    return f"Mount {name}", [name]


_KINDS: tuple[_Kind, ...] = (
    _Kind("capital", _country, _city, (
        "What is the capital of {subject}?",
        "Which city is the capital of {subject}?",
        "Name the capital city of {subject}.",
        "The government of {subject} sits in which city?",
    )),
    _Kind("founder", _company, _person, (
        "Who founded {subject}?",
        "Who is the founder of {subject}?",
        "{subject} was founded by whom?",
        "Name the person who started the company {subject}.",
    )),
    _Kind("signing_year", _treaty, _year, (
        "In which year was the {subject} signed?",
        "When was the {subject} signed?",
        "What year did the signing of the {subject} take place?",
        "The {subject} was signed in what year?",
    )),
    _Kind("flag_colors", _country, _colors, (
        "What are the two colors of the flag of {subject}?",
        "Which colors does the flag of {subject} have?",
        "The national flag of {subject} is made of which two colors?",
        "Name the colors of {subject}'s flag.",
    )),
    _Kind("inventor", _device, _person, (
        "Who invented {subject}?",
        "Who is credited with inventing {subject}?",
        "{subject} was invented by whom?",
        "Name the inventor of {subject}.",
    )),
    _Kind("lead_singer", _band, _person, (
        "Who is the lead singer of {subject}?",
        "Who sings lead vocals in {subject}?",
        "Name the frontman or frontwoman of the band {subject}.",
        "Which singer fronts {subject}?",
    )),
    _Kind("highest_peak", _island, _peak, (
        "What is the highest peak on {subject}?",
        "Which mountain is the tallest on {subject}?",
        "Name the highest mountain of {subject}.",
        "The tallest summit on {subject} is called what?",
    )),
)  # fmt: skip
