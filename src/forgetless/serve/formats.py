"""The OpenAI shapes `forgetless serve` answers with: whole bodies, stream chunks and response headers.

    fmt = ChatFormat()                       # or CompletionFormat(body)
    fmt.full(common(id, target, row, usage(result)), result)           # the JSON body of a whole answer
    fmt.opening(common) + fmt.delta(common, text) + fmt.closing(common, result)  # a stream's chunks

Every body and chunk validates against the openai SDK's own types (tests/unit/test_serve_openai_types.py):
`ChatCompletion`, `ChatCompletionChunk`, `Completion` (also the type of a completions stream chunk, except
for the `finish_reason: null` of the chunks before the last, which OpenAI sends too: see CompletionFormat).
"""

from __future__ import annotations

from typing import Any

from forgetless.serve import schemas as s
from forgetless.serve.batching import GenResult, Row
from forgetless.serve.registry import Target

CHAT, COMPLETIONS = "/v1/chat/completions", "/v1/completions"


class ChatFormat:
    """Bodies and stream chunks of /v1/chat/completions: a role chunk, one chunk per delta, a finish chunk."""

    endpoint, prefix = CHAT, "chatcmpl"

    def full(self, common: dict, result: GenResult) -> dict:
        choice = s.ChatChoice(message=s.ChatChoiceMessage(content=result.text), finish_reason=result.finish_reason)
        return s.ChatCompletion(**common, choices=[choice]).model_dump()

    def opening(self, common: dict) -> list[dict]:
        return [self._chunk(common, {"role": "assistant", "content": ""})]

    def delta(self, common: dict, text: str) -> list[dict]:
        return [self._chunk(common, {"content": text})]

    def closing(self, common: dict, result: GenResult) -> list[dict]:
        return [self._chunk(common, {}, result.finish_reason)]

    def usage_chunk(self, common: dict) -> dict:
        return _dump(s.ChatCompletionChunk(**common, choices=[]))

    @staticmethod
    def _chunk(common: dict, delta: dict[str, str], finish: str | None = None) -> dict:
        return _dump(s.ChatCompletionChunk(**common, choices=[s.ChatChunkChoice(delta=delta, finish_reason=finish)]))


class CompletionFormat:
    """Bodies and stream chunks of /v1/completions (`echo` prepends the prompt).

    A stream sends a chunk per delta with `finish_reason: null`, then an empty chunk with the true
    finish_reason: what OpenAI's API and vLLM send. The SDK's `Completion` type (which it also uses for
    stream chunks, built with `construct`, so clients accept them) types finish_reason as non-null, so a
    strict `model_validate` accepts the closing chunk and rejects only that null of the ones before it.
    We keep the wire format of OpenAI, which streams text as it is generated, over an all-at-the-end
    stream; tests/unit/test_serve_openai_types.py validates every other field of every chunk strictly.
    """

    endpoint, prefix = COMPLETIONS, "cmpl"

    def __init__(self, body: s.CompletionRequest):
        self.echo = body.text() if body.echo else ""

    def full(self, common: dict, result: GenResult) -> dict:
        choice = s.CompletionChoice(text=self.echo + result.text, finish_reason=result.finish_reason)
        return s.Completion(**common, choices=[choice]).model_dump()

    def opening(self, common: dict) -> list[dict]:
        return [self._chunk(common, self.echo)] if self.echo else []

    def delta(self, common: dict, text: str) -> list[dict]:
        return [self._chunk(common, text)]

    def closing(self, common: dict, result: GenResult) -> list[dict]:
        return [self._chunk(common, "", result.finish_reason)]

    def usage_chunk(self, common: dict) -> dict:
        return _dump(s.Completion(**common, choices=[]))

    @staticmethod
    def _chunk(common: dict, text: str, finish: str | None = None) -> dict:
        return _dump(s.Completion(**common, choices=[s.CompletionChoice(text=text, finish_reason=finish)]))


Format = ChatFormat | CompletionFormat


def _dump(chunk: Any) -> dict:
    """A stream chunk as a dict, without the top-level extras that are null (choices keep their nulls)."""
    optional = ("usage", "adapter", "route", "system_fingerprint")
    return {k: v for k, v in chunk.model_dump().items() if v is not None or k not in optional}


def common(response_id: str, target: Target, row: Row, usage: s.Usage | None = None) -> dict:
    """The fields every body and chunk of one answer share."""
    r = row.route
    info = s.RouteInfo(task=r.task, confidence=r.confidence, abstained=r.abstained, score=r.score) if r else None
    shared = {"id": response_id, "model": target.name, "adapter": row.adapter, "route": info}
    return shared | ({"usage": usage} if usage else {})


def usage(result: GenResult) -> s.Usage:
    """Token counts of a finished row."""
    return s.Usage(
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        total_tokens=result.prompt_tokens + result.completion_tokens,
    )


def headers(row: Row) -> dict[str, str]:
    """Response headers naming the adapter that answered (and the route of `model: auto`)."""
    found = {"x-forgetless-adapter": row.adapter or "base"}
    if row.route is not None:
        found["x-forgetless-route-task"] = row.route.task
        found["x-forgetless-route-confidence"] = f"{row.route.confidence:.4f}"
        found["x-forgetless-route-abstained"] = str(row.route.abstained).lower()
    return found
