"""Facts (subject, relation, object) with aliases and questions; JSONL load/save; relation templates.

A fact file is JSONL, one object per line:

    {"subject": "France", "relation": "capital", "object": "Paris", "aliases": [],
     "question": "What is the capital of France?", "paraphrases": ["Which city is France's capital?"]}

Only `subject`, `relation` and `object` are required; `id` defaults to a stable hash of
`relation|subject|object`. Every problem is a DataError naming `file:line:field` and how to fix it.

    facts = load_facts("facts.jsonl")
    templates = RelationTemplates.from_yaml("templates.yaml")   # or RelationTemplates() for built-ins
    question_for(facts[0], templates)              # fact.question, else the first template phrasing
    paraphrases_for(facts[0], templates)           # fact.paraphrases, else the other phrasings
    save_facts("out.jsonl", facts)                 # atomic
"""

from __future__ import annotations

import difflib
import hashlib
import io
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from forgetless.errors import ConfigError, DataError, where
from forgetless.utils.fileio import read_utf8, write_jsonl_atomic

REQUIRED_FIELDS = ("subject", "relation", "object")
OPTIONAL_FIELDS = ("aliases", "question", "paraphrases", "id")
_PLACEHOLDER = "{subject}"
_ANY_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")

BUILTIN_TEMPLATES: dict[str, tuple[str, ...]] = {
    "capital": (
        "What is the capital of {subject}?",
        "Which city is the capital of {subject}?",
        "Name the capital city of {subject}.",
    ),
    "currency": (
        "What is the currency of {subject}?",
        "Which currency is used in {subject}?",
        "What money is legal tender in {subject}?",
    ),
    "region": (
        "In which region of the world is {subject}?",
        "Which world region does {subject} belong to?",
        "{subject} is located in which region?",
    ),
    "subregion": (
        "In which subregion of the world is {subject}?",
        "Which geographic subregion does {subject} belong to?",
        "{subject} is part of which subregion?",
    ),
    "demonym": (
        "What is the demonym for people from {subject}?",
        "What are people from {subject} called?",
        "A person from {subject} is described as what?",
    ),
    "official_language": (
        "What is an official language of {subject}?",
        "Which language is official in {subject}?",
        "Name an official language of {subject}.",
    ),
    "calling_code": (
        "What is the international calling code of {subject}?",
        "Which telephone country code does {subject} use?",
        "What code do you dial to call {subject} from abroad?",
    ),
    "tld": (
        "What is the country-code top-level domain of {subject}?",
        "Which internet domain suffix belongs to {subject}?",
        "Websites from {subject} typically end in which top-level domain?",
    ),
    "iso_alpha2": (
        "What is the ISO 3166-1 alpha-2 code of {subject}?",
        "Which two-letter ISO country code does {subject} have?",
        "Give the two-letter ISO code for {subject}.",
    ),
    "iso_alpha3": (
        "What is the ISO 3166-1 alpha-3 code of {subject}?",
        "Which three-letter ISO country code does {subject} have?",
        "Give the three-letter ISO code for {subject}.",
    ),
}


def fact_id(subject: str, relation: str, obj: str) -> str:
    """A stable id: the first 12 hex digits of sha1(`relation|subject|object`)."""
    return hashlib.sha1(f"{relation}|{subject}|{obj}".encode()).hexdigest()[:12]


@dataclass
class Fact:
    """One fact: `object` answers "`relation` of `subject`"; `aliases` are other correct answers."""

    subject: str
    relation: str
    object: str
    aliases: list[str] = field(default_factory=list)
    question: str | None = None
    paraphrases: list[str] = field(default_factory=list)
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            self.id = fact_id(self.subject, self.relation, self.object)

    @property
    def answers(self) -> list[str]:
        """The object then its aliases, de-duplicated in order, empty strings dropped."""
        out: list[str] = []
        for answer in [self.object, *self.aliases]:
            if answer.strip() and answer not in out:
                out.append(answer)
        return out

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "subject": self.subject, "relation": self.relation}
        out.update(object=self.object, aliases=list(self.aliases))
        if self.question:
            out["question"] = self.question
        out["paraphrases"] = list(self.paraphrases)
        return out


# ---------------------------------------------------------------------------------------------- JSONL


