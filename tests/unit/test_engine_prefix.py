"""Shared-prefix generation must answer exactly like plain batched generation (greedy, fp32).

.venv/bin/python -m pytest tests/unit/test_engine_prefix.py -q
"""

from __future__ import annotations

import pytest

from forgetless.engine.generate import generate_texts
from forgetless.engine.prefix import _group_by_prefix, generate_shared_prefix
from forgetless.engine.sampling import SamplingConfig


def _conversations():
    shots = [("What is 2+2?", "4"), ("Capital of France?", "Paris")]
    head = [{"role": "system", "content": "Answer the following question."}]
    for question, answer in shots:
        head += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    other = [{"role": "system", "content": "Be brief."}]
    questions = ["Who wrote Hamlet?", "a", "A much longer question about the tallest mountain on Earth?", "x y z"]
    convs = [[*head, {"role": "user", "content": q}] for q in questions]
    convs += [[*other, {"role": "user", "content": q}] for q in questions[:2]]
    convs.append([{"role": "user", "content": "no shared prefix here"}])
    return convs


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from forgetless.models.load import load_model

    model, tokenizer, _ = load_model(str(tiny_model_dir))
    return model, tokenizer


def test_grouping_shares_prefixes_and_falls_back_for_singletons(tokenizer):
    groups, fallback = _group_by_prefix(tokenizer, _conversations())
    assert sorted(len(members) for members in groups.values()) == [2, 4]
    assert fallback == [6]


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_greedy_answers_equal_plain_generation(tiny, batch_size):
    model, tokenizer = tiny
    sampling = SamplingConfig(max_new_tokens=6, precision="fp32")
    convs = _conversations()
    expected = [generate_texts(model, tokenizer, [c], sampling, 1)[0] for c in convs]
    assert generate_shared_prefix(model, tokenizer, convs, sampling, batch_size) == expected


def test_sampling_gives_n_answers_per_prompt_and_is_seeded(tiny):
    model, tokenizer = tiny
    sampling = SamplingConfig(max_new_tokens=4, temperature=1.0, top_k=20, num_return_sequences=3, seed=7)
    convs = _conversations()
    first = generate_shared_prefix(model, tokenizer, convs, sampling, 8)
    assert [len(answers) for answers in first] == [3] * len(convs)
    assert generate_shared_prefix(model, tokenizer, convs, sampling, 8) == first
    assert len({a for answers in first[:4] for a in answers}) > 1  # sampled, not greedy copies


def test_rows_finishing_at_different_steps_leave_the_batch(tiny, monkeypatch):
    import forgetless.engine.tokens as pg

    model, tokenizer = tiny
    real = pg.token_classes.__wrapped__

    def half_eos(tok, size):  # every third token id ends a row: rows stop at scattered steps
        eos, newline, text = real(tok, size)
        return [e or i % 3 == 0 for i, e in enumerate(eos)], newline, text

    monkeypatch.setattr(pg, "token_classes", half_eos)
    sampling = SamplingConfig(max_new_tokens=8, temperature=3.0, num_return_sequences=4, seed=1)
    out = generate_shared_prefix(model, tokenizer, _conversations(), sampling, 64)
    assert [len(answers) for answers in out] == [4] * len(_conversations())
    greedy = SamplingConfig(max_new_tokens=8, precision="fp32")
    single = [generate_shared_prefix(model, tokenizer, [c], greedy, 1) for c in _conversations()[:4]]
    assert generate_shared_prefix(model, tokenizer, _conversations()[:4], greedy, 64) == [s[0] for s in single]


def test_cascade_attention_is_used_and_mixes_prefix_groups_in_one_batch(tiny, monkeypatch):
    import forgetless.engine.attention as pa

    model, tokenizer = tiny
    real, seen = pa.cascade_attention, []

    def counting(module, query, *args, **kwargs):
        segments = pa._SEGMENTS.get()
        seen.append(len(segments.parts) if segments else 0)
        return real(module, query, *args, **kwargs)

    monkeypatch.setattr(pa, "cascade_attention", counting)
    sampling = SamplingConfig(max_new_tokens=6, precision="fp32")
    convs = _conversations()
    expected = [generate_texts(model, tokenizer, [c], sampling, 1)[0] for c in convs]
    assert generate_shared_prefix(model, tokenizer, convs, sampling, 16) == expected
    assert max(seen) == 2  # rows behind both system prompts decoded together
    assert model.config._attn_implementation != pa.NAME  # put back after the call


def test_falls_back_to_broadcast_prefixes_when_attention_is_unsupported(tiny, monkeypatch):
    import forgetless.engine.attention as pa

    model, tokenizer = tiny

    def unsupported(module, *args, **kwargs):
        raise pa.UnsupportedAttention("soft-capping")

    monkeypatch.setattr(pa, "cascade_attention", unsupported)
    sampling = SamplingConfig(max_new_tokens=6, precision="fp32")
    convs = _conversations()
    expected = [generate_texts(model, tokenizer, [c], sampling, 1)[0] for c in convs]
    assert generate_shared_prefix(model, tokenizer, convs, sampling, 3) == expected


def test_top_k_sampling_draws_vocabulary_ids_among_the_k_best():
    import torch

    from forgetless.engine.sampling import pick_tokens as _pick

    logits = torch.randn(6, 500, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(1)
    top1 = SamplingConfig(temperature=0.7, top_k=1)
    assert torch.equal(_pick(logits, top1, generator), logits.argmax(-1))  # ids mapped back, not top-k slots
    top5 = SamplingConfig(temperature=5.0, top_k=5)
    best = logits.topk(5, dim=-1).indices
    draws = torch.stack([_pick(logits, top5, generator) for _ in range(50)], dim=1)
    assert bool((draws[..., None] == best[:, None, :]).any(-1).all())
    assert len(set(draws[0].tolist())) > 1
    full = SamplingConfig(temperature=1.0)  # no top-k: exponential race over the whole vocabulary
    assert _pick(logits, full, generator).shape == (6,)


def test_full_vocabulary_sampling_follows_the_softmax():
    import torch

    from forgetless.engine.sampling import pick_tokens as _pick

    probs = torch.tensor([0.7, 0.2, 0.1])
    logits = probs.log().expand(20000, 3)
    draws = _pick(logits, SamplingConfig(temperature=1.0), torch.Generator().manual_seed(3))
    freq = torch.bincount(draws, minlength=3).float() / len(draws)
    assert torch.allclose(freq, probs, atol=0.015)
