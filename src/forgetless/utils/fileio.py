"""Atomic file and directory writes: a crash or an error never leaves a half-written output.

Files are written to a temporary sibling and renamed into place; directories are built in a hidden
staging sibling (`.NAME.partial`) and renamed when complete.

`--overwrite` only ever replaces what forgetless wrote: every published directory holds the marker
`OUTPUT_MARKER`, and `check_output_dir` refuses to replace a directory without it (or without the
manifest of an older forgetless), one that holds the current directory, or one that holds an input of
the run.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from forgetless.errors import DataError, OutputError


def read_utf8(path: str | os.PathLike, what: str = "file", encoding: str = "utf-8") -> str:
    """The text of a user's input file; DataError naming file:line when it is not UTF-8."""
    path = Path(path)
    try:
        return path.read_text(encoding=encoding)
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path}:{line}: the {what} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x}); save it as UTF-8"
        ) from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a {what}") from None


def temp_sibling(path: Path, suffix: str = ".tmp") -> tuple[int, str]:
    """(fd, name) of a new hidden temp file `.NAME.PID.XXXX.tmp` beside `path`, with the permissions of a
    normal new file (mkstemp makes it 0600, which the renamed output would keep). Temp files of `path` that
    a killed process left (no process has their PID any more) are removed first."""
    _remove_stale_temps(path, suffix)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=suffix, dir=path.parent)
    os.fchmod(fd, _new_file_mode())
    return fd, tmp


def stale_temps(path: Path, suffix: str = ".tmp") -> list[Path]:
    """Temp files of `path` (from `temp_sibling`) that a killed process left: no process has their PID."""
    prefix = f".{path.name}."
    found = []
    for stale in path.parent.glob(f"{glob.escape(prefix)}*{suffix}"):
        pid = stale.name[len(prefix) :].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            found.append(stale)
    return found


def _remove_stale_temps(path: Path, suffix: str) -> None:
    for stale in stale_temps(path, suffix):
        stale.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return True


def _new_file_mode() -> int:
    """The mode `open()` gives a new file under the current umask (0666 minus the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` via a temp file in the same directory and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_sibling(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Write `obj` as indented JSON, atomically."""
    return write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_jsonl_atomic(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    """Write one JSON object per line, atomically."""
    return write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


OUTPUT_MARKER = ".forgetless-output"  # in every directory forgetless publishes: --overwrite may replace it
LEGACY_MANIFESTS = ("forgetless.json", "run.json")  # what older forgetless outputs hold instead


def check_output_dir(path: str | os.PathLike, overwrite: bool, inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Refuse an existing non-empty output directory unless `overwrite` is set, and even then unless
    forgetless wrote it and it holds neither the current directory nor any of `inputs`."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path}: output exists and is a file; choose a directory path")
    resolved = path.resolve()
    if resolved == Path.cwd() or resolved in Path.cwd().parents:
        raise OutputError(f"{path}: output would replace the current directory or a parent of it; pick a new folder")
    if not path.is_dir() or not any(path.iterdir()):
        return path
    if not overwrite:
        raise OutputError(f"{path}: output directory exists and is not empty; pass --overwrite or pick another")
    for item in inputs:
        item_path = Path(item).resolve()
        if item_path == resolved or resolved in item_path.parents:
            raise OutputError(f"{path}: --overwrite would delete the run's input {item}; pick another --output")
    if not written_by_forgetless(path):
        raise OutputError(
            f"{path}: --overwrite only replaces folders forgetless wrote (no {OUTPUT_MARKER} inside); "
            "pick another --output or remove it yourself"
        )
    return path


def check_output_file(path: str | os.PathLike, flag: str = "--output") -> Path:
    """Refuse, before any work, an output file path that cannot be written: a directory, a parent that
    is a file, or a folder we may not write into."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{flag} {path}: is a directory; give a file path")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"{flag} {path}: {ancestor} is a file, not a folder; choose another path")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputError(f"{flag} {path}: no permission to write in {ancestor}; choose another path")
    return path


def written_by_forgetless(path: Path) -> bool:
    """Whether directory `path` is a forgetless output (its marker, or an older version's manifest)."""
    return any((path / name).is_file() for name in (OUTPUT_MARKER, *LEGACY_MANIFESTS))


def _normal_modes(directory: Path) -> None:
    """Give every file we wrote the mode of a normal new file (libraries that write via mkstemp leave 0600)."""
    mode = _new_file_mode()
    for path in directory.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(mode)


def mark_output(directory: Path) -> None:
    """Write the marker that lets a later `--overwrite` replace `directory` (an adapter's forgetless.json
    already says so: adapters keep the PEFT layout plus our manifest, nothing else)."""
    if written_by_forgetless(directory):
        return
    (directory / OUTPUT_MARKER).write_text("written by forgetless; --overwrite may replace this folder\n")


def staging_dir(path: str | os.PathLike) -> Path:
    """The hidden sibling where an output directory is built before it is renamed into place."""
    path = Path(path)
    return path.parent / f".{path.name}.partial"


def discard_dir(path: Path) -> None:
    """Delete a folder forgetless wrote; it is renamed to a hidden `NAME.trash` sibling first, so a kill while
    deleting never leaves it half-deleted under its own name (the next call removes such a leftover)."""
    trash = path.parent / f"{path.name}.trash"
    shutil.rmtree(trash, ignore_errors=True)
    if path.exists():
        os.replace(path, trash)
        shutil.rmtree(trash, ignore_errors=True)


def publish_dir(staging: Path, final: Path) -> Path:
    """Move a complete staging directory to `final` (marked as ours), replacing what was there."""
    final.parent.mkdir(parents=True, exist_ok=True)
    mark_output(staging)
    _normal_modes(staging)
    if final.exists():
        trash = final.parent / f".{final.name}.old"
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(final, trash)
        os.replace(staging, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(staging, final)
    return final
