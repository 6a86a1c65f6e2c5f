"""A `Record` (one training example as chat messages) and the validation of one raw record into it.

Every message names `file:line:field`; `forgetless.data.records` reads files and calls `validate_record`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from forgetless.errors import DataError

ROLES = ("system", "user", "assistant")
SAMPLE_TYPES = ("world", "task")
FORMAT_HINT = "each record needs `messages` or `prompt` + `response`"


@dataclass
class Record:
    """One validated training example as chat messages, with its optional labels."""

    messages: list[dict[str, str]]
    type: str | None = None
    task: str | None = None
    source: str = field(default="", compare=False)

    @property
    def prompt_messages(self) -> list[dict[str, str]]:
        """The messages before the last assistant turn (what a user would send)."""
        last = max(i for i, m in enumerate(self.messages) if m["role"] == "assistant")
        return self.messages[:last]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"messages": self.messages}
        if self.type:
            out["type"] = self.type
        if self.task:
            out["task"] = self.task
        return out


def validate_record(obj: Any, loc: str) -> Record:
    """Check one raw record and turn it into a Record, or raise DataError at `loc:field`."""
    if not isinstance(obj, dict):
        raise DataError(f"{loc}: record is {type(obj).__name__}, expected a JSON object ({FORMAT_HINT})")
    if "messages" in obj:
        messages = _messages(obj["messages"], loc)
    elif "prompt" in obj or "response" in obj:
        messages = _prompt_response(obj, loc)
    else:
        raise DataError(f"{loc}:messages: missing; {FORMAT_HINT}")
    return Record(messages, _label(obj, "type", loc), _label(obj, "task", loc), source=loc)


def _text(obj: dict, key: str, loc: str, *, required: bool = True) -> str | None:
    if key not in obj or obj[key] is None:
        if required:
            raise DataError(f"{loc}:{key}: missing; {FORMAT_HINT}")
        return None
    value = obj[key]
    if not isinstance(value, str):
        raise DataError(f"{loc}:{key}: expected a string, got {type(value).__name__}")
    if required and not value.strip():
        raise DataError(f"{loc}:{key}: is empty; give it some text or drop the record")
    return value


def _prompt_response(obj: dict, loc: str) -> list[dict[str, str]]:
    prompt = _text(obj, "prompt", loc)
    response = _text(obj, "response", loc)
    system = _text(obj, "system", loc, required=False)
    messages = [{"role": "system", "content": system}] if system else []
    return [*messages, {"role": "user", "content": prompt}, {"role": "assistant", "content": response}]


def _messages(value: Any, loc: str) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise DataError(f"{loc}:messages: expected a non-empty list of {{role, content}} objects")
    out = []
    for index, message in enumerate(value):
        field = f"messages[{index}]"
        if not isinstance(message, dict):
            raise DataError(f"{loc}:{field}: expected an object with `role` and `content`")
        role = message.get("role")
        if role not in ROLES:
            raise DataError(f"{loc}:{field}.role: {role!r} is not one of {', '.join(ROLES)}")
        content = message.get("content")
        if not isinstance(content, str):
            raise DataError(f"{loc}:{field}.content: expected a string, got {type(content).__name__}")
        out.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" for m in out):
        raise DataError(f"{loc}:messages: no assistant message to learn; add the response as role 'assistant'")
    if out[0]["role"] == "assistant":
        raise DataError(f"{loc}:messages[0].role: the conversation starts with the assistant; add the prompt")
    return out


def _label(obj: dict, key: str, loc: str) -> str | None:
    value = obj.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise DataError(f"{loc}:{key}: expected a string, got {type(value).__name__}")
    if key == "type" and value not in SAMPLE_TYPES:
        raise DataError(f"{loc}:type: {value!r} is not one of {', '.join(SAMPLE_TYPES)} (or leave it out)")
    return value
