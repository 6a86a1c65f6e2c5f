"""Crash test (issue 15): `kill -9` at seeded random instants during `forgetless train` (checkpoint writes
included), `forgetless probe` and `forgetless continual run`; resuming must always end with the same adapter
tensors / the same results as one uninterrupted run.

    OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/unit/test_crash_resume.py -q     # ~1.5 min on one core

Each command runs as a chain: start, SIGKILL at kill point 1, resume, SIGKILL at kill point 2, ... (11 points,
at least 10 kills: a point at the very end may come after the run has exited), then a last resume that must
exit 0, compared with one reference run. Runs are real `forgetless` processes forked from tests/forkserver.py
(no 5 s import per run). Kill points are seeded: a random instant after the start, or the moment something
appears on disk (a checkpoint folder: the kill then lands while the checkpoint is being written; the cache
growing past N facts; the published adapter), plus a random delay.

How each command resumes: `train --resume` continues from the newest COMPLETE checkpoint of its staging folder
(`.OUT.partial/checkpoints`), or finds the adapter already published; `probe` has no flag: the same command
again reuses its cache, chunk by chunk; `continual run --resume` reuses every finished task adapter and
recomputes the rest (a run killed before its run.json starts again in place).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import QA_ROWS, write_jsonl
from tests.forkserver import ForkServer

KILLS = 10
Ready = Callable[[], bool]


@dataclass
class KillPoint:
    """Kill when the predicate that `arm()` returns (armed as the run starts) first holds, `delay` s later."""

    label: str
    arm: Callable[[], Ready]
    delay: float = 0.0
    retry: Callable[[float], KillPoint] | None = None  # a point for the next run when this run (of S s) ended first


def after(seconds: float) -> Callable[[], Ready]:
    def arm() -> Ready:
        start = time.monotonic()
        return lambda: time.monotonic() - start >= seconds

    return arm


def exists(path: Path) -> Callable[[], Ready]:
    return lambda: path.exists


@pytest.fixture(scope="module")
def server():
    with ForkServer() as fork_server:
        yield fork_server


def run_chain(server: ForkServer, cwd: Path, first: list[str], resume: list[str], points: list[KillPoint]) -> list:
    """Run `first`, kill it at points[0]; run `resume`, kill at points[1]; ...; then `resume` to the end.

    Returns (label, killed) per run: killed is False when the run ended before its kill point (a point with
    `retry` then gets a second chance in the next run, at most 3 times in a chain)."""
    outcomes, queue, retries = [], list(points), 3
    while queue:
        point, index = queue.pop(0), len(outcomes)
        ready = point.arm()
        child = server.start(first if index == 0 else resume, cwd, log=_log(cwd, index))
        killed = child.kill_when(ready, point.delay)
        if not killed:
            assert child.wait() == 0, _tail(_log(cwd, index))
            if point.retry and retries:
                queue.insert(0, point.retry(time.monotonic() - child.started))
                retries -= 1
        outcomes.append((point.label, killed))
    last = server.start(resume, cwd, log=_log(cwd, len(outcomes)))
    assert last.wait() == 0, _tail(_log(cwd, len(outcomes)))
    return outcomes


def _log(cwd: Path, index: int) -> Path:
    return cwd.parent / f"{cwd.name}-{index}.log"


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"


def reference(server: ForkServer, root: Path, name: str, setup: Callable[[Path], None], args: list[str]) -> float:
    """One uninterrupted run in root/name (prepared by `setup`); returns its seconds."""
    cwd = root / name
    cwd.mkdir()
    setup(cwd)
    child = server.start(args, cwd, log=_log(cwd, 0))
    assert child.wait() == 0, _tail(_log(cwd, 0))
    return time.monotonic() - child.started


def assert_same_tensors(a: Path, b: Path) -> None:
    import torch
    from safetensors.torch import load_file

    left, right = load_file(a), load_file(b)
    assert sorted(left) == sorted(right)
    for key, value in left.items():
        assert torch.equal(value, right[key]), f"{a.parent.name}/{a.name}: {key} differs"


# ----------------------------------------------------------------------------------------------- train

TRAIN_STEPS = 40
TRAIN_YAML = f"max_steps: {TRAIN_STEPS}\nsave_steps: 2\nbatch_size: 2\nlr: 0.005\nlogging_steps: 5\n"


def _train_setup(cwd: Path) -> None:
    write_jsonl(cwd / "qa.jsonl", QA_ROWS)
    (cwd / "run.yaml").write_text(TRAIN_YAML)


def _checkpoint(checkpoints: Path, step: int) -> Callable[[], Ready]:
    """Ready once checkpoint-STEP (or, when the run is already past it, the next one) appears."""

    def arm() -> Ready:
        done = [int(p.name.split("-")[1]) for p in checkpoints.glob("checkpoint-*")] if checkpoints.is_dir() else []
        target = checkpoints / f"checkpoint-{min(max([step, *(d + 2 for d in done)]), TRAIN_STEPS)}"
        return target.exists

    return arm


def train_points(rng: random.Random, cwd: Path, startup: float) -> list[KillPoint]:
    """2 kills while starting, 7 at checkpoints (3 as the folder appears: mid-write), 1 in the final save,
    1 right after the adapter is published (this one may come after the run has exited)."""
    checkpoints = cwd / ".out.partial" / "checkpoints"
    points = [KillPoint("startup", after(rng.uniform(0, startup))) for _ in range(2)]
    steps = sorted(rng.sample(range(2, TRAIN_STEPS + 1, 2), 7))
    delays = [0.0, 0.0, 0.0, *(rng.uniform(0.005, 0.08) for _ in range(4))]
    rng.shuffle(delays)
    points += [KillPoint(f"checkpoint-{s}", _checkpoint(checkpoints, s), d) for s, d in zip(steps, delays, strict=True)]
    points.append(KillPoint("final save", exists(cwd / ".out.partial" / "adapter"), rng.uniform(0, 0.01)))
    points.append(KillPoint("published", exists(cwd / "out")))
    return points


def test_train_resumes_to_the_same_tensors_after_10_kills(server, tmp_path, tiny_model_dir):
    args = ["train", "--config", "run.yaml", "--data", "qa.jsonl", "--output", "out", "--model", str(tiny_model_dir)]
    seconds = reference(server, tmp_path, "ref", _train_setup, args)
    cwd = tmp_path / "crash"
    cwd.mkdir()
    _train_setup(cwd)
    torn = _TornCheckpoints(cwd / ".out.partial" / "checkpoints")
    points = train_points(random.Random(15), cwd, startup=min(0.7, seconds / 3))
    for point in points:  # note which kills left a checkpoint folder without its trainer_state.json
        point.arm = torn.watch(point.arm)
    outcomes = run_chain(server, cwd, args, [*args, "--resume"], points)
    assert sum(killed for _, killed in outcomes) >= KILLS, outcomes
    assert torn.count >= 1, f"no kill landed inside a checkpoint write: {outcomes}"
    assert_same_tensors(cwd / "out" / "adapter_model.safetensors", tmp_path / "ref/out/adapter_model.safetensors")
    assert sorted(p.name for p in cwd.iterdir()) == ["out", "qa.jsonl", "run.yaml"]  # nothing half-written left
    assert sorted(p.name for p in (cwd / "out").iterdir()) == sorted(p.name for p in (tmp_path / "ref/out").iterdir())


class _TornCheckpoints:
    """Counts kills after which the newest checkpoint folder had no trainer_state.json (killed mid-write)."""

    def __init__(self, checkpoints: Path):
        self.checkpoints, self.count = checkpoints, 0

    def watch(self, arm: Callable[[], Ready]) -> Callable[[], Ready]:
        def armed() -> Ready:
            self._check()  # the state the previous kill left
            return arm()

        return armed

    def _check(self) -> None:
        found = sorted(self.checkpoints.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        if found and not (found[-1] / "trainer_state.json").exists():
            self.count += 1


def test_train_resume_after_the_adapter_was_published(server, tmp_path, tiny_model_dir):
    """A kill after publication (staging folder half-deleted) is finished: --resume exits 0 and changes nothing;
    --resume with other options is still refused."""
    args = ["train", "--config", "run.yaml", "--data", "qa.jsonl", "--output", "out", "--model", str(tiny_model_dir)]
    reference(server, tmp_path, "done", _train_setup, args)
    cwd = tmp_path / "done"
    before = {p.name: p.read_bytes() for p in (cwd / "out").iterdir()}
    leftover = cwd / ".out.partial.trash" / "checkpoints" / "checkpoint-40"
    leftover.mkdir(parents=True)
    (leftover / "trainer_state.json").write_text("{}")
    assert server.start([*args, "--resume"], cwd, log=_log(cwd, 1)).wait() == 0, _tail(_log(cwd, 1))
    assert {p.name: p.read_bytes() for p in (cwd / "out").iterdir()} == before
    assert sorted(p.name for p in cwd.iterdir()) == ["out", "qa.jsonl", "run.yaml"]
    assert server.start([*args, "--resume", "--lr", "0.01"], cwd, log=_log(cwd, 2)).wait() == 2
    assert "--overwrite" in _log(cwd, 2).read_text()


# ----------------------------------------------------------------------------------------------- probe

PROBE_FACTS, PROBE_CHUNK = 64, 4  # --batch-size 1 x 8 batches / 2 exemplar sets = 4 facts per cached chunk
PROBE_OPTIONS = ["--exemplar-sets", "2", "--shots", "2", "--samples", "2", "--max-new-tokens", "4", "--batch-size", "1"]


def _probe_setup(cwd: Path) -> None:
    from forgetless.knowledge import write_fictional_facts

    write_fictional_facts(cwd / "facts.jsonl", PROBE_FACTS, 0)


def _cached_count(cache: Path) -> int:
    files = list(cache.glob("*.jsonl")) if cache.is_dir() else []
    return files[0].read_bytes().count(b"\n") if files else 0


def _cached(cache: Path, at_least: int) -> Callable[[], Ready]:
    """Ready once the probe cache holds `at_least` facts (or, when it already does, one more chunk)."""

    def arm() -> Ready:
        target = min(max(at_least, _cached_count(cache) + 1), PROBE_FACTS)
        return lambda: _cached_count(cache) >= target

    return arm


@pytest.fixture(scope="module")
def probe_reference(server, tmp_path_factory, tiny_model_dir) -> tuple[list[str], Path, float, float]:
    """The uninterrupted probe, watched: (its args, its folder, seconds until its first chunk is cached,
    seconds per chunk)."""
    args = ["probe", "--facts", "facts.jsonl", "--output", "out", "--model", str(tiny_model_dir), *PROBE_OPTIONS]
    cwd = tmp_path_factory.mktemp("probe") / "ref"
    cwd.mkdir()
    _probe_setup(cwd)
    child, seen = server.start(args, cwd, log=_log(cwd, 0)), {}
    while child.running:
        seen.setdefault(_cached_count(cwd / "out" / "cache"), time.monotonic() - child.started)
        time.sleep(0.002)
    assert child.wait() == 0, _tail(_log(cwd, 0))
    times = sorted(t for n, t in seen.items() if n)
    return args, cwd, times[0], (times[-1] - times[0]) / max(1, len(times) - 1)


def probe_points(rng: random.Random, cwd: Path, startup: float, chunk: float) -> list[KillPoint]:
    """1 kill while starting, 9 after random chunks reach the cache (plus a random part of a chunk's time),
    1 as the last chunk lands (the outputs are written next)."""
    cache = cwd / "out" / "cache"
    points = [KillPoint("start", after(rng.uniform(0, startup)))]
    for index in sorted(rng.sample(range(1, PROBE_FACTS // PROBE_CHUNK), 9)):
        count = index * PROBE_CHUNK
        points.append(KillPoint(f"{count} cached", _cached(cache, count), rng.uniform(0, 0.6 * chunk)))
    points.append(KillPoint("all cached", _cached(cache, PROBE_FACTS)))
    return points


def test_probe_resumes_to_the_same_results_after_10_kills(server, tmp_path, probe_reference):
    args, ref, startup, chunk = probe_reference
    cwd = tmp_path / "crash"
    cwd.mkdir()
    _probe_setup(cwd)
    outcomes = run_chain(server, cwd, args, args, probe_points(random.Random(15), cwd, startup, chunk))
    assert sum(killed for _, killed in outcomes) >= KILLS, outcomes
    assert_same_probe(cwd / "out", ref / "out")


def test_probe_killed_before_its_first_cached_row_resumes(tmp_path):
    """Only write_json_atomic's temp file of the cache's meta made it to disk: the same command continues."""
    from forgetless.cli.probe_cmd import check_probe_output

    (tmp_path / "out" / "cache").mkdir(parents=True)
    (tmp_path / "out" / "cache" / ".key.meta.json.x1y2.tmp").write_text('{"key": ')
    assert check_probe_output(tmp_path / "out", key="key") == tmp_path / "out"


def test_a_temp_file_left_by_a_killed_writer_goes_with_the_next_write(tmp_path):
    from forgetless.utils.fileio import write_json_atomic

    dead, alive = tmp_path / ".r.json.999999999.ab12.tmp", tmp_path / f".r.json.{os.getppid()}.cd34.tmp"
    for path in (dead, alive):
        path.write_text("{")
    write_json_atomic(tmp_path / "r.json", {})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, "r.json"])


def test_a_continual_run_killed_while_writing_run_json_starts_again_in_place(tmp_path):
    """Seen in CI: the kill landed inside run.json's atomic write, leaving only its temp file beside the
    marker and data/; `--resume` said "nothing to resume" instead of starting the run again."""
    from forgetless.continual.runner import _killed_before_manifest
    from forgetless.utils.fileio import mark_output

    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    mark_output(run)
    (run / ".run.json.999999999.ab12.tmp").write_text('{"version": ')
    assert _killed_before_manifest(run)
    (run / f".run.json.{os.getppid()}.cd34.tmp").write_text("{")  # a live writer's: not ours to pass over
    assert not _killed_before_manifest(run)


def assert_same_probe(out: Path, ref: Path) -> None:
    for name in ("facts.jsonl", "summary.json", "summary.md"):
        assert (out / name).read_text() == (ref / name).read_text(), name


def test_probe_killed_inside_a_cache_append_resumes_to_the_same_results(server, tmp_path, probe_reference):
    """A kill during an append leaves part of a chunk (whole lines + a torn one): the next run must probe
    that chunk's facts together again, as the uninterrupted run did (sampling depends on the batch)."""
    args, ref, _, _ = probe_reference
    torn = shutil.copytree(ref, tmp_path / "torn")
    for name in ("facts.jsonl", "summary.json", "summary.md"):
        (torn / "out" / name).unlink()
    cache = next((torn / "out" / "cache").glob("*.jsonl"))
    lines = cache.read_bytes().splitlines(keepends=True)
    cache.write_bytes(b"".join(lines[:7]) + lines[7][:40])  # chunk 2: 3 whole lines + a torn one
    child = server.start(args, torn, log=_log(torn, 0))
    assert child.wait() == 0, _tail(_log(torn, 0))
    assert_same_probe(torn / "out", ref / "out")


# ------------------------------------------------------------------------------------------ continual

CONTINUAL_YAML = """# forgetless continual run --config seq.yaml --output run
model: {model}
max_steps: 2
batch_size: 4
max_train: 4
general_qa: 0
mmlu: 0
ood_mmlu: 0
calibration_size: 4
abstain_per_task: false
max_new_tokens: 3
eval_batch_size: 8
switch_epochs: 5
tasks:
  - {{name: plural, train: plural_train.jsonl, eval: plural_eval.jsonl, metric: exact_match}}
  - {{name: num2words, train: num2words_train.jsonl, eval: num2words_eval.jsonl, metric: token_f1}}
"""
VOLATILE = {"seconds", "generated_answers", "adapter", "created"}  # timings, cache counts, trained vs reused


def _continual_setup(model: Path) -> Callable[[Path], None]:
    def setup(cwd: Path) -> None:
        from forgetless.data.tasks import build_task
        from forgetless.utils.fileio import write_jsonl_atomic

        for task in ("plural", "num2words"):
            train, evals = build_task(task, seed=0, n_train=16, n_eval=3)
            write_jsonl_atomic(cwd / f"{task}_train.jsonl", train)
            write_jsonl_atomic(cwd / f"{task}_eval.jsonl", evals)
        (cwd / "seq.yaml").write_text(CONTINUAL_YAML.format(model=model))

    return setup


def stable(value):
    """`value` without the keys that differ between two identical runs (timings, reused vs trained)."""
    if isinstance(value, dict):
        return {k: stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [stable(v) for v in value]
    return value


def continual_points(rng: random.Random, cwd: Path, seconds: float) -> list[KillPoint]:
    """1 kill before run.json exists, then 10 instants, one in each tenth of `seconds` (a resumed run's time;
    the last may come after a quick run has exited)."""
    points = [KillPoint("before run.json", exists(cwd / "run" / ".forgetless-output"))]
    tenth = seconds / 10
    for i in range(10):
        instant = after(rng.uniform(i * tenth, (i + 1) * tenth))
        points.append(KillPoint(f"{i + 1}/10", instant, retry=_sooner(rng, f"{i + 1}/10")))
    return points


def _sooner(rng: random.Random, label: str) -> Callable[[float], KillPoint]:
    """For a run that ended before its instant: a random instant within the time that run took."""
    return lambda took: KillPoint(f"{label} again", after(rng.uniform(0, 0.8 * took)))


def test_continual_run_resumes_to_the_same_results_after_10_kills(server, tmp_path, tiny_model_dir):
    args = ["continual", "run", "--config", "seq.yaml", "--output", "run"]
    setup = _continual_setup(tiny_model_dir)
    reference(server, tmp_path, "ref", setup, args)
    code, resumed = server.run([*args, "--resume"], tmp_path / "ref")  # the shortest a resumed run takes
    assert code == 0
    cwd = tmp_path / "crash"
    cwd.mkdir()
    setup(cwd)
    points = continual_points(random.Random(15), cwd, resumed)
    outcomes = run_chain(server, cwd, args, [*args, "--resume"], points)
    assert sum(killed for _, killed in outcomes) >= KILLS, outcomes
    run, ref = cwd / "run", tmp_path / "ref" / "run"
    got, want = (json.loads((d / "results.json").read_text()) for d in (run, ref))
    assert got["status"] == "complete" and stable(got) == stable(want)
    for weights in sorted(ref.rglob("*.safetensors")):
        assert_same_tensors(run / weights.relative_to(ref), weights)
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == sorted(p.relative_to(ref) for p in ref.rglob("*"))
