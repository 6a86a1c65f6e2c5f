"""Text metrics and continual-learning metrics, checked against hand-computed values."""

from __future__ import annotations

import pytest

from forgetless.errors import ConfigError, DataError
from forgetless.eval.metrics import (
    average_accuracy,
    backward_transfer,
    cl_summary,
    exact_match,
    forgetting,
    forward_transfer,
    rouge_l,
    sari,
    score,
    squad_normalize,
    token_f1,
)

# ------------------------------------------------------------------------------------------ text metrics


def test_squad_normalize_is_squad_style():
    assert squad_normalize("  The Children!  ") == "children"
    assert squad_normalize("An apple, a pear") == "apple pear"


def test_exact_match():
    assert exact_match("The children.", "children") == 1.0
    assert exact_match("paris", ["London", "Paris"]) == 1.0
    assert exact_match("Parisian", ["Paris"]) == 0.0
    assert exact_match("March 5, 2024", ["March 5 2024"]) == 1.0  # punctuation is ignored


def test_token_f1_partial_overlap():
    # pred tokens after normalization: [cat, sat, on, mat]; ref: [cat, sat, on, red, mat]
    # common = 4, P = 4/4, R = 4/5, F1 = 2 * 1 * 0.8 / 1.8 = 8/9
    assert token_f1("The cat sat on the mat", "A cat sat on a red mat.") == pytest.approx(8 / 9)
    # "paris france" vs "paris": P = 1/2, R = 1, F1 = 2/3; the best reference counts
    assert token_f1("Paris, France", ["Lyon", "Paris"]) == pytest.approx(2 / 3)
    assert token_f1("dog", "cat") == 0.0
    assert token_f1("the", "a") == 1.0  # both empty after normalization
    assert token_f1("", "cat") == 0.0


def test_rouge_l():
    # LCS("the cat sat on the mat", "the cat lay on the mat") = the cat on the mat = 5 of 6: F = 5/6
    assert rouge_l("the cat sat on the mat", "the cat lay on the mat") == pytest.approx(5 / 6)
    # vs "police kill the gunman": LCS = police the gunman = 3 of 4 -> 0.75; vs the other ref 2/4 -> 0.5
    refs = ["the gunman police kill", "police kill the gunman"]
    assert rouge_l("police killed the gunman", refs) == pytest.approx(0.75)
    assert rouge_l("Hello World", "hello world") == 1.0
    assert rouge_l("abc", "xyz") == 0.0


# SARI paper (Xu et al. 2016, table 1) example; HuggingFace evaluate's `sari` reports 26.953601953601954.
SOURCE = "About 95 species are currently accepted ."
PREDICTION = "About 95 you now get in ."
REFERENCES = [
    "About 95 species are currently known .",
    "About 95 species are now accepted .",
    "95 species are now accepted .",
]


def test_sari_classic_example():
    assert sari(SOURCE, PREDICTION, REFERENCES) == pytest.approx(0.26953601953601954)


def test_sari_small_hand_computed_case():
    # source "a b c", prediction "a b d", references "a b" and "a d" (k = 2: source and prediction counts x2)
    # n=1: keep: sys {a:2,b:2}, good {a:2,b:1} -> P=(1+1/2)/2=3/4, R=3/3=1, F=6/7; del {c} ok -> 1;
    #      add {d}, in refs, refs add only {d} -> F=1
    # n=2: keep: sys {ab:2}, good {ab:1} -> P=1/2, R=1/1, F=2/3; del {bc} ok -> 1; add {bd} wrong, refs
    #      add {ad} -> P=0, R=0, F=0
    # n=3: keep: nothing kept, refs keep nothing -> 0/0=1 twice, F=1; del {abc} ok -> 1; add {abd}
    #      wrong -> P=0, refs add nothing -> R=1, F=0
    # n=4: everything empty -> 1, 1, 1
    # SARI = (mean keep + mean del + mean add) / 3 = ((6/7+2/3+1+1) + 4 + (1+0+0+1)) / 12 = 50/63
    assert sari("a b c", "a b d", ["a b", "a d"]) == pytest.approx(50 / 63)


