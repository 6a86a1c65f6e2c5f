"""The OpenAI-compatible HTTP API of `forgetless serve` (FastAPI).

    forgetless serve --run runs/continual                # model "auto" routes with the run's switch
    forgetless serve --adapter plural=runs/lora-plural --adapter numbers=runs/lora-numbers --port 8000
    curl 127.0.0.1:8000/v1/chat/completions -d '{"model": "auto", "messages": [{"role": "user", "content": "Hi"}]}'

    from forgetless.serve.app import ServeConfig, create_app      # any backend with generate(rows)
    app = create_app(backend, registry, ServeConfig(max_batch=16))

Endpoints: `POST /v1/chat/completions`, `POST /v1/completions` (both with `stream: true` as server-sent
events ending in `data: [DONE]`), `GET /v1/models`, `GET /health` (200 once the batcher runs), `GET /metrics`
(Prometheus text; `?format=json` for JSON). `model` is `auto` (switch routing, abstain -> base), `base`
(or the base model's id) or an adapter name of the registry. The adapter that answered comes back in the
body (`adapter`, and `route` for `auto`) and in headers `x-forgetless-adapter`, `x-forgetless-route-task`,
`x-forgetless-route-confidence`.

Errors use OpenAI's envelope: 400 for malformed JSON or wrong types and for a request over a limit
(`forgetless.serve.limits`: more than `max_messages` messages, more than `max_prompt_tokens` prompt tokens,
or prompt + max_tokens over the model's context, the last two with code `context_length_exceeded`), 404
for an unknown model (a path-like name included: names are looked up, never used as paths), 413 for a
body over the limit, 429 with `Retry-After` when the queue is full, 500 only when generation itself
fails; a 500's body carries an error id, never the exception's text (the server log has it under the id).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from forgetless.errors import ConfigError
from forgetless.serve import schemas as s
from forgetless.serve.batching import Batcher, GenRequest, QueueFull, RowBackend
from forgetless.serve.formats import CHAT, COMPLETIONS, ChatFormat, CompletionFormat, Format, common, headers, usage
from forgetless.serve.limits import LimitExceeded, Limits, PromptMeter
from forgetless.serve.metrics import Metrics
from forgetless.serve.registry import Registry, Target, UnknownModel

KNOWN = {CHAT, COMPLETIONS, "/v1/models", "/health", "/metrics"}

log = logging.getLogger("forgetless.serve")


@dataclass
class ServeConfig:
    """Server limits: generation length cap, request size, batching and queueing."""

    max_tokens_cap: int = 512
    max_prompt_tokens: int | None = None  # None: the model's context
    max_messages: int = 1000
    default_max_tokens: int = 256
    max_batch: int = 16
    window_ms: float = 5.0
    max_queue: int = 256
    retry_after_s: int = 1
    max_body_bytes: int = 1_000_000
    disconnect_poll_s: float = 0.25

    def max_tokens(self, requested: int | None) -> int:
        """The request's max_tokens, defaulted and capped by the server."""
        return min(requested or self.default_max_tokens, self.max_tokens_cap)

    def limits(self, context: int) -> Limits:
        """The per-request limits for a model of `context` tokens (ConfigError when they cannot hold)."""
        prompt = self.max_prompt_tokens or context
        if not 1 <= prompt <= context:
            raise ConfigError(f"--max-prompt-tokens {prompt} must be 1..{context} (the model's context in tokens)")
        if self.max_messages < 1:
            raise ConfigError(f"--max-messages {self.max_messages} must be >= 1")
        return Limits(context=context, max_prompt_tokens=prompt, max_messages=self.max_messages)


class ClientGone(Exception):
    """The client closed its connection while its request was waiting or generating."""


class Backend(RowBackend, PromptMeter, Protocol):
    """What the app serves: a row generator that can also measure prompts (see forgetless.serve.backend)."""


