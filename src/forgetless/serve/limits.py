"""Request limits of `forgetless serve`, checked before a request is queued: each violation is a 400.

    limits = Limits(context=backend.context, max_prompt_tokens=8192, max_messages=1000)
    limits.check_messages(len(body.messages))        # before the chat template sees them
    limits.fit(backend, request, explicit=True)      # blocking (tokenizes): run it off the event loop

`fit` measures the prompt once (the ids travel with the request, so generation does not tokenize it
again) and refuses, with OpenAI's `context_length_exceeded`, a prompt over `max_prompt_tokens` or a prompt
plus `max_tokens` over the model's context. When the client gave no `max_tokens`, the server's default is
shortened to the room left instead. A prompt far over the limit is refused before tokenizing: no token
covers more than `meter.max_token_chars` characters, so `len(text) / max_token_chars` is a lower bound on
its token count (tokenizing a megabyte-long word can take far longer than the answer is worth).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Protocol

from forgetless.serve.batching import GenRequest

CONTEXT = "context_length_exceeded"  # OpenAI's error code for a prompt that does not fit
LONGEST_COMPOSITION = 4  # NFC/NFKC merge at most 4 code points into one (e.g. U+1F82: alpha + 3 marks)
SHRINK_FREE = {"NFD", "NFKD", "Prepend", "Lowercase"}  # normalizers that never shorten the text


class LimitExceeded(Exception):
    """A request over one of the server's limits (HTTP 400, OpenAI's error envelope)."""

    def __init__(self, message: str, param: str, code: str):
        super().__init__(message)
        self.message, self.param, self.code = message, param, code


class PromptMeter(Protocol):
    """What the limits need from a backend: its context and its tokenizer."""

    context: int  # the model's context window in tokens (prompt + completion)
    max_token_chars: int | None  # no token covers more characters of prompt text; None: unknown

    def prompt_text(self, request: GenRequest) -> str:
        """The text the model would see (a chat is rendered with its template)."""
        ...

    def tokenize(self, text: str) -> list[int]:
        """Token ids of `prompt_text`, as generation would feed them."""
        ...


@dataclass(frozen=True)
class Limits:
    """The server's limits per request."""

    context: int
    max_prompt_tokens: int
    max_messages: int

    def check_messages(self, count: int) -> None:
        """Refuse a chat with more than `max_messages` messages."""
        if count > self.max_messages:
            raise LimitExceeded(
                f"this request has {count} messages; this server takes at most {self.max_messages} per request "
                "(`forgetless serve --max-messages N` changes it)",
                "messages",
                "too_many_messages",
            )

    def fit(self, meter: PromptMeter, request: GenRequest, explicit: bool) -> None:
        """Measure the prompt (sets `request.prompt_ids`) and make prompt + max_tokens fit; LimitExceeded if not.

        `explicit`: the client chose max_tokens (else the server's default shrinks to the room left)."""
        param = "messages" if request.messages is not None else "prompt"
        text = meter.prompt_text(request)
        bound = _lower_bound(text, meter.max_token_chars)
        if bound > self.max_prompt_tokens:
            self._too_long(f"more than {self.max_prompt_tokens} tokens (at least {bound})", param)
        ids = meter.tokenize(text)
        if len(ids) > self.max_prompt_tokens:
            self._too_long(f"{len(ids)} tokens", param)
        room = self.context - len(ids)
        if explicit and request.max_tokens > room:
            raise LimitExceeded(_context_message(self.context, len(ids), request.max_tokens, param), param, CONTEXT)
        if room < 1:
            raise LimitExceeded(_context_message(self.context, len(ids), 1, param), param, CONTEXT)
        request.prompt_ids, request.max_tokens = ids, min(request.max_tokens, room)

    def _too_long(self, size: str, param: str) -> None:
        hint = (
            f"`forgetless serve --max-prompt-tokens N` raises it, up to the model's context of {self.context}"
            if self.max_prompt_tokens < self.context
            else "the model's context; send a shorter prompt"
        )
        what = "the messages have" if param == "messages" else "the prompt has"
        raise LimitExceeded(
            f"{what} {size}; this server takes at most {self.max_prompt_tokens} prompt tokens ({hint})", param, CONTEXT
        )


def _lower_bound(text: str, max_token_chars: int | None) -> int:
    """The fewest tokens `text` can take (0 when the tokenizer gives no bound)."""
    return math.ceil(len(text) / max_token_chars) if max_token_chars else 0


def _context_message(context: int, prompt: int, completion: int, param: str) -> str:
    """OpenAI's wording for a request over the model's context."""
    where = "in the messages" if param == "messages" else "in the prompt"
    return (
        f"This model's maximum context length is {context} tokens. However, you requested {prompt + completion} "
        f"tokens ({prompt} {where}, {completion} in the completion). Please reduce the length of the {param} "
        "or completion (max_tokens)."
    )


def max_token_chars(tokenizer: Any) -> int | None:
    """The most characters of prompt text one token of `tokenizer` can cover; None when it cannot be bounded.

    A vocabulary entry is written with at least one character per character (or byte) it covers: byte-level
    BPE writes one character per byte, SentencePiece writes the text itself (`▁` for a space, `<0x0A>` for a
    byte). A normalizer can shorten the text before tokenizing: NFC/NFKC compose at most 4 code points into
    one; others that never shorten it are listed in SHRINK_FREE; any other normalizer gives no bound."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    factor = _shrink_factor(json.loads(backend.to_str()).get("normalizer"))
    if factor is None:
        return None
    return factor * max(len(token) for token in tokenizer.get_vocab())


def _shrink_factor(normalizer: dict | None) -> int | None:
    if normalizer is None:
        return 1
    kind = normalizer.get("type")
    if kind == "Sequence":
        factors = [_shrink_factor(n) for n in normalizer.get("normalizers", [])]
        return None if None in factors else math.prod(factors)
    if kind in ("NFC", "NFKC"):
        return LONGEST_COMPOSITION
    if kind == "Replace":
        pattern = normalizer.get("pattern", {}).get("String")
        return 1 if pattern is not None and len(normalizer.get("content", "")) >= len(pattern) else None
    return 1 if kind in SHRINK_FREE else None
