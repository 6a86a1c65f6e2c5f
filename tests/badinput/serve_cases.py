"""Server cases: bad requests a hostile or careless client sends to `forgetless serve` (issue 15's first).

Each is sent together with a valid request, and followed by one: the bad one gets its 4xx, the others 200.

    from tests.badinput.serve_cases import SERVE_CASES
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

from tests.badinput.table import GOOD, ServeCase, check_error

CHAT, COMPLETIONS = "/v1/chat/completions", "/v1/completions"


def chat(**fields) -> dict:
    """A valid chat body with `fields` changed."""
    return {**GOOD, **fields}


def user(text: str) -> dict:
    return chat(messages=[{"role": "user", "content": text}])


def completion(**fields) -> dict:
    return {"model": "base", "prompt": "Say hi.", "max_tokens": 2, **fields}


def _surrogate_batched_with_valid_ones(url: str) -> list[str]:
    """Three valid and three lone-surrogate requests at once: only the bad rows fail, with a 400."""
    import httpx

    async def send() -> list:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            bodies = [json.dumps(GOOD), json.dumps(user("bad \ud800"))] * 3
            headers = {"content-type": "application/json"}
            return await asyncio.gather(*(http.post(CHAT, content=b, headers=headers) for b in bodies))

    responses = asyncio.run(send())
    problems = [p for r in responses[1::2] for p in check_error(r, 400)]
    return problems + [f"valid request got {r.status_code}" for r in responses[::2] if r.status_code != 200]


def _disconnect_during_prefill(url: str) -> list[str]:
    """A client that gives up while its long prompt is processed must not hold its slot."""
    import httpx

    long_prompt = user(" ".join(["word"] * 900))
    with httpx.Client(base_url=url) as http:
        with contextlib.suppress(httpx.TimeoutException):
            http.post(CHAT, json=long_prompt, timeout=0.01)
        started = time.monotonic()
        response = http.post(CHAT, json=GOOD, timeout=30)
    seconds = time.monotonic() - started
    problems = [f"next request got {response.status_code}"] if response.status_code != 200 else []
    return problems + ([f"next request waited {seconds:.1f} s"] if seconds > 10 else [])


ISSUE_SERVE_CASES = [
    ServeCase("a lone surrogate in a user message", user("lone \ud800 surrogate")),
    ServeCase(
        "a lone surrogate in a system message",
        chat(messages=[{"role": "system", "content": "\udfff"}, *GOOD["messages"]]),
    ),
    ServeCase("a lone surrogate in a completions prompt", completion(prompt="x\ud800"), path=COMPLETIONS),
    ServeCase("lone surrogates batched with valid requests", run=_surrogate_batched_with_valid_ones),
    ServeCase("seed 2**80", chat(seed=2**80)),
    ServeCase("max_tokens: true", chat(max_tokens=True)),
    ServeCase('stream: "yes"', chat(stream="yes")),
    ServeCase("a ~900 KB prompt (over the context)", user("hello " * 150_000), code="context_length_exceeded"),
    ServeCase("5,000 messages", chat(messages=[{"role": "user", "content": "hi"}] * 5000)),
    ServeCase("a client that disconnects during prefill", run=_disconnect_during_prefill),
    ServeCase("malformed JSON (the error leaks no internals)", "{"),
]
for _case in ISSUE_SERVE_CASES:
    _case.issue = True

MORE_SERVE_CASES = [
    ServeCase("a JSON array body", "[]"),
    ServeCase("a JSON string body", '"hi"'),
    ServeCase("an empty body", ""),
    ServeCase("100,000 nested arrays", "[" * 100_000),
    ServeCase("no messages", {"model": "base"}),
    ServeCase("messages: a string", chat(messages="hi")),
    ServeCase("messages: []", chat(messages=[])),
    ServeCase("role wizard", chat(messages=[{"role": "wizard", "content": "x"}])),
    ServeCase("content: 5", chat(messages=[{"role": "user", "content": 5}])),
    ServeCase("a message without content", chat(messages=[{"role": "user"}])),
    ServeCase(
        "an image content part",
        chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]),
    ),
    ServeCase("temperature -1", chat(temperature=-1)),
    ServeCase('temperature "hot"', chat(temperature="hot")),
    ServeCase("temperature NaN", json.dumps(GOOD)[:-1] + ', "temperature": NaN}'),
    ServeCase("top_p 0", chat(top_p=0)),
    ServeCase("max_tokens 0", chat(max_tokens=0)),
    ServeCase("max_tokens -1", chat(max_tokens=-1)),
    ServeCase("max_tokens 1.5", chat(max_tokens=1.5)),
    ServeCase('max_tokens "lots"', chat(max_tokens="lots")),
    ServeCase("max_completion_tokens 0", chat(max_completion_tokens=0)),
    ServeCase("n 2", chat(n=2)),
    ServeCase("five stop strings", chat(stop=["a", "b", "c", "d", "e"])),
    ServeCase('seed "1"', chat(seed="1")),
    ServeCase('stream_options.include_usage "yes"', chat(stream=True, stream_options={"include_usage": "yes"})),
    ServeCase("logprobs: true", chat(logprobs=True)),
    ServeCase("model: 5", chat(model=5)),
    ServeCase("an unknown model", chat(model="gpt-4"), status=404, code="model_not_found"),
    ServeCase("a path-like model name", chat(model="../../etc/passwd"), status=404, code="model_not_found"),
    ServeCase("completions: two prompts", completion(prompt=["a", "b"]), path=COMPLETIONS),
    ServeCase("completions: prompt 3", completion(prompt=3), path=COMPLETIONS),
    ServeCase('completions: echo "true"', completion(echo="true"), path=COMPLETIONS),
    ServeCase("completions: no prompt", {"model": "base"}, path=COMPLETIONS),
    ServeCase("a body over the size limit", completion(prompt="x" * 1_100_000), path=COMPLETIONS, status=413),
    ServeCase("GET on chat completions", None, method="GET", status=405),
    ServeCase("PUT on completions", completion(), path=COMPLETIONS, method="PUT", status=405),
    ServeCase("an unknown route", {}, path="/v1/nothing", status=404),
    ServeCase("an unknown model card", None, path="/v1/models/nope", method="GET", status=404),
]

SERVE_CASES = ISSUE_SERVE_CASES + MORE_SERVE_CASES

__all__ = ["ISSUE_SERVE_CASES", "MORE_SERVE_CASES", "SERVE_CASES"]
