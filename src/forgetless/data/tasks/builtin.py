"""The built-in offline task suite: five instruction tasks generated from data shipped in packages.

No network and no model is needed: every task is built from a library's own data, so the suite is the
same on every machine for a given seed. It is meant for continual instruction tuning (one task after
another) and for routing experiments (LoRAMoE / SwitchCIT), hence several phrasings per task.

| task                | input → output                          | data source                      | type  |
|---------------------|-----------------------------------------|----------------------------------|-------|
| `num2words`         | integer 0–999999 → English words        | `num2words`                      | task  |
| `plural`            | singular noun → plural (irregular-rich) | curated nouns + `inflect`        | task  |
| `translate_country` | English country name → fr/de/es/it name | `babel` CLDR, ISO 3166 alpha-2   | task  |
| `capital`           | country → capital city                  | `countryinfo`                    | world |
| `date_format`       | ISO date → long English date            | `babel.dates.format_date` (long) | task  |

Default metric of every task: `exact_match`, the SQuAD-normalized one of `forgetless.eval.metrics`
(case, punctuation, English articles and extra spaces are ignored), so "Twenty-one." matches
"twenty-one"; `TASK_SPECS[name].metric` holds it and `tasks.yaml` repeats it.

Splits are by *item* (a number, a noun, a (country, language) pair, a country, a date): no item — and
therefore no prompt — is in both train and eval. Eval items are the first `n_eval` of the task's items
in a seeded random order, so they are distributed like the train items. When a finite pool has fewer
than `n_train` items left for training, train items are repeated under other phrasings (each prompt
still occurs once); a `DataError` says so when even that cannot reach `n_train`.

    from forgetless.data.tasks import build_task, write_builtin_suite
    train, eval_ = build_task("plural", seed=0, n_train=200, n_eval=50)
    tasks_yaml = write_builtin_suite("data/builtin", seed=0)
    # forgetless continual run --tasks data/builtin/tasks.yaml --output runs/cit
"""

from __future__ import annotations

import datetime as _dt
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from forgetless.data.tasks.phrasings import PHRASINGS
from forgetless.errors import ConfigError, DataError
from forgetless.utils.fileio import write_jsonl_atomic, write_text_atomic


@dataclass(frozen=True)
class TaskSpec:
    """What a built-in task is: its record `type` label, default metric and where its data comes from."""

    name: str
    type: str
    metric: str
    description: str
    source: str


TASK_SPECS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec("num2words", "task", "exact_match", "integer (digits) → English words", "num2words"),
        TaskSpec("plural", "task", "exact_match", "singular English noun → its plural", "inflect"),
        TaskSpec(
            "translate_country",
            "task",
            "exact_match",
            "English country name → its name in French, German, Spanish or Italian",
            "babel (CLDR)",
        ),
        TaskSpec("capital", "world", "exact_match", "country → its capital city", "countryinfo"),
        TaskSpec("date_format", "task", "exact_match", "ISO date → long-form English date", "babel (CLDR)"),
    )
}

BUILTIN_TASKS: tuple[str, ...] = tuple(TASK_SPECS)
"""The built-in task names, in the fixed order used by `write_builtin_suite` (the continual sequence)."""

TARGET_LANGUAGES: tuple[str, ...] = ("fr", "de", "es", "it")
"""Locales that `translate_country` translates into."""

# A curated list of common English nouns, rich in irregular plurals (vowel change, -f/-ves, -o/-oes,
# unchanged, Greek/Latin, -y/-ies, compounds). Nouns with two accepted plurals (cactus, hoof, volcano,
# index, ...) are left out so that exact match is fair.
_NOUNS = """
    man woman child person foot tooth goose mouse louse ox fireman policeman postman fisherman sheep
    deer moose series species aircraft salmon trout offspring spacecraft fish cod knife wife life
    leaf half wolf shelf loaf calf elf sheaf roof chief belief cliff chef proof reef safe giraffe
    potato tomato hero echo veto torpedo piano photo radio video zoo kangaroo studio memo logo solo
    casino avocado analysis crisis thesis hypothesis diagnosis oasis parenthesis axis basis emphasis
    synopsis ellipsis phenomenon criterion bacterium stimulus alumnus nucleus city baby lady party
    story country family body berry puppy army enemy library fly spy cherry diary factory hobby
    strawberry key toy boy day monkey valley donkey journey turkey chimney holiday essay box fox tax
    church bus class glass kiss dish wish brush bush match watch beach bench witness address quiz
    boss lens gas atlas iris virus bonus campus circus walrus genius status census mother-in-law
    son-in-law apple book car dog cat house tree window chair table river mountain bird horse cow
    pig rabbit lion tiger bear elephant teacher doctor student farmer king queen ship boat train
    plane bridge road street garden flower seed cloud star planet moon ocean lake island forest
    desert computer phone camera pencil pen bottle cup plate spoon fork door wall floor clock lamp
    bed pillow blanket shirt shoe sock hat coat dress ring necklace button ticket letter word
    sentence song idea question answer problem game ball kite puzzle map flag coin bag basket bucket
    candle mirror picture painting statue museum hospital school market shop bank office farm
    village town castle tower temple palace prison kitchen bathroom garage engine wheel tire bicycle
    truck rocket helmet hammer nail screw ladder rope chain lock umbrella wallet purse envelope
    stamp parcel magazine newspaper novel poem chapter page sheet notebook folder file printer
    keyboard screen cable battery sandwich cookie cake pie egg onion carrot banana orange lemon
    peach grape melon cucumber pepper mushroom nut bean stream pond hill rock stone pebble shell
    wave storm rainbow glacier canyon cave brother sister uncle aunt cousin nephew niece parent
    friend neighbor stranger guest host soldier sailor pilot driver nurse lawyer judge singer dancer
    actor artist writer poet scientist engineer baker butcher painter plumber clerk worker insect
    spider ant bee butterfly beetle worm snake frog lizard turtle shark whale dolphin seal penguin
    eagle owl parrot crow duck swan chicken hen rooster goat lamb camel zebra squirrel hedgehog bat
    crab lobster minute hour week month year century decade season morning evening night weekend
    birthday arm leg hand finger toe knee elbow shoulder ear eye nose lip cheek chin neck heart
    brain bone muscle
    thief gentleman waltz
"""
PLURAL_NOUNS: tuple[str, ...] = tuple(_NOUNS.split())

