"""The bad-input table of issue 15, one test per case (named after it): the real CLI in this process and the
real server (tiny random Llama + a LoRA) over loopback HTTP. See tests/badinput/ for the cases and how each
is judged; `benchmarks/bad_input_table.py` prints the same table with its `N tried / N passed` line.

    OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/unit/test_bad_input_table.py -q
"""

from __future__ import annotations

import pytest

from tests.badinput.cli_cases import ISSUE_CLI_CASES
from tests.badinput.cli_more_cases import MORE_CLI_CASES
from tests.badinput.serve_cases import SERVE_CASES
from tests.badinput.table import ServeHarness, World, run_cli_case, skip_reason

CLI_CASES = ISSUE_CLI_CASES + MORE_CLI_CASES
ISSUE_15_CASES = 42  # what the red-team pass listed: 8 data loss, 12 server, 19 tracebacks, 2 late checks, 1 bytes


def params(cases: list) -> list:
    return [pytest.param(c, id=c.name, marks=[pytest.mark.xfail(reason=c.xfail)] if c.xfail else []) for c in cases]


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model_dir) -> World:
    return World.build(tmp_path_factory.mktemp("bad-input"), tiny_model_dir)


@pytest.fixture(scope="module")
def harness(world):
    with ServeHarness(world) as running:
        yield running


@pytest.mark.parametrize("case", params(CLI_CASES))
def test_cli(case, world):
    if skip_reason(case):
        pytest.skip(skip_reason(case))
    problems = run_cli_case(case, world)
    assert not problems, "; ".join(problems)


@pytest.mark.parametrize("case", params(SERVE_CASES))
def test_server(case, harness):
    problems = harness.run(case)
    assert not problems, "; ".join(problems)


def test_the_table_holds_every_issue_case_and_30_more():
    cases = CLI_CASES + SERVE_CASES
    assert len({c.name for c in cases}) == len(cases), "case names must be unique"
    assert sum(c.issue for c in cases) == ISSUE_15_CASES
    assert len(cases) >= ISSUE_15_CASES + 30
