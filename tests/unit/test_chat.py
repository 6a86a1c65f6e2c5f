"""Chat encoding with the real SmolLM2 tokenizer: labels only on answers + EOS, the same prompt ids as
generation, truncation that keeps the answer, and left-padded collation with its label window."""

from __future__ import annotations

import copy

import pytest
import torch

from forgetless.data.chat import (
    IGNORE_INDEX,
    encode_messages,
    prompt_messages,
    render_prompt,
    tokenize_prompt,
)
from forgetless.data.collate import LeftPadCollator, label_window

QUESTION = "What is the capital of Veldoria?"
ANSWER = "Marrowick, on the river Quill."
SINGLE = [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": ANSWER}]
MULTI = [
    {"role": "system", "content": "You are a geography tutor."},
    {"role": "user", "content": QUESTION},
    {"role": "assistant", "content": "Marrowick."},
    {"role": "user", "content": "And the capital of Pemberth?"},
    {"role": "assistant", "content": "Silverton, by the sea."},
]


def _labelled(ids: list[int], labels: list[int]) -> list[int]:
    return [label for label in labels if label != IGNORE_INDEX]


def _runs(labels: list[int]) -> list[tuple[int, int]]:
    """(start, end) index ranges of consecutive labelled positions."""
    runs, start = [], None
    for index, label in enumerate([*labels, IGNORE_INDEX]):
        if label != IGNORE_INDEX and start is None:
            start = index
        elif label == IGNORE_INDEX and start is not None:
            runs.append((start, index))
            start = None
    return runs


def test_labels_cover_exactly_the_response_and_eos(tokenizer):
    ids, labels = encode_messages(tokenizer, SINGLE)

    assert len(ids) == len(labels)
    answer_ids = tokenizer(ANSWER, add_special_tokens=False)["input_ids"]
    kept = _labelled(ids, labels)
    assert kept == [*answer_ids, tokenizer.eos_token_id]
    assert tokenizer.decode(kept) == ANSWER + tokenizer.eos_token
    assert tokenizer.decode(kept, skip_special_tokens=True) == ANSWER
    # the labelled tokens are one run at the very end, equal to the input ids they sit on
    assert _runs(labels) == [(len(ids) - len(kept), len(ids))]
    assert ids[-len(kept) :] == kept
    assert ids[-1] == tokenizer.eos_token_id


def test_prompt_ids_equal_what_generation_feeds_the_model(tokenizer):
    ids, labels = encode_messages(tokenizer, SINGLE)
    generation_ids = tokenize_prompt(tokenizer, render_prompt(tokenizer, prompt_messages(QUESTION)))

    prompt_len = len(ids) - len(_labelled(ids, labels))
    assert ids[:prompt_len] == generation_ids
    assert all(label == IGNORE_INDEX for label in labels[:prompt_len])
    assert render_prompt(tokenizer, SINGLE[:1]).endswith("assistant\n")
    # the chat template already starts with BOS (<|im_start|>): it must not be doubled
    assert generation_ids[0] == tokenizer.bos_token_id != generation_ids[1]


def test_system_prompt_consistency_via_prompt_messages(tokenizer):
    system = "Answer in one word."
    messages = [*prompt_messages(QUESTION, system), {"role": "assistant", "content": "Marrowick."}]
    assert messages[0] == {"role": "system", "content": system}
    ids, labels = encode_messages(tokenizer, messages)
    generation_ids = tokenize_prompt(tokenizer, render_prompt(tokenizer, messages[:-1]))
    assert ids[: len(generation_ids)] == generation_ids
    assert labels[: len(generation_ids)] == [IGNORE_INDEX] * len(generation_ids)
    assert len(ids) - len(generation_ids) == len(_labelled(ids, labels))
    assert system in tokenizer.decode(ids[: len(generation_ids)])


def test_multi_turn_labels_both_assistant_turns_only(tokenizer):
    ids, labels = encode_messages(tokenizer, MULTI)
    eos = tokenizer.eos_token_id

    runs = _runs(labels)
    assert len(runs) == 2
    first, second = (labels[a:b] for a, b in runs)
    assert tokenizer.decode(first) == "Marrowick." + tokenizer.eos_token
    assert tokenizer.decode(second) == "Silverton, by the sea." + tokenizer.eos_token
    assert first[-1] == second[-1] == eos
    for a, b in runs:
        assert ids[a:b] == labels[a:b]
    unlabelled = tokenizer.decode([i for i, label in zip(ids, labels, strict=True) if label == IGNORE_INDEX])
    assert "geography tutor" in unlabelled and QUESTION in unlabelled and "Pemberth" in unlabelled
    assert "Marrowick" not in unlabelled and "Silverton" not in unlabelled
    # the second prompt is what generation would see after the first exchange
    second_prompt = tokenize_prompt(tokenizer, render_prompt(tokenizer, MULTI[:4]))
    assert ids[: runs[1][0]] == second_prompt
    # and only one BOS: the second turn's prompt segment is not treated as a new sequence
    assert ids.count(tokenizer.bos_token_id) == tokenizer.decode(ids).count(tokenizer.bos_token)


def test_loss_on_all_labels_every_token(tokenizer):
    ids, labels = encode_messages(tokenizer, MULTI, loss_on="all")
    assert labels == ids
    assert encode_messages(tokenizer, MULTI)[0] == ids


def test_loss_on_unknown_value_is_rejected(tokenizer):
    with pytest.raises(ValueError, match="loss_on"):
        encode_messages(tokenizer, SINGLE, loss_on="prompt")


def test_truncation_drops_the_prompt_start_and_keeps_the_answer(tokenizer):
    full_ids, full_labels = encode_messages(tokenizer, SINGLE)
    answer_len = len(_labelled(full_ids, full_labels))
    max_length = answer_len + 5
    assert len(full_ids) > max_length

    ids, labels = encode_messages(tokenizer, SINGLE, max_length=max_length)

    assert len(ids) == len(labels) == max_length
    assert ids == full_ids[-max_length:]
    assert labels == full_labels[-max_length:]
    assert _labelled(ids, labels) == _labelled(full_ids, full_labels)
    assert labels[:5] == [IGNORE_INDEX] * 5


def test_short_examples_are_not_truncated(tokenizer):
    ids, _ = encode_messages(tokenizer, SINGLE)
    assert encode_messages(tokenizer, SINGLE, max_length=len(ids)) == encode_messages(tokenizer, SINGLE)


def test_fallback_format_without_chat_template(tokenizer):
    plain = copy.deepcopy(tokenizer)
    plain.chat_template = None
    assert render_prompt(plain, SINGLE[:1]) == f"User: {QUESTION}\nAssistant: "
    ids, labels = encode_messages(plain, SINGLE)
    assert tokenizer.decode(_labelled(ids, labels)) == ANSWER + tokenizer.eos_token
    generation_ids = tokenize_prompt(plain, render_prompt(plain, SINGLE[:1]))
    assert ids[: len(generation_ids)] == generation_ids


# --------------------------------------------------------------------------------------------- collation


def _features(lengths: list[int], labelled_tail: list[int]) -> list[dict]:
    features = []
    for row, (length, tail) in enumerate(zip(lengths, labelled_tail, strict=True)):
        ids = [100 + 10 * row + i for i in range(length)]
        labels = [IGNORE_INDEX] * (length - tail) + ids[length - tail :]
        features.append({"input_ids": ids, "labels": labels, "sample_type": row % 2})
    return features


def test_left_pad_collator_pads_on_the_left():
    features = _features([3, 5, 1], [2, 3, 1])
    batch = LeftPadCollator(pad_token_id=2)(features)

    assert batch["input_ids"].tolist() == [
        [2, 2, 100, 101, 102],
        [110, 111, 112, 113, 114],
        [2, 2, 2, 2, 120],
    ]
    assert batch["attention_mask"].tolist() == [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]]
    assert batch["labels"].tolist() == [
        [IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, 101, 102],
        [IGNORE_INDEX, IGNORE_INDEX, 112, 113, 114],
        [IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, 120],
    ]
    assert batch["sample_type"].tolist() == [0, 1, 0]
    for key in ("input_ids", "labels", "attention_mask", "position_ids"):
        assert batch[key].dtype == torch.long