def create_app(
    backend: Backend, registry: Registry, config: ServeConfig | None = None, metrics: Metrics | None = None
) -> FastAPI:
    """The FastAPI app serving `backend` under the names of `registry`."""
    config = config or ServeConfig()
    metrics = metrics or Metrics()
    limits = config.limits(backend.context)
    route = registry.route if registry.switch is not None else None
    batcher = Batcher(backend, route, config.max_batch, config.window_ms, config.max_queue, metrics)
    services = Services(batcher, metrics, config)

    async def fit(body: Any, gen: GenRequest) -> None:
        """Measure the prompt off the event loop; LimitExceeded when it does not fit."""
        explicit = (getattr(body, "max_completion_tokens", None) or body.max_tokens) is not None
        await asyncio.to_thread(limits.fit, backend, gen, explicit)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="forgetless", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.batcher, app.state.registry, app.state.metrics, app.state.config = batcher, registry, metrics, config
    app.add_middleware(BodyLimit, limit=config.max_body_bytes)
    _add_error_handlers(app, registry, config, metrics)

    @app.get("/health")
    async def health() -> JSONResponse:
        ok = batcher.running
        body = {"status": "ok" if ok else "starting", "model": registry.base_id, "queue_depth": batcher.depth}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/v1/models")
    async def models() -> s.ModelList:
        return s.ModelList(data=_model_cards(registry))

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> s.ModelCard:
        card = next((c for c in _model_cards(registry) if c.id == model_id), None)
        if card is None:
            raise UnknownModel(model_id)
        return card

    @app.get("/metrics")
    async def metrics_endpoint(format: str = "prometheus") -> Any:
        metrics.queue_depth = batcher.depth
        if format == "json":
            return JSONResponse(metrics.snapshot() | {"in_flight": batcher.in_flight})
        return PlainTextResponse(metrics.prometheus(), media_type="text/plain; version=0.0.4")

    @app.post(CHAT)
    async def chat(body: s.ChatCompletionRequest, request: Request) -> Any:
        target = registry.within_scope(registry.resolve(body.model), body.routing_text())
        limits.check_messages(len(body.messages))
        gen = _gen_request(body, target, config, messages=body.conversation(), routing=body.routing_text())
        await fit(body, gen)
        return await Exchange(services, request, body, target, ChatFormat(), gen).respond()

    @app.post(COMPLETIONS)
    async def completions(body: s.CompletionRequest, request: Request) -> Any:
        target = registry.within_scope(registry.resolve(body.model), body.text())
        gen = _gen_request(body, target, config, prompt=body.text(), routing=body.text())
        await fit(body, gen)
        return await Exchange(services, request, body, target, CompletionFormat(body), gen).respond()

    return app


def _model_cards(registry: Registry) -> list[s.ModelCard]:
    cards = [s.ModelCard(id=registry.base_id, kind="base", root=registry.base_id)]
    cards += [s.ModelCard(id="base", kind="base", root=registry.base_id)]
    if registry.switch is not None:
        cards += [s.ModelCard(id="auto", kind="router", root=registry.base_id)]
    return cards + [s.ModelCard(id=name, root=registry.base_id, parent=registry.base_id) for name in registry.adapters]


def _gen_request(body: Any, target: Target, config: ServeConfig, routing: str, **content: Any) -> GenRequest:
    requested = getattr(body, "max_completion_tokens", None) or body.max_tokens
    return GenRequest(
        **content,
        adapter=target.adapter,
        auto=target.auto,
        routing_text=routing,
        max_tokens=config.max_tokens(requested),
        temperature=body.temperature,
        top_p=body.top_p,
        seed=body.seed,
        stop=body.stop_list(),
    )


@dataclass
class Services:
    """What every request needs: the batcher, the metrics and the server limits."""

    batcher: Batcher
    metrics: Metrics
    config: ServeConfig


