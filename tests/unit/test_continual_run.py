"""A whole continual run on the tiny random Llama (3 tasks, every method, 1 optimizer step per adapter), then
`route` and `add-task` through the real CLI. The tiny model scores 0 everywhere, so the R-matrix plumbing is
also checked with perfect fake adapters (an answer is right exactly when a prompt reaches its own task's adapter).
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pytest

from forgetless.continual import load_continual_config, run_continual
from tests.unit.test_cli_errors import assert_user_error, run_cli

TASKS = ("plural", "num2words", "date_format")
CONFIG = """# forgetless continual run --config seq.yaml --output run
model: {model}
max_steps: 1
batch_size: 4
max_train: 4
general_qa: 0
mmlu: 2
ood_mmlu: 3
calibration_size: 12
max_new_tokens: 3
eval_batch_size: 8
tasks:
  - {{name: plural, train: plural_train.jsonl, eval: plural_eval.jsonl, metric: exact_match}}
  - {{name: num2words, train: num2words_train.jsonl, eval: num2words_eval.jsonl, metric: token_f1}}
  - {{name: dates, train: date_format_train.jsonl, eval: date_format_eval.jsonl, metric: rouge_l}}
"""


@pytest.fixture(scope="module")
def work(tmp_path_factory, tiny_model_dir) -> Path:
    from forgetless.data.tasks import build_task
    from forgetless.utils.fileio import write_jsonl_atomic

    root = tmp_path_factory.mktemp("continual")
    for task in TASKS:
        train, evals = build_task(task, seed=0, n_train=48, n_eval=3)
        write_jsonl_atomic(root / f"{task}_train.jsonl", train)
        write_jsonl_atomic(root / f"{task}_eval.jsonl", evals)
    (root / "seq.yaml").write_text(CONFIG.format(model=tiny_model_dir))
    return root


@pytest.fixture(scope="module")
def run(work) -> tuple[Path, dict]:
    cfg = load_continual_config(work / "seq.yaml", output=str(work / "run"))
    return work / "run", run_continual(cfg)


def sha256_tree(folder: Path) -> dict[str, str]:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def cl_reference(R: list[list[float]]) -> dict[str, float]:
    """The formulas of PAPERS.md, written out independently of forgetless.eval.metrics."""
    T = len(R) - 1
    return {
        "aa": sum(R[T]) / T,
        "bwt": sum(R[T][j] - R[j + 1][j] for j in range(T - 1)) / (T - 1),
        "fwt": sum(R[j][j] - R[0][j] for j in range(1, T)) / (T - 1),
        "forgetting": sum(max(R[i][j] for i in range(j + 1, T)) - R[T][j] for j in range(T - 1)) / (T - 1),
    }


def test_results_have_switch_on_top_and_every_baseline_below(run):
    run_dir, results = run
    on_disk = json.loads((run_dir / "results.json").read_text())
    assert on_disk["status"] == "complete" == results["status"]
    for summary in (on_disk, *on_disk["baselines"].values()):
        assert {"switch_accuracy", "bwt", "aa", "R"} <= set(summary)
    assert set(on_disk["baselines"]) == {"sequential", "replay", "multitask"}
    assert on_disk["method"] == "switch" and 0 <= on_disk["switch_accuracy"] <= 1
    assert on_disk["switch_type"] == "prototype"  # its distance can abstain with one task already
    assert set(on_disk["stages"][0]["threshold"]) == {"plural"}
    assert set(on_disk["stages"][1]["threshold"]) == {"plural", "num2words"}  # one threshold per task
    for stage in on_disk["stages"]:
        assert set(stage["routing"]) == set(stage["oracle_score"]) == set(stage["routing_loss"])
        for task, shares in stage["routing"].items():
            assert shares["right"] + shares["misrouted"] + shares["abstained"] == pytest.approx(1.0)
            assert shares["right"] == stage["switch_accuracy_per_task"][task] or shares["abstained"] > 0
    split = on_disk["routing_split"]
    assert split["bwt"] == pytest.approx(on_disk["bwt"]) and split["bwt_adapter"] == 0.0  # frozen adapters
    assert "## Routing loss" in (run_dir / "report.md").read_text()
    assert len(on_disk["closed_set"]["R"]) == 4 and on_disk["closed_set"]["R"][0] == on_disk["R"][0]
    for summary in (on_disk, on_disk["baselines"]["sequential"], on_disk["baselines"]["replay"]):
        R = summary["R"]
        assert len(R) == 4 and all(len(row) == 3 for row in R)
        assert R[1][2] is None and None not in R[0] + R[2] + R[3]  # only cells no formula reads are skipped
        for key, value in cl_reference(R).items():
            assert summary[key] == pytest.approx(value)
    assert len(on_disk["baselines"]["multitask"]["R"]) == 2 and on_disk["baselines"]["multitask"]["bwt"] is None
    assert on_disk["R"][0] == on_disk["baselines"]["sequential"]["R"][0]  # one shared zero-shot base row


def test_run_directory_layout(run):
    run_dir, results = run
    switch = json.loads((run_dir / "switch" / "switch.json").read_text())
    assert [(t["name"], t["adapter"]) for t in switch["tasks"]] == [
        ("plural", "adapters/plural"),
        ("num2words", "adapters/num2words"),
        ("dates", "adapters/dates"),
    ]
    memory = json.loads((run_dir / "switch" / "memory.json").read_text())
    assert [t["name"] for t in memory["tasks"]] == ["plural", "num2words", "dates"]  # task 0 kept
    for task in ("plural", "num2words", "dates"):
        assert (run_dir / "adapters" / task / "adapter_model.safetensors").is_file()
    assert (run_dir / "baselines" / "sequential" / "stage3").is_dir()
    assert not (run_dir / "baselines" / "sequential" / "stage1").exists()  # only the latest is kept
    assert results["baselines"]["sequential"]["stages"][0]["adapter"] == "reused"  # = SwitchCIT's first LoRA
    assert results["baselines"]["replay"]["stages"][2]["replayed_records"] == 2  # 1% of 48, at least 1, x2 tasks
    report = (run_dir / "report.md").read_text()
    assert "## R matrix: sequential" in report and "BWT = 1/(T−1)" in report
    for name in ("R_switch", "R_sequential", "R_replay", "R_multitask", "task_scores"):
        png = (run_dir / "plots" / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24])[0] > 100


def test_r_matrix_follows_routing_with_perfect_adapters(work, run, monkeypatch, tmp_path):
    """Fake adapters that are perfect on their own task and wrong elsewhere: SwitchCIT keeps every task
    (BWT 0 with correct routing), sequential fine-tuning forgets all but the last (BWT -1)."""
    from forgetless.continual.pool import AdapterPool

    run_dir, _ = run
    owner = {}  # eval prompt -> (task, reference)
    for task, file in (("plural", "plural"), ("num2words", "num2words"), ("dates", "date_format")):
        for line in (work / f"{file}_eval.jsonl").read_text().splitlines():
            row = json.loads(line)
            owner[row["prompt"]] = (task, row["response"])

    def perfect(self, conversations, names, max_new_tokens, on_batch=None):
        out = []
        for conversation, name in zip(conversations, names, strict=True):
            task, reference = owner.get(conversation[-1]["content"], (None, "x"))
            good = name == task or (name and name.startswith("__sequential_s") and _last(name) == task)
            out.append(reference if good else "wrong")
        return out

    def _last(name):  # the sequential adapter of stage k is perfect on task k only
        return ("plural", "num2words", "dates")[int(name.rstrip("_").rsplit("_s", 1)[1]) - 1]

    monkeypatch.setattr(AdapterPool, "generate", perfect)
    cfg = load_continual_config(
        work / "seq.yaml", output=str(tmp_path / "fake"), methods=["switch", "sequential"], reuse_adapters=str(run_dir)
    )
    cfg.abstain_keep = None  # closed-set switch: routing alone decides
    results = run_continual(cfg)
    assert all(s["adapter"] == "reused" for s in results["stages"])  # same data + options: nothing retrained
    seq = results["baselines"]["sequential"]
    assert seq["R"][1:] == [[1.0, 0.0, None], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]  # None: two stages ahead
    assert seq["bwt"] == -1.0 and seq["forgetting"] == 1.0
    assert results["closed_set"]["R"] == results["R"]  # nothing abstains, so the paper's routing is the same
    accuracy = results["switch_accuracy"]
    last = results["stages"][-1]
    assert results["R"][-1] == [s for s in last["switch_accuracy_per_task"].values()]
    assert results["R"][-1] == [r["right"] for r in last["routing"].values()]  # perfect adapters: score = routing
    assert results["oracle_R"][-1] == [1.0, 1.0, 1.0]
    split = results["routing_split"]  # every point lost is a routing point
    assert split["bwt_adapter"] == 0.0 and split["bwt_routing"] == pytest.approx(results["bwt"])
    assert split["routing_loss"] == pytest.approx(1 - results["aa"])
    if accuracy == 1.0:
        assert results["bwt"] == 0.0 and results["aa"] == 1.0


def cli(args: list[str], cwd: Path):
    """The CLI in this process (typer's runner: no interpreter start-up); bad input goes through `run_cli`."""
    import os

    from typer.testing import CliRunner

    from forgetless.cli.app import app

    old = Path.cwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(app, args, catch_exceptions=False)
    finally:
        os.chdir(old)


def test_route_prompt_and_input(run, work):
    run_dir, _ = run
    result = cli(["route", "--run", str(run_dir), "--prompt", "What is the plural of goose?"], work)
    assert result.exit_code == 0, result.output
    first = result.stdout.splitlines()[0].split()
    assert first[0] == "task:" and first[1] in {"plural", "num2words", "dates", "base"}
    lines = [
        json.dumps({"prompt": "Write 12 in words."}),
        json.dumps({"messages": [{"role": "user", "content": "hi"}]}),
    ]
    (work / "prompts.jsonl").write_text("\n".join(lines) + "\n")
    result = cli(["route", "--run", str(run_dir), "--input", "prompts.jsonl", "--max-new-tokens", "2"], work)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 2 and all({"task", "confidence", "answer"} <= set(r) for r in rows)
    assert rows[1]["messages"][0]["content"] == "hi"


def test_route_on_a_directory_that_is_not_a_run(work):
    assert_user_error(run_cli(["route", "--run", ".", "--prompt", "x"], work), "not a continual run")


def test_add_task_leaves_old_adapters_byte_identical(run, work, other_tiny_model_dir):
    from forgetless.errors import ConfigError

    run_dir, _ = run
    before = sha256_tree(run_dir / "adapters")
    args = ["continual", "add-task", "--run", str(run_dir), "--task", "late", "--train", "date_format_train.jsonl"]
    args += ["--eval", "date_format_eval.jsonl"]
    refused = run_cli([*args, "--model", str(other_tiny_model_dir)], work)
    assert_user_error(refused, "not the base model of this run")
    assert sha256_tree(run_dir / "adapters") == before

    stats_before = sha256_tree(run_dir / "switch" / "prototypes")
    result = cli([*args, "--metric", "token_f1"], work)
    assert result.exit_code == 0, result.output
    stats_after = sha256_tree(run_dir / "switch" / "prototypes")
    assert {k: stats_after[k] for k in stats_before} == stats_before and len(stats_after) == 4  # old: untouched
    after = sha256_tree(run_dir / "adapters")
    assert {k: v for k, v in after.items() if not k.startswith("late")} == before
    assert "late/adapter_model.safetensors" in after
    switch = json.loads((run_dir / "switch" / "switch.json").read_text())
    assert [t["name"] for t in switch["tasks"]][-1] == "late"
    memory = json.loads((run_dir / "switch" / "memory.json").read_text())
    assert [t["name"] for t in memory["tasks"]] == ["plural", "num2words", "dates", "late"]
    added = json.loads((run_dir / "results.json").read_text())["added_tasks"]
    assert added[-1]["task"] == "late" and set(added[-1]["routed_score"]) == {"plural", "num2words", "dates", "late"}
    with pytest.raises(ConfigError, match="already in"):
        cli(args, work)


def test_add_task_refuses_an_mlp_switch_without_memory(run, work, tmp_path):
    """rehearsal 0 with the mlp switch: retraining on the new task alone would forget every old task."""
    import shutil

    from forgetless.adapters.switch import Switch
    from forgetless.continual.switch_stage import CachedEncoder, load_switch

    run_dir, _ = run
    copy = tmp_path / "mlp_run"
    shutil.copytree(run_dir, copy)
    old, _ = load_switch(copy)
    mlp = Switch(encoder=CachedEncoder(old.encoder.inner), fraction=0.0, switch_type="mlp", epochs=1)
    for task, adapter in old.adapters.items():
        mlp.update(task, [f"{task} prompt {i}" for i in range(4)], adapter)
    shutil.rmtree(copy / "switch")
    mlp.save(copy / "switch")
    before = sha256_tree(copy)
    args = ["continual", "add-task", "--run", str(copy), "--task", "later", "--train", "date_format_train.jsonl"]
    refused = run_cli([*args, "--eval", "date_format_eval.jsonl"], work)
    assert_user_error(refused, "keeps no rehearsal memory", "switch_type: prototype")
    assert sha256_tree(copy) == before
