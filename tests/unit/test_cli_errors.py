"""The real `forgetless` console entry on bad input: exit code 2, one `error:` line on stderr, no
traceback, and no output directory (nor its `.NAME.partial` staging sibling) left behind.

Every command runs in a subprocess (`python -m forgetless.cli.app`) with the HF hub offline, in a fresh
working directory; anything that would load a model gets the tiny local Llama of `tests/conftest.py`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import QA_ROWS, write_jsonl

OUT = "out"


def run_cli(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "FORGETLESS_DEBUG"}
    environ.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONWARNINGS="ignore",
        **env,
    )
    return subprocess.run(
        [sys.executable, "-m", "forgetless.cli.app", *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_user_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit 2, exactly one stderr line starting with `error:` (holding every fragment), no traceback."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert result.stdout == ""
    return lines[0]


def assert_nothing_written(cwd: Path, name: str = OUT) -> None:
    assert not (cwd / name).exists()
    assert not (cwd / f".{name}.partial").exists()
    assert not list(cwd.glob(f".{name}*"))


@pytest.fixture
def work(tmp_path) -> Path:
    """A working directory holding a valid `qa.jsonl`."""
    write_jsonl(tmp_path / "qa.jsonl", QA_ROWS)
    return tmp_path


# ----------------------------------------------------------------------------------------------- train

_OK_LINE = json.dumps(QA_ROWS[0]) + "\n"

# name -> (data file name, its content or None to leave it out, extra flags, fragments of the message)
TRAIN_CASES = {
    "missing data file": ("missing.jsonl", None, [], ["missing.jsonl", "not found"]),
    "empty data file": ("empty.jsonl", "", [], ["empty.jsonl", "empty"]),
    "malformed json line": ("bad.jsonl", _OK_LINE * 2 + "{not json}\n", [], ["bad.jsonl:3", "malformed JSON"]),
    "record missing response": ("bad.jsonl", _OK_LINE + '{"prompt": "q"}\n', [], ["bad.jsonl:2:response"]),
    "wrong type label": ("bad.jsonl", json.dumps({**QA_ROWS[0], "type": "fact"}) + "\n", [], ["bad.jsonl:1:type"]),
    "rank 0": ("qa.jsonl", ..., ["--rank", "0"], ["--rank"]),
    "negative lr": ("qa.jsonl", ..., ["--lr", "-1"], ["--lr"]),
    "zero max steps": ("qa.jsonl", ..., ["--max-steps", "0"], ["--max-steps"]),
    "max length too small": ("qa.jsonl", ..., ["--max-length", "4"], ["--max-length"]),
    "unknown loss_on": ("qa.jsonl", ..., ["--loss-on", "prompt"], ["--loss-on"]),
    "unknown method": ("qa.jsonl", ..., ["--method", "qlora"], ["--method"]),
}


@pytest.mark.parametrize("case", list(TRAIN_CASES))
def test_train_input_errors(work, tiny_model_dir, case):
    name, content, flags, fragments = TRAIN_CASES[case]
    if content is not ... and content is not None:
        (work / name).write_text(content)
    args = ["train", "--data", name, "--output", OUT, "--model", str(tiny_model_dir), "--max-steps", "1", *flags]

    assert_user_error(run_cli(args, work), *fragments)
    assert_nothing_written(work)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["train", "--data", "qa.jsonl", "--output", OUT, "--rank", "abc"], "--rank"),
        (["train", "--data", "qa.jsonl", "--output", OUT, "--bogus-flag", "1"], "--bogus-flag"),
        (["no-such-command"], "no-such-command"),
    ],
    ids=["non-integer rank", "unknown flag", "unknown command"],
)
def test_usage_errors(work, args, fragment):
    assert_user_error(run_cli(args, work), fragment)
    assert_nothing_written(work)


def test_train_without_data_or_output(work):
    assert_user_error(run_cli(["train", "--output", OUT], work), "--data")
    assert_user_error(run_cli(["train", "--data", "qa.jsonl"], work), "--output")
    assert_nothing_written(work)


def test_unknown_model_id_fails_fast_offline(work):
    result = run_cli(["train", "--data", "qa.jsonl", "--output", OUT, "--model", "no-such-org/no-such-model-xyz"], work)
    assert_user_error(result, "no-such-org/no-such-model-xyz")
    assert_nothing_written(work)


def test_missing_model_path(work):
    result = run_cli(["train", "--data", "qa.jsonl", "--output", OUT, "--model", "./nope"], work)
    assert_user_error(result, "./nope", "no such model directory")
    assert_nothing_written(work)


def test_non_empty_output_is_kept_without_overwrite(work, tiny_model_dir):
    (work / OUT).mkdir()
    (work / OUT / "keep.txt").write_text("precious")
    args = ["train", "--data", "qa.jsonl", "--output", OUT, "--model", str(tiny_model_dir), "--max-steps", "1"]

    assert_user_error(run_cli(args, work), OUT, "--overwrite")
    assert [p.name for p in (work / OUT).iterdir()] == ["keep.txt"]
    assert (work / OUT / "keep.txt").read_text() == "precious"
    assert not (work / f".{OUT}.partial").exists()


def test_output_that_is_a_file(work, tiny_model_dir):
    (work / OUT).write_text("a file")
    args = ["train", "--data", "qa.jsonl", "--output", OUT, "--model", str(tiny_model_dir), "--max-steps", "1"]
    assert_user_error(run_cli(args, work), OUT)
    assert (work / OUT).read_text() == "a file"
    assert not (work / f".{OUT}.partial").exists()


def test_yaml_config_unknown_key_names_file_line_key(work, tiny_model_dir):
    (work / "run.yaml").write_text(f"data: qa.jsonl\nmodel: {tiny_model_dir}\nrank: 4\nlearning_rate: 0.1\n")
    result = run_cli(["train", "--output", OUT, "--config", "run.yaml"], work)
    assert_user_error(result, "run.yaml:4:learning_rate", "unknown option")
    assert_nothing_written(work)


def test_yaml_config_bad_value_and_bad_syntax(work, tiny_model_dir):
    (work / "zero.yaml").write_text("rank: 0\n")
    (work / "broken.yaml").write_text("rank: [4\n")
    base = ["train", "--data", "qa.jsonl", "--output", OUT, "--model", str(tiny_model_dir)]
    assert_user_error(run_cli([*base, "--config", "zero.yaml"], work), "--rank")
    assert_user_error(run_cli([*base, "--config", "broken.yaml"], work), "broken.yaml", "invalid YAML")
    assert_user_error(run_cli([*base, "--config", "absent.yaml"], work), "absent.yaml", "not found")
    assert_nothing_written(work)


@pytest.mark.parametrize("yaml_text", ["rank: x\n", "rank: 2.5\n", "resume: maybe\n"])
def test_yaml_config_value_of_the_wrong_type(work, tiny_model_dir, yaml_text):
    (work / "typed.yaml").write_text(yaml_text)
    args = ["train", "--data", "qa.jsonl", "--output", OUT, "--model", str(tiny_model_dir), "--config", "typed.yaml"]
    assert_user_error(run_cli(args, work), "typed.yaml:1:")
    assert_nothing_written(work)


def test_yaml_number_written_like_2e_4_is_read_as_a_float(tmp_path):
    from forgetless.train.config import TrainConfig
    from forgetless.utils.yamlconfig import load_yaml_options

    (tmp_path / "c.yaml").write_text("# forgetless train --config c.yaml\nlr: 2e-4\nrank: 8\n")
    assert load_yaml_options(tmp_path / "c.yaml", TrainConfig) == {"lr": 2e-4, "rank": 8}


def test_non_utf8_data_file(work, tiny_model_dir):
    (work / "latin1.jsonl").write_bytes(b'{"prompt": "caf\xe9", "response": "oui"}\n')
    args = ["train", "--data", "latin1.jsonl", "--output", OUT, "--model", str(tiny_model_dir)]
    assert_user_error(run_cli(args, work), "latin1.jsonl")
    assert_nothing_written(work)


def test_debug_shows_the_traceback(work, tiny_model_dir):
    args = ["train", "--data", "qa.jsonl", "--output", OUT, "--model", str(tiny_model_dir), "--rank", "0"]
    for result in (run_cli([*args, "--debug"], work), run_cli(args, work, FORGETLESS_DEBUG="1")):
        assert result.returncode not in (0, 2)
        assert "Traceback" in result.stderr
        assert "ConfigError" in result.stderr and "--rank" in result.stderr
    assert_nothing_written(work)


# -------------------------------------------------------------------------------------------- generate


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """A LoRA adapter trained for 2 steps on `tiny_model_dir`."""
    from forgetless.train.config import TrainConfig
    from forgetless.train.run import train

    root = tmp_path_factory.mktemp("adapter")
    data = write_jsonl(root / "qa.jsonl", QA_ROWS)
    output = root / "adapter"
    train(TrainConfig(data=str(data), output=str(output), model=str(tiny_model_dir), max_steps=2, save_steps=100))
    assert (output / "adapter_config.json").is_file()
    return output


@pytest.fixture(scope="module")
def mismatch_result(adapter_dir, other_tiny_model_dir, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("mismatch")
    args = ["generate", "--adapter", str(adapter_dir), "--model", str(other_tiny_model_dir), "--prompt", "hi"]
    return cwd, run_cli(args, cwd)


def test_generate_adapter_on_another_base_fails_cleanly(mismatch_result, adapter_dir):
    cwd, result = mismatch_result
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith("error: ")
    assert str(adapter_dir) in last and "different base model" in last
    assert result.stdout == ""
    assert list(cwd.iterdir()) == []


def test_generate_adapter_on_another_base_is_one_line(mismatch_result):
    _, result = mismatch_result
    assert_user_error(result, "different base model")


def test_generate_needs_exactly_one_of_prompt_or_input(work):
    assert_user_error(run_cli(["generate"], work), "--prompt", "--input")
    assert_user_error(run_cli(["generate", "--prompt", "hi", "--input", "qa.jsonl"], work), "--prompt")
    assert sorted(p.name for p in work.iterdir()) == ["qa.jsonl"]


def test_generate_input_and_adapter_errors(work):
    (work / "prompts.jsonl").write_text('{"prompt": "a"}\n{"question": "b"}\n')
    (work / "not_adapter").mkdir()
    assert_user_error(run_cli(["generate", "--input", "absent.jsonl"], work), "absent.jsonl", "not found")
    assert_user_error(run_cli(["generate", "--input", "prompts.jsonl"], work), "prompts.jsonl:2:prompt")
    assert_user_error(
        run_cli(["generate", "--adapter", "not_adapter", "--prompt", "hi"], work), "not_adapter", "adapter"
    )
    assert sorted(p.name for p in work.iterdir()) == ["not_adapter", "prompts.jsonl", "qa.jsonl"]


def test_generate_with_tiny_model_prints_one_answer_line(work, tiny_model_dir):
    args = ["generate", "--model", str(tiny_model_dir), "--prompt", "hi", "--max-new-tokens", "3"]
    result = run_cli(args, work)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "error:" not in result.stderr
    assert result.stdout.endswith("\n")
    assert len(result.stdout.splitlines()) == 1
