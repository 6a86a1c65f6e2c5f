"""User-facing errors.

Every error a user can cause is a `ForgetlessError`: the CLI prints its message on one line and exits
with code 2 (no traceback unless `--debug`). Messages say what is wrong, where, and how to fix it.
"""

from __future__ import annotations


class ForgetlessError(Exception):
    """Base class of all errors caused by user input; the message is shown as-is."""


class DataError(ForgetlessError):
    """A data file or record is missing, malformed or invalid (message names file:line:field)."""


class ConfigError(ForgetlessError):
    """An option or YAML config value is invalid."""


class ModelError(ForgetlessError):
    """A model id/path cannot be loaded, or an adapter does not fit its base model."""


class OutputError(ForgetlessError):
    """The output location cannot be used (e.g. exists and is not empty)."""


def where(source: str, line: int | None = None, field: str | None = None) -> str:
    """Format a location as `file:line:field`, leaving out the parts that are unknown."""
    parts = [str(source)]
    if line is not None:
        parts.append(str(line))
    if field is not None:
        parts.append(field)
    return ":".join(parts)


class TrainingDiverged(ForgetlessError):
    """The loss became inf/nan: the run stops, keeping its earlier checkpoints."""
