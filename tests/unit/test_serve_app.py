"""The serving HTTP layer on a real loopback server with a model-free backend: shapes, streaming, routing,
batching under 32 concurrent clients, queue-full 429, client disconnects, bad input, path-like model names.

The model-backed server (tiny Llama + LoRA adapters + a trained switch) is in test_serve_model.py.
"""

from __future__ import annotations

import asyncio
import json
import random
import time

import httpx
import pytest

from forgetless.adapters.names import BASE
from forgetless.adapters.switch import Route
from forgetless.serve.app import ServeConfig, create_app
from forgetless.serve.backend import EchoBackend
from forgetless.serve.batching import GenRequest, Row
from forgetless.serve.registry import Registry
from forgetless.serve.server import ServerThread


class KeywordSwitch:
    """A stand-in switch: 'plural' prompts -> plural, prompts with digits -> numbers, else abstain to base."""

    task_names = ("plural", "numbers")

    def route(self, prompts: list[str]) -> list[Route]:
        routes = []
        for p in prompts:
            if "plural" in p:
                routes.append(Route("plural", "adapters/plural", 0.9, False, 0.9))
            elif any(c.isdigit() for c in p):
                routes.append(Route("numbers", "adapters/numbers", 0.8, False, 0.8))
            else:
                routes.append(Route(BASE, None, 0.5, True, 0.1))
        return routes


def make_registry(switch=True) -> Registry:
    adapters = {"plural": "adapters/plural", "numbers": "adapters/numbers"}
    return Registry(adapters, switch=KeywordSwitch() if switch else None, base_id="echo-base")


def start(backend=None, switch=True, **config) -> ServerThread:
    app = create_app(backend or EchoBackend("echo-base"), make_registry(switch), ServeConfig(**config))
    return ServerThread(app).start()


@pytest.fixture(scope="module")
def server():
    srv = start()
    yield srv
    srv.stop()


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def chat_body(text: str, model: str | None = "base", **extra) -> dict:
    body = {"messages": [{"role": "user", "content": text}], **extra}
    return body | ({"model": model} if model is not None else {})


def sse_events(text: str) -> list:
    lines = [line[len("data: ") :] for line in text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]", "a stream must end with data: [DONE]"
    return [json.loads(line) for line in lines[:-1]]


def test_health_models_and_default_model(client):
    assert client.get("/health").json()["status"] == "ok"
    ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert ids == ["echo-base", "base", "auto", "plural", "numbers"]
    answer = client.post("/v1/chat/completions", json=chat_body("What is the plural of goose?", model=None)).json()
    assert answer["model"] == "auto" and answer["adapter"] == "plural"  # a server with a switch defaults to auto


def test_each_model_can_be_retrieved_and_has_a_creation_time(client):
    listed = client.get("/v1/models").json()["data"]
    for card in listed:
        one = client.get(f"/v1/models/{card['id']}")
        assert one.status_code == 200 and one.json() == card and card["created"] > 1_700_000_000
    missing = client.get("/v1/models/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


def test_chat_completion_shape_and_adapter_header(client):
    r = client.post("/v1/chat/completions", json=chat_body("hello there", model="numbers", max_tokens=50))
    assert r.status_code == 200 and r.headers["x-forgetless-adapter"] == "numbers"
    body = r.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "echo[numbers]: hello there"}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}


def test_completion_echo_stop_and_length(client):
    r = client.post("/v1/completions", json={"model": "base", "prompt": "one two three four", "max_tokens": 3})
    choice = r.json()["choices"][0]
    assert r.json()["object"] == "text_completion" and choice == {
        "index": 0,
        "text": "echo[base]: one two",
        "finish_reason": "length",
        "logprobs": None,
    }
    r = client.post("/v1/completions", json={"model": "plural", "prompt": "a b c d", "stop": [" c"], "echo": True})
    assert r.json()["choices"][0]["text"] == "a b c decho[plural]: a b"
    assert r.json()["choices"][0]["finish_reason"] == "stop"


def test_auto_routes_each_prompt_and_reports_confidence(client):
    expect = {"What is the plural of mouse?": "plural", "Write 42 in words.": "numbers", "hi, how are you?": None}
    for prompt, adapter in expect.items():
        r = client.post("/v1/chat/completions", json=chat_body(prompt, model="auto"))
        assert r.json()["adapter"] == adapter and r.headers["x-forgetless-adapter"] == (adapter or "base")
        route = r.json()["route"]
        assert route["task"] == (adapter or BASE) and route["abstained"] == (adapter is None)
        assert float(r.headers["x-forgetless-route-confidence"]) == pytest.approx(route["confidence"], abs=1e-4)


