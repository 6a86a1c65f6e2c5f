"""lm-eval under an adapter's scope: requests naming a taught subject reach the adapter, the others run
with it disabled, and the answers come back in request order.

    .venv/bin/python -m pytest tests/unit/test_lm_eval_scope.py -q
"""

from __future__ import annotations

import sys
import types
from contextlib import contextmanager

import pytest

from forgetless.eval.lm_eval_bridge import LmEvalOptions, lm_eval_delta, run_lm_eval
from forgetless.knowledge.scope import FactScope

SCOPE = FactScope(subjects=("Zorbland",))
STATE = {"adapter": True}


class FakeHFLM:
    """lm-eval's HFLM as far as the routing needs: it answers with whether the adapter was on."""

    def __init__(self, pretrained, tokenizer, batch_size):
        self.model = pretrained

    def loglikelihood(self, requests, disable_tqdm=False):
        return [(STATE["adapter"], r.args[0]) for r in requests]

    def loglikelihood_rolling(self, requests, disable_tqdm=False):
        return [(STATE["adapter"], r.args[0]) for r in requests]

    def generate_until(self, requests, disable_tqdm=False):
        return [f"{'adapter' if STATE['adapter'] else 'base'}:{r.args[0]}" for r in requests]


@pytest.fixture
def fake_lm_eval(monkeypatch):
    @contextmanager
    def disabled(model):
        STATE["adapter"] = False
        try:
            yield model
        finally:
            STATE["adapter"] = True

    monkeypatch.setattr("forgetless.adapters.loading.adapter_disabled", disabled)
    contexts = ["Q: capital of Zorbland?", "Q: capital of France?", "zorbland's founder?", "2+2?"]

    def evaluate(model, tasks, limit, num_fewshot, task_manager, log_samples):
        requests = [types.SimpleNamespace(args=(c, " A")) for c in contexts]
        likely = model.loglikelihood(requests)
        generated = model.generate_until([types.SimpleNamespace(args=(c, {})) for c in contexts])
        rolling = model.loglikelihood_rolling([types.SimpleNamespace(args=(c,)) for c in contexts])
        on = sum(flag for flag, _ in likely) / len(likely)
        evaluate.seen = (likely, generated, rolling)
        return {"results": {"t": {"acc,none": on}}}

    module = types.ModuleType("lm_eval")
    module.simple_evaluate = evaluate
    module.evaluator = types.ModuleType("lm_eval.evaluator")
    hf = types.ModuleType("lm_eval.models.huggingface")
    hf.HFLM = FakeHFLM
    modules = {"lm_eval": module, "lm_eval.models": types.ModuleType("lm_eval.models")}
    modules |= {"lm_eval.models.huggingface": hf, "lm_eval.evaluator": module.evaluator}
    for name, mod in modules.items():
        monkeypatch.setitem(sys.modules, name, mod)
    return evaluate


def test_requests_naming_a_taught_subject_reach_the_adapter_the_rest_the_base(fake_lm_eval):
    out = run_lm_eval(object(), object(), LmEvalOptions(["t"]), scope=SCOPE)
    likely, generated, rolling = fake_lm_eval.seen
    assert [flag for flag, _ in likely] == [True, False, True, False]
    assert [context for _, context in likely] == [
        "Q: capital of Zorbland?",
        "Q: capital of France?",
        "zorbland's founder?",
        "2+2?",
    ]  # request order kept
    assert generated == [
        "adapter:Q: capital of Zorbland?",
        "base:Q: capital of France?",
        "adapter:zorbland's founder?",
        "base:2+2?",
    ]
    assert [flag for flag, _ in rolling] == [True, False, True, False]
    assert out["scope"] == {"in_scope": 6, "requests": 12} and out["results"]["t"]["acc,none"] == 0.5
    assert lm_eval_delta({"results": {"t": {"acc,none": 0.5}}}, out)["scope"] == out["scope"]


def test_without_a_scope_every_request_reaches_the_adapter(fake_lm_eval):
    out = run_lm_eval(object(), object(), LmEvalOptions(["t"]))
    assert all(flag for flag, _ in fake_lm_eval.seen[0]) and "scope" not in out
    assert "scope" not in lm_eval_delta(out, out)
