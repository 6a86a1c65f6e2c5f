"""The one reader of a `forgetless continual run` directory: where its parts live, run.json, the switch, the adapters.

    from forgetless.continual.run_dir import RunDir
    run = RunDir("runs/cit")                  # errors worded for the library (route, add-task)
    run = RunDir("runs/cit", flag="--run")    # errors worded as a bad command-line option (serve, export)
    run.manifest()                            # run.json: config, base model + fingerprint, task order
    run.switch_manifest()                     # switch/switch.json: tasks <-> ids <-> adapters, encoder, head
    run.recorded_adapters()                   # {"plural": "adapters/plural", ...} in task-id order
    run.adapter_dir("adapters/plural")        # the adapter directory, found wherever the run now is
    run.adapter_home("plural")                # RUN/adapters/plural: where the run trains that task's LoRA

The layout itself is described in `forgetless.continual.runner`. The switch records each adapter relative
to the run directory (`adapters/<task>`), so a run directory can be moved. A recorded path is looked up
as given when absolute, else relative to the run directory, to its switch directory and to the directory
the run was started from; then the recorded path's last 3, 2 and 1 parts inside the run directory, so an
absolute path recorded before the run directory was moved still resolves.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from forgetless.adapters.switch.switch import MANIFEST as SWITCH_MANIFEST
from forgetless.errors import ConfigError, DataError, ModelError

RUN_MANIFEST, SWITCH_DIR, ADAPTERS_DIR = "run.json", "switch", "adapters"
ADAPTER_MARKER = "adapter_config.json"  # what makes a directory an adapter directory

__all__ = ["RunDir"]


class RunDir:
    """A continual run directory. With `flag` (the command-line option it came from, e.g. `--run`) a
    missing directory or switch is a ConfigError naming that option, as `forgetless serve` reports it."""

    def __init__(self, path: str | os.PathLike, flag: str | None = None):
        self.path = Path(path)
        self.flag = flag

    @property
    def manifest_path(self) -> Path:
        return self.path / RUN_MANIFEST

    @property
    def switch_dir(self) -> Path:
        return self.path / SWITCH_DIR

    @property
    def switch_manifest_path(self) -> Path:
        return self.switch_dir / SWITCH_MANIFEST

    def adapter_home(self, task: str) -> Path:
        """Where this run trains and keeps the adapter of `task`."""
        return self.path / ADAPTERS_DIR / task

    @staticmethod
    def recorded_adapter(task: str) -> str:
        """How the switch records the adapter of `task`: relative to the run directory, so the run can move."""
        return f"{ADAPTERS_DIR}/{task}"

    def manifest(self) -> dict[str, Any]:
        """run.json; ModelError when this is not a continual run directory."""
        if not self.manifest_path.is_file():
            raise ModelError(
                f"{self.path}: not a continual run directory (no run.json); pass --run DIR of a continual run"
            )
        try:
            return json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"{self.manifest_path}: cannot read the run manifest ({exc})") from None

    def require_switch(self) -> Path:
        """The switch directory, once it is known to hold a saved switch."""
        if self.flag is None:
            if not self.switch_manifest_path.is_file():
                raise ModelError(
                    f"{self.path}: no switch yet ({self.switch_manifest_path} is missing); "
                    "run `forgetless continual run` first"
                )
            return self.switch_dir
        if not self.path.is_dir():
            raise ConfigError(
                f"{self.flag} {self.path}: no such directory; pass the output of `forgetless continual run`"
            )
        if not self.switch_manifest_path.is_file():
            raise ConfigError(
                f"{self.flag} {self.path}: no saved switch ({self.switch_dir}/{SWITCH_MANIFEST}); "
                "is it a finished continual run?"
            )
        return self.switch_dir

    def switch_manifest(self) -> Any:
        """switch/switch.json as saved (see `Switch.manifest`); DataError when it cannot be read."""
        path = self.require_switch() / SWITCH_MANIFEST
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot read the switch manifest ({exc})") from None

    def recorded_adapters(self) -> dict[str, str]:
        """{task name: adapter path as the switch records it}, in task-id order."""
        tasks = sorted(self.switch_manifest().get("tasks") or [], key=lambda t: t.get("id", 0))
        return {str(task.get("name")): str(task.get("adapter")) for task in tasks}

    def adapter_dir(self, recorded: str) -> Path:
        """The adapter directory the switch records as `recorded` (resolved); ModelError when it is nowhere."""
        found, candidates = self._find_adapter(recorded)
        if found is None:
            raise ModelError(
                f"{self.path.resolve()}: adapter {recorded!r} recorded in the switch was not found "
                f"(looked in {len(candidates)} places); was the run directory copied without its adapters?"
            )
        return found.resolve()

    def locate_adapter(self, recorded: str) -> Path:
        """Where the adapter recorded as `recorded` is; when it is nowhere, the recorded path under the run
        directory, so that loading it reports what is wrong there."""
        found, _ = self._find_adapter(recorded)
        return found if found is not None else self.path / recorded

    def _find_adapter(self, recorded: str) -> tuple[Path | None, list[Path]]:
        """(the first candidate holding an adapter or None, every candidate looked at), in lookup order."""
        raw = Path(recorded).expanduser()
        candidates = [raw] if raw.is_absolute() else [self.path / raw, self.switch_dir / raw, raw]
        parts = raw.parts
        candidates += [self.path.joinpath(*parts[-n:]) for n in range(min(3, len(parts)), 0, -1)]
        found = next((c for c in candidates if (c / ADAPTER_MARKER).is_file()), None)
        return found, candidates
