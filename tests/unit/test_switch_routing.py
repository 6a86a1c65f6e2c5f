"""The SwitchCIT switch end to end with the embedded all-MiniLM-L6-v2 on three synthetic prompt families.

Measured (seed 0, 100 train / 30 calibration / 30 test prompts per family, fraction 0.05): the
class-balanced switch routes 100% of test prompts right; AUROC in-distribution vs 20 foreign prompts
1.00 (energy) / 0.999 (max_softmax), FPR@95TPR 0.0; after calibrate(keep=0.95) 96.7% of test prompts
are kept and 100% of foreign prompts go to __base__. The paper's unweighted loss: 93-100% per family
(errors go to the newest task), AUROC 0.99 (energy) / 0.83 (max_softmax), FPR@95TPR 0.10 / 0.75.
"""

from __future__ import annotations

import random

import pytest
import torch

from forgetless.adapters.names import BASE
from forgetless.adapters.switch import MiniLMEncoder, Switch, id_scores, ood_metrics
from forgetless.adapters.switch.encoder import length_batches
from forgetless.errors import ConfigError

SUBJECTS = ["The cat", "My brother", "The old teacher", "Our neighbour", "A young girl", "The doctor", "This farmer"]
SUBJECTS += ["The little boy", "Her grandmother", "The pilot", "Every student", "The baker"]
VERBS = ["is reading", "wants to buy", "is painting", "forgot", "found", "is cleaning", "likes", "sold", "lost"]
OBJECTS = ["a red book", "the kitchen table", "an old bicycle", "the blue car", "a small garden", "the front door"]
OBJECTS += ["a warm coat", "the new computer", "a loaf of bread", "the wooden chair", "a letter", "the train ticket"]
NOUNS = "child mouse goose tooth foot person city knife leaf box cactus woman wolf hero potato church baby ox crisis"
NOUNS += " thesis fish sheep man bus wife loaf half key toy day story lady fox dish brush witch phenomenon criterion"
NOUNS += " analysis index matrix radius fungus nucleus deer moose calf shelf"
PLURAL = ["What is the plural of {}?", "What is the plural of the word '{}'?", "Give the plural form of {}."]
PLURAL += ['What is the plural of "{}"?', "What is the plural form of the noun {}?"]
NUMBER = [
    "Write the number {} in words.",
    "Write the number {} in words, please.",
    "Write the number {} in English words.",
]
FOREIGN = [
    "hi, how are you?", "Hello there!", "Good morning, what's up?", "Thanks a lot, bye!",
    "Which of the following is a prime number? A) 4 B) 6 C) 7 D) 9",
    "What is the capital of Australia? A) Sydney B) Canberra C) Melbourne D) Perth",
    "Which organelle is known as the powerhouse of the cell? A) Nucleus B) Ribosome C) Mitochondrion D) Golgi",
    "In which year did World War II end? A) 1943 B) 1945 C) 1947 D) 1950",
    "Which gas do plants absorb from the atmosphere? A) Oxygen B) Nitrogen C) Carbon dioxide D) Helium",
    "What is the derivative of x squared? A) x B) 2x C) x^2 D) 2",
    "Who wrote Pride and Prejudice? A) Charlotte Bronte B) Jane Austen C) Mary Shelley D) George Eliot",
    "Which of these is a noble gas? A) Argon B) Sodium C) Iron D) Sulfur",
    "Explain the causes of the French Revolution.", "Summarise the plot of Hamlet in two sentences.",
    "Write a haiku about autumn leaves.", "How do I sort a list in Python?",
    "What is the boiling point of water at sea level?", "Recommend a good science fiction novel.",
    "Why is the sky blue?", "Tell me a joke about programmers.",
]  # fmt: skip
FAMILIES = {
    "french": lambda r: f"Translate to French: {r.choice(SUBJECTS)} {r.choice(VERBS)} {r.choice(OBJECTS)}",
    "plural": lambda r: r.choice(PLURAL).format(r.choice(NOUNS.split())),
    "numbers": lambda r: r.choice(NUMBER).format(r.randint(0, 999_999)),
}


def family_prompts(n: int, seed: int = 0) -> dict[str, list[str]]:
    """`n` distinct prompts per family."""
    rng, out = random.Random(seed), {}
    for name, make in FAMILIES.items():
        seen: dict[str, None] = {}
        for _ in range(50 * n):
            seen[make(rng)] = None
            if len(seen) == n:
                break
        assert len(seen) == n, f"family {name} has fewer than {n} distinct prompts"
        out[name] = list(seen)
    return out


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The CI box has 2 shared cores: one thread is ~2x faster than two here."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def minilm():
    return MiniLMEncoder()


@pytest.fixture(scope="module")
def data():
    prompts = family_prompts(160)
    train = {k: v[:100] for k, v in prompts.items()}
    calibration = [p for v in prompts.values() for p in v[100:130]]
    test = {k: v[130:] for k, v in prompts.items()}
    return train, calibration, test


