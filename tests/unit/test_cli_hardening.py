"""Issue 15: non-finite numbers are refused at parse time; inject checks its training options before probing."""

from __future__ import annotations

import pytest

from tests.conftest import QA_ROWS, write_jsonl
from tests.unit.test_cli_errors import OUT, assert_nothing_written, assert_user_error, run_cli


@pytest.mark.parametrize("flag,value", [("--lr", "inf"), ("--lr", "nan"), ("--epochs", "inf"), ("--alpha", "nan")])
def test_train_rejects_non_finite_numbers(tmp_path, flag, value):
    write_jsonl(tmp_path / "qa.jsonl", QA_ROWS)
    assert_user_error(
        run_cli(["train", "--data", "qa.jsonl", "--output", OUT, flag, value, "--model", "./nope"], tmp_path), "finite"
    )
    assert_nothing_written(tmp_path)


def test_inject_checks_training_options_before_probing(tmp_path):
    write_jsonl(tmp_path / "f.jsonl", [])
    r = run_cli(["inject", "--facts", "f.jsonl", "--output", OUT, "--method", "dora", "--model", "./nope"], tmp_path)
    assert_user_error(r, "method")


@pytest.mark.parametrize(
    "command,name",
    [
        (["train", "--data", "bad.jsonl", "--output", OUT], "bad.jsonl"),
        (["train", "--data", "bad.csv", "--output", OUT], "bad.csv"),
        (["train", "--config", "bad.yaml"], "bad.yaml"),
        (["probe", "--facts", "bad.jsonl", "--output", OUT], "bad.jsonl"),
    ],
)
def test_non_utf8_inputs_get_a_one_line_error(tmp_path, command, name):
    (tmp_path / name).write_bytes(b'{"prompt": "caf\xe9"}\n' if name.endswith("jsonl") else b"a: caf\xe9\n")
    assert_user_error(run_cli([*command, "--model", "./nope"], tmp_path), f"{name}:1", "UTF-8")
    assert_nothing_written(tmp_path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir):
    """A real adapter of the tiny model, trained once through the CLI."""
    work = tmp_path_factory.mktemp("hardening")
    write_jsonl(work / "qa.jsonl", QA_ROWS)
    args = ["train", "--data", "qa.jsonl", "--output", "ad", "--model", str(tiny_model_dir), "--max-steps", "1"]
    assert run_cli(args, work).returncode == 0
    return work / "ad"


def test_published_adapter_files_are_not_private(trained):
    import stat

    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in trained.iterdir()}
    assert set(modes.values()) == {0o644}, modes  # peft writes its weights via mkstemp (0600)


@pytest.mark.parametrize("damage", ["truncated_header", "truncated_data", "garbage", "missing", "pickle_only"])
def test_a_damaged_adapter_is_refused_before_loading(tmp_path, trained, tiny_model_dir, damage):
    import shutil

    bad = shutil.copytree(trained, tmp_path / "bad")
    weights = bad / "adapter_model.safetensors"
    data = weights.read_bytes()
    if damage == "truncated_header":
        weights.write_bytes(data[:100])
    elif damage == "truncated_data":
        weights.write_bytes(data[: len(data) - 100])
    elif damage == "garbage":
        weights.write_bytes(b"garbage\n")
    else:
        weights.unlink()
        if damage == "pickle_only":
            (bad / "adapter_model.bin").write_bytes(b"\x80\x04")
    from forgetless.knowledge import write_fictional_facts

    write_fictional_facts(tmp_path / "f.jsonl", 80, 0)
    expected = "adapter_model.safetensors"
    for command in (["generate", "--prompt", "hi"], ["probe", "--facts", "f.jsonl", "--output", OUT]):
        result = run_cli([*command, "--adapter", str(bad), "--model", str(tiny_model_dir)], tmp_path)
        assert_user_error(result, expected)


def test_bad_targets_name_the_models_layers(tmp_path, tiny_model_dir):
    write_jsonl(tmp_path / "qa.jsonl", QA_ROWS)
    args = ["train", "--data", "qa.jsonl", "--output", OUT, "--model", str(tiny_model_dir), "--targets", "bogus"]
    assert_user_error(run_cli(args, tmp_path), "--targets bogus", "q_proj")
    assert_nothing_written(tmp_path)


def test_yaml_warmup_ratio_out_of_range(tmp_path):
    write_jsonl(tmp_path / "qa.jsonl", QA_ROWS)
    (tmp_path / "c.yaml").write_text("data: qa.jsonl\noutput: out\nwarmup_ratio: -3\n")
    assert_user_error(run_cli(["train", "--config", "c.yaml"], tmp_path), "warmup-ratio")


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["generate", "--prompt", "hi", "--batch-size", "0"], "--batch-size"),
        (["generate", "--prompt", "hi", "--output", "qa.jsonl/x.jsonl"], "is a file"),
        (["generate", "--prompt", "hi", "--output", "."], "is a directory"),
        (["facts", "fictional", "--output", "qa.jsonl/x.jsonl"], "is a file"),
        (["facts", "countries", "--output", "."], "is a directory"),
    ],
)
def test_unwritable_outputs_and_bad_sizes_fail_before_the_work(tmp_path, args, fragment):
    write_jsonl(tmp_path / "qa.jsonl", QA_ROWS)
    model = ["--model", "./nope"] if args[0] == "generate" else []
    assert_user_error(run_cli([*args, *model], tmp_path), fragment)


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["audit", "--adapter", "ad", "--facts", "f.jsonl", "--output", OUT, "--mmlu", "-5"], "--mmlu"),
        (["audit", "--adapter", "ad", "--facts", "f.jsonl", "--output", OUT, "--exemplar-sets", "0"], "--exemplar"),
        (["inject", "--facts", "f.jsonl", "--output", OUT, "--mmlu", "-1"], "--mmlu"),
        (["inject", "--facts", "f.jsonl", "--output", OUT, "--anchor-kl", "-1"], "anchor-kl"),
        (["inject", "--facts", "f.jsonl", "--output", OUT, "--epochs", "inf"], "finite"),
    ],
)
def test_audit_and_inject_options_are_checked_before_any_model(tmp_path, args, fragment):
    """A model that does not exist: an option error must come first."""
    assert_user_error(run_cli([*args, "--model", "./nope"], tmp_path), fragment)
    assert_nothing_written(tmp_path)


def test_version_alone_works(tmp_path):
    from forgetless._version import __version__

    result = run_cli(["--version"], tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == __version__


@pytest.mark.parametrize("args", [[], ["facts"], ["continual"]])
def test_a_bare_group_prints_its_help_once(tmp_path, args):
    result = run_cli(args, tmp_path)
    assert result.returncode == 2 and (result.stdout + result.stderr).count("Usage:") == 1