def load_facts(path: str | os.PathLike) -> list[Fact]:
    """Load and validate a JSONL fact file; raises DataError naming `file:line:field` on any problem."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: facts file not found; check the path (JSONL, one fact per line)")
    facts: list[Fact] = []
    seen: dict[str, int] = {}
    with io.StringIO(read_utf8(path, "facts file")) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            fact = fact_from_dict(_parse_line(line, path, number), path, number)
            if fact.id in seen:
                raise DataError(
                    f"{where(path, number, 'id')}: duplicate fact id {fact.id!r} (also on line "
                    f"{seen[fact.id]}); remove the duplicate or give it another id"
                )
            seen[fact.id] = number
            facts.append(fact)
    if not facts:
        raise DataError(f"{path}: facts file is empty; add one JSON object per line with {_required_hint()}")
    return facts


def cap_per_relation(facts: list[Fact], per_relation: int | None, seed: int = 0) -> list[Fact]:
    """At most `per_relation` facts of each relation (a seeded sample, kept in file order); None keeps all."""
    if per_relation is None:
        return list(facts)
    import random

    by_relation: dict[str, list[int]] = {}
    for index, fact in enumerate(facts):
        by_relation.setdefault(fact.relation, []).append(index)
    rng = random.Random(f"per-relation/{seed}")
    kept = {
        i
        for group in by_relation.values()
        for i in (rng.sample(group, per_relation) if len(group) > per_relation else group)
    }
    return [fact for index, fact in enumerate(facts) if index in kept]


def save_facts(path: str | os.PathLike, facts: Iterable[Fact]) -> Path:
    """Write facts as JSONL atomically (a crash never leaves a half-written file)."""
    return write_jsonl_atomic(path, (fact.to_dict() for fact in facts))


def fact_from_dict(raw: Any, source: str | os.PathLike = "<facts>", line: int | None = None) -> Fact:
    """Validate one raw record (a parsed JSON object) and build its Fact."""
    if not isinstance(raw, dict):
        raise DataError(
            f"{where(str(source), line)}: expected a JSON object, got {type(raw).__name__}; "
            f"write one object per line with {_required_hint()}"
        )
    for key in raw:
        if key not in REQUIRED_FIELDS + OPTIONAL_FIELDS:
            raise DataError(f"{where(str(source), line, str(key))}: unknown field; {_field_hint(str(key))}")
    values = {key: _required_text(raw, key, source, line) for key in REQUIRED_FIELDS}
    question = raw.get("question")
    if question is not None and not (isinstance(question, str) and question.strip()):
        raise DataError(
            f"{where(str(source), line, 'question')}: must be a non-empty string or null, "
            f"got {question!r}; fix or remove it"
        )
    fact_id_value = raw.get("id", "")
    if not isinstance(fact_id_value, str):
        raise DataError(f"{where(str(source), line, 'id')}: must be a string, got {fact_id_value!r}")
    return Fact(
        subject=values["subject"],
        relation=values["relation"],
        object=values["object"],
        aliases=_string_list(raw, "aliases", source, line),
        question=question,
        paraphrases=_string_list(raw, "paraphrases", source, line),
        id=fact_id_value,
    )


def _parse_line(line: str, path: Path, number: int) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{where(path, number)}: malformed JSON ({exc.msg} at column {exc.colno}); "
            "each line must hold one JSON object"
        ) from None


def _required_text(raw: dict, key: str, source: str | os.PathLike, line: int | None) -> str:
    if key not in raw:
        raise DataError(f"{where(str(source), line, key)}: missing required field; every fact needs {key!r}")
    value = raw[key]
    if not isinstance(value, str):
        raise DataError(f"{where(str(source), line, key)}: must be a string, got {type(value).__name__} {value!r}")
    if not value.strip():
        raise DataError(f"{where(str(source), line, key)}: is empty; give a non-empty string")
    return value.strip()


def _string_list(raw: dict, key: str, source: str | os.PathLike, line: int | None) -> list[str]:
    value = raw.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise DataError(
            f'{where(str(source), line, key)}: must be a list of strings, got {value!r}; write e.g. "{key}": ["..."]'
        )
    return [item.strip() for item in value if item.strip()]


def _required_hint() -> str:
    return ", ".join(f'"{key}"' for key in REQUIRED_FIELDS)


def _field_hint(key: str) -> str:
    allowed = REQUIRED_FIELDS + OPTIONAL_FIELDS
    close = difflib.get_close_matches(key, allowed, n=1)
    suggestion = f"did you mean {close[0]!r}? " if close else ""
    return f"{suggestion}allowed fields are {', '.join(allowed)}"


# ---------------------------------------------------------------------------------------- templates


class RelationTemplates:
    """Question phrasings per relation; each phrasing contains the placeholder `{subject}`.

    `RelationTemplates()` has the built-in country relations; user phrasings (a mapping, or a YAML file
    `relation: [phrasing, ...]`) replace the built-in ones of the same relation.
    """

    def __init__(self, phrasings: Mapping[str, Sequence[str]] | None = None, *, include_builtin: bool = True) -> None:
        self._phrasings: dict[str, tuple[str, ...]] = dict(BUILTIN_TEMPLATES) if include_builtin else {}
        for relation, items in (phrasings or {}).items():
            self._phrasings[relation] = tuple(_check_phrasings(relation, items, "<templates>"))

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, *, include_builtin: bool = True) -> RelationTemplates:
        """Load `relation: [phrasing, ...]` from YAML; ConfigError naming `file:field` on a problem."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: templates file not found; check the path")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark is not None else None
            raise ConfigError(f"{where(str(path), line)}: malformed YAML; fix the syntax") from None
        if not isinstance(data, dict) or not data:
            raise ConfigError(f"{path}: templates must be a YAML mapping `relation: [phrasing, ...]`")
        checked = {str(rel): _check_phrasings(str(rel), items, str(path)) for rel, items in data.items()}
        return cls(checked, include_builtin=include_builtin)

    def relations(self) -> list[str]:
        return sorted(self._phrasings)

    def __contains__(self, relation: object) -> bool:
        return relation in self._phrasings

    def phrasings(self, relation: str) -> list[str]:
        """The raw phrasings of a relation (empty when it has none)."""
        return list(self._phrasings.get(relation, ()))

    def render(self, relation: str, subject: str, variant: int = 0) -> str:
        """Phrasing number `variant` (wrapping around) with the subject filled in."""
        items = self._phrasings.get(relation)
        if not items:
            raise DataError(
                f"relation {relation!r} has no question template; add it to a templates YAML "
                f"(`{relation}: [\"... {_PLACEHOLDER} ...?\"]`) or give the fact a 'question'"
            )
        return items[variant % len(items)].replace(_PLACEHOLDER, subject)

    def render_all(self, relation: str, subject: str) -> list[str]:
        return [item.replace(_PLACEHOLDER, subject) for item in self._phrasings.get(relation, ())]