def test_sari_identity_behaviour():
    # Copying the source: nothing deleted (P_del = 0/0 = 1) and nothing added, so F_add = 0 wherever the
    # references add something. Source "a b", prediction "a b", reference "a c":
    # n=1: keep P=(1 + 0)/2=1/2, R=1 -> F=2/3; del 1; add P=1, R=0/1 -> 0
    # n=2: keep {ab} not in ref -> P=0, R=0/0=1 -> F=0; del 1; add 0
    # n=3, n=4: empty -> 1, 1, 1
    # SARI = ((2/3 + 0 + 1 + 1) + 4 + (0 + 0 + 1 + 1)) / 12 = 13/18
    assert sari("a b", "a b", ["a c"]) == pytest.approx(13 / 18)
    # when the references are the source itself, copying it is perfect
    assert sari(SOURCE, SOURCE, [SOURCE]) == pytest.approx(1.0)
    # a good rewrite beats copying the source, which beats nothing in particular
    copy = sari(SOURCE, SOURCE, REFERENCES)
    assert sari(SOURCE, REFERENCES[1], REFERENCES) > copy > sari(SOURCE, PREDICTION, REFERENCES)
    assert copy < 2 / 3  # add F1 is 0 at every order where the references add n-grams


def test_sari_is_case_and_punctuation_tokenized():
    assert sari("The cat sat.", "the cat sat .", ["The cat sat."]) == pytest.approx(1.0)


def test_score_averages_and_validates():
    assert score("exact_match", ["a", "b"], [["a"], "c"]) == 0.5
    assert score("token_f1", ["Paris, France"], [["Paris"]]) == pytest.approx(2 / 3)
    assert score("rouge_l", ["hello world"], [["hello world"]]) == 1.0
    assert score("sari", [PREDICTION], [REFERENCES], sources=[SOURCE]) == pytest.approx(0.26953601953601954)
    with pytest.raises(ConfigError, match="unknown metric 'bleu'"):
        score("bleu", ["a"], [["a"]])
    with pytest.raises(ConfigError, match="sources"):
        score("sari", ["a"], [["a"]])
    with pytest.raises(DataError):
        score("exact_match", ["a", "b"], [["a"]])
    with pytest.raises(DataError):
        score("exact_match", [], [])


# ------------------------------------------------------------------------------- continual learning

# R[i][j]: score on task j after training through task i; row 0 = base model. T = 3 tasks.
R = [
    [0.10, 0.20, 0.30],  # base (zero-shot)
    [0.80, 0.30, 0.35],  # after task 1
    [0.85, 0.90, 0.40],  # after task 2
    [0.50, 0.70, 0.95],  # after task 3
]
# AA  = (0.50 + 0.70 + 0.95) / 3                          = 2.15 / 3 = 0.716666...
# BWT = ((0.50 - 0.80) + (0.70 - 0.90)) / 2               = (-0.30 - 0.20) / 2 = -0.25
# FWT = ((R[1][2] - R[0][2]) + (R[2][3] - R[0][3])) / 2   = ((0.30 - 0.20) + (0.40 - 0.30)) / 2 = 0.10
# Forgetting: task 1: max(0.80, 0.85) - 0.50 = 0.35; task 2: 0.90 - 0.70 = 0.20 -> (0.35 + 0.20) / 2
#             = 0.275 (differs from -BWT because task 1 kept improving after it was trained)


def test_cl_metrics_on_hand_made_matrix():
    assert average_accuracy(R) == pytest.approx(2.15 / 3)
    assert backward_transfer(R) == pytest.approx(-0.25)
    assert forward_transfer(R) == pytest.approx(0.10)
    assert forgetting(R) == pytest.approx(0.275)
    summary = cl_summary(R)
    assert summary["num_tasks"] == 3
    assert summary == pytest.approx(
        {
            "num_tasks": 3,
            "average_accuracy": 2.15 / 3,
            "backward_transfer": -0.25,
            "forward_transfer": 0.10,
            "forgetting": 0.275,
        }
    )


def test_cl_metrics_single_task_and_bad_shapes():
    assert cl_summary([[0.2], [0.9]]) == {
        "num_tasks": 1,
        "average_accuracy": 0.9,
        "backward_transfer": None,
        "forward_transfer": None,
        "forgetting": None,
    }
    with pytest.raises(DataError):
        average_accuracy([[0.1, 0.2]])  # only the base row
    with pytest.raises(DataError):
        backward_transfer([[0.1, 0.2], [0.3], [0.4, 0.5]])  # ragged
    with pytest.raises(DataError):
        forgetting([[0.1, 0.2], [0.3, 0.4]])  # 2 rows need 1 column
