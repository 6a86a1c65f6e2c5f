"""Which names a request's `model` may take, and where each one's adapter lives.

    registry = registry_from_run("runs/continual")            # the run's task adapters + its switch
    registry = registry_from_specs(["plural=runs/lora-plural"]) # --adapter NAME=DIR, repeatable
    target = registry.resolve("plural")   # Target(adapter="plural", auto=False); "base" -> adapter None
    target = registry.resolve("auto")     # the switch picks per prompt (abstain -> base)

Safety: a request only ever names an entry of this registry, built at start-up from the command line;
no path is ever built from request data. Unknown names (`../../etc` included) raise UnknownModel (404).
A run directory is read by `forgetless.continual.run_dir.RunDir` (adapter paths recorded by the switch
resolve even when the run directory was moved).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from forgetless.adapters import names
from forgetless.continual.run_dir import RunDir
from forgetless.errors import ConfigError, ModelError
from forgetless.knowledge.scope import FactScope
from forgetless.serve.batching import RouteDecision

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")  # what forgetless.adapters.mixed accepts too
AUTO, BASE = "auto", "base"
RESERVED = {AUTO, BASE, names.BASE}


class UnknownModel(LookupError):
    """A request named a model the server does not serve (HTTP 404)."""


@dataclass(frozen=True)
class Target:
    """What a request's `model` resolved to: an adapter name (None = base), or per-prompt routing."""

    name: str
    adapter: str | None
    auto: bool = False


class Registry:
    """Served names: `base` (and the base model's id), each adapter, and `auto` when a switch is loaded."""

    def __init__(self, adapters: dict[str, Path], switch=None, base_id: str = "base"):
        for name in adapters:
            check_name(name)
        self.adapters = dict(adapters)
        self.scopes = {name: scope for name, path in self.adapters.items() if (scope := FactScope.load(path))}
        self.switch = switch
        self.base_id = base_id
        self.default = AUTO if switch is not None else BASE
        self.task_to_adapter: dict[str, str] = {}
        if switch is not None:
            self.task_to_adapter = {task: task for task in switch.task_names if task in self.adapters}

    def names(self) -> list[str]:
        """Every name a request may use."""
        return [*([AUTO] if self.switch is not None else []), BASE, *self.adapters]

    def resolve(self, requested: str | None) -> Target:
        """Map a request's `model` to a Target; UnknownModel when it is not served."""
        name = requested or self.default
        if name == AUTO and self.switch is not None:
            return Target(AUTO, None, auto=True)
        if name in (BASE, self.base_id):
            return Target(BASE, None)
        if name in self.adapters:
            return Target(name, name)
        raise UnknownModel(name)

    def within_scope(self, target: Target, text: str) -> Target:
        """The base instead of a facts adapter whose scope (`scope.json`) the prompt's text is not in:
        such an adapter answers only questions naming a subject it was taught (`knowledge.scope`)."""
        scope = self.scopes.get(target.adapter) if target.adapter else None
        if scope is None or scope.applies(text):
            return target
        return Target(target.name, None)

    def route(self, texts: list[str]) -> list[RouteDecision]:
        """Switch decisions for prompts; `__base__` (abstained or routed to base) -> adapter None."""
        decisions = []
        for r in self.switch.route(texts):
            adapter = self.task_to_adapter.get(r.task)
            decisions.append(RouteDecision(adapter, r.task, float(r.confidence), bool(r.abstained), float(r.score)))
        return decisions


def check_name(name: str) -> str:
    """An adapter name must be short and plain (letters, digits, `_`, `-`), and not a reserved name."""
    if not NAME.match(name) or name in RESERVED:
        raise ConfigError(
            f"adapter name {name!r} is not allowed: use 1-64 letters, digits, '_' or '-' "
            f"(starting with a letter or digit, not one of {', '.join(sorted(RESERVED))})"
        )
    return name


def parse_specs(specs: list[str]) -> dict[str, Path]:
    """`NAME=DIR` strings from the command line into {name: adapter dir}."""
    adapters: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--adapter {spec!r}: expected NAME=DIR, e.g. --adapter plural=runs/lora-plural")
        check_name(name)
        if name in adapters:
            raise ConfigError(f"--adapter {name!r} is given twice; each name must be unique")
        directory = Path(path).expanduser()
        if not (directory / "adapter_config.json").is_file():
            raise ModelError(f"--adapter {spec}: {directory} is not an adapter directory (no adapter_config.json)")
        adapters[name] = directory.resolve()
    return adapters


def registry_from_specs(specs: list[str]) -> Registry:
    """A registry of explicitly named adapters (no switch, so no `auto`)."""
    return Registry(parse_specs(specs))


def run_adapters(run_dir: Path) -> tuple[dict[str, Path], Path]:
    """({task name: adapter dir}, switch dir) of a continual run, read from its switch manifest."""
    run = RunDir(run_dir, flag="--run")
    recorded = run.recorded_adapters()
    if not recorded:
        raise ConfigError(f"--run {run_dir}: the switch has no tasks; nothing to serve")
    adapters = {}
    for name, adapter in recorded.items():
        check_name(name)
        adapters[name] = run.adapter_dir(adapter)
    return adapters, run.switch_dir


def registry_from_run(run_dir: Path, encoder=None) -> Registry:
    """The run's task adapters, named by task, plus its switch for `model: auto`."""
    from forgetless.adapters.switch import Switch

    adapters, sdir = run_adapters(Path(run_dir))
    switch = Switch.load(sdir, encoder=encoder)
    return Registry(adapters, switch=switch)
