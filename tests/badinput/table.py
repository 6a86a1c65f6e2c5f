"""Runs the bad-input table: CLI cases through `forgetless.cli.app.main` in this process, server cases over
loopback HTTP against the real app on a tiny random Llama (+ one LoRA adapter).

    world = World.build(Path("/tmp/x"))            # tiny model, a trained adapter, an interrupted training run
    problems = run_cli_case(case, world)           # [] when the case behaves as the project rule says
    with ServeHarness(world) as harness:
        problems = harness.run(case)

A CLI case passes when: the exit code is the expected one (2 for bad input), stderr is ONE line `error: ...`
holding every expected fragment, nothing says "Traceback", stdout is empty, and the case's folder is exactly
as before (nothing created, nothing half-written, nothing deleted). A server case passes when the bad request
gets the expected 4xx with an OpenAI error body that leaks no internals, while a valid request sent at the
same time, and one sent after, both get 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
import shutil
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
LEAKS = ("Traceback", 'File "', ".py:", "site-packages")  # what an error body must never show


@dataclass
class World:
    """What cases point at: a tiny model, a LoRA adapter trained on it, and a training run killed at step 3
    (`interrupted/`: qa.jsonl, run.yaml and `.out.partial/` with checkpoint-1 and -2)."""

    root: Path
    model: Path
    adapter: Path
    interrupted: Path

    @classmethod
    def build(cls, root: Path, model: Path | None = None) -> World:
        root.mkdir(parents=True, exist_ok=True)
        model = model or _tiny_model(root / "tiny-llama")
        adapter = _train(model, root / "trained", "adapter")
        return cls(root, model, adapter, _interrupted(model, root / "interrupted"))

    def format(self, text: str) -> str:
        return text.replace("{model}", str(self.model)).replace("{adapter}", str(self.adapter))


def _tiny_model(path: Path) -> Path:
    from forgetless.models.embedded import embedded_model_dir
    from forgetless.models.load import load_tokenizer
    from tests.conftest import build_tiny_llama

    tokenizer = load_tokenizer(str(embedded_model_dir()))
    build_tiny_llama(tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _train(model: Path, folder: Path, name: str) -> Path:
    from forgetless.train.config import TrainConfig
    from forgetless.train.run import train
    from tests.conftest import QA_ROWS, write_jsonl

    folder.mkdir(parents=True, exist_ok=True)
    data = write_jsonl(folder / "qa.jsonl", QA_ROWS)
    cfg = TrainConfig(data=str(data), output=str(folder / name), model=str(model), max_steps=1)
    return train(cfg).output


TRAIN_YAML = "max_steps: 4\nsave_steps: 1\nbatch_size: 2\nlogging_steps: 1\n"
TRAIN = ["train", "--config", "run.yaml", "--data", "qa.jsonl", "--output", "out", "--model", "{model}"]


def _interrupted(model: Path, folder: Path) -> Path:
    """`forgetless TRAIN` (see TRAIN) stopped at step 3, as a kill after checkpoint-2 would leave it."""
    from forgetless.train.trainer import ForgetlessTrainer
    from tests.conftest import QA_ROWS, write_jsonl

    original = ForgetlessTrainer.training_step

    def crash(self, *args, **kwargs):
        if self.state.global_step == 2:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    folder.mkdir(parents=True)
    write_jsonl(folder / "qa.jsonl", QA_ROWS)
    (folder / "run.yaml").write_text(TRAIN_YAML)
    ForgetlessTrainer.training_step = crash
    try:
        result = run_cli([a.replace("{model}", str(model)) for a in TRAIN], folder)
    finally:
        ForgetlessTrainer.training_step = original
    assert result.code == 130 and (folder / ".out.partial" / "checkpoints" / "checkpoint-2").is_dir(), result
    return folder


def _in(cwd: Path, work: Callable[[], Any]) -> Any:
    old = Path.cwd()
    os.chdir(cwd)
    try:
        return work()
    finally:
        os.chdir(old)


# ----------------------------------------------------------------------------------------------- CLI


@dataclass
class CliCase:
    """`forgetless ARGS` run in a fresh folder holding `files` (then `setup(folder, world)`).

    `{model}` and `{adapter}` in args become the tiny model's and the trained adapter's paths. `expect` are
    fragments of the one error line; `code` the exit code; `changes` paths (relative, as prefixes) the run
    may create or change (None: any); `check(folder, result)` asserts more; `cwd` a subfolder to run in;
    `issue` marks the cases of issue 15; `xfail` says why a known bug still fails it."""

    name: str
    args: list[str]
    expect: tuple[str, ...] = ()
    files: dict[str, str | bytes] = field(default_factory=dict)
    setup: Callable[[Path, World], None] | None = None
    code: int = 2
    changes: tuple[str, ...] | None = ()
    check: Callable[[Path, CliResult], None] | None = None
    cwd: str = "."
    issue: bool = False
    root_skips: bool = False  # meaningless as root (file permissions)
    one_line: bool = True  # False: the error line may follow other stderr lines (checked elsewhere)
    xfail: str | None = None


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


def run_cli(args: list[str], cwd: Path) -> CliResult:
    """The console entry point in this process: exit code, stdout, stderr (a crash prints its traceback)."""
    from forgetless.cli.app import main

    out, err, code = io.StringIO(), io.StringIO(), 0
    saved = {k: os.environ.get(k) for k in (*OFFLINE, "FORGETLESS_DEBUG")}
    os.environ.update(OFFLINE)
    os.environ.pop("FORGETLESS_DEBUG", None)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                _in(cwd, lambda: main(list(args)))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException:  # a crash is what the table is looking for
                traceback.print_exc()
                code = 1
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return CliResult(code, out.getvalue(), err.getvalue())


def snapshot(folder: Path) -> dict[str, str]:
    """Every path under `folder` -> "dir" or its content's sha256."""
    found = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        found[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def prepare(case: CliCase, world: World, folder: Path) -> Path:
    """The case's folder with its files, as the case's run will find it."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name, content in case.files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith("/"):
            path.mkdir(exist_ok=True)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(world.format(content))
    if case.setup:
        case.setup(folder, world)
    return folder


def run_cli_case(case: CliCase, world: World, folder: Path | None = None) -> list[str]:
    """What is wrong with how forgetless handled `case` ([] when nothing)."""
    folder = prepare(case, world, folder or world.root / "cases" / _slug(case.name))
    before = snapshot(folder)
    with _never_serve() if case.args[:1] == ["serve"] else contextlib.nullcontext():
        result = run_cli([world.format(a) for a in case.args], folder / case.cwd)
    problems = _cli_problems(case, result)
    if case.changes is not None:
        after = snapshot(folder)
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        changed = [k for k in changed if not k.startswith(case.changes)] if case.changes else changed
        if changed:
            problems.append(f"changed files: {', '.join(changed[:4])}")
    if case.check and not problems:
        try:
            case.check(folder, result)
        except AssertionError as exc:
            problems.append(f"check failed: {exc}")
    return problems


@contextlib.contextmanager
def _never_serve():
    """`forgetless serve` past its checks would serve forever: make that a crash the case reports."""
    import forgetless.serve.server as server

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("forgetless serve got past its checks and would start serving")

    original, server.serve_forever = server.serve_forever, refuse
    try:
        yield
    finally:
        server.serve_forever = original


def _cli_problems(case: CliCase, result: CliResult) -> list[str]:
    first = (result.stderr.strip().splitlines() or [""])[-1][:200]
    if "Traceback" in result.stderr:
        return [f"traceback (exit {result.code}): {first}"]
    if result.code != case.code:
        return [f"exit {result.code}, expected {case.code}: {first}"]
    if case.code != 2:
        return []
    lines = result.stderr.splitlines()[-1:] if not case.one_line else result.stderr.splitlines()
    problems = [] if len(lines) == 1 and lines[0].startswith("error: ") else [f"not one error line: {lines[:3]}"]
    problems += [f"message lacks {f!r}: {first}" for f in case.expect if f not in result.stderr]
    return problems + ([f"stdout not empty: {result.stdout[:80]!r}"] if result.stdout else [])


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")[:80]


# -------------------------------------------------------------------------------------------- server


@dataclass
class ServeCase:
    """One bad request: `body` (dict/list -> JSON; str/bytes -> sent as is) to `method path`; the expected
    `status` and, when given, OpenAI error `code`. `run(url)` replaces the request for special cases."""

    name: str
    body: Any = None
    status: int = 400
    path: str = "/v1/chat/completions"
    method: str = "POST"
    code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    run: Callable[[str], list[str]] | None = None
    issue: bool = False
    xfail: str | None = None


GOOD = {"model": "base", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 2}


class ServeHarness:
    """The real app (HFBackend on the tiny model + the trained LoRA as model `lora`) on a loopback port."""

    def __init__(self, world: World):
        from forgetless.serve.app import ServeConfig, create_app
        from forgetless.serve.backend import build_backend
        from forgetless.serve.registry import Registry
        from forgetless.serve.server import ServerThread

        backend, info = build_backend(str(world.model), {"lora": world.adapter}, precision="fp32")
        registry = Registry({"lora": world.adapter}, base_id=info.model_id)
        app = create_app(backend, registry, ServeConfig(window_ms=20, max_tokens_cap=4, disconnect_poll_s=0.05))
        self.server = ServerThread(app).start()
        self.url = self.server.url

    def run(self, case: ServeCase) -> list[str]:
        if case.run is not None:
            return case.run(self.url)
        return asyncio.run(self._bad_between_good(case))

    async def _bad_between_good(self, case: ServeCase) -> list[str]:
        import httpx

        async with httpx.AsyncClient(base_url=self.url, timeout=60) as http:
            bad, good = await asyncio.gather(_send(http, case), http.post("/v1/chat/completions", json=GOOD))
            after = await http.post("/v1/chat/completions", json=GOOD)
        problems = check_error(bad, case.status, case.code)
        for label, response in (("concurrent", good), ("following", after)):
            if response.status_code != 200:
                problems.append(f"{label} valid request got {response.status_code}: {response.text[:120]}")
        return problems

    def close(self) -> None:
        self.server.stop()

    def __enter__(self) -> ServeHarness:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


async def _send(http, case: ServeCase):
    body = case.body
    if isinstance(body, dict | list):
        body = json.dumps(body)
    headers = {"content-type": "application/json", **case.headers}
    return await http.request(case.method, case.path, content=body, headers=headers)


def check_error(response, status: int, code: str | None = None) -> list[str]:
    """Problems with an error response: its status, OpenAI envelope, code, and no leaked internals."""
    if response.status_code != status:
        return [f"status {response.status_code}, expected {status}: {response.text[:160]}"]
    try:
        error = response.json()["error"]
        assert isinstance(error["message"], str) and error["message"] and error["type"]
    except (ValueError, KeyError, TypeError, AssertionError):
        return [f"no OpenAI error body: {response.text[:160]}"]
    problems = [f"error code {error.get('code')!r}, expected {code!r}"] if code and error.get("code") != code else []
    return problems + [f"error body leaks {leak!r}" for leak in LEAKS if leak in response.text]


# --------------------------------------------------------------------------------------------- table


def run_table(world: World, cli_cases: list[CliCase], serve_cases: list[ServeCase], on_result=None) -> list:
    """Run every case: [(case, problems)], problems None for a case skipped here (see `skip_reason`)."""
    results = []

    def record(case: CliCase | ServeCase, problems: list[str] | None) -> None:
        results.append((case, problems))
        if on_result:
            on_result(case, problems)

    for case in cli_cases:
        record(case, None if skip_reason(case) else run_cli_case(case, world))
    with ServeHarness(world) as harness:
        for case in serve_cases:
            record(case, harness.run(case))
    return results


def skip_reason(case: CliCase | ServeCase) -> str | None:
    if getattr(case, "root_skips", False) and os.geteuid() == 0:
        return "file permissions do not bind root"
    return None
