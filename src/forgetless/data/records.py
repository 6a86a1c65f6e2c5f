"""Instruction records: load JSONL / JSON / CSV / Parquet files or a `datasets` hub name, and validate.

A record is either `{"messages": [{"role": ..., "content": ...}, ...]}` or
`{"prompt": ..., "response": ..., "system": optional}`, plus optional labels `type` (`world` | `task`,
used by LoRAMoE) and `task` (a task name, used by continual tuning). Unknown fields are ignored.

Every problem is reported up front as a DataError naming `file:line:field` and how to fix it.

    from forgetless.data.records import load_records
    records = load_records("data/demo/facts.jsonl")
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from forgetless.data.validate import FORMAT_HINT, Record, validate_record
from forgetless.errors import DataError, where
from forgetless.utils.fileio import read_utf8

__all__ = ["FILE_SUFFIXES", "Record", "data_hash", "load_records"]

FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


def load_records(source: str | Path, split: str = "train") -> list[Record]:
    """Load and validate all records of a file, or of a `datasets` hub dataset by name."""
    path = Path(source)
    if path.is_file():
        if path.stat().st_size == 0:
            raise DataError(f"{path}: data file is empty; it needs at least one record ({FORMAT_HINT})")
        try:
            rows = list(_read_rows(path))
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not UTF-8 text (byte {exc.start}); save the file as UTF-8") from None
    elif path.is_dir():
        raise DataError(f"{source}: is a directory; pass a data file (.jsonl, .json, .csv or .parquet)")
    elif path.suffix.lower() in FILE_SUFFIXES or path.exists() or "/" not in str(source):
        raise DataError(f"{source}: data file not found; check the path (a hub dataset is written `org/name`)")
    else:
        rows = list(_read_hub(str(source), split))
    records = [validate_record(obj, loc) for loc, obj in rows]
    if not records:
        raise DataError(f"{source}: no records found; it needs at least one record ({FORMAT_HINT})")
    return records


def data_hash(records: list[Record]) -> str:
    """A sha256 of the normalized records: the same data hashes the same whatever its file format."""
    digest = hashlib.sha256()
    for record in records:
        digest.update(json.dumps(record.to_dict(), sort_keys=True, ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def _read_rows(path: Path) -> Iterator[tuple[str, Any]]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        yield from _read_jsonl(path)
    elif suffix == ".json":
        yield from _read_json(path)
    elif suffix == ".csv":
        text = read_utf8(path, "data file", encoding="utf-8-sig")  # -sig: tolerate Excel's BOM
        with io.StringIO(text, newline="") as handle:
            reader = csv.DictReader(handle)
            for row in reader:
                yield where(path, reader.line_num), {k: v for k, v in row.items() if v not in (None, "")}
    elif suffix == ".parquet":
        import pandas as pd

        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise DataError(f"{path}: cannot read parquet ({type(exc).__name__}); is the file complete?") from None
        for index, row in enumerate(frame.to_dict("records"), start=1):
            yield f"{path}:row {index}", _plain(row)
    else:
        raise DataError(f"{path}: unknown data format {suffix!r}; use one of {', '.join(FILE_SUFFIXES)}")


def _read_jsonl(path: Path) -> Iterator[tuple[str, Any]]:
    with io.StringIO(read_utf8(path, "data file")) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield where(path, number), json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"{where(path, number)}: malformed JSON ({exc.msg} at column {exc.colno}); "
                    "each line must hold one JSON object"
                ) from None


def _read_json(path: Path) -> Iterator[tuple[str, Any]]:
    text = read_utf8(path, "data file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where(path, exc.lineno)}: malformed JSON ({exc.msg}); fix the file") from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise DataError(f"{path}: a .json data file must hold a list of records (or {{'data': [...]}})")
    for line, obj in zip(_element_lines(text), data, strict=False):
        yield where(path, line), obj


def _element_lines(text: str) -> Iterator[int]:
    """Line numbers where the elements of the top-level JSON array start (for error messages)."""
    decoder = json.JSONDecoder()
    # the array is the document itself, or the value of {"data": [...]}
    start = text.find("[") if text.lstrip().startswith("[") else text.find("[", text.find('"data"'))
    pos = start + 1
    while pos < len(text):
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            return
        yield text.count("\n", 0, pos) + 1
        _, pos = decoder.raw_decode(text, pos)


def _read_hub(name: str, split: str) -> Iterator[tuple[str, Any]]:
    try:
        import datasets

        dataset = datasets.load_dataset(name, split=split)
    except Exception as exc:  # offline machines and typos both land here
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise DataError(
            f"{name}: not a local file and not a loadable hub dataset ({first}); check the name or pass a file"
        ) from None
    for index, row in enumerate(dataset, start=1):
        yield f"{name}:row {index}", row


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """Turn numpy values from parquet into plain Python (lists of dicts for `messages`)."""
    out = {}
    for key, value in row.items():
        if hasattr(value, "tolist"):
            value = value.tolist()
        if value is None or (isinstance(value, float) and value != value):
            continue
        out[key] = value
    return out
