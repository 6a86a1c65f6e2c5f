"""Every shipped YAML config parses into its options and opens with the exact command that runs it."""

from __future__ import annotations

from pathlib import Path

import pytest

from forgetless.train.config import TrainConfig
from forgetless.utils.yamlconfig import load_yaml_options

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def test_there_are_shipped_configs():
    assert CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_parses_and_opens_with_its_run_command(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# forgetless ") and f"--config configs/{path.name}" in first
    if first.startswith("# forgetless train "):
        cfg = TrainConfig(**load_yaml_options(path, TrainConfig)).validate()
        assert (ROOT / cfg.data).is_file()
    elif first.startswith("# forgetless continual run "):
        from forgetless.continual import load_continual_config

        assert load_continual_config(path, output="runs/cit").tasks
    else:
        from forgetless.knowledge.inject import InjectConfig
        from forgetless.knowledge.sweep import GRID_KEYS, cells

        assert first.startswith("# forgetless inject ")
        options = load_yaml_options(path, InjectConfig, GRID_KEYS)
        grid = {k: options.pop(k) for k in list(options) if k in GRID_KEYS and isinstance(options[k], list)}
        assert all(c.validate() for c in cells(InjectConfig(**options), grid))
