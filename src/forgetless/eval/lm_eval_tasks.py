"""Local lm-evaluation-harness tasks built from data shipped with forgetless: no network needed.

    forgetless export lm-eval-mmlu --output tasks/ [--questions 285] [--shots 0] [--seed 0]
    lm_eval --model hf --model_args pretrained=HuggingFaceTB/SmolLM2-135M-Instruct \\
        --include_path tasks/ --tasks forgetless_mmlu
    forgetless audit ... --lm-eval-include tasks/ --lm-eval-tasks forgetless_mmlu

    from forgetless.eval.lm_eval_tasks import write_mmlu_task
    write_mmlu_task("tasks/", questions=285, shots=0)

`forgetless_mmlu` is the same stratified MMLU sample, in the same prompt format, that forgetless' own
scorer (`forgetless.eval.mmlu`) uses: the JSONL holds each question's full prompt (subject header, the
`shots` exemplars, the question, "Answer:") and lm-eval scores the continuations " A" .. " D" by
log-likelihood, so the two must agree question by question (a shipped test checks >= 99%). The YAML
uses lm-eval's `json` loader with an absolute path to the JSONL next to it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from forgetless.errors import ConfigError
from forgetless.eval.mmlu import LETTERS, build_prompt, sample_mmlu
from forgetless.utils.fileio import check_output_dir, publish_dir, staging_dir, write_text_atomic

TASK_NAME = "forgetless_mmlu"


def mmlu_task_yaml(data_file: Path, name: str = TASK_NAME) -> str:
    """The task YAML (multiple choice over " A".." D" after the prompt, accuracy)."""
    return (
        f"# lm-eval task written by `forgetless export lm-eval-mmlu`: use with --include_path {data_file.parent}\n"
        f"task: {name}\n"
        "dataset_path: json\n"
        "dataset_kwargs:\n"
        f"  data_files:\n    test: {json.dumps(str(data_file))}\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        'doc_to_text: "{{prompt}}"\n'
        f"doc_to_choice: {json.dumps(list(LETTERS))}\n"
        'target_delimiter: " "\n'
        "doc_to_target: answer\n"
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
        "metadata:\n  version: 1.0\n"
    )


def write_mmlu_task(
    folder: str | Path, questions: int = 285, shots: int = 0, seed: int = 0, overwrite: bool = False
) -> Path:
    """Write `<folder>/forgetless_mmlu.yaml` and its JSONL (rows: id, subject, prompt, answer index),
    built aside and renamed into place; returns the YAML's path. Questions: `sample_mmlu(questions, seed,
    shots)`. An existing non-empty folder is replaced only with `overwrite`, and only if forgetless wrote it."""
    if questions < 1:
        raise ConfigError(f"--questions must be >= 1 (MMLU questions in the task), got {questions}")
    if shots < 0:
        raise ConfigError(f"--shots must be >= 0 (exemplars per prompt), got {shots}")
    try:  # checks the counts before anything is written
        items = sample_mmlu(questions, seed=seed, shots=shots)
    except ConfigError as exc:
        raise ConfigError(f"--questions {questions}: {exc}") from None
    final = check_output_dir(folder, overwrite).resolve()
    stage = staging_dir(final)
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:
        rows = [{"id": i.id, "subject": i.subject, "prompt": build_prompt(i, shots), "answer": i.answer} for i in items]
        data = stage / f"{TASK_NAME}.jsonl"
        write_text_atomic(data, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
        write_text_atomic(stage / f"{TASK_NAME}.yaml", mmlu_task_yaml(final / data.name))
        publish_dir(stage, final)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return final / f"{TASK_NAME}.yaml"
