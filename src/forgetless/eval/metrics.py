"""Scoring metrics: per-answer text metrics and continual-learning metrics on an accuracy matrix.

Text metrics take one prediction and its reference(s) and return a score in [0, 1]; with several
references the best one counts (SARI uses all of them together, as defined).

- `exact_match(pred, refs)`: 1.0 if the SQuAD-normalized prediction equals a normalized reference.
- `token_f1(pred, refs)`: SQuAD token-overlap F1 (normalization: lowercase, drop punctuation, drop the
  articles a/an/the, collapse whitespace).
- `rouge_l(pred, refs)`: ROUGE-L F-measure from the `rouge-score` package (its tokenizer lowercases and
  keeps only ASCII letters and digits), max over references.
- `sari(source, pred, refs)`: SARI (Xu et al., 2016) for rewriting tasks, see its docstring.

`score(metric_name, preds, refs_list, sources=None)` averages one of them over a data set.

Continual-learning metrics read `R`, where `R[i][j]` is the score on task j after training through task
i, row 0 being the base model before any training (zero-shot): `T` tasks give `T + 1` rows and `T`
columns. In the formulas tasks are numbered 1..T, so `R[i][j]` means `R[i][j - 1]` in Python.

    from forgetless.eval.metrics import score, cl_summary
    score("token_f1", ["Paris, France"], [["Paris"]])   # 0.666...
    cl_summary([[0.1, 0.2], [0.9, 0.3], [0.7, 0.8]])    # {"average_accuracy": 0.75, ...}
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from functools import cache

from forgetless.errors import ConfigError, DataError

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)
SARI_MAX_ORDER = 4


def squad_normalize(text: str) -> str:
    """SQuAD normalization: lowercase, remove punctuation and the articles a/an/the, collapse spaces.

    For task metrics; the knowledge audit's `knowledge.answers.normalize_answer` differs (NFKC, dashes -> spaces)."""
    text = "".join(ch for ch in str(text).lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _as_refs(refs: str | Sequence[str]) -> list[str]:
    return [refs] if isinstance(refs, str) else [str(r) for r in refs]


def exact_match(pred: str, refs: str | Sequence[str]) -> float:
    """1.0 if `squad_normalize(pred)` equals `squad_normalize(ref)` for some reference, else 0.0."""
    norm = squad_normalize(pred)
    return float(any(norm == squad_normalize(ref) for ref in _as_refs(refs)))


def token_f1(pred: str, refs: str | Sequence[str]) -> float:
    """SQuAD token F1, max over references.

    With normalized tokens p (prediction) and g (reference) and `common = |p ∩ g|` (multiset):
    precision = common / |p|, recall = common / |g|, F1 = 2·P·R / (P + R); 0 when nothing is shared.
    If either side is empty after normalization, F1 is 1.0 when both are empty, else 0.0.
    """
    pred_tokens = squad_normalize(pred).split()
    best = 0.0
    for ref in _as_refs(refs):
        ref_tokens = squad_normalize(ref).split()
        if not pred_tokens or not ref_tokens:
            best = max(best, float(pred_tokens == ref_tokens))
            continue
        common = sum((Counter(pred_tokens) & Counter(ref_tokens)).values())
        if common == 0:
            continue
        precision, recall = common / len(pred_tokens), common / len(ref_tokens)
        best = max(best, 2 * precision * recall / (precision + recall))
    return best


@cache
def _rouge_scorer():
    try:
        from rouge_score import rouge_scorer
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ConfigError("metric rouge_l needs the `rouge-score` package: pip install rouge-score") from exc
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge_l(pred: str, refs: str | Sequence[str]) -> float:
    """ROUGE-L F-measure (longest common subsequence of tokens), max over references.

    P = LCS / |pred|, R = LCS / |ref|, F = 2·P·R / (P + R), computed by `rouge_score.RougeScorer`
    (tokens: lowercased ASCII letters and digits; no stemming).
    """
    scorer = _rouge_scorer()
    return max((scorer.score(ref, str(pred))["rougeL"].fmeasure for ref in _as_refs(refs)), default=0.0)


# --------------------------------------------------------------------------------------------- SARI


def _sari_tokens(text: str) -> list[str]:
    """Lowercase and split punctuation off words (close to sacrebleu's 13a tokenizer), then split."""
    text = re.sub(r"([^\w\s'])", r" \1 ", str(text).lower())
    return text.split()


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision > 0 or recall > 0 else 0.0


def _sari_ngram(source: Counter, pred: Counter, refs: list[Counter]) -> tuple[float, float, float]:
    """(keep F1, deletion precision, addition F1) for one n-gram order."""
    num_refs = len(refs)
    ref_all: Counter = Counter()
    for ref in refs:
        ref_all.update(ref)
    source_rep = Counter({g: c * num_refs for g, c in source.items()})
    pred_rep = Counter({g: c * num_refs for g, c in pred.items()})

    # KEEP: n-grams of the source that the prediction keeps, weighted by how many references keep them.
    keep_sys = source_rep & pred_rep
    keep_good = keep_sys & ref_all
    keep_all = source_rep & ref_all
    keep_p = sum(keep_good[g] / keep_sys[g] for g in keep_good) / len(keep_sys) if keep_sys else 1.0
    keep_r = sum(keep_good.values()) / sum(keep_all.values()) if keep_all else 1.0
    keep = _f1(keep_p, keep_r)

    # DELETE: n-grams of the source the prediction drops; correct where the references drop them too.
    del_sys = source_rep - pred_rep
    del_good = del_sys - ref_all
    delete_p = sum(del_good[g] / del_sys[g] for g in del_good) / len(del_sys) if del_sys else 1.0

    # ADD: n-grams new to the prediction (not in the source); correct where a reference has them.
    add_sys = set(pred) - set(source)
    add_good = add_sys & set(ref_all)
    add_all = set(ref_all) - set(source)
    add_p = len(add_good) / len(add_sys) if add_sys else 1.0
    add_r = len(add_good) / len(add_all) if add_all else 1.0
    return keep, delete_p, _f1(add_p, add_r)


def sari(source: str, pred: str, refs: str | Sequence[str]) -> float:
    """SARI of a rewrite (Xu, Napoles, Pavlick, Chen, Callison-Burch, TACL 2016), in [0, 1].

    For each n-gram order n = 1..4 with source S, prediction O and references R_1..R_k (source and
    prediction n-gram counts are multiplied by k so that they compare with the pooled reference counts):

    - keep: P_keep and R_keep over the n-grams of S kept in O, each weighted by the fraction of the
      references that keep it; F_keep = 2·P·R / (P + R);
    - delete: P_del, the precision of the n-grams of S that O deletes (correct when the references
      delete them too); deletion recall is not used, as in the paper;
    - add: P_add and R_add over the n-grams in O but not in S that occur in some reference;
      F_add = 2·P·R / (P + R).

    SARI = (mean_n F_keep + mean_n P_del + mean_n F_add) / 3.

    This follows the reference implementation used by HuggingFace `evaluate`'s `sari` and tensor2tensor
    (itself from Xu's `SARI.py`), including its two documented changes: an empty set scores 0/0 = 1
    (so that an exact match of a reference scores 1) and the corrected keep recall. Text is lowercased
    and punctuation split off words before n-grams are taken. On the paper's example (source "About 95
    species are currently accepted .", prediction "About 95 you now get in .", three references) it
    gives 0.26954, as `evaluate` does.

    Note: the "SARI" reported by the official SwitchCIT code is in fact ROUGE-1 (unigram overlap with
    the reference, source ignored); numbers computed here are the real SARI and are not comparable.
    """
    refs_list = _as_refs(refs)
    if not refs_list:
        raise DataError("sari: at least one reference is needed")
    src_tokens, pred_tokens = _sari_tokens(source), _sari_tokens(pred)
    ref_tokens = [_sari_tokens(r) for r in refs_list]
    keep = delete = add = 0.0
    for n in range(1, SARI_MAX_ORDER + 1):
        k, d, a = _sari_ngram(_ngrams(src_tokens, n), _ngrams(pred_tokens, n), [_ngrams(r, n) for r in ref_tokens])
        keep, delete, add = keep + k, delete + d, add + a
    return (keep + delete + add) / (3 * SARI_MAX_ORDER)


# ------------------------------------------------------------------------------------------ score()

TEXT_METRICS: dict[str, Callable[..., float]] = {
    "exact_match": exact_match,
    "token_f1": token_f1,
    "rouge_l": rouge_l,
    "sari": sari,
}
"""Metric name → function; `sari` also needs the source texts."""


def score(
    metric_name: str,
    preds: Sequence[str],
    refs_list: Sequence[str | Sequence[str]],
    sources: Sequence[str] | None = None,
) -> float:
    """Mean of `metric_name` over the predictions, in [0, 1].

    `refs_list[i]` holds the reference(s) of `preds[i]` (a string or a list of strings); `sources[i]` is
    the input text, needed by `sari` only.
    """
    if metric_name not in TEXT_METRICS:
        raise ConfigError(f"unknown metric {metric_name!r}; choose one of: {', '.join(TEXT_METRICS)}")
    if len(preds) != len(refs_list):
        raise DataError(f"{metric_name}: {len(preds)} predictions but {len(refs_list)} reference lists")
    if not preds:
        raise DataError(f"{metric_name}: nothing to score (no predictions)")
    if metric_name == "sari":
        if sources is None:
            raise ConfigError("metric sari needs the source texts (sources=...)")
        if len(sources) != len(preds):
            raise DataError(f"sari: {len(preds)} predictions but {len(sources)} sources")
        values = [sari(s, p, r) for s, p, r in zip(sources, preds, refs_list, strict=True)]
    else:
        func = TEXT_METRICS[metric_name]
        values = [func(p, r) for p, r in zip(preds, refs_list, strict=True)]
    return sum(values) / len(values)


# ------------------------------------------------------------------------- continual-learning metrics


def _matrix(R: Sequence[Sequence[float]]) -> tuple[list[list[float]], int]:
    """Validate R (T + 1 rows of T scores) and return it as floats with T."""
    rows = [[float(v) for v in row] for row in R]
    if len(rows) < 2:
        raise DataError(f"R has {len(rows)} row(s); it needs T + 1 rows (row 0 = base model) for T >= 1 tasks")
    num_tasks = len(rows) - 1
    for i, row in enumerate(rows):
        if len(row) != num_tasks:
            raise DataError(
                f"R row {i} has {len(row)} scores; with {num_tasks + 1} rows every row needs {num_tasks} (one per task)"
            )
    return rows, num_tasks


def _at(rows: list[list[float]], i: int, j: int) -> float:
    """R[i][j] with tasks numbered 1..T (column j - 1)."""
    return rows[i][j - 1]


def average_accuracy(R: Sequence[Sequence[float]]) -> float:
    """AA = (1/T) · Σ_{j=1..T} R[T][j]: the mean score over all tasks after training on the last one."""
    rows, T = _matrix(R)
    return sum(_at(rows, T, j) for j in range(1, T + 1)) / T


def backward_transfer(R: Sequence[Sequence[float]]) -> float | None:
    """BWT = 1/(T−1) · Σ_{j=1..T−1} (R[T][j] − R[j][j]); None when T = 1.

    How much the final model gained (> 0) or lost (< 0, forgetting) on each earlier task compared with
    right after training that task.
    """
    rows, T = _matrix(R)
    if T < 2:
        return None
    return sum(_at(rows, T, j) - _at(rows, j, j) for j in range(1, T)) / (T - 1)


def forward_transfer(R: Sequence[Sequence[float]]) -> float | None:
    """FWT = 1/(T−1) · Σ_{j=2..T} (R[j−1][j] − R[0][j]); None when T = 1.

    How much training on tasks 1..j−1 helped task j before it was trained, compared with the base model.
    """
    rows, T = _matrix(R)
    if T < 2:
        return None
    return sum(_at(rows, j - 1, j) - _at(rows, 0, j) for j in range(2, T + 1)) / (T - 1)


def forgetting(R: Sequence[Sequence[float]]) -> float | None:
    """Forgetting (Chaudhry et al., 2018) = 1/(T−1) · Σ_{j=1..T−1} (max_{i=j..T−1} R[i][j] − R[T][j]).

    The mean drop from each earlier task's best score (from when it was trained up to the model before
    the last) to its final score; None when T = 1.
    """
    rows, T = _matrix(R)
    if T < 2:
        return None
    return sum(max(_at(rows, i, j) for i in range(j, T)) - _at(rows, T, j) for j in range(1, T)) / (T - 1)


def cl_summary(R: Sequence[Sequence[float]]) -> dict[str, float | int | None]:
    """All continual-learning metrics of R: num_tasks, average_accuracy, backward_transfer,
    forward_transfer, forgetting (the last three None when there is a single task)."""
    _, T = _matrix(R)
    return {
        "num_tasks": T,
        "average_accuracy": average_accuracy(R),
        "backward_transfer": backward_transfer(R),
        "forward_transfer": forward_transfer(R),
        "forgetting": forgetting(R),
    }
