"""Answer matching for the knowledge audit: normalization, exact / substring match, refusal detection.

    answer = extract_answer(generation)                      # first line, "Answer:" prefix dropped
    is_correct(answer, fact.answers, mode="exact")           # normalized equality with some alias
    is_correct(generation, fact.answers, mode="substring")   # the paper's rule (whole words)
    is_refusal(generation)                                   # "I don't know", "I'm not sure", ...

Normalization: Unicode NFKC, a leading "Answer:" dropped, lowercase, hyphens/dashes/slashes become
spaces, other punctuation and symbols are removed, the articles a/an/the are dropped and whitespace
collapsed. An alias that normalizes to the empty string never matches (the official code let an
empty alias match every prediction).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from functools import lru_cache

from forgetless.errors import ConfigError

MATCH_MODES = ("exact", "substring")
_ARTICLES = frozenset({"a", "an", "the"})
_SPACE_PUNCT = frozenset("-‐‑‒–—―/\\_")
_ANSWER_PREFIX = re.compile(r"^\s*(?:final\s+)?answer\s*[:：]\s*", re.IGNORECASE)

REFUSAL_PATTERNS: tuple[str, ...] = (
    r"\bi (?:do not|don't|dont|did not|didn't) know\b",
    r"\b(?:nobody|no one) knows\b",
    r"\bi(?:'m| am|m) not (?:sure|certain|aware)\b",
    r"\bnot (?:sure|certain) (?:what|which|who|when|where|about|if|whether)\b",
    r"\bi (?:cannot|can't|cant|can not|could not|couldn't) (?:verify|confirm|determine|say|tell|answer|"
    r"provide|recall|find|identify|locate)\b",
    r"\b(?:couldn't|could not|can't|cannot|can not|unable to|did not|didn't) (?:find|locate)\b",
    r"\b(?:i(?:'m| am|m)|i was) (?:unable|not able) to\b",
    r"\bunable to (?:verify|confirm|determine|find|answer|provide|identify|locate)\b",
    r"\bno (?:reliable |available |specific |verifiable |known |public |such )?(?:information|record|"
    r"records|data)\b",
    r"\b(?:not|isn't|is not) aware of\b",
    r"\bi (?:do not|don't|dont) have (?:any )?(?:access to|information|data|knowledge|details|"
    r"enough information|records?)\b",
    r"\bi have no (?:idea|information|knowledge|data|record)\b",
    r"\bno idea\b",
    r"\b(?:there is|there's) no (?:such|known|record|information|data|evidence)\b",
    r"\bbeyond my (?:knowledge|training)\b",
    r"\bmy (?:knowledge|training data) (?:does not|doesn't) (?:include|contain|cover)\b",
    r"^\s*(?:unknown|not known|n/a)\s*[.!]?\s*$",
)


def normalize_answer(text: str) -> str:
    """Canonical form for comparison (see the module docstring); `None`-safe for empty input.

    For fact answers and aliases; task metrics use `eval.metrics.squad_normalize` (plain SQuAD rules)."""
    text = unicodedata.normalize("NFKC", text or "")
    text = _ANSWER_PREFIX.sub("", text, count=1).lower()
    chars = []
    for char in text:
        category = unicodedata.category(char)
        if char in _SPACE_PUNCT:
            chars.append(" ")
        elif category[0] in "PS":
            continue
        else:
            chars.append(char)
    words = [word for word in "".join(chars).split() if word not in _ARTICLES]
    return " ".join(words)


def extract_answer(generation: str) -> str:
    """The model's answer: its first non-empty line, without an "Answer:" prefix, stripped."""
    for line in (generation or "").splitlines():
        if line.strip():
            return _ANSWER_PREFIX.sub("", line, count=1).strip()
    return ""


def is_correct(prediction: str, answers: str | Iterable[str], mode: str = "exact") -> bool:
    """Whether `prediction` matches any of `answers` (the object and its aliases).

    exact: the normalized prediction equals a normalized answer.
    substring: a normalized answer occurs in the normalized prediction as whole words, so "us" does
    not match inside "because". An answer that normalizes to "" never matches in either mode.
    """
    if mode not in MATCH_MODES:
        raise ConfigError(f"match mode {mode!r} is not known; use one of {', '.join(MATCH_MODES)}")
    candidates = [answers] if isinstance(answers, str) else list(answers)
    predicted = normalize_answer(prediction)
    padded = f" {predicted} "
    for answer in candidates:
        target = normalize_answer(answer)
        if not target:  # the guard the official code lacked: "" is "in" every string
            continue
        if mode == "exact" and predicted == target:
            return True
        if mode == "substring" and f" {target} " in padded:
            return True
    return False


def is_refusal(text: str, patterns: Sequence[str | re.Pattern[str]] | None = None) -> bool:
    """Whether the text declines to answer ("I don't know", "I couldn't find any information", ...).

    `patterns` replaces REFUSAL_PATTERNS; strings are compiled case-insensitively. The text is
    NFKC-normalized, lowercased, with curly apostrophes made straight and whitespace collapsed.
    """
    clean = unicodedata.normalize("NFKC", text or "").replace("’", "'").replace("‘", "'")
    clean = " ".join(clean.lower().split())
    compiled = _compile(tuple(patterns)) if patterns is not None else _default_patterns()
    return any(pattern.search(clean) for pattern in compiled)


@lru_cache(maxsize=1)
def _default_patterns() -> tuple[re.Pattern[str], ...]:
    return _compile(REFUSAL_PATTERNS)


def _compile(patterns: tuple[str | re.Pattern[str], ...]) -> tuple[re.Pattern[str], ...]:
    out = []
    for pattern in patterns:
        if isinstance(pattern, re.Pattern):
            out.append(pattern)
            continue
        try:
            out.append(re.compile(pattern, re.IGNORECASE))
        except re.error as exc:
            raise ConfigError(f"refusal pattern {pattern!r} is not a valid regex ({exc}); fix it") from None
    return tuple(out)
