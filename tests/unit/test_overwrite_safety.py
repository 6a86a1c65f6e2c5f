"""`--overwrite` only replaces what forgetless wrote: never the cwd, a parent of it, a folder holding an
input of the run, or a folder without forgetless's marker."""

from __future__ import annotations

import pytest

from forgetless.errors import OutputError
from forgetless.utils.fileio import OUTPUT_MARKER, check_output_dir, publish_dir, staging_dir
from tests.conftest import QA_ROWS, write_jsonl
from tests.unit.test_cli_errors import assert_user_error, run_cli


def _ours(path):
    stage = staging_dir(path)
    stage.mkdir(parents=True)
    (stage / "adapter_model.safetensors").write_text("x")
    return publish_dir(stage, path)


def test_published_folders_are_marked_and_may_be_replaced(tmp_path):
    out = _ours(tmp_path / "run")
    assert (out / OUTPUT_MARKER).is_file()
    assert check_output_dir(out, overwrite=True) == out


def test_a_folder_forgetless_did_not_write_is_refused(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(OutputError, match=OUTPUT_MARKER):
        check_output_dir(tmp_path / "notes", overwrite=True)


def test_older_forgetless_outputs_are_recognised_by_their_manifest(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "forgetless.json").write_text("{}")
    check_output_dir(tmp_path / "old", overwrite=True)


def test_a_folder_holding_an_input_is_refused_even_if_ours(tmp_path):
    out = _ours(tmp_path / "run")
    data = write_jsonl(out / "data.jsonl", QA_ROWS)
    with pytest.raises(OutputError, match="input"):
        check_output_dir(out, overwrite=True, inputs=[data])


def test_the_cwd_and_its_parents_are_refused(tmp_path, monkeypatch):
    inner = tmp_path / "proj" / "work"
    inner.mkdir(parents=True)
    monkeypatch.chdir(inner)
    for target in (".", "..", str(tmp_path / "proj")):
        with pytest.raises(OutputError, match="current directory"):
            check_output_dir(target, overwrite=True)


def test_cli_overwrite_of_a_users_project_deletes_nothing(tmp_path, tiny_model_dir):
    """The red-team case: from inside proj/work, `train --output proj --overwrite`."""
    work = tmp_path / "proj" / "work"
    work.mkdir(parents=True)
    write_jsonl(tmp_path / "proj" / "qa.jsonl", QA_ROWS)
    (tmp_path / "proj" / "notes.txt").write_text("precious")
    args = ["train", "--data", "../qa.jsonl", "--output", "..", "--overwrite", "--model", str(tiny_model_dir)]
    assert_user_error(run_cli([*args, "--max-steps", "1"], work), "current directory")
    args = ["train", "--data", "qa.jsonl", "--output", str(tmp_path / "proj"), "--overwrite"]
    assert_user_error(run_cli([*args, "--model", str(tiny_model_dir), "--max-steps", "1"], tmp_path / "proj"))
    assert (tmp_path / "proj" / "notes.txt").read_text() == "precious"
    assert work.is_dir() and (tmp_path / "proj" / "qa.jsonl").is_file()
    assert not list(tmp_path.glob(".*partial")) and not list((tmp_path / "proj").glob(".*partial"))


def test_cli_retrains_over_its_own_output(tmp_path, tiny_model_dir):
    write_jsonl(tmp_path / "qa.jsonl", QA_ROWS)
    args = ["train", "--data", "qa.jsonl", "--output", "out", "--model", str(tiny_model_dir), "--max-steps", "1"]
    assert run_cli(args, tmp_path).returncode == 0
    assert (tmp_path / "out" / "forgetless.json").is_file()  # an adapter: its manifest is the mark
    second = run_cli([*args, "--overwrite"], tmp_path)
    assert second.returncode == 0, second.stderr


def test_atomic_writes_get_the_mode_of_a_normal_new_file(tmp_path):
    import os
    import stat

    from forgetless.utils.fileio import write_text_atomic

    umask = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "results.json", "{}")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # mkstemp alone gives 0600