@pytest.mark.parametrize("endpoint", ["/v1/chat/completions", "/v1/completions"])
def test_streaming_matches_non_streaming(client, endpoint):
    text = "stream me these words please"
    body = chat_body(text, model="auto") if "chat" in endpoint else {"model": "auto", "prompt": text}
    body |= {"max_tokens": 50}
    full = client.post(endpoint, json=body).json()
    r = client.post(endpoint, json=body | {"stream": True, "stream_options": {"include_usage": True}})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    usage = events.pop()
    assert usage["choices"] == [] and usage["usage"] == full["usage"]
    if "chat" in endpoint:
        assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        streamed = "".join(e["choices"][0]["delta"].get("content", "") for e in events)
        assert streamed == full["choices"][0]["message"]["content"]
        assert all(e["object"] == "chat.completion.chunk" for e in events)
    else:
        streamed = "".join(e["choices"][0]["text"] for e in events)
        assert streamed == full["choices"][0]["text"]
    assert events[-1]["choices"][0]["finish_reason"] == "stop"
    assert len({e["id"] for e in events}) == 1


def test_openai_client(server):
    openai = pytest.importorskip("openai")
    api = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    answer = api.chat.completions.create(model="plural", messages=[{"role": "user", "content": "geese"}])
    assert answer.choices[0].message.content == "echo[plural]: geese" and answer.model_extra["adapter"] == "plural"
    chunks = list(api.chat.completions.create(model="base", messages=[{"role": "user", "content": "a b"}], stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo[base]: a b"
    completion = api.completions.create(model="numbers", prompt="x y", max_tokens=10)
    assert completion.choices[0].text == "echo[numbers]: x y"
    raw = api.chat.completions.with_raw_response.create(model="auto", messages=[{"role": "user", "content": "7"}])
    assert raw.headers["x-forgetless-adapter"] == "numbers"
    assert [m.id for m in api.models.list()] == ["echo-base", "base", "auto", "plural", "numbers"]
    with pytest.raises(openai.NotFoundError):
        api.chat.completions.create(model="../../etc", messages=[{"role": "user", "content": "x"}])


@pytest.mark.parametrize("name", ["../../etc", "/etc/passwd", "..", "plural/../numbers", "adapters/plural", "PLURAL"])
def test_path_like_or_unknown_model_is_404(client, name):
    for endpoint, body in [("/v1/chat/completions", chat_body("x", model=name)), ("/v1/completions", {})]:
        r = client.post(endpoint, json=body or {"model": name, "prompt": "x"})
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "model_not_found" and r.json()["error"]["param"] == "model"


BAD_CHAT = [
    "{",
    "[]",
    '"just a string"',
    json.dumps({"model": "base"}),
    json.dumps({"messages": []}),
    json.dumps({"messages": "hi"}),
    json.dumps({"messages": [{"role": "wizard", "content": "x"}]}),
    json.dumps({"messages": [{"role": "user", "content": 5}]}),
    json.dumps({"messages": [{"role": "user"}]}),
    json.dumps(chat_body("x", temperature="hot")),
    json.dumps(chat_body("x", temperature=-1)),
    json.dumps(chat_body("x", top_p=0)),
    json.dumps(chat_body("x", max_tokens=0)),
    json.dumps(chat_body("x", max_tokens="lots")),
    json.dumps(chat_body("x", n=2)),
    json.dumps(chat_body("x", stream="yes please")),
    json.dumps(chat_body("x", stop=["a", "b", "c", "d", "e"])),
    json.dumps(chat_body("x", model=5)),
    json.dumps(chat_body("x", max_tokens=True)),  # strict types, as OpenAI's API
    json.dumps(chat_body("x", stream="yes")),
    json.dumps(chat_body("x", seed=2**80)),
    json.dumps(chat_body("x", stop="\ud800")),
    json.dumps(chat_body("x", logprobs=True)),
    json.dumps(chat_body("x", top_logprobs=3)),
    json.dumps(chat_body("lone \ud800 surrogate")),
    json.dumps({"messages": [{"role": "system", "content": "\udfff"}, {"role": "user", "content": "hi"}]}),
    json.dumps({"messages": [{"role": "user", "content": [{"type": "text", "text": "a\ud800"}]}]}),
]
BAD_COMPLETION = [
    json.dumps({"prompt": ["a", "b"]}),
    json.dumps({"model": "base"}),
    json.dumps({"prompt": 3}),
    json.dumps({"model": "base", "prompt": "x\ud800"}),
    json.dumps({"model": "base", "prompt": ["\ud800"]}),
    json.dumps({"model": "base", "prompt": "x", "echo": "true"}),
    json.dumps({"model": "base", "prompt": "x", "logprobs": 2}),
]


@pytest.mark.parametrize(
    "endpoint, body", [("/v1/chat/completions", b) for b in BAD_CHAT] + [("/v1/completions", b) for b in BAD_COMPLETION]
)
def test_bad_input_is_4xx_with_an_openai_error_body(client, endpoint, body):
    r = client.post(endpoint, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]


def test_oversized_body_and_unknown_route(client):
    r = client.post("/v1/completions", json={"model": "base", "prompt": "x" * 1_100_000})
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
    assert client.get("/v1/nothing").status_code == 404
    assert client.get("/v1/chat/completions").status_code == 405


def test_max_tokens_is_capped_by_the_server():
    with start(max_tokens_cap=3) as srv:
        r = httpx.post(f"{srv.url}/v1/completions", json={"model": "base", "prompt": "a b c d e f", "max_tokens": 999})
    assert r.json()["usage"]["completion_tokens"] == 3 and r.json()["choices"][0]["finish_reason"] == "length"


async def _storm(url: str, clients: int, seconds: float) -> list[tuple[int, str, str]]:
    """`clients` concurrent clients sending requests for `seconds`; returns (status, expected, got)."""
    deadline = time.monotonic() + seconds
    models = ["base", "plural", "numbers", "auto"]

    async def one_client(index: int, http: httpx.AsyncClient) -> list[tuple[int, str, str]]:
        rng, results = random.Random(index), []
        while time.monotonic() < deadline:
            model, words = rng.choice(models), f"client {index} says {rng.randint(0, 99)}"
            r = await http.post("/v1/chat/completions", json=chat_body(words, model=model))
            adapter = "numbers" if model == "auto" else model  # the prompt has digits: auto -> numbers
            got = r.json()["choices"][0]["message"]["content"] if r.status_code == 200 else r.text
            results.append((r.status_code, f"echo[{adapter}]: {words}", got))
        return results

    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http:
        per_client = await asyncio.gather(*(one_client(i, http) for i in range(clients)))
    return [r for rs in per_client for r in rs]


def test_32_concurrent_clients_no_errors_and_mixed_batches():
    backend = EchoBackend("echo-base", step_s=0.002)
    with start(backend, max_batch=16, window_ms=5) as srv:
        results = asyncio.run(_storm(srv.url, clients=32, seconds=2.0))
        stats = httpx.get(f"{srv.url}/metrics", params={"format": "json"}).json()
    assert len(results) >= 64
    assert [r for r in results if r[0] != 200] == []
    assert [r for r in results if r[1] != r[2]] == []  # every row got its own adapter's answer
    assert stats["max_batch_size"] > 1 and max(backend.batch_sizes) <= 16
    assert stats["requests"]["/v1/chat/completions"]["200"] == len(results)
    assert set(stats["adapter_rows"]) == {"base", "plural", "numbers"}


async def _burst(url: str, n: int, words: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        body = chat_body(" ".join(["w"] * words), model="base", max_tokens=100)
        return await asyncio.gather(*(http.post("/v1/chat/completions", json=body) for _ in range(n)))


async def _good_and_bad_together(url: str) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        bodies = [chat_body("fine", model="base"), chat_body("bad \ud800", model="base")] * 3
        headers = {"content-type": "application/json"}
        posts = (http.post("/v1/chat/completions", content=json.dumps(body), headers=headers) for body in bodies)
        return await asyncio.gather(*posts)


def test_a_lone_surrogate_fails_alone_never_its_batch():
    with start(EchoBackend(step_s=0.01), max_batch=8, window_ms=50) as srv:
        responses = asyncio.run(_good_and_bad_together(srv.url))
    assert [r.status_code for r in responses] == [200, 400] * 3
    assert "surrogate" in responses[1].json()["error"]["message"]


class PoisonBackend(EchoBackend):
    """Fails any batch holding the prompt 'poison' (as a tokenizer failing on one row would)."""

    def generate(self, rows):
        if any("poison" in self._text(row) for row in rows):
            raise RuntimeError("secret internal detail /home/x/model.py:12")
        return super().generate(rows)


async def _with_poison(url: str) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        bodies = [chat_body(text, model="base") for text in ("fine one", "poison", "fine two", "fine three")]
        return await asyncio.gather(*(http.post("/v1/chat/completions", json=body) for body in bodies))


def test_a_row_that_breaks_its_batch_fails_alone_without_leaking_internals():
    backend = PoisonBackend(step_s=0.01)
    with start(backend, max_batch=8, window_ms=80) as srv:
        responses = asyncio.run(_with_poison(srv.url))
    assert [r.status_code for r in responses] == [200, 500, 200, 200]
    assert max(backend.batch_sizes, default=0) >= 1 and "fine one" in responses[0].text
    message = responses[1].json()["error"]["message"]
    assert "error id" in message and "secret" not in message and "RuntimeError" not in message


class BrokenTokenizer(EchoBackend):  # fails outside generation: the app's last-resort handler answers
    def tokenize(self, text):
        raise RuntimeError("secret internal detail /home/x/tokenizer.py:7")


def test_an_unexpected_error_is_a_500_with_an_error_id_only(caplog):
    with start(BrokenTokenizer()) as srv:
        r = httpx.post(f"{srv.url}/v1/completions", json={"model": "base", "prompt": "x"})
    assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"
    assert "error id" in r.json()["error"]["message"] and "secret" not in r.text and "RuntimeError" not in r.text
    assert any("secret internal detail" in str(record.exc_info) for record in caplog.records)  # the log keeps it


def test_full_queue_answers_429_with_retry_after():
    with start(EchoBackend(step_s=0.03), max_batch=1, max_queue=2, window_ms=0, retry_after_s=3) as srv:
        responses = asyncio.run(_burst(srv.url, 8, words=8))
        stats = httpx.get(f"{srv.url}/metrics", params={"format": "json"}).json()
        assert httpx.get(f"{srv.url}/health").status_code == 200
    statuses = [r.status_code for r in responses]
    assert set(statuses) == {200, 429} and statuses.count(200) >= 2 and statuses.count(429) >= 3
    rejected = next(r for r in responses if r.status_code == 429)
    assert rejected.headers["retry-after"] == "3" and rejected.json()["error"]["code"] == "queue_full"
    assert stats["rejected_queue_full"] == statuses.count(429)


def _wait_for(predicate, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_disconnected_client_frees_its_queue_slot_and_its_batch_row():
    backend = EchoBackend(step_s=0.05)
    with start(backend, max_batch=1, window_ms=0, disconnect_poll_s=0.05) as srv:
        url = f"{srv.url}/v1/chat/completions"

        def metrics() -> dict:
            return httpx.get(f"{srv.url}/metrics", params={"format": "json"}).json()

        async def scenario():
            async with httpx.AsyncClient(timeout=30) as http:
                slow = asyncio.create_task(http.post(url, json=chat_body(" ".join(["w"] * 15), max_tokens=50)))
                await asyncio.sleep(0.2)  # the slow request now occupies the worker
                with pytest.raises(httpx.ReadTimeout):  # this one waits in the queue, then its client gives up
                    await http.post(url, json=chat_body("never answered"), timeout=0.3)
                return await slow

        assert asyncio.run(scenario()).status_code == 200
        assert _wait_for(lambda: metrics()["cancelled"] == 1 and metrics()["queue_depth"] == 0)
        assert backend.batch_sizes == [1]  # the abandoned request was never generated

        with httpx.stream("POST", url, json=chat_body(" ".join(["w"] * 200), max_tokens=500, stream=True)) as r:
            for _, _line in zip(range(4), r.iter_lines(), strict=False):
                pass  # read a few chunks, then hang up mid-generation
        started = time.monotonic()
        assert _wait_for(lambda: metrics()["cancelled"] == 2)
        r = httpx.post(url, json=chat_body("quick"), timeout=10)
        assert r.status_code == 200 and time.monotonic() - started < 5  # 200 words x 50 ms were not generated


def test_stop_strings_are_never_streamed_partially():
    async def run(deltas: list[str], stops: list[str]) -> tuple[list[str], object]:
        row = Row(GenRequest(prompt="x", stop=stops), asyncio.get_running_loop())
        for delta in deltas:
            row.feed(delta)
        row.complete("length", 1, len(deltas))
        texts, done = [], None
        async for kind, value in row.events():
            texts += [value] if kind == "text" else []
            done = value if kind == "done" else done
        return texts, done

    texts, done = asyncio.run(run(["hel", "lo S", "TO", "P and more"], ["STOP"]))
    assert "".join(texts) == "hello " and done.text == "hello " and done.finish_reason == "stop"
    assert all("S" not in t for t in texts)
    texts, done = asyncio.run(run(["abc S", "T"], ["STOP"]))  # a prefix that never completes is released at the end
    assert "".join(texts) == "abc ST" and done.finish_reason == "length"
    texts, done = asyncio.run(run(["a", "bXY", "Z"], ["XYZ", "bX"]))  # the earliest match wins
    assert done.text == "a" and "".join(texts) == "a"
