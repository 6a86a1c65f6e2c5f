"""Distributed training that really runs: `torchrun --nproc_per_node 2` on the CPU (gloo) trains, only
rank 0 publishes, nothing is left behind, and the loss curve matches one process at the same global batch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import QA_ROWS, write_jsonl

TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent))


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": "1"}
    env.pop("RANK", None)
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=180)


def _losses(adapter: Path) -> list[float]:
    rows = [json.loads(line) for line in (adapter / "train_log.jsonl").read_text().splitlines()]
    return [row["loss"] for row in rows if "loss" in row]


@pytest.mark.skipif(TORCHRUN is None, reason="torchrun is not installed")
@pytest.mark.parametrize("method", ["lora", "loramoe"])
def test_two_processes_publish_one_adapter_with_the_single_process_curve(tmp_path, tiny_model_dir, method):
    write_jsonl(tmp_path / "qa.jsonl", QA_ROWS)
    (tmp_path / "log.yaml").write_text("logging_steps: 1\n")
    common = ["train", "--config", "log.yaml", "--data", "qa.jsonl", "--model", str(tiny_model_dir)]
    common += ["--method", method, "--max-steps", "4", "--lr", "1e-2"]
    cli = [sys.executable, "-m", "forgetless.cli.app"]
    single = _run([*cli, *common, "--output", "one", "--batch-size", "4"], tmp_path)
    assert single.returncode == 0, single.stderr
    launcher = [TORCHRUN, "--standalone", "--nproc_per_node", "2", "-m", "forgetless.cli.app"]
    ddp = _run([*launcher, *common, "--output", "two", "--batch-size", "2"], tmp_path)
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    assert ddp.stdout.count("adapter saved to two") == 1  # rank 0 reports, rank 1 stays quiet
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.yaml", "one", "qa.jsonl", "two"]  # no .partial, no .old
    assert (tmp_path / "two" / "adapter_model.safetensors").is_file()
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(one) == len(two) == 4
    assert two == pytest.approx(one, rel=0.02)  # same 4 records per global step
