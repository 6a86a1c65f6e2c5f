"""MMLU log-likelihood evaluation: data loading, stratified sampling, prompt format, batched scoring.

.venv/bin/python -m pytest tests/unit/test_mmlu.py -q
"""

from __future__ import annotations

import json
from collections import Counter
from types import SimpleNamespace

import pytest
import torch

from forgetless.data.chat import tokenize_prompt
from forgetless.errors import ConfigError
from forgetless.eval.mmlu import (
    MMLUItem,
    MMLUPrediction,
    build_prompt,
    evaluate_mmlu,
    exemplars,
    letter_token_ids,
    load_mmlu,
    mmlu_delta,
    mmlu_subjects,
    sample_mmlu,
    summarize,
)
from tests.conftest import build_tiny_llama

ITEM = MMLUItem(0, "astronomy", "Which planet is largest?", ("Mars", "Jupiter", "Venus", "Earth"), 1)
SNAPSHOT = (
    "The following are multiple choice questions (with answers) about astronomy.\n\n"
    "Which planet is largest?\nA. Mars\nB. Jupiter\nC. Venus\nD. Earth\nAnswer:"
)


def test_file_loads_all_questions_and_subjects():
    items = load_mmlu()
    assert len(items) >= 14_000
    assert len(mmlu_subjects()) == 57 and len({item.subject for item in items}) == 57
    assert all(0 <= item.answer < 4 and len(item.choices) == 4 and item.question for item in items)
    assert len({item.id for item in items}) == len(items)


def test_load_subjects_limit_is_seeded():
    first = load_mmlu(["astronomy", "virology"], limit_per_subject=5, seed=1)
    assert first == load_mmlu(["astronomy", "virology"], limit_per_subject=5, seed=1)
    assert Counter(item.subject for item in first) == {"astronomy": 5, "virology": 5}
    assert first != load_mmlu(["astronomy", "virology"], limit_per_subject=5, seed=2)
    with pytest.raises(ConfigError, match="unknown MMLU subject"):
        load_mmlu(["astrology"])


def test_sample_is_seeded_and_proportional():
    sample = sample_mmlu(1000, seed=3)
    assert sample == sample_mmlu(1000, seed=3) and sample != sample_mmlu(1000, seed=4)
    assert len(sample) == 1000 and len({item.id for item in sample}) == 1000
    sizes = Counter(item.subject for item in load_mmlu())
    total = sum(sizes.values())
    picked = Counter(item.subject for item in sample)
    assert set(picked) == set(sizes)
    for subject, size in sizes.items():
        assert abs(picked[subject] - 1000 * size / total) <= 1.5, subject
    assert Counter(item.subject for item in sample_mmlu(57, seed=0)) == dict.fromkeys(sizes, 1)
    assert len(sample_mmlu(10, seed=0)) == 10
    with pytest.raises(ConfigError):
        sample_mmlu(0)


def test_shots_exclude_exemplars_from_the_scored_set():
    examples = exemplars("astronomy", 2)
    kept = load_mmlu(["astronomy"], shots=2)
    assert len(kept) == len(load_mmlu(["astronomy"])) - 2
    assert not {e.id for e in examples} & {item.id for item in kept}
    assert not {e.id for e in examples} & {item.id for item in sample_mmlu(2000, seed=0, shots=2)}


def test_prompt_format_snapshot():
    assert build_prompt(ITEM) == SNAPSHOT
    one_shot = build_prompt(ITEM, shots=1)
    example = exemplars("astronomy", 1)[0]
    header, rest = one_shot.split("\n\n", 1)
    assert header + "\n\n" == SNAPSHOT.split("\n\n", 1)[0] + "\n\n"
    assert rest.startswith(example.question.strip() + "\nA. ")
    assert f"\nAnswer: {example.letter}\n\n" in rest and rest.endswith(SNAPSHOT.split("\n\n", 1)[1])


def test_chat_prompt_puts_answer_in_the_assistant_turn(tokenizer):
    text = build_prompt(ITEM, chat=True, tokenizer=tokenizer)
    assert text.endswith("<|im_start|>assistant\nAnswer:")
    assert SNAPSHOT.removesuffix("\nAnswer:") + "<|im_end|>" in text
    assert [tokenizer.decode([i]) for i in letter_token_ids(tokenizer)] == [" A", " B", " C", " D"]


def _reference_logprobs(model, tokenizer, item: MMLUItem) -> list[float]:
    ids = tokenize_prompt(tokenizer, build_prompt(item))
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
    return torch.log_softmax(logits.float(), dim=-1)[letter_token_ids(tokenizer)].tolist()


