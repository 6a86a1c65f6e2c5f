"""Every answer of `forgetless serve` validates against the openai SDK's own pydantic types.

`Type.model_validate(json)` is pydantic's strict path (the SDK itself only `construct`s stream chunks,
unless a client opts into `_strict_response_validation`), so a field the SDK types forbid fails here:
chat and completions, whole and streamed (every chunk, the usage chunk included), /v1/models and
/v1/models/{id}. The model-free EchoBackend serves: the formats do not depend on the backend.
One deliberate exception: completions stream chunks before the last carry `finish_reason: null`, as
OpenAI's own streams do, which the SDK's `Completion` type does not allow (see serve/formats.py); they are
validated against that type with only this field made optional, and the closing chunk against it as is.
"""

from __future__ import annotations

from typing import Literal

import httpx
import pytest

from tests.unit.test_serve_app import chat_body, sse_events, start

openai_types = pytest.importorskip("openai.types")
from openai.types import Completion, CompletionChoice, Model  # noqa: E402
from openai.types.chat import ChatCompletion, ChatCompletionChunk  # noqa: E402


class StreamedCompletionChoice(CompletionChoice):
    """The SDK's choice with the one change OpenAI's own streams need: finish_reason null before the end."""

    finish_reason: Literal["stop", "length", "content_filter"] | None  # type: ignore[assignment]


class CompletionChunk(Completion):
    choices: list[StreamedCompletionChoice]  # type: ignore[assignment]


CHAT, COMPLETIONS = "/v1/chat/completions", "/v1/completions"
USAGE = {"stream_options": {"include_usage": True}}


@pytest.fixture(scope="module")
def client():
    with start() as server, httpx.Client(base_url=server.url, timeout=10) as http:
        yield http


def chat_bodies() -> list[dict]:
    return [
        chat_body("hello there", model="auto"),
        chat_body("What is the plural of goose?", model="auto", max_tokens=2),  # finish_reason length
        chat_body("one two three", model="plural", stop=["two"]),
        chat_body("7 and 8", model="numbers", **USAGE),
    ]


def completion_bodies() -> list[dict]:
    return [
        {"model": "auto", "prompt": "hello there"},
        {"model": "base", "prompt": "one two three four", "max_tokens": 2},
        {"model": "plural", "prompt": "a b c d", "stop": [" c"], "echo": True},
        {"model": "numbers", "prompt": ["x 9"], **USAGE},
    ]


@pytest.mark.parametrize("body", chat_bodies())
def test_chat_completion_validates(client, body):
    r = client.post(CHAT, json=body)
    assert r.status_code == 200
    answer = ChatCompletion.model_validate(r.json())
    assert answer.choices[0].message.content.startswith("echo[")


@pytest.mark.parametrize("body", chat_bodies())
def test_every_chat_stream_chunk_validates(client, body):
    r = client.post(CHAT, json=body | {"stream": True})
    chunks = [ChatCompletionChunk.model_validate(event) for event in sse_events(r.text)]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == client.post(CHAT, json=body).json()["choices"][0]["message"]["content"]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")


@pytest.mark.parametrize("body", completion_bodies())
def test_completion_validates(client, body):
    r = client.post(COMPLETIONS, json=body)
    assert r.status_code == 200
    assert Completion.model_validate(r.json()).choices[0].finish_reason in ("stop", "length")


@pytest.mark.parametrize("body", completion_bodies())
def test_every_completion_stream_chunk_validates(client, body):
    r = client.post(COMPLETIONS, json=body | {"stream": True})
    events = sse_events(r.text)
    chunks = [CompletionChunk.model_validate(event) for event in events]
    finishing = [event for event in events if event["choices"] and event["choices"][0]["finish_reason"]]
    assert len(finishing) == 1 and Completion.model_validate(finishing[0])  # the closing chunk: the SDK's own type
    assert len(events) >= 2 + ("stream_options" in body)  # text arrives as it is generated, then the finish
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == client.post(COMPLETIONS, json=body).json()["choices"][0]["text"]
    assert (chunks[-1].usage is not None) == ("stream_options" in body)


def test_models_validate(client):
    listed = client.get("/v1/models").json()
    assert listed["object"] == "list" and len(listed["data"]) == 5
    for card in listed["data"]:
        assert Model.model_validate(card).id == card["id"]
        assert Model.model_validate(client.get(f"/v1/models/{card['id']}").json()) == Model.model_validate(card)
