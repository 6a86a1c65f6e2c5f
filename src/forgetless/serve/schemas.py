"""OpenAI-compatible request and response shapes for `forgetless serve` (pydantic models).

Requests are validated here, so malformed JSON or a wrong type becomes a 400 with an OpenAI error body
(`{"error": {"message", "type", "param", "code"}}`) and never reaches the model. Unknown request fields
(`frequency_penalty`, `user`, ...) are accepted and ignored, as most OpenAI-compatible servers do; `n`
other than 1 is refused, and so is `logprobs`/`top_logprobs` (not implemented: a 400, never ignored).
Responses carry two extra fields, `adapter` (the adapter that answered, null for the base) and `route`
(switch task and confidence when `model` was `auto`).
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator

MAX_STOP = 4
SERVER_STARTED = int(time.time())  # `created` of the models this server lists
INT64 = 2**63  # OpenAI's integer fields (seed) are int64


def _utf8(value: str) -> str:
    """Refuse a lone surrogate ("\\ud800" in JSON): it cannot be tokenized (it would fail its whole batch)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text holds a lone UTF-16 surrogate (e.g. \\ud800), which is not valid Unicode") from None
    return value


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TextPart(_Lenient):
    """One part of a multi-part message; only text parts are supported."""

    type: Literal["text"]
    text: str

    _valid_text = field_validator("text")(_utf8)


class ChatMessage(_Lenient):
    """One chat turn."""

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    @field_validator("content")
    @classmethod
    def _valid_content(cls, value: str | list[TextPart]) -> str | list[TextPart]:
        return _utf8(value) if isinstance(value, str) else value

    def text(self) -> str:
        """The message content as one string (text parts joined)."""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(_Lenient):
    include_usage: StrictBool = False


class _SamplingFields(_Lenient):
    model: str | None = Field(default=None, max_length=256)
    max_tokens: StrictInt | None = Field(default=None, ge=1)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    n: StrictInt = Field(default=1, ge=1, le=1, description="only n=1 is supported")
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: StrictInt | None = Field(default=None, ge=-INT64, lt=INT64)
    logprobs: bool | int | None = None
    top_logprobs: int | None = None

    @field_validator("logprobs", "top_logprobs")
    @classmethod
    def _no_logprobs(cls, value: bool | int | None) -> None:
        if value not in (None, False, 0):
            raise ValueError("logprobs are not supported by forgetless serve; drop logprobs/top_logprobs")
        return None

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else (value or [])
        if len(stops) > MAX_STOP or any(not s for s in stops):
            raise ValueError(f"stop takes at most {MAX_STOP} non-empty strings")
        for stop in stops:
            _utf8(stop)
        return value

    def stop_list(self) -> list[str]:
        """Stop strings as a list."""
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class ChatCompletionRequest(_SamplingFields):
    """POST /v1/chat/completions."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: StrictInt | None = Field(default=None, ge=1)

    def conversation(self) -> list[dict[str, str]]:
        """Messages as plain dicts for the chat template (`developer` is treated as `system`)."""
        role = {"developer": "system"}
        return [{"role": role.get(m.role, m.role), "content": m.text()} for m in self.messages]

    def routing_text(self) -> str:
        """What the switch sees: the last user message."""
        users = [m.text() for m in self.messages if m.role == "user"]
        return users[-1] if users else self.messages[-1].text()


class CompletionRequest(_SamplingFields):
    """POST /v1/completions. The prompt is raw text (no chat template), as in the OpenAI API."""

    prompt: str | list[str] = Field(min_length=1)
    max_tokens: StrictInt | None = Field(default=16, ge=1)
    echo: StrictBool = False

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and len(value) != 1:
            raise ValueError("one prompt per request (a list of exactly one string); send more requests instead")
        _utf8(value if isinstance(value, str) else value[0])
        return value

    def text(self) -> str:
        """The single prompt string."""
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class RouteInfo(BaseModel):
    """How `model: auto` was resolved by the switch."""

    task: str
    confidence: float
    abstained: bool
    score: float


class ChatChoiceMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: ChatChoiceMessage
    finish_reason: str | None
    logprobs: None = None


class _Answer(BaseModel):
    id: str
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    usage: Usage | None = None
    adapter: str | None = None
    route: RouteInfo | None = None
    system_fingerprint: str | None = None


class ChatCompletion(_Answer):
    object: Literal["chat.completion"] = "chat.completion"
    choices: list[ChatChoice]


class ChatChunkChoice(BaseModel):
    index: int = 0
    delta: dict[str, str]
    finish_reason: str | None = None
    logprobs: None = None


class ChatCompletionChunk(_Answer):
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    choices: list[ChatChunkChoice]


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: str | None = None
    logprobs: None = None


class Completion(_Answer):
    object: Literal["text_completion"] = "text_completion"
    choices: list[CompletionChoice]


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=lambda: SERVER_STARTED)
    owned_by: str = "forgetless"
    root: str | None = None
    parent: str | None = None
    kind: str = Field(default="adapter", description="base | adapter | router")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def new_id(prefix: str) -> str:
    """An OpenAI-style object id, e.g. `chatcmpl-3f2a...`."""
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def error_body(message: str, kind: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """The OpenAI error envelope."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
