"""The bad-input table of issue 15: every case (the real CLI in-process, the real server on a tiny random Llama
over loopback HTTP), one line each, then `N tried / N passed`; the exit status is 1 when a case fails.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bad_input_table.py            # about a minute on one core
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bad_input_table.py --only serve

The cases and how each is judged are in tests/badinput/; CI runs them as tests/unit/test_bad_input_table.py.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the `tests` package holds the cases

from tests.badinput.cli_cases import ISSUE_CLI_CASES
from tests.badinput.cli_more_cases import MORE_CLI_CASES
from tests.badinput.serve_cases import SERVE_CASES
from tests.badinput.table import World, run_table


def line(case, problems: list[str] | None) -> str:
    """One row: outcome, issue 15 or new, CLI or server, the case, and what went wrong."""
    if problems is None:
        status = "skip"
    elif problems:
        status = "xfail" if case.xfail else "FAIL"
    else:
        status = "XPASS" if case.xfail else "pass"
    kind = "server" if hasattr(case, "status") else "cli"
    why = f"  -> {'; '.join(problems)}" if problems else ""
    return f"{status:<5} {'issue' if case.issue else 'new':<5} {kind:<6} {case.name}{why}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="Run only the cases whose name (or kind) holds this text.")
    only = parser.parse_args().only
    warnings.filterwarnings("ignore")  # library deprecation notes are not the table's business
    pick = [c for c in ISSUE_CLI_CASES + MORE_CLI_CASES if only in c.name or only == "cli"]
    serve = [c for c in SERVE_CASES if only in c.name or only == "serve"]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="forgetless-bad-input-") as tmp:
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            world = World.build(Path(tmp))  # its training runs print progress bars
        results = run_table(
            world, pick, serve, on_result=lambda case, problems: print(line(case, problems), flush=True)
        )
    tried = [(c, p) for c, p in results if p is not None]
    passed = sum(not p for _, p in tried)
    failed = [c.name for c, p in tried if p and not c.xfail]
    known = [c.name for c, p in tried if p and c.xfail]
    note = f" ({len(known)} known bugs: {', '.join(known)})" if known else ""
    print(f"{len(tried)} tried / {passed} passed{note} in {time.perf_counter() - started:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
