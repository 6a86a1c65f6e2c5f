"""YAML configs: load a mapping of options, reporting unknown keys and bad values as `file:line:key`.

Every shipped config opens with a comment giving its exact run command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from forgetless.errors import ConfigError


def load_yaml_options(path: str | Path, allowed: set[str]) -> dict[str, Any]:
    """Read a YAML mapping of options; every key must be in `allowed` (dashes count as underscores)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found; check the --config path")
    text = path.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: invalid YAML ({getattr(exc, 'problem', exc)}); fix the syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of option: value")
    lines = {str(k.value): k.start_mark.line + 1 for k, _ in root.value} if root is not None else {}
    options = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in allowed:
            known = ", ".join(sorted(allowed))
            raise ConfigError(f"{path}:{lines.get(str(key), '?')}:{key}: unknown option; known options: {known}")
        options[name] = value
    return options
