"""lm-evaluation-harness (the real package) and forgetless' MMLU scorer agree question by question.

    .venv/bin/python -m pytest tests/integration/test_lm_eval_crosscheck.py -q     # ~1 min

Both score the same local task (`forgetless export lm-eval-mmlu`'s builder) on the embedded model:
lm-eval through `forgetless.eval.lm_eval_bridge` (HFLM on the loaded model, log-likelihood of " A".." D"),
forgetless through `evaluate_mmlu`. The predicted letters must agree on >= 99% of questions, and the
accuracies must match within that share.
"""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.lm_eval]

QUESTIONS = 30


def test_lm_eval_and_our_mmlu_scorer_agree_per_question(tmp_path):
    pytest.importorskip("lm_eval", reason="lm-eval is a dev dependency: pip install -e '.[dev]'")
    from forgetless.eval.lm_eval_bridge import LmEvalOptions, run_lm_eval
    from forgetless.eval.lm_eval_tasks import TASK_NAME, write_mmlu_task
    from forgetless.eval.mmlu import evaluate_mmlu, sample_mmlu
    from forgetless.models.load import load_model

    model, tokenizer, _ = load_model(None)
    folder = write_mmlu_task(tmp_path / "tasks", questions=QUESTIONS).parent
    options = LmEvalOptions([TASK_NAME], batch_size=16, include=folder).validate()
    theirs = run_lm_eval(model, tokenizer, options, log_samples=True)
    assert "skipped" not in theirs, theirs.get("skipped")
    predicted = {}
    for sample in theirs["samples"][TASK_NAME]:
        scores = [float(resp[0]) for resp in sample["filtered_resps"]]
        predicted[sample["doc"]["id"]] = scores.index(max(scores))
    ours = evaluate_mmlu(model, tokenizer, sample_mmlu(QUESTIONS), batch_size=16)
    assert len(predicted) == len(ours.predictions) == QUESTIONS
    agree = sum(predicted[p.id] == p.predicted for p in ours.predictions) / QUESTIONS
    assert agree >= 0.99, f"lm-eval and forgetless agree on {agree:.0%} of questions"
    assert theirs["results"][TASK_NAME]["acc,none"] == pytest.approx(ours.accuracy, abs=0.01)