@pytest.fixture(scope="module")
def trained(minilm, data):
    train, _, _ = data
    # balanced=True (class-weighted loss, beyond the paper): the paper's unweighted loss drifts towards the
    # newest task (all its prompts vs 5% of the older ones) and misroutes ~3-7% of older-task prompts here.
    switch = Switch(encoder=minilm, fraction=0.05, score="energy", seed=0, balanced=True)
    for name, prompts in train.items():
        switch.update(name, prompts, f"runs/lora-{name}")
    return switch


def test_minilm_embeddings_are_unit_norm_and_semantic(minilm):
    prompts = ["How do I bake bread at home?", "What is a simple recipe for homemade bread?", "The stock market fell."]
    emb = minilm.encode(prompts)
    assert emb.shape == (3, 384) and minilm.dim == 384 and minilm.name == "minilm"
    assert torch.allclose(emb.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.3


def test_minilm_padding_does_not_change_an_embedding(minilm):
    prompts = ["hi", "Translate to French: the old teacher is reading a red book about the sea", "plural of goose?"]
    batch = minilm.encode(prompts, batch_size=8)
    single = torch.cat([minilm.encode([p]) for p in prompts])
    assert torch.allclose(batch, single, atol=1e-5)
    assert minilm.encode([]).shape == (0, 384)


def test_minilm_sorts_by_length_and_restores_the_order(minilm):
    """Batches hold prompts of similar length (less padding); the vectors come back in the prompts' order."""
    rng = random.Random(3)
    prompts = ["hi", "plural of ox?", *FOREIGN[4:8], *(p for v in family_prompts(4).values() for p in v)]
    rng.shuffle(prompts)
    lengths = [len(minilm.tokenizer(p)["input_ids"]) for p in prompts]
    assert lengths != sorted(lengths)
    widths = []
    hook = minilm.model.register_forward_pre_hook(
        lambda _, args, kwargs: widths.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    try:
        batch = minilm.encode(prompts, batch_size=4)
    finally:
        hook.remove()
    groups = length_batches(lengths, 4)
    assert widths == [max(lengths[i] for i in group) for group in groups]
    in_order = [max(lengths[i : i + 4]) * len(lengths[i : i + 4]) for i in range(0, len(lengths), 4)]
    assert sum(w * len(g) for w, g in zip(widths, groups, strict=True)) < sum(in_order)  # less padding
    single = torch.cat([minilm.encode([p]) for p in prompts])
    assert torch.allclose(batch, single, atol=1e-5)
    assert batch.dtype == torch.float32 and not batch.is_inference() and not batch.requires_grad
    with pytest.raises(ConfigError, match="batch_size"):
        minilm.encode(prompts, batch_size=0)


def test_switch_routes_held_out_prompts_after_three_updates(trained, data):
    _, _, test = data
    assert trained.memory.task_names == ["french", "plural", "numbers"]
    assert [len(trained.memory.prompts_of(n)) for n in trained.task_names] == [5, 5, 5]
    for name, prompts in test.items():
        routes = trained.route(prompts)
        accuracy = sum(r.task == name for r in routes) / len(routes)
        assert accuracy >= 0.95, (name, accuracy)
        assert all(r.adapter == f"runs/lora-{name}" for r in routes if r.task == name)


def test_calibrated_switch_sends_foreign_prompts_to_base(trained, data, minilm):
    _, calibration, test = data
    held_out = [p for v in test.values() for p in v]
    trained.calibrate(calibration, keep=0.95)
    kept = 1 - sum(r.abstained for r in trained.route(held_out)) / len(held_out)
    foreign = trained.route(FOREIGN)
    to_base = sum(r.task == BASE and r.adapter is None for r in foreign) / len(FOREIGN)
    assert 0.85 <= kept <= 1.0 and to_base > 0.5, (kept, to_base)
    logits_in, logits_out = trained.head.logits(minilm.encode(held_out)), trained.head.logits(minilm.encode(FOREIGN))
    for score in ("energy", "max_softmax"):
        metrics = ood_metrics(id_scores(logits_in, score), id_scores(logits_out, score))
        print(score, metrics, f"kept={kept:.3f} foreign_to_base={to_base:.2f}")
        assert metrics["auroc"] > 0.8, (score, metrics)


def test_saved_switch_routes_identically(trained, data, minilm, tmp_path):
    _, calibration, test = data
    trained.calibrate(calibration)
    probe = [p for v in test.values() for p in v[:5]] + FOREIGN[:6]
    trained.save(tmp_path / "switch")
    assert sorted(p.name for p in (tmp_path / "switch").iterdir()) == [
        "memory.json", "switch.json", "switch_head.safetensors"
    ]  # fmt: skip
    loaded = Switch.load(tmp_path / "switch", encoder=minilm)
    assert loaded.route(probe) == trained.route(probe)
    assert loaded.memory.prompts_and_labels() == trained.memory.prompts_and_labels()


def test_paper_default_unweighted_switch_still_routes_most_prompts(minilm, data):
    train, _, test = data
    switch = Switch(encoder=minilm, fraction=0.05, seed=0)
    for name, prompts in train.items():
        switch.update(name, prompts, f"runs/lora-{name}")
    accuracy = {n: sum(r.task == n for r in switch.route(p)) / len(p) for n, p in test.items()}
    print("unweighted accuracy", accuracy)
    assert min(accuracy.values()) >= 0.9, accuracy
