"""How a continual task's train records are split: the calibration prompts that set the abstain threshold
are held out by item (the answer), so none asks about an item the switch trained on."""

from __future__ import annotations

from pathlib import Path

import pytest

from forgetless.continual.config import ContinualConfig, ContinualTask
from forgetless.continual.data import prepare_task
from forgetless.errors import DataError
from tests.conftest import write_jsonl

PHRASINGS = ("What is the code of {}?", "Give me the code for {}.", "code of {}", "{}: which code?")


def split(tmp_path: Path, rows: list[dict], **options) -> tuple[list[str], list[str], dict[str, str]]:
    """(calibration prompts, switch prompts, {prompt: answer}) of one task made of `rows`."""
    write_jsonl(tmp_path / "t.jsonl", rows)
    task = ContinualTask(name="t", train=str(tmp_path / "t.jsonl"), eval=str(tmp_path / "t.jsonl"))
    cfg = ContinualConfig(tasks=[task], output=str(tmp_path / "run"), **options)
    td = prepare_task(cfg, task, tmp_path / "run")
    return td.calibration, td.switch_prompts, {r["prompt"]: r["response"] for r in rows}


def test_calibration_items_never_occur_among_the_switch_prompts(tmp_path):
    # 80 items, each asked under 4 phrasings (as the built-in generator repeats a finite pool)
    rows = [{"prompt": p.format(f"item{i}"), "response": f"C{i}"} for p in PHRASINGS for i in range(80)]
    calibration, switch_prompts, answer = split(tmp_path, rows, calibration_size=12)
    held = {answer[p] for p in calibration}
    assert not held & {answer[p] for p in switch_prompts}
    assert len(held) == 12 and len(calibration) == 48  # every phrasing of the 12 held-out items
    assert sorted(calibration + switch_prompts) == sorted(answer)


def test_few_distinct_answers_are_labels_and_are_split_by_prompt(tmp_path):
    rows = [{"prompt": f"Is {i} even?", "response": "yes" if i % 2 == 0 else "no"} for i in range(60)]
    calibration, switch_prompts, answer = split(tmp_path, rows, calibration_size=12)
    assert len(calibration) == 12 and {answer[p] for p in calibration} <= {"yes", "no"}
    assert {answer[p] for p in switch_prompts} == {"yes", "no"}
    assert sorted(calibration + switch_prompts) == sorted(answer)


def test_too_few_prompts_for_per_task_thresholds_says_how_many(tmp_path):
    rows = [{"prompt": f"Is {i} even?", "response": str(i)} for i in range(30)]
    with pytest.raises(DataError, match=r"need 10 held-out calibration prompts.*at least 40 distinct train"):
        split(tmp_path, rows)
    assert not (tmp_path / "run" / "data" / "t").exists()  # nothing half-written
    calibration, _, _ = split(tmp_path, rows, abstain_per_task=False)  # a global threshold makes do
    assert len(calibration) == 7


def test_builtin_task_files_from_another_seed_are_rebuilt_and_identical_ones_left_alone(tmp_path):
    task = ContinualTask(name="plural", builtin="plural")
    folder = tmp_path / "run" / "data" / "plural"

    def files(seed: int) -> tuple[str, int]:
        cfg = ContinualConfig(tasks=[task], output=str(tmp_path / "run"), seed=seed, builtin_train=60, builtin_eval=20)
        prepare_task(cfg, task, tmp_path / "run")
        return (folder / "train.jsonl").read_text(), (folder / "train.jsonl").stat().st_mtime_ns

    seed0, written = files(0)
    assert files(0) == (seed0, written)  # a resumed run does not rewrite its data
    seed1, _ = files(1)
    assert seed1 != seed0  # a stale file (another seed) is not reused
    assert files(0)[0] == seed0