def test_left_padded_batches_match_unbatched_reference(tokenizer):
    model = build_tiny_llama(tokenizer).eval()
    items = load_mmlu(["astronomy", "virology", "college physics", "global facts"], limit_per_subject=2, seed=0)
    calls: list[int] = []
    result = evaluate_mmlu(model, tokenizer, items, batch_size=3, on_batch=calls.append)
    assert result.n == 8 and sum(calls) == 8 and len(calls) == 3
    assert len({len(tokenize_prompt(tokenizer, build_prompt(item))) for item in items}) > 1  # padding happens
    for item, prediction in zip(items, result.predictions, strict=True):
        reference = _reference_logprobs(model, tokenizer, item)
        assert prediction.id == item.id
        assert prediction.logprobs == pytest.approx(reference, abs=1e-4)
        assert prediction.predicted == max(range(4), key=lambda i: reference[i])


class _FakeModel:
    """Logits that favour the gold letter of each prompt (looked up by its unpadded token ids)."""

    device = torch.device("cpu")
    training = False

    def __init__(self, tokenizer, items: list[MMLUItem], vocab: int, always: int | None = None) -> None:
        letters = letter_token_ids(tokenizer)
        self.vocab = vocab
        self.gold = {
            tuple(tokenize_prompt(tokenizer, build_prompt(item))): letters[item.answer if always is None else always]
            for item in items
        }

    def eval(self) -> _FakeModel:
        return self

    def __call__(self, input_ids, attention_mask, position_ids, **kwargs):
        logits = torch.zeros(input_ids.shape[0], 1, self.vocab)  # only the last position is read
        for row, (ids, mask) in enumerate(zip(input_ids.tolist(), attention_mask.tolist(), strict=True)):
            prompt = tuple(i for i, m in zip(ids, mask, strict=True) if m)
            logits[row, -1, self.gold[prompt]] = 10.0
        return SimpleNamespace(logits=logits)


def test_stub_answering_the_gold_letter_scores_one(tokenizer):
    items = sample_mmlu(60, seed=5)
    perfect = evaluate_mmlu(_FakeModel(tokenizer, items, len(tokenizer)), tokenizer, items, batch_size=16)
    assert perfect.accuracy == 1.0 and perfect.n == 60
    assert all(value == 1.0 for value in perfect.per_subject.values())
    always_a = evaluate_mmlu(_FakeModel(tokenizer, items, len(tokenizer), always=0), tokenizer, items)
    assert always_a.accuracy == pytest.approx(sum(item.answer == 0 for item in items) / 60)
    json.dumps(always_a.to_dict())
    with pytest.raises(ConfigError):
        evaluate_mmlu(_FakeModel(tokenizer, items, len(tokenizer)), tokenizer, items, batch_size=0)


def test_exemplars_passed_in_are_not_scored(tokenizer):
    items = load_mmlu(["astronomy"])[:4]
    result = evaluate_mmlu(build_tiny_llama(tokenizer).eval(), tokenizer, items, shots=1)
    assert result.n == 3 and items[0].id not in {p.id for p in result.predictions}


def test_few_shot_prefix_computed_once_matches_whole_prompts(tokenizer):
    model = build_tiny_llama(tokenizer).eval()
    items = load_mmlu(["astronomy", "virology"], limit_per_subject=4, seed=1, shots=2)
    result = evaluate_mmlu(model, tokenizer, items, batch_size=3, shots=2)
    assert result.n == 8
    for item, prediction in zip(items, result.predictions, strict=True):
        ids = tokenize_prompt(tokenizer, build_prompt(item, shots=2))
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
        reference = torch.log_softmax(logits.float(), dim=-1)[letter_token_ids(tokenizer)].tolist()
        assert prediction.logprobs == pytest.approx(reference, abs=1e-4)


def _prediction(item_id: int, subject: str, correct: bool) -> MMLUPrediction:
    return MMLUPrediction(item_id, subject, 0, 0 if correct else 1, [0.0, -1.0, -2.0, -3.0])


def test_mmlu_delta_on_hand_made_results():
    before = summarize(
        [_prediction(1, "a", True), _prediction(2, "a", True), _prediction(3, "b", False), _prediction(4, "b", True)]
    )
    after = summarize(
        [_prediction(1, "a", False), _prediction(2, "a", True), _prediction(3, "b", True), _prediction(4, "b", False)]
    )
    assert before.accuracy == 0.75 and after.accuracy == 0.5
    assert before.per_subject == {"a": 1.0, "b": 0.5}
    delta = mmlu_delta(before, after)
    assert delta["delta"] == pytest.approx(-0.25)
    assert delta["per_subject"] == {"a": pytest.approx(-0.5), "b": pytest.approx(0.0)}
    assert (delta["correct_to_wrong"], delta["wrong_to_correct"], delta["n_common"]) == (2, 1, 4)
