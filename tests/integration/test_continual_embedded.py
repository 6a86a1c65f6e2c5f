"""SwitchCIT on the real embedded SmolLM2-135M-Instruct: two built-in tasks, a few steps each (~2-3 min).

The switch must tell the two tasks apart, each task's own adapter must beat the zero-shot base on its task,
and `RoutedModel` must send a plural question to the plural adapter and answer with it."""

from __future__ import annotations

import pytest

from forgetless.adapters.mixed import generate_mixed
from forgetless.continual import ContinualConfig, ContinualTask, RoutedModel, run_continual
from forgetless.data.chat import prompt_messages
from forgetless.engine.sampling import SamplingConfig

pytestmark = pytest.mark.integration


def test_two_builtin_tasks_switch_and_sequential(tmp_path):
    cfg = ContinualConfig.from_options(
        tasks=[ContinualTask("plural", builtin="plural"), ContinualTask("date_format", builtin="date_format")],
        output=str(tmp_path / "run"),
        methods=["switch", "sequential"],
        builtin_train=200,
        builtin_eval=12,
        max_train=48,
        max_steps=12,
        lr=2e-3,
        general_qa=0,
        mmlu=8,
        ood_mmlu=8,
    )
    results = run_continual(cfg)
    assert results["status"] == "complete"
    assert results["switch_accuracy"] >= 0.9
    oracle = results["stages"][-1]["oracle_score"]
    assert oracle["plural"] > results["base"]["R0"][0] and oracle["date_format"] > results["base"]["R0"][1]
    assert len(results["baselines"]["sequential"]["R"]) == 3

    question = 'What is the plural of "river"?'
    routed = RoutedModel.load(tmp_path / "run")
    rows = routed.answer([prompt_messages(question)], max_new_tokens=8)
    assert rows[0]["task"] == "plural"
    explicit = generate_mixed(
        routed.model, routed.tokenizer, [prompt_messages(question)], ["plural"], SamplingConfig(8)
    )
    assert rows[0]["answer"] == explicit[0] and rows[0]["answer"].strip()
