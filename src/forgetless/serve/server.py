"""Run the serving app with uvicorn: in the foreground (the CLI) or in a background thread (tests, benchmarks).

    from forgetless.serve.server import ServerThread
    with ServerThread(app) as server:          # binds 127.0.0.1 on a free port
        httpx.get(f"{server.url}/health")

`ServerThread` binds its socket before starting, so the port is known and nothing races for it; it waits
until uvicorn has started (and the app's lifespan has started the batcher) before returning.

Both bind loopback unless told otherwise. The server checks neither the `Host` header nor who calls: fine
on loopback (a web page in this machine's browser could still reach it by DNS rebinding and use the
model); to serve other machines, keep it on loopback behind a reverse proxy that checks Host and callers.
"""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from forgetless.errors import ConfigError

LOOPBACK = "127.0.0.1"


def bind(host: str = LOOPBACK, port: int = 0) -> socket.socket:
    """A listening TCP socket (port 0 = a free one); ConfigError when the address cannot be used."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port or --host") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _config(app, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(app, log_level=log_level, access_log=False, timeout_graceful_shutdown=2, lifespan="on")


def serve_forever(app, host: str = LOOPBACK, port: int = 8000, log_level: str = "info") -> None:
    """Serve until interrupted (Ctrl-C)."""
    sock = bind(host, port)
    uvicorn.Server(_config(app, log_level)).run(sockets=[sock])


class ServerThread:
    """uvicorn in a daemon thread on a loopback port; `url` is its base URL. Use as a context manager."""

    def __init__(self, app, host: str = LOOPBACK, port: int = 0, log_level: str = "warning"):
        self.sock = bind(host, port)
        self.host, self.port = host, self.sock.getsockname()[1]
        self.server = uvicorn.Server(_config(app, log_level))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> ServerThread:
        """Start serving and wait until the app is up (a second call does nothing)."""
        if not self.thread.is_alive():
            self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