class Exchange:
    """One request and its answer: waits on its row, replies in one body or as server-sent events."""

    def __init__(self, services: Services, request: Request, body: Any, target: Target, fmt: Format, gen: GenRequest):
        self.services, self.request, self.body, self.target, self.fmt = services, request, body, target, fmt
        self.started = time.perf_counter()
        self.row = services.batcher.submit(gen)
        self.id = s.new_id(fmt.prefix)

    async def next(self) -> tuple[str, Any]:
        """The row's next event; ClientGone when the client disconnects while we wait."""
        task = asyncio.ensure_future(self.row.next_event())
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self.services.config.disconnect_poll_s)
                if done:
                    return task.result()
                if await self.request.is_disconnected():
                    raise ClientGone
        finally:
            if not task.done():
                task.cancel()

    def _record(self, status: int) -> None:
        seconds = time.perf_counter() - self.started if status == 200 else None
        self.services.metrics.record_request(self.fmt.endpoint, status, seconds)

    def _gone(self) -> None:
        self.services.batcher.cancel(self.row)
        self._record(499)

    def _failed(self, message: str) -> JSONResponse:
        self._record(500)
        return _error(500, message, "server_error", "generation_failed")

    async def respond(self) -> Any:
        """A JSON answer, or a StreamingResponse once the row's batch has started (its adapter is known)."""
        try:
            kind, value = await self.next()
            if kind == "error":
                return self._failed(value)
            if self.body.stream:
                found = headers(self.row)
                return StreamingResponse(self.events(), media_type="text/event-stream", headers=found)
            while kind != "done":
                kind, value = await self.next()
                if kind == "error":
                    return self._failed(value)
        except ClientGone:  # nobody reads this answer; the row has left the queue or stops generating
            self._gone()
            return _error(499, "client closed the request", "invalid_request_error", "client_closed")
        except asyncio.CancelledError:
            self._gone()
            raise
        self.services.metrics.completion_tokens += value.completion_tokens
        self._record(200)
        content = self.fmt.full(common(self.id, self.target, self.row, usage(value)), value)
        return JSONResponse(content, headers=headers(self.row))

    async def events(self) -> AsyncIterator[str]:
        """Server-sent events: the format's opening, delta and closing chunks, the usage chunk, `[DONE]`."""
        shared, first_token, finished = common(self.id, self.target, self.row), None, False
        try:
            for chunk in self.fmt.opening(shared):
                yield _event(chunk)
            while True:
                kind, value = await self.next()
                if kind == "text":
                    first_token = first_token or time.perf_counter()
                    for chunk in self.fmt.delta(shared, value):
                        yield _event(chunk)
                    continue
                if kind == "error":
                    yield _event(s.error_body(value, "server_error", "generation_failed"))
                    self._record(500)
                elif kind == "done":
                    for chunk in self.fmt.closing(shared, value):
                        yield _event(chunk)
                    if self.body.stream_options and self.body.stream_options.include_usage:
                        yield _event(self.fmt.usage_chunk(shared | {"usage": usage(value)}))
                    self.services.metrics.completion_tokens += value.completion_tokens
                    self._record(200)
                break
            finished = True
            if first_token is not None:
                self.services.metrics.first_token.append(first_token - self.started)
            yield "data: [DONE]\n\n"
        except ClientGone:
            pass
        finally:
            if not finished:
                self._gone()


def _event(payload: dict) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def _error(status: int, message: str, kind: str, code: str | None = None, param: str | None = None, headers=None):
    return JSONResponse(s.error_body(message, kind, code, param), status_code=status, headers=headers)


def _add_error_handlers(app: FastAPI, registry: Registry, config: ServeConfig, metrics: Metrics) -> None:
    def count(request: Request, status: int) -> None:
        path = request.url.path
        metrics.record_request(path if path in KNOWN else "other", status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        count(request, 400)
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return _error(400, "request body is not valid JSON", "invalid_request_error", "invalid_json")
        first = errors[0] if errors else {}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        message = f"{'.'.join(loc) or 'body'}: {first.get('msg', 'invalid value')}"
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more problems)"
        return _error(400, message, "invalid_request_error", "invalid_value", ".".join(loc) or None)

    @app.exception_handler(LimitExceeded)
    async def over_limit(request: Request, exc: LimitExceeded) -> JSONResponse:
        count(request, 400)
        return _error(400, exc.message, "invalid_request_error", exc.code, exc.param)

    @app.exception_handler(UnknownModel)
    async def unknown(request: Request, exc: UnknownModel) -> JSONResponse:
        count(request, 404)
        shown = json.dumps(str(exc.args[0])[:80])
        message = f"model {shown} does not exist; this server serves: {', '.join(registry.names())}"
        return _error(404, message, "invalid_request_error", "model_not_found", "model")

    @app.exception_handler(QueueFull)
    async def full(request: Request, exc: QueueFull) -> JSONResponse:
        count(request, 429)
        headers = {"Retry-After": str(config.retry_after_s)}
        return _error(429, f"server busy: {exc}", "rate_limit_error", "queue_full", headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        count(request, exc.status_code)
        return _error(exc.status_code, str(exc.detail), "invalid_request_error", headers=exc.headers)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        count(request, 500)
        error_id = uuid.uuid4().hex[:12]
        log.error("internal error [error id %s]", error_id, exc_info=exc)
        return _error(500, f"internal error; the server log has the details under error id {error_id}", "server_error")


class BodyLimit:
    """ASGI middleware: refuse request bodies larger than `limit` bytes (by Content-Length) with 413."""

    def __init__(self, app: Callable, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http":
            length = dict(scope.get("headers") or []).get(b"content-length", b"0")
            if not length.isdigit() or int(length) > self.limit:
                body = s.error_body(f"request body over {self.limit} bytes", "invalid_request_error", "too_large")
                response = JSONResponse(body, status_code=413)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
