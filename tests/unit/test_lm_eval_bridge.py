"""The optional lm-eval path: skipped cleanly when lm-eval is missing or fails, results diffed when it runs.

    .venv/bin/python -m pytest tests/unit/test_lm_eval_bridge.py -q

A fake `lm_eval` module stands in for the real package (not a dependency; its data needs the network).
"""

from __future__ import annotations

import sys
import types

import pytest

from forgetless.eval.lm_eval_bridge import lm_eval_delta, parse_tasks, run_lm_eval


def _fake_lm_eval(monkeypatch, evaluate):
    module = types.ModuleType("lm_eval")
    module.simple_evaluate = evaluate
    models = types.ModuleType("lm_eval.models")
    hf = types.ModuleType("lm_eval.models.huggingface")
    hf.HFLM = lambda pretrained, tokenizer, batch_size: {"model": pretrained}
    for name, mod in (("lm_eval", module), ("lm_eval.models", models), ("lm_eval.models.huggingface", hf)):
        monkeypatch.setitem(sys.modules, name, mod)


def test_parse_tasks():
    assert parse_tasks(" mmlu, truthfulqa_mc2 ,") == ["mmlu", "truthfulqa_mc2"] and parse_tasks(None) == []


def test_missing_lm_eval_is_skipped_with_a_reason(monkeypatch):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # import raises ImportError
    assert "not installed" in run_lm_eval(object(), object(), ["mmlu"])["skipped"]


def test_unreachable_data_is_skipped_with_a_reason(monkeypatch):
    def evaluate(model, tasks, limit):
        raise ConnectionError("Couldn't reach 'cais/mmlu' on the Hub (LocalEntryNotFoundError)\nmore")

    _fake_lm_eval(monkeypatch, evaluate)
    out = run_lm_eval(object(), object(), ["mmlu"])
    assert out == {
        "skipped": "lm-eval could not run mmlu: Couldn't reach 'cais/mmlu' on the Hub (LocalEntryNotFoundError)"
    }


@pytest.mark.parametrize("limit", [None, 5])
def test_results_are_numbers_and_deltas(monkeypatch, limit):
    scores = iter([0.25, 0.40])

    def evaluate(model, tasks, limit):
        return {"results": {"mmlu": {"alias": "mmlu", "acc,none": next(scores), "acc_stderr,none": 0.01}}}

    _fake_lm_eval(monkeypatch, evaluate)
    before, after = run_lm_eval(1, 2, ["mmlu"], limit), run_lm_eval(1, 2, ["mmlu"], limit)
    delta = lm_eval_delta(before, after)["results"]["mmlu"]["acc,none"]
    assert delta["before"] == 0.25 and delta["after"] == 0.40 and delta["delta"] == pytest.approx(0.15)
    assert lm_eval_delta({"skipped": "x"}, after) == {"skipped": "x"}
