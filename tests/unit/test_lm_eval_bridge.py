"""The lm-eval path: options checked before any model loads, a clean skip when lm-eval is missing or
fails, results diffed when it runs, and the local MMLU task builder.

    .venv/bin/python -m pytest tests/unit/test_lm_eval_bridge.py -q

A fake `lm_eval` module stands in for the real package here; the real one runs in
tests/integration/test_lm_eval_crosscheck.py.
"""

from __future__ import annotations

import json
import sys
import types

import pytest

from forgetless.errors import ConfigError
from forgetless.eval.lm_eval_bridge import LmEvalOptions, lm_eval_delta, parse_tasks, run_lm_eval


def _fake_lm_eval(monkeypatch, evaluate):
    module = types.ModuleType("lm_eval")
    module.simple_evaluate = evaluate
    models = types.ModuleType("lm_eval.models")
    hf = types.ModuleType("lm_eval.models.huggingface")
    hf.HFLM = lambda pretrained, tokenizer, batch_size: {"model": pretrained, "batch_size": batch_size}
    evaluator = types.ModuleType("lm_eval.evaluator")
    evaluator.get_git_commit_hash = lambda: "loud"
    module.evaluator = evaluator
    modules = {"lm_eval": module, "lm_eval.models": models, "lm_eval.models.huggingface": hf}
    for name, mod in {**modules, "lm_eval.evaluator": evaluator}.items():
        monkeypatch.setitem(sys.modules, name, mod)
    return evaluator


def test_parse_tasks():
    assert parse_tasks(" mmlu, truthfulqa_mc2 ,") == ["mmlu", "truthfulqa_mc2"] and parse_tasks(None) == []


def test_missing_lm_eval_is_skipped_with_a_reason(monkeypatch):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # import raises ImportError
    assert "forgetless[lm-eval]" in run_lm_eval(object(), object(), LmEvalOptions(["mmlu"]))["skipped"]


def test_unreachable_data_is_skipped_with_a_reason(monkeypatch):
    def evaluate(model, tasks, limit, num_fewshot, task_manager, log_samples):
        raise ConnectionError("Couldn't reach 'cais/mmlu' on the Hub (LocalEntryNotFoundError)\nmore")

    _fake_lm_eval(monkeypatch, evaluate)
    out = run_lm_eval(object(), object(), LmEvalOptions(["mmlu"]))
    assert out == {
        "skipped": "lm-eval could not run mmlu: Couldn't reach 'cais/mmlu' on the Hub (LocalEntryNotFoundError)"
    }


@pytest.mark.parametrize("limit", [None, 5])
def test_results_are_metrics_only_and_deltas(monkeypatch, limit):
    scores, seen = iter([0.25, 0.40]), []

    def evaluate(model, tasks, limit, num_fewshot, task_manager, log_samples):
        seen.append((model["batch_size"], limit, num_fewshot, task_manager, log_samples))
        acc = next(scores)
        return {"results": {"mmlu": {"alias": "mmlu", "acc,none": acc, "acc_stderr,none": 0.01, "sample_len": 9}}}

    _fake_lm_eval(monkeypatch, evaluate)
    options = LmEvalOptions(["mmlu"], limit=limit, shots=2, batch_size=3)
    before, after = run_lm_eval(1, 2, options), run_lm_eval(1, 2, options)
    assert seen[0] == (3, limit, 2, None, False)
    assert set(before["results"]["mmlu"]) == {"acc,none", "acc_stderr,none"}  # no sample_len pseudo-metric
    delta = lm_eval_delta(before, after)["results"]["mmlu"]["acc,none"]
    assert delta["before"] == 0.25 and delta["after"] == 0.40 and delta["delta"] == pytest.approx(0.15)
    assert lm_eval_delta({"skipped": "x"}, after) == {"skipped": "x"}


def test_git_probe_is_quiet_during_the_run_and_restored_after(monkeypatch, tmp_path, capfd):
    calls = []

    def evaluate(model, tasks, limit, num_fewshot, task_manager, log_samples):
        calls.append(sys.modules["lm_eval.evaluator"].get_git_commit_hash())
        return {"results": {}}

    evaluator = _fake_lm_eval(monkeypatch, evaluate)
    monkeypatch.chdir(tmp_path)  # not a git repository: git would print "fatal: not a git repository"
    run_lm_eval(1, 2, LmEvalOptions(["mmlu"]))
    assert calls == [None] and "fatal" not in capfd.readouterr().err
    assert evaluator.get_git_commit_hash() == "loud"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (LmEvalOptions(["mmlu"], limit=0), "--lm-eval-limit must be >= 1"),
        (LmEvalOptions(["mmlu"], shots=-1), "--lm-eval-shots must be >= 0"),
        (LmEvalOptions(["mmlu"], batch_size=0), "--lm-eval-batch-size must be >= 1"),
        (LmEvalOptions(["mmlu"], include="no/such/dir"), "--lm-eval-include no/such/dir: no such folder"),
        (LmEvalOptions([], shots=0), "need --lm-eval-tasks"),
    ],
)
def test_bad_options_are_refused_by_name(options, message):
    with pytest.raises(ConfigError, match=message):
        options.validate()


def test_mmlu_task_builder_writes_our_prompts(tmp_path):
    from forgetless.eval.lm_eval_tasks import TASK_NAME, write_mmlu_task
    from forgetless.eval.mmlu import build_prompt, sample_mmlu

    path = write_mmlu_task(tmp_path / "tasks", questions=60, shots=1, seed=3)
    rows = [json.loads(line) for line in (path.parent / f"{TASK_NAME}.jsonl").read_text().splitlines()]
    items = sample_mmlu(60, seed=3, shots=1)
    assert [r["prompt"] for r in rows] == [build_prompt(i, 1) for i in items]
    assert [r["answer"] for r in rows] == [i.answer for i in items]
    text = path.read_text()
    assert f"task: {TASK_NAME}" in text and json.dumps(str(path.parent / f"{TASK_NAME}.jsonl")) in text
    with pytest.raises(Exception, match=r"not empty|exists"):
        write_mmlu_task(tmp_path / "tasks", questions=60)


def test_local_task_names_are_read_from_the_include_folder(tmp_path):
    from forgetless.eval.lm_eval_bridge import local_task_names
    from forgetless.eval.lm_eval_tasks import TASK_NAME, write_mmlu_task

    path = write_mmlu_task(tmp_path / "tasks", questions=60)
    assert local_task_names(path.parent) == [TASK_NAME] == local_task_names(path)
