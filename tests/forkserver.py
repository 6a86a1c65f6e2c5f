"""A fork server for crash tests: a real `forgetless` process that can be killed with SIGKILL at any instant,
without paying the ~5 s import of torch + transformers + peft for every run of a chain of kills.

    python -m tests.forkserver       # the server: imports forgetless once, then reads one JSON request per line

    with ForkServer() as server:     # the client (what tests use)
        child = server.start(["train", "--data", "qa.jsonl", "--output", "out"], cwd=work)
        child.kill_when(lambda: (work / ".out.partial").exists(), delay=0.01)  # SIGKILL, like `kill -9`
        assert child.wait() == -9

Each request forks a child of the server that changes to `cwd`, sends its stdout and stderr to `log`, and runs
`forgetless.cli.app.main(args)` exactly as the console script does; the server answers the child's pid, then its
exit code (negative: killed by that signal). One child runs at a time. The server has only imported modules
(no torch op has run, so no thread pool exists) when it forks, which keeps the fork safe.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUIET_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONWARNINGS": "ignore",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


class Child:
    """One forked `forgetless` run: its pid, and its exit code once the server reports it."""

    def __init__(self, pid: int, done: threading.Event, codes: list[int]):
        self.pid, self.started = pid, time.monotonic()
        self._done, self._codes = done, codes

    @property
    def running(self) -> bool:
        return not self._done.is_set()

    def kill(self) -> None:
        """SIGKILL the child (a no-op once it has exited)."""
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def kill_when(self, ready: Callable[[], bool], delay: float = 0.0, poll: float = 0.002) -> bool:
        """Poll `ready()` every `poll` s; once true wait `delay` s and SIGKILL. False when the run ended first."""
        while self.running:
            if ready():
                if delay:
                    time.sleep(delay)
                if not self.running:
                    return False
                self.kill()
                self.wait()
                return self.code == -signal.SIGKILL
            time.sleep(poll)
        return False

    def wait(self, timeout: float = 300.0) -> int:
        """The exit code (-9 when killed); kills the child and fails when it runs past `timeout`."""
        if not self._done.wait(timeout):
            self.kill()
            self._done.wait(10)
            raise TimeoutError(f"forked run {self.pid} still running after {timeout} s")
        return self.code

    @property
    def code(self) -> int:
        return self._codes[0]


class ForkServer:
    """The client side: starts `python -m tests.forkserver` and forks runs through it."""

    def __init__(self, env: dict[str, str] | None = None):
        environ = {k: v for k, v in os.environ.items() if k != "FORGETLESS_DEBUG"} | QUIET_ENV | (env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.forkserver"],
            cwd=ROOT,
            env=environ,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._child: Child | None = None

    def start(self, args: list[str], cwd: Path, log: Path | None = None) -> Child:
        """Fork a run of `forgetless ARGS` in `cwd` (output to `log`, default cwd/../NAME.log)."""
        if self._child is not None and self._child.running:
            raise RuntimeError("one forked run at a time")
        log = log or Path(cwd).parent / f"{Path(cwd).name}.log"
        request = {"args": [str(a) for a in args], "cwd": str(cwd), "log": str(log)}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        pid = json.loads(self._line())["pid"]
        done, codes = threading.Event(), []

        def collect() -> None:
            codes.append(json.loads(self._line())["code"])
            done.set()

        threading.Thread(target=collect, daemon=True).start()
        self._child = Child(pid, done, codes)
        return self._child

    def run(self, args: list[str], cwd: Path, timeout: float = 300.0) -> tuple[int, float]:
        """Run to the end: (exit code, seconds)."""
        child = self.start(args, cwd)
        code = child.wait(timeout)
        return code, time.monotonic() - child.started

    def _line(self) -> str:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the fork server died (exit {self.proc.poll()})")
        return line

    def close(self) -> None:
        if self._child is not None:
            self._child.kill()
        self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def __enter__(self) -> ForkServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ------------------------------------------------------------------------------------------- server side


PRELOAD = (
    "torch",
    "transformers",
    "transformers.models.llama.modeling_llama",
    "peft",
    "forgetless.cli.app",
    "forgetless.continual.runner",
    "forgetless.continual.strategies",
    "forgetless.knowledge.slick",
    "forgetless.train.run",
    "forgetless.train.setup",
    "forgetless.train.trainer",
)


def _preload() -> None:
    """Import what every command imports, so that a forked child starts in milliseconds."""
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    importlib.import_module("torch").set_num_threads(1)


def _child(request: dict) -> None:
    """In the forked child: run the CLI as the console script would, then leave without cleanup."""
    code = 1
    try:
        os.chdir(request["cwd"])
        fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        from forgetless.cli.app import main

        main(request["args"])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve() -> None:
    """Read requests from stdin; answer {"pid"} when a child starts and {"code"} when it ends."""
    _preload()
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            _child(request)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"pid": pid, "code": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
    serve()
