"""The continual task-sequence YAML: tasks {name, train, eval, metric}, options, and the bad-input errors
(each a one-line `error:` with exit code 2 through the real CLI, before anything is written)."""

from __future__ import annotations

from pathlib import Path

import pytest

from forgetless.continual.config import ContinualConfig, ContinualTask, load_continual_config
from forgetless.errors import ConfigError
from tests.conftest import QA_ROWS, write_jsonl
from tests.unit.test_cli_errors import assert_nothing_written, assert_user_error, run_cli

ROOT = Path(__file__).resolve().parents[2]
GOOD_TASKS = """tasks:
  - {name: alpha, train: a.jsonl, eval: a.jsonl, metric: exact_match}
  - {name: beta, train: data/b.jsonl, eval: data/b.jsonl, metric: token_f1, max_train: 3}
"""


@pytest.fixture
def work(tmp_path) -> Path:
    write_jsonl(tmp_path / "a.jsonl", QA_ROWS)
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "b.jsonl", QA_ROWS)
    return tmp_path


def test_tasks_and_options_parse_with_paths_relative_to_the_yaml(work, tmp_path_factory):
    (work / "seq.yaml").write_text(
        "# forgetless continual run --config seq.yaml --output o\n" + GOOD_TASKS + "lr: 2e-4\n"
    )
    elsewhere = tmp_path_factory.mktemp("cwd")
    cfg = load_continual_config(work / "seq.yaml", output=str(elsewhere / "out"), rehearsal=0.5, max_eval=None)
    assert cfg.task_names == ["alpha", "beta"]
    assert cfg.tasks[0] == ContinualTask("alpha", str(work / "a.jsonl"), str(work / "a.jsonl"), "exact_match")
    assert cfg.tasks[1].train == str(work / "data" / "b.jsonl") and cfg.tasks[1].max_train == 3
    assert cfg.train.lr == 2e-4 and cfg.rehearsal == 0.5  # a flag (not None) overrides the YAML and the default
    assert cfg.switch_balanced is True and cfg.abstain_keep == 0.99 and cfg.switch_type == "prototype"


def test_builtin_suite_yaml_written_by_tasks_builtin_loads_as_is(tmp_path):
    from forgetless.data.tasks import write_builtin_suite

    yaml_path = write_builtin_suite(tmp_path / "suite", n_train=3, n_eval=2, tasks=["plural", "capital"])
    cfg = load_continual_config(yaml_path, output=str(tmp_path / "out"))
    assert cfg.task_names == ["plural", "capital"]
    assert Path(cfg.tasks[1].eval).is_file()


def test_shipped_config_parses_and_opens_with_its_run_command():
    path = ROOT / "configs" / "continual_builtin.yaml"
    first = path.read_text().splitlines()[0]
    assert first == "# forgetless continual run --config configs/continual_builtin.yaml --output runs/cit"
    cfg = load_continual_config(path, output="runs/cit")
    assert cfg.task_names == ["num2words", "plural", "translate_country", "capital", "date_format"]
    assert cfg.methods == ["switch", "sequential", "replay", "multitask"] and cfg.rehearsal == 0.01


@pytest.mark.parametrize(
    ("tasks", "fragment"),
    [
        ("  - {name: alpha, eval: a.jsonl, metric: exact_match}\n", "no train data"),
        (
            "  - {name: alpha, train: a.jsonl, eval: a.jsonl}\n  - {name: alpha, train: a.jsonl, eval: a.jsonl}\n",
            "duplicate",
        ),
        ("  - {name: alpha, train: a.jsonl, eval: a.jsonl, metric: bleu}\n", "unknown metric 'bleu'"),
        ("  - {name: alpha, train: a.jsonl, eval: a.jsonl, colour: red}\n", "unknown task key 'colour'"),
        ("  - {name: a/b, train: a.jsonl, eval: a.jsonl}\n", "letters, digits"),
        ("  - {name: alpha, train: a.jsonl, eval: a.jsonl, max_train: 0}\n", "max_train"),
    ],
    ids=["no train data", "duplicate name", "unknown metric", "unknown key", "bad name", "max_train 0"],
)
def test_bad_task_entries(work, tasks, fragment):
    (work / "seq.yaml").write_text("tasks:\n" + tasks)
    with pytest.raises(ConfigError, match=fragment):
        load_continual_config(work / "seq.yaml", output=str(work / "out"))


@pytest.mark.parametrize("fraction", [-0.1, 1.5])
def test_rehearsal_fraction_outside_0_1(fraction):
    with pytest.raises(ConfigError, match=r"rehearsal fraction must be in \[0, 1\]"):
        ContinualConfig(tasks=[ContinualTask("a", "x", "y")], output="o", rehearsal=fraction).validate()


def test_unknown_option_and_method(work):
    (work / "seq.yaml").write_text(GOOD_TASKS + "learning_rate: 1\n")
    with pytest.raises(ConfigError, match=r"seq.yaml:4:learning_rate: unknown option"):
        load_continual_config(work / "seq.yaml", output="o")
    (work / "seq.yaml").write_text(GOOD_TASKS)
    with pytest.raises(ConfigError, match="unknown method"):
        load_continual_config(work / "seq.yaml", output="o", methods=["ewc"])


CLI_CASES = {
    "no train data": ("  - {name: alpha, eval: a.jsonl, metric: exact_match}\n", [], ["alpha", "no train data"]),
    "duplicate task": (
        "  - {name: alpha, train: a.jsonl, eval: a.jsonl}\n  - {name: alpha, train: a.jsonl, eval: a.jsonl}\n",
        [],
        ["duplicate task name 'alpha'"],
    ),
    "unknown metric": ("  - {name: alpha, train: a.jsonl, eval: a.jsonl, metric: bleu}\n", [], ["unknown metric"]),
    "rehearsal -1": ("  - {name: alpha, train: a.jsonl, eval: a.jsonl}\n", ["--rehearsal=-1"], ["rehearsal"]),
    "rehearsal 2": ("  - {name: alpha, train: a.jsonl, eval: a.jsonl}\n", ["--rehearsal", "2"], ["[0, 1]"]),
    "unknown switch type": (
        "  - {name: alpha, train: a.jsonl, eval: a.jsonl}\n",
        ["--switch-type", "knn"],
        ["unknown switch_type 'knn'", "prototype"],
    ),
    "calibration too small": (
        "  - {name: alpha, train: a.jsonl, eval: a.jsonl}\n",
        [],
        ["alpha", "per-task abstain thresholds need 10 held-out", "at least 40 distinct train prompts"],
    ),
    "calibration_size too small": (
        "  - {name: alpha, train: a.jsonl, eval: a.jsonl}\ncalibration_size: 5\n",
        [],
        ["calibration_size >= 10"],
    ),
    "empty train file": ("  - {name: alpha, train: empty.jsonl, eval: a.jsonl}\n", [], ["alpha", "empty"]),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_cli_bad_input_is_one_line_and_exit_2(work, case):
    tasks, flags, fragments = CLI_CASES[case]
    (work / "empty.jsonl").write_text("")
    (work / "seq.yaml").write_text("tasks:\n" + tasks)
    result = run_cli(["continual", "run", "--config", "seq.yaml", "--output", "out", *flags], work)
    assert_user_error(result, *fragments)
    assert_nothing_written(work, "out")