# Where inflect's answer is wrong, the correct plural.
_PLURAL_FIXES = {"thief": "thieves", "gentleman": "gentlemen", "waltz": "waltzes"}

_Item = tuple[str, dict[str, str], str]  # (unique key, template fields, answer)


def build_task(name: str, seed: int = 0, n_train: int = 200, n_eval: int = 50) -> tuple[list[dict], list[dict]]:
    """Build one built-in task: `(train_records, eval_records)`, deterministic for a given seed.

    Records are `{"prompt", "response", "type", "task"}` with `task` = name and `type` = "task" (or
    "world" for `capital`). Each record's phrasing is drawn from `PHRASINGS[name]` with the seeded RNG.
    Train and eval share no item, hence no prompt.
    """
    spec = _spec(name)
    for label, value in (("n_train", n_train), ("n_eval", n_eval)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{label}={value!r}: must be a whole number >= 0")
    rng = random.Random(f"forgetless.tasks/{name}/{seed}")
    items = _ITEM_SOURCES[name](rng, n_train + n_eval)
    if len(items) < n_eval + (1 if n_train else 0):
        raise DataError(
            f"task {name!r}: only {len(items)} distinct items available, too few for n_eval={n_eval} "
            f"plus training data; lower n_eval"
        )
    eval_items, train_items = items[:n_eval], items[n_eval:]
    templates = PHRASINGS[name]

    eval_records = [
        _record(spec, templates[rng.randrange(len(templates))], fields, answer) for _, fields, answer in eval_items
    ]
    eval_prompts = {r["prompt"] for r in eval_records}

    train_records: list[dict] = []
    unused = {key: list(range(len(templates))) for key, _, _ in train_items}
    while len(train_records) < n_train:
        progressed = False
        for key, fields, answer in train_items:
            if len(train_records) >= n_train:
                break
            left = unused[key]
            if not left:
                continue
            index = left.pop(rng.randrange(len(left)))
            record = _record(spec, templates[index], fields, answer)
            if record["prompt"] in eval_prompts:
                continue
            train_records.append(record)
            progressed = True
        if not progressed:
            raise DataError(
                f"task {name!r}: at most {len(train_records)} distinct train prompts are possible "
                f"({len(train_items)} items x {len(templates)} phrasings); lower n_train={n_train}"
            )
    return train_records, eval_records


def write_builtin_suite(
    output_dir: str | os.PathLike,
    seed: int = 0,
    n_train: int = 200,
    n_eval: int = 50,
    tasks: Sequence[str] | None = None,
) -> Path:
    """Write `<task>/train.jsonl`, `<task>/eval.jsonl` per task and a `tasks.yaml`; return the yaml path.

    `tasks.yaml` lists the tasks in order (`BUILTIN_TASKS` unless `tasks` is given), each with `name`,
    `train`, `eval` (paths relative to the yaml file) and `metric`; it opens with a comment giving the
    command that runs the sequence.
    """
    import yaml

    names = list(BUILTIN_TASKS if tasks is None else tasks)
    if not names:
        raise ConfigError("tasks: the list of built-in tasks to write is empty")
    for name in names:
        _spec(name)
    if len(set(names)) != len(names):
        raise ConfigError(f"tasks: {names} names a task twice")
    out = Path(output_dir)
    entries = []
    for name in names:
        train, eval_ = build_task(name, seed=seed, n_train=n_train, n_eval=n_eval)
        write_jsonl_atomic(out / name / "train.jsonl", train)
        write_jsonl_atomic(out / name / "eval.jsonl", eval_)
        entries.append(
            {
                "name": name,
                "train": f"{name}/train.jsonl",
                "eval": f"{name}/eval.jsonl",
                "metric": TASK_SPECS[name].metric,
            }
        )
    header = (
        f"# forgetless built-in task suite (seed={seed}, {n_train} train / {n_eval} eval records per task).\n"
        f"# Run: forgetless continual run --tasks {out.as_posix()}/tasks.yaml --output runs/cit\n"
        "# Paths are relative to this file. Per task: name, train, eval, metric, and optionally\n"
        "# max_train (use at most that many train records).\n"
    )
    body = yaml.safe_dump({"tasks": entries}, sort_keys=False, allow_unicode=True)
    return write_text_atomic(out / "tasks.yaml", header + body)


def _spec(name: str) -> TaskSpec:
    if name not in TASK_SPECS:
        raise ConfigError(f"unknown built-in task {name!r}; choose one of: {', '.join(BUILTIN_TASKS)}")
    return TASK_SPECS[name]


def _record(spec: TaskSpec, template: str, fields: dict[str, str], answer: str) -> dict:
    return {"prompt": template.format(**fields), "response": answer, "type": spec.type, "task": spec.name}


def _distinct(rng: random.Random, needed: int, draw: Callable[[random.Random], object], cap: int) -> list:
    """`needed` distinct draws (at most `cap`, the size of the domain), in draw order."""
    needed = min(needed, cap)
    seen: dict[object, None] = {}
    while len(seen) < needed:
        seen.setdefault(draw(rng), None)
    return list(seen)


def _shuffled(rng: random.Random, items: list[_Item]) -> list[_Item]:
    items = sorted(items)
    rng.shuffle(items)
    return items


def _num2words_items(rng: random.Random, needed: int) -> list[_Item]:
    def draw(r: random.Random) -> int:
        digits = r.randint(1, 6)  # every magnitude equally likely: 7, 42, 615, ..., 480213
        return r.randrange(0 if digits == 1 else 10 ** (digits - 1), 10**digits)

    # Shuffled: in draw order the small pools (10 one-digit, 90 two-digit numbers) run out early, so the
    # first items, the eval ones, would hold far more small numbers than training does (issue 14).
    numbers = _distinct(rng, needed, draw, cap=10**6)
    rng.shuffle(numbers)
    return [_number_item(n) for n in numbers]


def _number_item(number: int) -> _Item:
    from num2words import num2words

    return str(number), {"number": str(number)}, num2words(number, lang="en")


def _plural_items(rng: random.Random, needed: int) -> list[_Item]:
    return _shuffled(rng, [(noun, {"noun": noun}, plural) for noun, plural in _plurals().items()])


def _translate_items(rng: random.Random, needed: int) -> list[_Item]:
    return _shuffled(rng, list(_country_translations()))


def _capital_items(rng: random.Random, needed: int) -> list[_Item]:
    return _shuffled(rng, [(c, {"country": c}, cap) for c, cap in _capitals().items()])


def _date_items(rng: random.Random, needed: int) -> list[_Item]:
    first, last = _dt.date(1900, 1, 1), _dt.date(2099, 12, 31)
    span = (last - first).days + 1
    days = _distinct(rng, needed, lambda r: r.randrange(span), cap=span)
    return [_date_item(first + _dt.timedelta(days=offset)) for offset in days]


def _date_item(date: _dt.date) -> _Item:
    from babel.dates import format_date

    return date.isoformat(), {"date": date.isoformat()}, format_date(date, format="long", locale="en")


_ITEM_SOURCES: dict[str, Callable[[random.Random, int], list[_Item]]] = {
    "num2words": _num2words_items,
    "plural": _plural_items,
    "translate_country": _translate_items,
    "capital": _capital_items,
    "date_format": _date_items,
}


@cache
def _plurals() -> dict[str, str]:
    import inflect

    engine = inflect.engine()
    return {noun: _PLURAL_FIXES.get(noun) or engine.plural_noun(noun) for noun in PLURAL_NOUNS}


@cache
def _country_translations() -> tuple[_Item, ...]:
    """(code:lang, fields, name) for ISO 3166-1 alpha-2 countries whose name differs from the English one."""
    import pycountry
    from babel import Locale

    english = Locale("en")
    names_en = english.territories
    items = []
    for country in sorted(pycountry.countries, key=lambda c: c.alpha_2):
        code = country.alpha_2
        if code not in names_en:
            continue
        for lang in TARGET_LANGUAGES:
            target = Locale(lang).territories.get(code)
            if not target or target == names_en[code]:
                continue  # copying the English name would be correct: not a translation
            fields = {"country": names_en[code], "language": english.languages[lang]}
            items.append((f"{code}:{lang}", fields, target))
    return tuple(items)


@cache
def _capitals() -> dict[str, str]:
    """English country name → capital, for countries that have one in countryinfo's data."""
    from countryinfo import CountryInfo

    out = {}
    for data in CountryInfo.all().values():
        name, capital = (data.get("name") or "").strip(), data.get("capital")
        if isinstance(capital, list):  # several capitals would make exact match unfair; keep one only
            capital = capital[0] if len(capital) == 1 else None
        if name and isinstance(capital, str) and capital.strip():
            out[name] = capital.strip()
    return out
