"""Every shipped YAML config parses into its options, validates, means what it says (each value in the YAML is
the value the run gets), and opens with the exact command that runs it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from forgetless.train.config import TrainConfig
from forgetless.utils.yamlconfig import load_yaml_options

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def test_there_are_shipped_configs():
    assert CONFIGS


def _same(written: Any, parsed: Any) -> bool:
    """A YAML value equals its parsed option (PyYAML reads `1e-3` as a string: numbers compare as numbers)."""
    if isinstance(parsed, int | float) and not isinstance(parsed, bool) and isinstance(written, str):
        return float(written) == parsed
    return written == parsed


def _assert_written_values(written: dict[str, Any], parsed: dict[str, Any], skip: set[str] = frozenset()) -> None:
    for key, value in written.items():
        name = key.replace("-", "_")
        if key not in skip:
            assert _same(value, parsed[name]), f"{key}: YAML says {value!r}, the config has {parsed[name]!r}"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_parses_and_opens_with_its_run_command(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# forgetless ") and f"--config configs/{path.name}" in first
    written = yaml.safe_load(path.read_text())
    if first.startswith("# forgetless train "):
        cfg = TrainConfig(**load_yaml_options(path, TrainConfig)).validate()
        assert (ROOT / cfg.data).is_file()
        _assert_written_values(written, cfg.to_dict())
    elif first.startswith("# forgetless continual run "):
        from forgetless.continual import load_continual_config

        cfg = load_continual_config(path, output="runs/cit")
        assert cfg.task_names == [task["name"] for task in written["tasks"]]
        _assert_written_values(written, cfg.to_dict(), skip={"tasks"})
    else:
        from forgetless.knowledge.inject import InjectConfig
        from forgetless.knowledge.sweep import GRID_KEYS, cells

        assert first.startswith("# forgetless inject ")
        options = load_yaml_options(path, InjectConfig.option_types(), GRID_KEYS)
        grid = {k: options.pop(k) for k in list(options) if k in GRID_KEYS and isinstance(options[k], list)}
        runs = [cfg.validate().to_dict() for cfg in cells(InjectConfig.from_options(**options), grid)]
        assert runs, "the grid has no cell"
        for key in set(grid) - {"k"}:
            assert {values[key] for values in runs} == set(written[key]), f"{key}: not every value of the grid runs"
        for values in runs:
            _assert_written_values({k: v for k, v in written.items() if k not in grid}, values, skip={"k", "output"})
            ks = written["k"] if isinstance(written["k"], list) else [written["k"]]
            assert values["k"] in ([0] if values["mixture"] == "none" else ks)  # no mixture: k is 0
