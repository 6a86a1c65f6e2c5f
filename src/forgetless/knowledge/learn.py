"""`forgetless learn`: teach a user's own facts with the forgetless recipe, then audit what it cost.

    forgetless learn --facts new.jsonl --output runs/learned [--known known.jsonl] [--model M] [--method lora]

1. Check the new facts (each needs a `question` or a template for its relation) and the known facts
   (default: a seeded sample of the built-in country facts; they must not overlap the new ones).
2. Probe both on the base (SliCK, cached per model): which new facts were already known is reported.
3. Teach every new fact with the forgetless recipe (phrasings + a held-out one, self-replay anchors from
   the known facts, probe-gated training) and audit: reliability, generalization, locality (HighlyKnown
   known facts kept), MMLU delta, answer collapse, refusals.
4. Write the PEFT adapter, `results.json` and `report.md` into the output directory.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from forgetless.adapters.registry import method_names
from forgetless.errors import ConfigError
from forgetless.knowledge.facts import Fact, RelationTemplates, load_facts, question_for
from forgetless.knowledge.inject import InjectConfig
from forgetless.knowledge.recipe import forgetless_train_args
from forgetless.knowledge.slick import ProbeSettings, check_facts
from forgetless.train.args import TrainArgs

KNOWN_RELATIONS = ("capital", "currency", "demonym", "region")


@dataclass
class LearnConfig:
    """One `forgetless learn` run (audit sized for minutes on a CPU)."""

    facts: str = ""
    output: str = ""
    known: str | None = None  # facts the model should keep; None: built-in country facts
    known_per_relation: int = 60
    model: str | None = None
    method: str = "lora"
    seed: int = 0
    exemplar_sets: int = 3
    shots: int = 4
    mmlu: int = 114
    mmlu_shots: int = 0
    general: int = 32
    overwrite: bool = False

    def validate(self) -> LearnConfig:
        if not self.facts or not self.output:
            raise ConfigError("--facts FILE and --output DIR are required")
        for name in ("known_per_relation", "exemplar_sets", "shots"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.mmlu < 0 or self.general < 0:
            raise ConfigError("--mmlu and --general must be >= 0")
        if self.method not in method_names():
            raise ConfigError(f"--method must be one of {', '.join(method_names())}")
        return self


def builtin_known(per_relation: int, seed: int) -> list[Fact]:
    """A seeded sample of built-in country facts of a few relations (what the base is audited on)."""
    from forgetless.knowledge.countries import sample_country_facts

    return sample_country_facts(KNOWN_RELATIONS, per_relation, f"known/{seed}")


def check_learnable(new: list[Fact], known: list[Fact], shots: int) -> None:
    """Every new fact can be asked, and no known fact is one of them (same id or same question)."""
    templates = RelationTemplates()
    for fact in new:
        if not fact.question and fact.relation not in templates:
            raise ConfigError(
                f"fact {fact.id} ({fact.subject}): relation {fact.relation!r} has no question template and the fact "
                "no `question`; add a question to each fact of that relation"
            )
    new_ids, new_questions = {f.id for f in new}, {question_for(f).casefold() for f in new}
    overlap = [f for f in known if f.id in new_ids or question_for(f).casefold() in new_questions]
    if overlap:
        raise ConfigError(
            f"--known holds {len(overlap)} of the new facts (e.g. {overlap[0].subject!r}, {overlap[0].relation}); "
            "remove them from one of the files"
        )
    check_facts([*new, *known], ProbeSettings(shots=shots))


def probe_shots(new: list[Fact], wanted: int) -> int:
    """Few-shot exemplars per probe: `wanted`, or fewer when a relation of the new facts has fewer other
    facts (a user's file may hold 4 facts of a relation); ConfigError for a relation with one fact."""
    counts = Counter(f.relation for f in new)
    relation, smallest = min(counts.items(), key=lambda item: item[1])
    if smallest < 2:
        raise ConfigError(
            f"relation {relation!r} has a single fact; learn probes each fact with others of its relation as "
            "examples: add at least one more fact of that relation"
        )
    return min(wanted, smallest - 1)


def run_learn(cfg: LearnConfig) -> dict[str, Any]:
    """Teach every fact of `cfg.facts`; returns (and writes) the audit results."""
    from forgetless.knowledge.runs import run_injection

    cfg.validate()
    new = load_facts(cfg.facts)
    known = load_facts(cfg.known) if cfg.known else builtin_known(cfg.known_per_relation, cfg.seed)
    shots = probe_shots(new, cfg.shots)
    check_learnable(new, known, shots)
    inject = InjectConfig(
        facts=cfg.facts,
        output=cfg.output,
        unknown=len(new),
        recipe="forgetless",
        seed=cfg.seed,
        model=cfg.model,
        train=forgetless_train_args() if cfg.method == "lora" else _with_method(cfg.method),
        exemplar_sets=cfg.exemplar_sets,
        shots=shots,
        samples=0,
        mmlu=cfg.mmlu,
        mmlu_shots=cfg.mmlu_shots,
        general=cfg.general,
        overwrite=cfg.overwrite,
    )
    return run_injection(inject, facts=[*new, *known], teach=[f.id for f in new])


def _with_method(method: str) -> TrainArgs:
    args = forgetless_train_args()
    args.method = method
    if method != "lora":  # a method's own default rank/alpha (e.g. LoRAMoE's r=4, alpha=32 per expert)
        args.rank, args.alpha = None, None
    return args