def test_position_ids_start_at_zero_on_the_first_real_token():
    batch = LeftPadCollator(pad_token_id=0)(_features([3, 5, 1], [1, 1, 1]))
    positions, mask = batch["position_ids"], batch["attention_mask"]

    assert positions.tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4], [0, 0, 0, 0, 0]]
    for row in range(3):
        real = positions[row][mask[row].bool()].tolist()
        assert real == list(range(len(real)))


def test_collator_without_sample_type():
    features = [{"input_ids": [5, 6], "labels": [IGNORE_INDEX, 6]}]
    batch = LeftPadCollator(pad_token_id=0)(features)
    assert "sample_type" not in batch
    assert batch["input_ids"].tolist() == [[5, 6]]
    assert batch["position_ids"].tolist() == [[0, 1]]


def test_collator_on_real_encodings(tokenizer):
    encoded = [encode_messages(tokenizer, m) for m in (SINGLE, MULTI)]
    features = [{"input_ids": i, "labels": lab} for i, lab in encoded]
    batch = LeftPadCollator(tokenizer.pad_token_id)(features)
    for row, (ids, labels) in enumerate(encoded):
        assert batch["input_ids"][row, -len(ids) :].tolist() == ids
        assert batch["labels"][row, -len(labels) :].tolist() == labels
        assert int(batch["attention_mask"][row].sum()) == len(ids)
        pad = batch["labels"].shape[1] - len(labels)
        assert (batch["labels"][row, :pad] == IGNORE_INDEX).all()
        assert (batch["input_ids"][row, :pad] == tokenizer.pad_token_id).all()


