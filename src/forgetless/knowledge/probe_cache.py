"""On-disk, resumable cache of SliCK probe results: one JSONL file per (model, adapter, settings).

    key = cache_key(model_key(info.model_id, adapter, info.fingerprint), settings.to_dict())
    cache = ProbeCache(Path("out/cache"), key, meta={...})
    done = cache.load()                       # {fact_id: row} of facts already probed
    cache.append(rows)                        # after each completed batch: write, flush, fsync

Layout: `<cache_dir>/<key>.jsonl` (one line per probed fact, appended as batches finish) and
`<cache_dir>/<key>.meta.json` (what the key stands for, for people). Each append (one chunk of facts)
tags its rows with an id and its row count: a run killed mid-write leaves at most the rows of its last
append, maybe with a partial last line, and `load` drops them all (truncating the file), so a resumed run
probes that chunk's facts together again, as the uninterrupted run did (sampling depends on the batch).
A row is reused only if its `fact_hash` (the fact's content) and `exemplar_ids` (the few-shot prompts)
still match, so an edited fact or a different fact pool is probed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from forgetless.errors import DataError
from forgetless.utils.fileio import write_json_atomic

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")
_CONFIG = "adapter_config.json"
_CHUNK = 1 << 20
APPEND_ID, APPEND_ROWS = "append_id", "append_rows"  # on every row: which append wrote it, and that append's size


def _digest(obj: Any, length: int = 16) -> str:
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def file_hash(path: Path) -> str:
    """sha256 of a file's bytes (streamed)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def adapter_hash(adapter: str | os.PathLike) -> str:
    """A hash of what makes an adapter answer as it does: its weight files (adapter_model.safetensors and
    any other *.safetensors/.bin/.pt) and its adapter_config.json (alpha, targets, ...)."""
    path = Path(adapter)
    files = sorted(p for p in path.iterdir() if p.is_file() and (p.suffix in _WEIGHT_SUFFIXES or p.name == _CONFIG))
    if not files:
        files = sorted(p for p in path.iterdir() if p.is_file())
    return _digest({p.name: file_hash(p) for p in files})


def model_key(model_id: str, adapter: str | os.PathLike | None = None, fingerprint: dict | None = None) -> str:
    """What identifies the probed model: its id (+ fingerprint), and the adapter's content (`adapter_hash`),
    not its path: `inject` probes its adapter in a staging folder that is renamed on publish, and a later
    `forgetless probe --adapter OUT/adapter` reuses those probes."""
    key = str(model_id)
    if fingerprint:
        key += f"#{_digest(fingerprint, 8)}"
    if adapter is not None:
        key += f"+adapter#{adapter_hash(adapter)}"
    return key


def cache_key(model: str, settings: dict[str, Any]) -> str:
    """The cache file stem: a hash of the model key and the probe settings."""
    return _digest({"model": model, "settings": settings})


def fact_hash(fact_dict: dict[str, Any]) -> str:
    """A hash of a fact's content (answers, question): a cached row is stale when it changes."""
    return _digest(fact_dict, 12)


class ProbeCache:
    """Append-only JSONL of per-fact probe rows for one cache key (see the module docstring)."""

    def __init__(self, cache_dir: str | os.PathLike, key: str, meta: dict[str, Any] | None = None) -> None:
        self.dir = Path(cache_dir)
        self.key = key
        self.path = self.dir / f"{key}.jsonl"
        self.meta_path = self.dir / f"{key}.meta.json"
        self.meta = dict(meta or {})

    def exists(self) -> bool:
        return self.path.is_file()

    def load(self) -> dict[str, dict[str, Any]]:
        """{fact_id: row} of completed facts; the rows of an unfinished last append (killed run) are dropped
        from the file."""
        if not self.path.is_file():
            return {}
        raw = self.path.read_bytes()
        rows = _whole_appends(self._parse(raw[: raw.rfind(b"\n") + 1]))
        end = rows[-1][0] if rows else 0
        if end != len(raw):
            with self.path.open("r+b") as handle:
                handle.truncate(end)
        return {str(row.get("fact_id")): row for _, row in rows}

    def _parse(self, complete: bytes) -> list[tuple[int, dict[str, Any]]]:
        """(end offset in the file, row) of every non-blank line."""
        rows, end = [], 0
        for number, line in enumerate(complete.splitlines(keepends=True), start=1):
            end += len(line)
            if not line.strip():
                continue
            try:
                rows.append((end, json.loads(line)))
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise DataError(
                    f"{self.path}:{number}: probe cache line is not valid JSON; delete the file to re-probe"
                ) from None
        return rows

    def append(self, rows: Iterable[dict[str, Any]]) -> None:
        """Append rows as JSON lines, then flush and fsync (a completed batch survives a kill)."""
        rows = list(rows)
        if not rows:
            return
        tag = {APPEND_ID: uuid.uuid4().hex[:12], APPEND_ROWS: len(rows)}
        text = "".join(json.dumps({**row, **tag}, ensure_ascii=False) + "\n" for row in rows)
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.meta and not self.meta_path.is_file():
            write_json_atomic(self.meta_path, {"key": self.key, **self.meta})
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())


def _whole_appends(rows: list[tuple[int, dict[str, Any]]]) -> list[tuple[int, dict[str, Any]]]:
    """`rows` without the last append's rows when fewer than it wrote reached the file (rows of older
    versions carry no append tag and are kept)."""
    last = rows[-1][1].get(APPEND_ID) if rows else None
    if last is None:
        return rows
    tail = 0
    while tail < len(rows) and rows[-1 - tail][1].get(APPEND_ID) == last:
        tail += 1
    return rows if tail >= rows[-1][1].get(APPEND_ROWS, 0) else rows[:-tail]