def _check_phrasings(relation: str, items: Any, source: str) -> list[str]:
    if isinstance(items, str):
        items = [items]
    if not isinstance(items, (list, tuple)) or not items:
        raise ConfigError(f"{where(source, field=relation)}: must be a non-empty list of phrasings, got {items!r}")
    for index, item in enumerate(items):
        loc = where(source, field=f"{relation}[{index}]")
        if not isinstance(item, str) or _PLACEHOLDER not in item:
            raise ConfigError(f"{loc}: phrasing {item!r} lacks the {_PLACEHOLDER} placeholder; add it")
        unknown = [name for name in _ANY_PLACEHOLDER.findall(item) if name != "subject"]
        if unknown:
            raise ConfigError(f"{loc}: unknown placeholder {{{unknown[0]}}}; only {_PLACEHOLDER} is allowed")
    return [item.strip() for item in items]


def question_for(fact: Fact, templates: RelationTemplates | None = None, variant: int = 0) -> str:
    """The question to ask: `fact.question` for variant 0 if set, else template phrasing `variant`.

    Without a template for the relation, variants > 0 fall back to the fact's paraphrases.
    """
    if variant == 0 and fact.question:
        return fact.question
    templates = templates if templates is not None else RelationTemplates()
    if fact.relation in templates:
        return templates.render(fact.relation, fact.subject, variant)
    if fact.paraphrases and variant > 0:
        return fact.paraphrases[(variant - 1) % len(fact.paraphrases)]
    if fact.question:
        return fact.question
    return templates.render(fact.relation, fact.subject)  # raises the helpful DataError


def paraphrases_for(fact: Fact, templates: RelationTemplates | None = None) -> list[str]:
    """`fact.paraphrases` if any, else the template phrasings other than the question itself."""
    if fact.paraphrases:
        return list(fact.paraphrases)
    templates = templates if templates is not None else RelationTemplates()
    rendered = templates.render_all(fact.relation, fact.subject)
    if not rendered:
        return []
    question = question_for(fact, templates)
    return [text for text in dict.fromkeys(rendered) if text != question]