def _covers_all_labels(labels: torch.Tensor, keep: int) -> bool:
    """Whether the trainer's slicing (logits of the last `keep` positions, minus the last) sees every label."""
    width = labels.shape[1]
    targets = labels[:, width - keep + 1 :]
    return int((targets != IGNORE_INDEX).sum()) == int((labels != IGNORE_INDEX).sum())


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([[-100, -100, -100, 7, 8], [-100, -100, -100, -100, 9]], 3),
        ([[-100, 5, -100, -100, 8], [-100, -100, -100, -100, 9]], 5),
        ([[-100, -100, -100, -100, 9]], 2),
        ([[-100, -100, 6, 7, 8], [-100, -100, -100, 7, -100]], 4),
    ],
)
def test_label_window_is_the_smallest_k_covering_all_labels(rows, expected):
    labels = torch.tensor(rows)
    keep = label_window(labels)
    assert keep == expected
    assert _covers_all_labels(labels, keep)
    assert not _covers_all_labels(labels, keep - 1)


def test_label_window_without_labels_is_one():
    assert label_window(torch.full((2, 6), IGNORE_INDEX)) == 1


def test_label_window_on_collated_real_batch(tokenizer):
    encoded = [encode_messages(tokenizer, m) for m in (SINGLE, MULTI)]
    batch = LeftPadCollator(tokenizer.pad_token_id)([{"input_ids": i, "labels": lab} for i, lab in encoded])
    keep = label_window(batch["labels"])
    assert keep <= batch["labels"].shape[1]
    assert _covers_all_labels(batch["labels"], keep)
    assert not _covers_all_labels(batch["labels"], keep - 1)


def test_label_window_never_exceeds_the_sequence_length(tokenizer):
    encoded = [encode_messages(tokenizer, m, loss_on="all") for m in (SINGLE, MULTI)]
    batch = LeftPadCollator(tokenizer.pad_token_id)([{"input_ids": i, "labels": lab} for i, lab in encoded])
    width = batch["labels"].shape[1]
    keep = label_window(batch["labels"])
    assert keep <= width
    # the trainer's slicing must give as many logits as targets
    assert batch["input_ids"][:, -keep:][:, :-1].shape == batch["labels"][:, width - keep + 1 :].shape
