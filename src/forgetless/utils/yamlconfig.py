"""YAML configs: load a mapping of options for a dataclass, checking keys and value types.

Problems are reported as `file:line:key` with what was expected. PyYAML reads `2e-4` as a string (YAML
1.1), so numbers written as strings are converted when the option is numeric. Every shipped config
opens with a comment giving its exact run command.

    options = load_yaml_options("configs/demo.yaml", TrainConfig)
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from forgetless.errors import ConfigError
from forgetless.utils.fileio import read_utf8


def load_yaml_options(
    path: str | Path, schema: type | Mapping[str, Any], list_ok: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Read a YAML mapping whose keys are fields of the dataclass `schema`, or the keys of a mapping
    option -> type such as `InjectConfig.option_types()` (dashes count as underscores).

    Keys in `list_ok` may also hold a list of values of their type (a sweep grid).
    """
    path = Path(path)
    data, lines = read_yaml_mapping(path, "config file", "a config must be a mapping of option: value")
    if isinstance(schema, Mapping):
        hints, allowed = dict(schema), set(schema)
    else:
        hints, allowed = typing.get_type_hints(schema), {f.name for f in dataclasses.fields(schema)}
    options = {}
    for key, value in data.items():
        name, loc = str(key).replace("-", "_"), f"{path}:{lines.get(str(key), '?')}:{key}"
        if name not in allowed:
            raise ConfigError(f"{loc}: unknown option; known options: {', '.join(sorted(allowed))}")
        if name in list_ok and isinstance(value, list):
            options[name] = [coerce(item, hints[name], loc) for item in value]
        else:
            options[name] = coerce(value, hints[name], loc)
    return options


def read_yaml_mapping(path: Path, what: str, not_mapping: str) -> tuple[dict[str, Any], dict[str, int]]:
    """The YAML mapping in `path` ({} when empty) and the line of each top-level key; ConfigError when the
    file is missing, is not valid YAML, or is not a mapping (`not_mapping` is then the message)."""
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, not a {what}; pass the YAML file itself to --config")
    if not path.is_file():
        raise ConfigError(f"{path}: {what} not found; check the --config path")
    text = read_utf8(path, what)
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: invalid YAML ({getattr(exc, 'problem', exc)}); fix the syntax") from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: {not_mapping}")
    return data, {str(k.value): k.start_mark.line + 1 for k, _ in root.value}


def coerce(value: Any, hint: Any, loc: str) -> Any:
    """`value` converted to the type `hint` (int, float, bool, str, list, dict, unions), else ConfigError."""
    options = typing.get_args(hint) if _is_union(hint) else (hint,)
    if value is None and type(None) in options:
        return None
    for option in options:
        converted = _convert(value, option)
        if converted is not _NO:
            return converted
    names = " or ".join(getattr(o, "__name__", str(o)) for o in options if o is not type(None))
    raise ConfigError(f"{loc}: expected {names}, got {value!r}; fix the value")


_NO = object()


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _convert(value: Any, target: Any) -> Any:
    origin = typing.get_origin(target) or target
    if origin is bool:
        return value if isinstance(value, bool) else _NO
    if origin in (int, float) and not isinstance(value, bool):
        try:
            number = float(value) if isinstance(value, str) else value
        except ValueError:
            return _NO
        if isinstance(number, int | float) and (origin is float or float(number).is_integer()):
            return origin(number)
        return _NO
    if origin is str:
        return value if isinstance(value, str) else _NO
    if origin is list:
        return list(value) if isinstance(value, list) and all(isinstance(v, str) for v in value) else _NO
    if origin is dict:
        return value if isinstance(value, dict) else _NO
    return value if origin is Any else _NO
