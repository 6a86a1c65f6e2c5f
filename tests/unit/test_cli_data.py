"""`forgetless facts` and `forgetless tasks` write real, loadable data sets."""

from __future__ import annotations

import pytest

from forgetless.cli.app import main


def run(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_facts_countries_writes_loadable_real_facts(tmp_path, capsys):
    from forgetless.knowledge import load_facts

    code, out, _ = run(["facts", "countries", "--output", str(tmp_path / "c.jsonl")], capsys)
    assert code == 0 and "wrote" in out
    facts = load_facts(tmp_path / "c.jsonl")
    assert len(facts) >= 1000
    assert any(f.subject == "France" and f.relation == "capital" and f.object == "Paris" for f in facts)


def test_facts_fictional_is_seeded(tmp_path, capsys):
    for name in ("a", "b"):
        assert run(["facts", "fictional", "--n", "20", "--output", str(tmp_path / f"{name}.jsonl")], capsys)[0] == 0
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()
    code, _, err = run(["facts", "fictional", "--n", "0", "--output", str(tmp_path / "z.jsonl")], capsys)
    assert code == 2 and err.startswith("error: --n") and not (tmp_path / "z.jsonl").exists()


def test_tasks_builtin_writes_trainable_records(tmp_path, capsys):
    from forgetless.data.records import load_records

    code, _, _ = run(["tasks", "builtin", "--output", str(tmp_path), "--n-train", "20", "--n-eval", "5"], capsys)
    assert code == 0 and (tmp_path / "tasks.yaml").is_file()
    for task in ("num2words", "plural", "translate_country", "capital", "date_format"):
        records = load_records(tmp_path / task / "train.jsonl")
        assert len(records) == 20 and records[0].task == task
