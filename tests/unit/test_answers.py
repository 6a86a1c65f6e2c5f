"""Answer matching: normalization, exact / substring (whole-word) match, empty aliases, refusals."""

from __future__ import annotations

import re

import pytest

from forgetless.errors import ConfigError
from forgetless.knowledge import extract_answer, is_correct, is_refusal, normalize_answer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Hague", "hague"),
        ("  An   apple a day ", "apple day"),
        ("Answer: Paris.", "paris"),
        ("answer :Paris", "paris"),
        ("Washington, D.C.", "washington dc"),
        ("Port-au-Prince", "port au prince"),
        ("PARIS!!!", "paris"),
        ("ﬁnland", "finland"),  # NFKC folds the ligature
        ("Bogotá", "bogotá"),
        ("+33", "33"),
        ("", ""),
        ("The", ""),
    ],
)
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


@pytest.mark.parametrize(
    ("generation", "expected"),
    [
        ("Paris\nIt is also the largest city.", "Paris"),
        ("\n\n  Answer: Paris  \nmore", "Paris"),
        ("Answer:Paris", "Paris"),
        ("", ""),
    ],
)
def test_extract_answer(generation, expected):
    assert extract_answer(generation) == expected


CASES = [
    # (prediction, answers, mode, expected)
    ("Paris", ["Paris"], "exact", True),
    ("paris.", ["Paris"], "exact", True),
    ("The Hague", ["Hague"], "exact", True),
    ("Answer: the PARIS!", ["Paris"], "exact", True),
    ("Paris, France", ["Paris"], "exact", False),
    ("Lyon", ["Paris"], "exact", False),
    ("Kiev", ["Kyiv", "Kiev"], "exact", True),  # alias
    ("kiev", "Kiev", "exact", True),  # a single answer string
    ("Washington DC", ["Washington D.C."], "exact", True),
    ("It is Paris, of course.", ["Paris"], "substring", True),
    ("The capital is Port au Prince", ["Port-au-Prince"], "substring", True),
    ("I was thinking of Lyon", ["Paris"], "substring", False),
    ("because it is large", ["US"], "substring", False),  # whole words only
    ("the US dollar", ["US"], "substring", True),
    ("Parisian food", ["Paris"], "substring", False),
    ("Paris", ["Paris, France"], "substring", False),  # the answer must be in the prediction
    ("anything at all", ["", "Paris"], "substring", False),
    ("anything at all", ["the", "..."], "substring", False),  # aliases that normalize to ""
    ("", [""], "exact", False),
    ("The", ["the"], "exact", False),
    ("", [], "substring", False),
]


@pytest.mark.parametrize(("prediction", "answers", "mode", "expected"), CASES)
def test_is_correct(prediction, answers, mode, expected):
    assert is_correct(prediction, answers, mode=mode) is expected


def test_empty_alias_never_matches():
    """The official code checked `alias in prediction`; "" is in every string. Guard against it."""
    for prediction in ["Berlin", "", "I don't know", "the"]:
        for mode in ("exact", "substring"):
            assert not is_correct(prediction, ["", " ", "a", "."], mode=mode)


def test_unknown_mode():
    with pytest.raises(ConfigError, match="exact, substring"):
        is_correct("Paris", ["Paris"], mode="fuzzy")


@pytest.mark.parametrize(
    "text",
    [
        "I don't know.",
        "I do not know the answer to that.",
        "I dont know",
        "I’m not sure about this one.",
        "I am not sure.",
        "I'm not certain which city that is.",
        "I cannot verify that information.",
        "I can't confirm the founder of that company.",
        "I couldn't find any details about Velmoria.",
        "Sorry, I could not find that.",
        "There is no information available about this treaty.",
        "I found no reliable information on that.",
        "I'm unable to answer that.",
        "I am not aware of a country called Velmoria.",
        "I don't have access to real-time data.",
        "I do not have information about this band.",
        "I have no idea.",
        "There is no such country.",
        "Unknown.",
        "As of my knowledge cutoff, this is beyond my knowledge.",
    ],
)
def test_refusals_detected(text):
    assert is_refusal(text)


@pytest.mark.parametrize(
    "text",
    [
        "Paris",
        "The capital of France is Paris.",
        "It was signed in 1648.",
        "The Ministry of Information is in Paris.",  # the official code flagged any "information"
        "Information technology is its main industry.",
        "I know that it is Paris.",
        "The currency is the Unknown Dollar Reserve note.",
        "",
    ],
)
def test_non_refusals(text):
    assert not is_refusal(text)


def test_custom_refusal_patterns():
    assert is_refusal("Pass.", patterns=[r"^pass\.?$"])
    assert not is_refusal("I don't know", patterns=[r"^pass\.?$"])
    assert is_refusal("NO CLUE", patterns=[re.compile(r"no clue", re.IGNORECASE)])
    with pytest.raises(ConfigError, match="not a valid regex"):
        is_refusal("x", patterns=["(unclosed"])
