"""Dynamic batching for `forgetless serve`: concurrent requests are gathered for a few ms and generated together.

    batcher = Batcher(backend, route=registry.route, max_batch=16, window_ms=5, max_queue=256)
    await batcher.start()                 # inside the event loop (the app's lifespan does this)
    row = batcher.submit(GenRequest(...))  # QueueFull when max_queue rows are already waiting
    async for kind, value in row.events(): ...   # ("start", row) ("text", delta) ... ("done", GenResult)

One worker thread runs the model, one batch at a time. While it generates, new requests wait in a bounded
FIFO queue; when it is free, the batcher waits `window_ms` for more, then takes up to `max_batch` rows that
share sampling settings (greedy rows together; sampled rows with equal temperature/top_p/seed), whatever
their adapters: the backend mixes adapters inside one batch. `model: auto` rows are routed by the switch
in one call per batch, just before generation.

A row that is cancelled (its client went away) leaves the queue at once; during generation its `stopped`
flag tells the backend to stop spending steps on it. Stop strings are handled here, for every backend:
text is held back while it could still be the start of a stop string, and the row stops at the first match.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from forgetless.serve.metrics import Metrics

log = logging.getLogger("forgetless.serve")


def _fail(row: Row, exc: Exception) -> None:
    """Fail one row: the details go to the server log under an id; the client gets the id only."""
    error_id = uuid.uuid4().hex[:12]
    log.error("generation failed [error id %s]: %s: %s", error_id, type(exc).__name__, exc)
    row.fail(f"generation failed; the server log has the details under error id {error_id}")


class QueueFull(Exception):
    """The bounded request queue is full; the client should retry later (HTTP 429)."""


@dataclass(frozen=True)
class RouteDecision:
    """Where `model: auto` sent a prompt: an adapter name (None = base) and the switch's view of it."""

    adapter: str | None
    task: str
    confidence: float
    abstained: bool
    score: float


@dataclass
class GenRequest:
    """One generation job: a chat conversation or a raw prompt, its adapter and its decoding options."""

    messages: list[dict[str, str]] | None = None
    prompt: str | None = None
    adapter: str | None = None
    auto: bool = False
    routing_text: str = ""
    max_tokens: int = 16
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    prompt_ids: list[int] | None = None  # the prompt's tokens when the limits check measured them already

    def sampling_key(self) -> tuple:
        """Rows with equal keys can share one `generate` call."""
        if self.temperature == 0:
            return ("greedy",)  # greedy rows ignore the seed
        return ("sample", self.temperature, self.top_p, self.seed)


@dataclass
class GenResult:
    """What a finished row produced."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


class Row:
    """One request in flight. The backend calls `feed` and `complete` from the worker thread."""

    def __init__(self, request: GenRequest, loop: asyncio.AbstractEventLoop):
        self.request, self.loop = request, loop
        self.adapter: str | None = request.adapter
        self.route: RouteDecision | None = None
        self.cancelled = False
        self.stop_hit = False
        self.submitted = time.perf_counter()
        self._queue: asyncio.Queue = asyncio.Queue()
        self._raw, self._sent = "", 0
        self._closed = False

    @property
    def stopped(self) -> bool:
        """True once the backend should spend no more steps on this row."""
        return self.cancelled or self.stop_hit

    def _post(self, kind: str, value: Any) -> None:
        self.loop.call_soon_threadsafe(self._queue.put_nowait, (kind, value))

    def begin(self) -> None:
        """The row's batch is starting (its adapter is known now)."""
        self._post("start", self)

    def feed(self, delta: str) -> None:
        """New generated text; forwards what can no longer be part of a stop string."""
        if self.stop_hit or not delta:
            return
        self._raw += delta
        stops = self.request.stop
        hits = [i for i in (self._raw.find(s, max(0, self._sent - len(s) + 1)) for s in stops) if i >= 0]
        if hits:
            self._raw, self.stop_hit = self._raw[: min(hits)], True
            safe = len(self._raw)
        else:
            safe = len(self._raw) - _held_back(self._raw, stops)
        if safe > self._sent:
            self._post("text", self._raw[self._sent : safe])
            self._sent = safe

    def complete(self, finish_reason: str, prompt_tokens: int, completion_tokens: int) -> None:
        """The backend is done with this row."""
        if self._closed:
            return
        self._closed = True
        if not self.stop_hit and len(self._raw) > self._sent:
            self._post("text", self._raw[self._sent :])
        reason = "stop" if self.stop_hit else finish_reason
        self._post("done", GenResult(self._raw, reason, prompt_tokens, completion_tokens))

    @property
    def untouched(self) -> bool:
        """Still open and nothing generated yet: it may be retried alone."""
        return not self._closed and not self._raw

    def fail(self, message: str) -> None:
        """Generation failed for this row."""
        if not self._closed:
            self._closed = True
            self._post("error", message)

    async def next_event(self) -> tuple[str, Any]:
        """The next ("start" | "text" | "done" | "error", value) event."""
        return await self._queue.get()

    async def events(self) -> AsyncIterator[tuple[str, Any]]:
        """All events until "done" or "error"."""
        while True:
            kind, value = await self._queue.get()
            yield kind, value
            if kind in ("done", "error"):
                return


