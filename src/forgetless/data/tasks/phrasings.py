"""Instruction phrasings of the built-in tasks: several wordings per task, one picked per record.

Each task has at least four templates so that a router (LoRAMoE, SwitchCIT) cannot recognise a task
from one fixed string and must key on what is asked. Templates are `str.format` strings whose fields
are filled from the task item (`{number}`, `{noun}`, `{country}`, `{language}`, `{date}`).
"""

from __future__ import annotations

PHRASINGS: dict[str, tuple[str, ...]] = {
    "num2words": (
        "Write the number {number} in English words.",
        "How is {number} spelled out in words?",
        "Spell out {number} in English.",
        "Convert {number} to words.",
        "Express the integer {number} using English words only.",
        "What is {number} written out in words?",
    ),
    "plural": (
        'What is the plural of "{noun}"?',
        'Give the plural form of the English noun "{noun}".',
        "Pluralize this noun: {noun}",
        "Singular: {noun}. What is the plural?",
        'Write the plural of the word "{noun}".',
        'If there is more than one "{noun}", what do you call them?',
    ),
    "translate_country": (
        "What is {country} called in {language}?",
        'Translate the country name "{country}" into {language}.',
        "Give the {language} name for {country}.",
        "In {language}, what is the name of the country {country}?",
        "How do you write {country} in {language}?",
        "Country: {country}. Its name in {language}:",
    ),
    "capital": (
        "What is the capital of {country}?",
        "Name the capital city of {country}.",
        "Which city is the capital of {country}?",
        "Tell me the capital of {country}.",
        "{country} has which city as its capital?",
        "What city serves as the capital of {country}?",
    ),
    "date_format": (
        "Write the date {date} in long form.",
        "Convert the ISO date {date} to a long-form English date.",
        "Rewrite {date} the way it is written in US English prose (month name, day, year).",
        "Express {date} (YYYY-MM-DD) as month name, day and year.",
        "How is the date {date} written out in long form?",
        "Format {date} as a long date in English.",
    ),
}
