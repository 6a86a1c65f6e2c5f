"""`benchmarks/gpu_check.py --smoke` keeps working: every section runs on CPU with tiny shapes and the
JSON and Markdown reports are written (the GPU run itself happens only on a task lent a GPU).

    .venv/bin/python -m pytest tests/unit/test_gpu_check.py -q
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


def test_gpu_check_smoke_runs_every_section(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, str(SCRIPT), "--smoke", "--output", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    sections = report["sections"]
    expected = {"train_lora/tiny", "loramoe/tiny", "generation/tiny", "shared_prefix/tiny", "mixed_adapters/tiny"}
    assert set(sections) == expected and not [k for k, v in sections.items() if "error" in v]
    assert sections["train_lora/tiny"]["tokens_per_s"] > 0
    assert set(sections["loramoe/tiny"]) == {"lora", "loramoe", "loop"}
    assert all(sections[k]["ratio"] > 0 for k in ("generation/tiny", "shared_prefix/tiny", "mixed_adapters/tiny"))
    assert "## loramoe/tiny" in (tmp_path / "gpu_check.md").read_text()