def _held_back(text: str, stops: Sequence[str]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of a stop string."""
    best = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:n]):
                best = n
                break
    return best


class RowBackend(Protocol):
    """What the batcher needs from a model backend (see `forgetless.serve.backend`)."""

    def generate(self, rows: Sequence[Row]) -> None:
        """Generate every row (blocking): `row.feed(delta)` as text comes, `row.complete(...)` at the end."""
        ...


Router = Callable[[list[str]], list[RouteDecision]]


class Batcher:
    """Bounded FIFO queue + one generation worker that takes compatible rows in batches."""

    def __init__(
        self,
        backend: RowBackend,
        route: Router | None = None,
        max_batch: int = 16,
        window_ms: float = 5.0,
        max_queue: int = 256,
        metrics: Metrics | None = None,
    ):
        if max_batch < 1 or max_queue < 1 or window_ms < 0:
            raise ValueError("max_batch and max_queue must be >= 1 and window_ms >= 0")
        self.backend, self.route = backend, route
        self.max_batch, self.window, self.max_queue = max_batch, window_ms / 1000, max_queue
        self.metrics = metrics or Metrics()
        self._waiting: collections.deque[Row] = collections.deque()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="forgetless-gen")
        self.in_flight = 0

    @property
    def depth(self) -> int:
        """Rows waiting for a batch (not counting the one being generated)."""
        return len(self._waiting)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start the batching loop on the running event loop."""
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="forgetless-batcher")

    async def stop(self) -> None:
        """Stop the loop and fail whatever still waits."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        while self._waiting:
            self._waiting.popleft().fail("server is shutting down")
        self._pool.shutdown(wait=False, cancel_futures=True)

    def submit(self, request: GenRequest) -> Row:
        """Queue a request; QueueFull when `max_queue` rows already wait."""
        if len(self._waiting) >= self.max_queue:
            self.metrics.rejected += 1
            raise QueueFull(f"{len(self._waiting)} requests are waiting; retry shortly")
        row = Row(request, asyncio.get_running_loop())
        self._waiting.append(row)
        self.metrics.queue_depth = len(self._waiting)
        if self._wake is not None:
            self._wake.set()
        return row

    def cancel(self, row: Row) -> None:
        """The client went away: drop the row from the queue, or stop it mid-generation."""
        if row.cancelled:
            return
        row.cancelled = True
        self.metrics.cancelled += 1
        try:
            self._waiting.remove(row)
        except ValueError:
            return  # already in a batch: the backend sees row.stopped
        self.metrics.queue_depth = len(self._waiting)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._waiting:
                self._wake.clear()
                await self._wake.wait()
            if self.window and len(self._waiting) < self.max_batch:
                await asyncio.sleep(self.window)
            batch = self._take()
            if not batch:
                continue
            self.in_flight = len(batch)
            try:
                await loop.run_in_executor(self._pool, self._run, batch)
            finally:
                self.in_flight = 0
                self.metrics.record_batch(len(batch), [row.adapter for row in batch])  # adapters known now

    def _take(self) -> list[Row]:
        """Up to max_batch waiting rows that share the first row's sampling key, in FIFO order."""
        key = self._waiting[0].request.sampling_key() if self._waiting else None
        batch, rest = [], collections.deque()
        while self._waiting:
            row = self._waiting.popleft()
            if len(batch) < self.max_batch and row.request.sampling_key() == key:
                batch.append(row)
            else:
                rest.append(row)
        self._waiting = rest
        self.metrics.queue_depth = len(rest)
        return batch

    def _run(self, batch: list[Row]) -> None:
        """Worker thread: route `auto` rows, then generate the batch. When a batch fails, its rows that
        got no output yet are retried one by one, so one bad row fails alone, never its batch."""
        try:
            self._route(batch)
            for row in batch:
                row.begin()
            self.backend.generate(batch)
        except Exception as exc:  # a backend failure must reach every client, not kill the loop
            if len(batch) > 1:
                for row in batch:
                    self._run_alone(row) if row.untouched else _fail(row, exc)
                return
            _fail(batch[0], exc)
            return
        for row in batch:  # a backend that forgot a row must not leave its client hanging
            row.complete("stop", 0, 0)

    def _run_alone(self, row: Row) -> None:
        try:
            self.backend.generate([row])
        except Exception as exc:
            _fail(row, exc)
            return
        row.complete("stop", 0, 0)

    def _route(self, batch: list[Row]) -> None:
        auto = [row for row in batch if row.request.auto]
        if not auto:
            return
        if self.route is None:
            raise RuntimeError("model 'auto' needs a switch, and this server has none")
        for row, decision in zip(auto, self.route([r.request.routing_text for r in auto]), strict=True):
            row.route, row.adapter = decision, decision.adapter
