"""What one request may take from `forgetless serve`: its size, and the model's time once its client is gone.

Size: a prompt over the model's context (or over `--max-prompt-tokens`), prompt + max_tokens over the
context, or more than `--max-messages` messages is a 400 in OpenAI's shape, answered before the request
is queued, and fast even for a ~900 KB prompt (refused before tokenizing) or 5,000 messages.
Time: a client that hangs up while its prompt is being prefilled frees the model within one prefill
chunk. The model is the tiny random Llama (context 1024, the real SmolLM2 tokenizer); a forward
pre-hook makes every forward cost `delay` seconds per token so that a long prefill is slow on purpose.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from forgetless.cli.app import main
from forgetless.errors import ConfigError
from forgetless.serve.app import ServeConfig, create_app
from forgetless.serve.backend import EchoBackend, HFBackend
from forgetless.serve.batching import GenRequest, Row
from forgetless.serve.limits import Limits, _shrink_factor, max_token_chars
from forgetless.serve.registry import Registry
from forgetless.serve.server import ServerThread
from tests.conftest import build_tiny_llama

CHAT, COMPLETIONS = "/v1/chat/completions", "/v1/completions"
PER_TOKEN_S = 0.01  # the slow model: 10 ms per token per forward


@pytest.fixture(scope="module")
def slow():
    """Seconds per token that every forward of the tiny model sleeps (0: full speed)."""
    return {"per_token": 0.0}


@pytest.fixture(scope="module")
def backend(tokenizer, slow):
    model = build_tiny_llama(tokenizer).eval()
    model.get_input_embeddings().register_forward_pre_hook(
        lambda m, args: time.sleep(slow["per_token"] * args[0].shape[-1])
    )
    return HFBackend(model, tokenizer, "tiny", mode="base", precision="fp32", prefill_chunk=32)


@pytest.fixture(scope="module")
def server(backend):
    config = ServeConfig(window_ms=0, max_batch=4, disconnect_poll_s=0.05)
    with ServerThread(create_app(backend, Registry({}, base_id="tiny"), config)) as srv:
        yield srv


def chat(text: str, **extra) -> dict:
    return {"model": "base", "messages": [{"role": "user", "content": text}], **extra}


def assert_refused(r: httpx.Response, param: str, code: str, *phrases: str) -> None:
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)
    assert all(p in error["message"] for p in phrases), error["message"]


@pytest.mark.parametrize("endpoint", [CHAT, COMPLETIONS])
def test_a_900_kb_prompt_is_refused_fast_without_tokenizing(server, backend, endpoint, monkeypatch):
    calls = []
    monkeypatch.setattr(backend, "tokenize", lambda text: calls.append(len(text)) or [])
    text = "many words " * 82_000  # ~900 KB, ~160k tokens
    body = chat(text) if endpoint == CHAT else {"model": "base", "prompt": text}
    started = time.monotonic()
    r = httpx.post(f"{server.url}{endpoint}", json=body, timeout=60)
    assert time.monotonic() - started < 5
    param = "messages" if endpoint == CHAT else "prompt"
    assert_refused(r, param, "context_length_exceeded", "more than 1024 tokens", "model's context")
    assert calls == []  # the length bound refused it: the tokenizer never saw it


def test_prompt_plus_max_tokens_must_fit_the_context(server):
    text = "word " * 970  # ~1000 tokens with the template, under 1024: the prompt alone fits
    r = httpx.post(f"{server.url}{CHAT}", json=chat(text, max_tokens=100), timeout=60)
    assert_refused(r, "messages", "context_length_exceeded", "maximum context length is 1024 tokens", "100 in the")
    r = httpx.post(f"{server.url}{CHAT}", json=chat(text), timeout=60)  # no max_tokens: the default shrinks
    usage = r.json()["usage"]
    assert r.status_code == 200 and usage["prompt_tokens"] > 1000 and usage["total_tokens"] <= 1024
    r = httpx.post(f"{server.url}{COMPLETIONS}", json={"model": "base", "prompt": "word " * 1020}, timeout=60)
    assert_refused(r, "prompt", "context_length_exceeded", "in the prompt", "16 in the completion")


def test_5000_messages_are_refused_fast(server):
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}"} for i in range(5000)]
    started = time.monotonic()
    r = httpx.post(f"{server.url}{CHAT}", json={"model": "base", "messages": messages}, timeout=60)
    assert time.monotonic() - started < 5
    assert_refused(r, "messages", "too_many_messages", "5000 messages", "at most 1000", "--max-messages")


def test_configured_limits_name_their_option():
    app = create_app(EchoBackend("echo", context=100), Registry({}), ServeConfig(max_prompt_tokens=5, max_messages=2))
    with ServerThread(app) as srv:
        assert httpx.post(f"{srv.url}{CHAT}", json=chat("one two three four five")).status_code == 200
        r = httpx.post(f"{srv.url}{CHAT}", json=chat("one two three four five six"))
        assert_refused(r, "messages", "context_length_exceeded", "6 tokens", "at most 5", "--max-prompt-tokens N")
        r = httpx.post(f"{srv.url}{COMPLETIONS}", json={"prompt": "1 2 3 4 5 6", "max_tokens": 2})
        assert_refused(r, "prompt", "context_length_exceeded", "the prompt has 6 tokens")
        messages = chat("a")["messages"] * 3
        r = httpx.post(f"{srv.url}{CHAT}", json={"messages": messages})
        assert_refused(r, "messages", "too_many_messages", "3 messages", "at most 2", "--max-messages N")
    with pytest.raises(ConfigError, match="context"):
        ServeConfig(max_prompt_tokens=101).limits(100)


def test_cli_limits_reach_the_server(tiny_model_dir, monkeypatch, capsys):
    answers = {}

    def fake_serve_forever(app, host, port, log_level):
        with ServerThread(app) as srv:
            answers["r"] = httpx.post(f"{srv.url}{CHAT}", json={"messages": chat("x")["messages"] * 3})

    monkeypatch.setattr("forgetless.serve.server.serve_forever", fake_serve_forever)
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--model", str(tiny_model_dir), "--max-messages", "2", "--max-prompt-tokens", "100"])
    assert exit_info.value.code == 0
    assert_refused(answers["r"], "messages", "too_many_messages", "at most 2")
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--model", str(tiny_model_dir), "--max-prompt-tokens", "5000"])
    assert exit_info.value.code == 2 and "1024" in capsys.readouterr().err


TEXTS = [
    "plain words of English text, with punctuation; and numbers 12345.",
    "x" * 5000,
    "#" * 5000,
    " " * 5000,
    "\n" * 3000,
    "漢字かなカナ" * 500,
    "🙂👍🏽" * 500,
    "e\u0301" * 1000,
    "<|im_start|>" * 300,
]


def test_the_length_bound_never_exceeds_the_real_token_count(tokenizer):
    chars = max_token_chars(tokenizer)
    assert chars is not None and chars >= 12
    for text in TEXTS:
        assert len(tokenizer(text, add_special_tokens=False)["input_ids"]) >= len(text) / chars, text[:20]
    assert _shrink_factor(None) == 1 and _shrink_factor({"type": "NFC"}) == 4
    assert _shrink_factor({"type": "Sequence", "normalizers": [{"type": "Prepend"}, {"type": "NFKC"}]}) == 4
    assert _shrink_factor({"type": "Strip"}) is None  # could drop any amount of text: no bound, always tokenize
    assert _shrink_factor({"type": "Replace", "pattern": {"String": "  "}, "content": " "}) is None


def test_limits_without_a_bound_still_tokenize():
    request = GenRequest(prompt="a b c", max_tokens=2)
    Limits(context=10, max_prompt_tokens=10, max_messages=5).fit(EchoBackend(), request, explicit=True)
    assert request.prompt_ids == [1, 1, 1] and request.max_tokens == 2


async def _generate(backend: HFBackend, prompts: list[str], max_tokens: int = 6, cancel_after: float | None = None):
    """Generate rows in a worker thread (as the batcher does); cancel them all after `cancel_after` s."""
    loop = asyncio.get_running_loop()
    rows = [Row(GenRequest(prompt=p, max_tokens=max_tokens), loop) for p in prompts]
    worker = loop.run_in_executor(None, backend.generate, rows)
    if cancel_after is not None:
        await asyncio.sleep(cancel_after)
        for row in rows:
            row.cancelled = True
    await worker
    return [[value async for kind, value in row.events() if kind == "done"].pop() for row in rows]


def test_chunked_prefill_gives_what_one_forward_gives(backend, monkeypatch):
    prompts = ["short one", "a longer prompt " * 12, "the longest prompt of this batch " * 20]
    forwards = []
    hook = backend.model.get_input_embeddings().register_forward_pre_hook(lambda m, a: forwards.append(a[0].shape))
    try:
        chunked = asyncio.run(_generate(backend, prompts))
        monkeypatch.setattr(backend, "prefill_chunk", 4096)
        whole = asyncio.run(_generate(backend, prompts))
    finally:
        hook.remove()
    assert [r.text for r in chunked] == [r.text for r in whole] and all(r.completion_tokens for r in whole)
    assert [shape[-1] for shape in forwards[:3]] == [32, 32, 32]  # the prompt (~120 tokens) went in chunks


def test_cancelling_during_prefill_stops_within_one_chunk(backend, slow, monkeypatch):
    monkeypatch.setitem(slow, "per_token", PER_TOKEN_S)
    started = time.monotonic()
    (result,) = asyncio.run(_generate(backend, ["word " * 500], cancel_after=0.3))  # prefill: 5 s unchunked
    assert time.monotonic() - started < 0.3 + 32 * PER_TOKEN_S + 0.5
    assert result.finish_reason == "cancelled" and result.completion_tokens == 0


def _hang_up_during_prefill(url: str, stream: bool) -> None:
    body = chat("word " * 800, max_tokens=4, stream=stream)  # ~800 tokens: 8 s of prefill unchunked
    if not stream:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}{CHAT}", json=body, timeout=0.5)
        return
    with httpx.stream("POST", f"{url}{CHAT}", json=body, timeout=10) as r:
        next(r.iter_lines())  # the stream is open (its batch started); hang up during the prefill


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_gone_during_prefill_frees_the_model_for_the_next(server, slow, monkeypatch, stream):
    monkeypatch.setitem(slow, "per_token", PER_TOKEN_S)
    _hang_up_during_prefill(server.url, stream)
    started = time.monotonic()
    r = httpx.post(f"{server.url}{CHAT}", json=chat("hi", max_tokens=2), timeout=30)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] <= 2
    assert time.monotonic() - started < 3  # not the ~8 s that the abandoned prefill would take
