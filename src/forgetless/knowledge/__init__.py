"""The fact layer of the knowledge audit (Pletenev et al. 2025, "How Much Knowledge Can You Pack into a
LoRA Adapter"): facts with aliases and questions, built-in real and invented fact sets, answer matching.

    from forgetless.knowledge import country_facts, fictional_facts, is_correct, load_facts
    facts = country_facts()                       # ~2,400 real facts about ~250 countries
    new = fictional_facts(500, seed=0)            # invented facts no model can already know
    is_correct("Paris.", facts[0].answers, mode="substring")

    write_country_facts("countries.jsonl")        # what `forgetless facts countries --output F` runs
    write_fictional_facts("fictional.jsonl", 500, seed=0)
"""

from forgetless.knowledge.answers import (
    MATCH_MODES,
    REFUSAL_PATTERNS,
    extract_answer,
    is_correct,
    is_refusal,
    normalize_answer,
)
from forgetless.knowledge.countries import COUNTRY_RELATIONS, country_facts, write_country_facts
from forgetless.knowledge.facts import (
    BUILTIN_TEMPLATES,
    Fact,
    RelationTemplates,
    fact_from_dict,
    fact_id,
    load_facts,
    paraphrases_for,
    question_for,
    save_facts,
)
from forgetless.knowledge.fictional import fictional_facts, write_fictional_facts

__all__ = [
    "BUILTIN_TEMPLATES",
    "COUNTRY_RELATIONS",
    "MATCH_MODES",
    "REFUSAL_PATTERNS",
    "Fact",
    "RelationTemplates",
    "country_facts",
    "extract_answer",
    "fact_from_dict",
    "fact_id",
    "fictional_facts",
    "is_correct",
    "is_refusal",
    "load_facts",
    "normalize_answer",
    "paraphrases_for",
    "question_for",
    "save_facts",
    "write_country_facts",
    "write_fictional_facts",
]
