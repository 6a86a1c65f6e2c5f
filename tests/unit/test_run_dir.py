"""RunDir, the one reader of a continual run directory: manifest, switch, adapters, and each caller's errors."""

from __future__ import annotations

import json

import pytest

from forgetless.continual.run_dir import RunDir
from forgetless.errors import ConfigError, DataError, ModelError


def make_run(root, tasks, adapters=(), run_json='{"model": null}'):
    (root / "switch").mkdir(parents=True)
    (root / "switch" / "switch.json").write_text(json.dumps({"encoder": "minilm", "tasks": tasks}))
    if run_json is not None:
        (root / "run.json").write_text(run_json)
    for adapter in adapters:
        (root / adapter).mkdir(parents=True)
        (root / adapter / "adapter_config.json").write_text("{}")
    return root


def test_layout_and_recorded_adapters_in_task_id_order(tmp_path):
    tasks = [{"id": 1, "name": "b", "adapter": "adapters/b"}, {"id": 0, "name": "a", "adapter": "adapters/a"}]
    run = RunDir(make_run(tmp_path / "run", tasks, ["adapters/a", "adapters/b"]))
    assert run.manifest() == {"model": None}
    assert list(run.recorded_adapters().items()) == [("a", "adapters/a"), ("b", "adapters/b")]
    assert run.adapter_home("a") == tmp_path / "run" / "adapters" / "a"
    assert RunDir.recorded_adapter("a") == "adapters/a"
    assert run.locate_adapter("adapters/a") == tmp_path / "run" / "adapters" / "a"
    assert run.adapter_dir("adapters/b") == (tmp_path / "run" / "adapters" / "b").resolve()


def test_adapters_found_after_the_run_moved(tmp_path):
    stale = "/old/place/run/adapters/a"  # recorded as an absolute path, before the directory moved
    run = RunDir(make_run(tmp_path / "moved", [{"id": 0, "name": "a", "adapter": stale}], ["adapters/a"]))
    assert run.adapter_dir(stale) == (tmp_path / "moved" / "adapters" / "a").resolve()
    assert run.locate_adapter(stale) == tmp_path / "moved" / "adapters" / "a"


def test_missing_adapter_strict_or_left_for_the_loader(tmp_path):
    run = RunDir(make_run(tmp_path / "run", [{"id": 0, "name": "a", "adapter": "adapters/a"}]))
    with pytest.raises(ModelError, match=r"'adapters/a' recorded in the switch was not found \(looked in 5 places\)"):
        run.adapter_dir("adapters/a")
    assert run.locate_adapter("adapters/a") == tmp_path / "run" / "adapters" / "a"  # loading it reports the rest


def test_library_errors(tmp_path):
    with pytest.raises(ModelError, match=r"not a continual run directory \(no run.json\); pass --run DIR"):
        RunDir(tmp_path).manifest()
    with pytest.raises(ModelError, match=r"no switch yet \(.*switch\.json is missing\); run `forgetless continual"):
        RunDir(tmp_path).switch_manifest()
    (tmp_path / "run.json").write_text("{")
    with pytest.raises(DataError, match="cannot read the run manifest"):
        RunDir(tmp_path).manifest()


def test_command_line_errors_name_the_option(tmp_path):
    with pytest.raises(ConfigError, match=r"^--run .*nope: no such directory; pass the output of `forgetless"):
        RunDir(tmp_path / "nope", flag="--run").switch_manifest()
    with pytest.raises(ConfigError, match=r"^--run .*: no saved switch \(.*switch/switch\.json\); is it a finished"):
        RunDir(tmp_path, flag="--run").switch_manifest()
    (tmp_path / "switch").mkdir()
    (tmp_path / "switch" / "switch.json").write_text("{")
    for run in (RunDir(tmp_path), RunDir(tmp_path, flag="--run")):
        with pytest.raises(DataError, match="cannot read the switch manifest"):
            run.switch_manifest()
