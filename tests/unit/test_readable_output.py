"""Output a person can read: library warnings go to a log file (or stderr with --verbose), one progress
style (a rich bar; no tqdm, no `{'loss': ...}` dicts on stdout), and nested bars share one display.

    .venv/bin/python -m pytest tests/unit/test_readable_output.py -q
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from tests.conftest import QA_ROWS, write_jsonl

CHATTER = textwrap.dedent(
    """
    import logging, sys, warnings
    from pathlib import Path
    from forgetless.utils.library_output import route_library_output
    route_library_output(sys.argv[1] == "verbose", Path(sys.argv[2]))
    warnings.warn("a FutureWarning from a library", FutureWarning)
    from transformers.utils import logging as hf_logging
    hf_logging.get_logger("transformers.modeling_utils").warning("a transformers warning")
    logging.getLogger("peft.tuners").warning("a peft warning")
    logging.getLogger("accelerate").error("an accelerate error")
    """
)


def _chatter(tmp_path, mode: str) -> tuple[str, str]:
    log = tmp_path / "logs" / "forgetless.log"
    done = subprocess.run([sys.executable, "-c", CHATTER, mode, str(log)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stderr, log.read_text() if log.exists() else ""


def test_library_warnings_go_to_the_log_file_and_errors_still_show(tmp_path):
    stderr, log = _chatter(tmp_path, "quiet")
    for text in ("a FutureWarning from a library", "a transformers warning", "a peft warning"):
        assert text in log and text not in stderr
    assert "an accelerate error" in stderr and "an accelerate error" in log


def test_verbose_shows_library_warnings_on_stderr(tmp_path):
    stderr, log = _chatter(tmp_path, "verbose")
    assert "a FutureWarning from a library" in stderr and "a transformers warning" in stderr and not log


def test_train_prints_one_rich_bar_and_no_library_chatter(tmp_path, tiny_model_dir):
    data = write_jsonl(tmp_path / "qa.jsonl", QA_ROWS)
    env = {**os.environ, "FORGETLESS_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "forgetless.cli.app", "train", "--data", str(data), "--model"]
    command += [str(tiny_model_dir), "--output", str(tmp_path / "out"), "--max-steps", "3"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines() == [f"adapter saved to {tmp_path / 'out'}"]  # no {'train_runtime': ..}
    assert "it/s" not in done.stderr and "%|" not in done.stderr  # no tqdm bar
    assert "Warning" not in done.stderr and "training" in done.stderr and "3/3" in done.stderr


def test_the_trainer_has_our_bar_instead_of_its_printers(tiny_model_dir, tmp_path):
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from forgetless.train.progress import RichProgressCallback
    from forgetless.train.run import train
    from forgetless.train.trainer import ForgetlessTrainer

    kinds = []
    original = ForgetlessTrainer.train

    def spy(self, *args, **kwargs):
        kinds.extend(type(c) for c in self.callback_handler.callbacks)
        return original(self, *args, **kwargs)

    ForgetlessTrainer.train = spy
    try:
        from forgetless.train.config import TrainConfig

        data = write_jsonl(tmp_path / "qa.jsonl", QA_ROWS)
        train(TrainConfig(data=str(data), output=str(tmp_path / "out"), model=str(tiny_model_dir), max_steps=2))
    finally:
        ForgetlessTrainer.train = original
    assert RichProgressCallback in kinds and PrinterCallback not in kinds and ProgressCallback not in kinds


def test_a_nested_progress_joins_the_outer_display():
    from forgetless.utils.console import nested_progress, progress

    assert not nested_progress()
    with progress() as outer, progress() as inner:
        assert inner is outer and nested_progress()
    assert not nested_progress()
