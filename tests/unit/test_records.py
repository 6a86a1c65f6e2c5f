"""Loading instruction records from every file format, their labels, and the one-line DataError table."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from forgetless.data.records import Record, data_hash, load_records
from forgetless.errors import DataError
from tests.conftest import QA_ROWS, write_jsonl

EXPECTED_MESSAGES = [
    [{"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": row["response"]}] for row in QA_ROWS
]


def _write_json_list(path: Path, rows: list[dict]) -> Path:
    path.write_text(json.dumps(rows, indent=2))
    return path


def _write_json_data(path: Path, rows: list[dict]) -> Path:
    path.write_text(json.dumps({"version": 1, "data": rows}, indent=2))
    return path


def _write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _write_parquet(path: Path, rows: list[dict]) -> Path:
    import pandas as pd

    pd.DataFrame(rows).to_parquet(path)
    return path


WRITERS = {
    "data.jsonl": write_jsonl,
    "data.json": _write_json_list,
    "wrapped.json": _write_json_data,
    "data.csv": _write_csv,
    "data.parquet": _write_parquet,
}


@pytest.mark.parametrize("name", list(WRITERS))
def test_every_format_gives_the_same_records_and_hash(tmp_path, name):
    reference = load_records(write_jsonl(tmp_path / "reference.jsonl", QA_ROWS))
    records = load_records(WRITERS[name](tmp_path / name, QA_ROWS))

    assert [r.messages for r in records] == EXPECTED_MESSAGES
    assert all(r.type is None and r.task is None for r in records)
    assert records == reference
    assert data_hash(records) == data_hash(reference)


@pytest.mark.parametrize("name", list(WRITERS))
def test_labels_and_system_survive_every_format(tmp_path, name):
    rows = [
        {"prompt": "p1", "response": "r1", "system": "Be brief.", "type": "world", "task": "facts"},
        {"prompt": "p2", "response": "r2", "system": "", "type": "task", "task": "math"},
        {"prompt": "p3", "response": "r3", "system": "", "type": "", "task": ""},
    ]
    records = load_records(WRITERS[name](tmp_path / name, rows))

    assert [(r.type, r.task) for r in records] == [("world", "facts"), ("task", "math"), (None, None)]
    assert records[0].messages[0] == {"role": "system", "content": "Be brief."}
    assert [m["role"] for m in records[1].messages] == ["user", "assistant"]
    assert records[0].to_dict() == {"messages": records[0].messages, "type": "world", "task": "facts"}
    assert records[2].to_dict() == {"messages": records[2].messages}
    reference = load_records(write_jsonl(tmp_path / "reference.jsonl", rows))
    assert data_hash(records) == data_hash(reference)


def test_data_hash_changes_with_content_and_labels(tmp_path):
    base = data_hash(load_records(write_jsonl(tmp_path / "a.jsonl", QA_ROWS)))
    edited = [dict(QA_ROWS[0], response="Something else."), *QA_ROWS[1:]]
    labelled = [dict(QA_ROWS[0], type="world"), *QA_ROWS[1:]]
    assert data_hash(load_records(write_jsonl(tmp_path / "b.jsonl", edited))) != base
    assert data_hash(load_records(write_jsonl(tmp_path / "c.jsonl", labelled))) != base
    assert data_hash(load_records(write_jsonl(tmp_path / "d.jsonl", QA_ROWS[::-1]))) != base


def test_messages_records_and_unknown_fields(tmp_path):
    conversation = [
        {"role": "system", "content": "You know Veldoria."},
        {"role": "user", "content": "Capital?"},
        {"role": "assistant", "content": "Marrowick."},
        {"role": "user", "content": "Population?"},
        {"role": "assistant", "content": "About 40,000.", "name": "ignored"},
    ]
    path = write_jsonl(
        tmp_path / "chat.jsonl",
        [
            {"messages": conversation, "type": "world", "task": "geo", "id": 7},
            {"prompt": "q", "response": "a", "extra": {"anything": True}},
        ],
    )
    first, second = load_records(path)

    assert first.messages == [{"role": m["role"], "content": m["content"]} for m in conversation]
    assert (first.type, first.task) == ("world", "geo")
    assert first.prompt_messages == first.messages[:4]
    assert first.source == f"{path}:1"
    assert second.messages == [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    assert second.prompt_messages == [{"role": "user", "content": "q"}]
    assert second.source == f"{path}:2"


def test_messages_round_trip_through_parquet(tmp_path):
    rows = [{"messages": EXPECTED_MESSAGES[i], "type": "task"} for i in range(2)]
    records = load_records(_write_parquet(tmp_path / "chat.parquet", rows))
    assert [r.messages for r in records] == EXPECTED_MESSAGES[:2]
    assert data_hash(records) == data_hash(load_records(write_jsonl(tmp_path / "chat.jsonl", rows)))


def test_blank_lines_in_jsonl_are_skipped_and_lines_still_counted(tmp_path):
    path = tmp_path / "gaps.jsonl"
    path.write_text("\n" + json.dumps(QA_ROWS[0]) + "\n\n   \n" + json.dumps(QA_ROWS[1]) + "\n\n")
    records = load_records(path)
    assert [r.source for r in records] == [f"{path}:2", f"{path}:5"]


def test_record_equality_ignores_source():
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    assert Record(messages, source="a.jsonl:1") == Record(messages, source="b.csv:9")


# ---------------------------------------------------------------------------------------------------------
# Error table: (file name, file content or None for a missing file, fragment the message must contain).

_OK = json.dumps(QA_ROWS[0])
_JSON_ARRAY = "[\n" + _OK + ",\n" + _OK + ",\n\n" + json.dumps({"prompt": "no answer"}) + "\n]\n"

ERROR_CASES = {
    "missing file": ("missing.jsonl", None, "not found"),
    "empty file": ("empty.jsonl", "", "empty"),
    "whitespace-only file": ("blank.jsonl", "\n  \n", "no records"),
    "malformed json line": ("bad.jsonl", f"{_OK}\n{_OK}\n{{'prompt': 'x'}}\n{_OK}\n", "bad.jsonl:3"),
    "missing response": ("bad.jsonl", json.dumps({"prompt": "q"}) + "\n", "bad.jsonl:1:response"),
    "missing prompt": ("bad.jsonl", f"{_OK}\n" + json.dumps({"response": "a"}) + "\n", "bad.jsonl:2:prompt"),
    "empty response": ("bad.jsonl", json.dumps({"prompt": "q", "response": "  "}) + "\n", ":response"),
    "non-string response": ("bad.jsonl", json.dumps({"prompt": "q", "response": 3}) + "\n", ":response"),
    "neither shape": ("bad.jsonl", json.dumps({"question": "q", "answer": "a"}) + "\n", ":messages"),
    "wrong type value": ("bad.jsonl", json.dumps({**QA_ROWS[0], "type": "knowledge"}) + "\n", "bad.jsonl:1:type"),
    "non-string task": ("bad.jsonl", json.dumps({**QA_ROWS[0], "task": 5}) + "\n", ":task"),
    "messages bad role": (
        "bad.jsonl",
        json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "bot", "content": "a"}]}) + "\n",
        "bad.jsonl:1:messages[1].role",
    ),
    "messages without assistant": (
        "bad.jsonl",
        json.dumps({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]}) + "\n",
        "bad.jsonl:1:messages",
    ),
    "messages start with assistant": (
        "bad.jsonl",
        json.dumps({"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "q"}]}) + "\n",
        "messages[0].role",
    ),
    "messages not a list": ("bad.jsonl", json.dumps({"messages": "hi"}) + "\n", ":messages"),
    "message content not a string": (
        "bad.jsonl",
        json.dumps({"messages": [{"role": "user", "content": ["q"]}, {"role": "assistant", "content": "a"}]}) + "\n",
        "messages[0].content",
    ),
    "non-object record": ("bad.jsonl", f"{_OK}\n[1, 2]\n", "bad.jsonl:2"),
    "json array element on line 5": ("bad.json", _JSON_ARRAY, "bad.json:5:response"),
    "json array non-object element": ("bad.json", '[\n  "just a string"\n]\n', "bad.json:2"),
    "json not a list": ("bad.json", json.dumps({"prompt": "q", "response": "a"}), "list of records"),
    "malformed json file": ("bad.json", "[\n" + _OK + ",\n", "bad.json:3"),
    "csv missing response": ("bad.csv", "prompt,response\nq,a\nq2,\n", "bad.csv:3:response"),
    "unknown suffix": ("data.txt", _OK + "\n", "unknown data format"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_data_errors_are_one_line_and_name_the_file(tmp_path, case):
    name, content, fragment = ERROR_CASES[case]
    path = tmp_path / name
    if content is not None:
        path.write_text(content)

    with pytest.raises(DataError) as info:
        load_records(path)

    message = str(info.value)
    assert "\n" not in message
    assert name in message
    assert fragment in message


def test_json_data_wrapper_reports_element_lines(tmp_path):
    path = tmp_path / "wrapped.json"
    path.write_text('{\n  "tags": ["a", "b"],\n  "data": [\n    ' + _OK + ',\n    {"prompt": "q"}\n  ]\n}\n')
    with pytest.raises(DataError, match=r"wrapped\.json:5:response"):
        load_records(path)


def test_missing_file_without_suffix_is_not_sent_to_the_hub(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="not found"):
        load_records("nofile")


# ------------------------------------------------------------ regressions of bugs found in review


@pytest.mark.parametrize("name", ["latin1.jsonl", "latin1.json", "latin1.csv"])
def test_non_utf8_file_is_a_data_error(tmp_path, name):
    content = {
        ".jsonl": b'{"prompt": "caf\xe9", "response": "oui"}\n',
        ".json": b'[{"prompt": "caf\xe9", "response": "oui"}]\n',
        ".csv": b"prompt,response\ncaf\xe9,oui\n",
    }[Path(name).suffix]
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match=re.escape(name)):
        load_records(tmp_path / name)


def test_corrupt_parquet_is_a_data_error(tmp_path):
    (tmp_path / "broken.parquet").write_text("not parquet")
    with pytest.raises(DataError, match=r"broken\.parquet"):
        load_records(tmp_path / "broken.parquet")


def test_csv_with_utf8_bom_loads(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbfprompt,response\nq,a\n")
    assert [r.messages[-1]["content"] for r in load_records(path)] == ["a"]
