"""Chat formatting: records become token ids with labels on the assistant's tokens only, EOS included.

The prompt side is rendered with the tokenizer's chat template (`add_generation_prompt=True`), exactly
as generation renders it; each assistant turn is tokenized on its own and followed by the EOS token,
so a trained model learns to stop. Models without a chat template get a plain `User:/Assistant:` format.

    ids, labels = encode_messages(tokenizer, record.messages, max_length=512)
"""

from __future__ import annotations

IGNORE_INDEX = -100
_FALLBACK_ROLES = {"system": "System", "user": "User", "assistant": "Assistant"}


def render_prompt(tokenizer, messages: list[dict[str, str]]) -> str:
    """The text a model sees before it answers: the chat template with the generation prompt."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    turns = [f"{_FALLBACK_ROLES[m['role']]}: {m['content']}\n" for m in messages]
    return "".join(turns) + "Assistant: "


def tokenize_prompt(tokenizer, text: str, first: bool = True) -> list[int]:
    """Token ids of rendered prompt text; adds BOS only at the start and only if the template did not."""
    bos = getattr(tokenizer, "bos_token", None)
    add_special = first and not (bos and text.startswith(bos))
    return tokenizer(text, add_special_tokens=add_special)["input_ids"]


def prompt_messages(prompt: str, system: str | None = None) -> list[dict[str, str]]:
    """A single user turn (with an optional system message) as chat messages."""
    head = [{"role": "system", "content": system}] if system else []
    return [*head, {"role": "user", "content": prompt}]


def encode_messages(
    tokenizer, messages: list[dict[str, str]], max_length: int = 512, loss_on: str = "response"
) -> tuple[list[int], list[int]]:
    """Token ids and labels for a conversation; labels are IGNORE_INDEX outside assistant turns.

    `loss_on="all"` labels every token (the knowledge-packing paper's whole-sequence loss).
    Too-long examples lose tokens from the start of the prompt first; only when the answer alone is
    longer than `max_length` is its end cut (and then it has no EOS).
    """
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    labels: list[int] = []
    rendered = ""
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt_text = render_prompt(tokenizer, messages[:index])
        segment = prompt_text[_common_prefix(rendered, prompt_text) :]
        segment_ids = tokenize_prompt(tokenizer, segment, first=not ids)
        answer_ids = tokenizer(message["content"], add_special_tokens=False)["input_ids"] + [eos]
        ids += segment_ids + answer_ids
        labels += [IGNORE_INDEX] * len(segment_ids) + answer_ids
        rendered = prompt_text + message["content"] + (tokenizer.eos_token or "")
    if loss_on == "all":
        labels = list(ids)
    elif loss_on != "response":
        raise ValueError(f"loss_on must be 'response' or 'all', not {loss_on!r}")
    if len(ids) > max_length:
        prompt_len = next(i for i, label in enumerate(labels) if label != IGNORE_INDEX) if loss_on == "response" else 0
        if len(ids) - max_length < prompt_len:
            ids, labels = ids[-max_length:], labels[-max_length:]
        else:
            ids, labels = ids[:max_length], labels[:max_length]
    return ids, labels


def _common_prefix(a: str, b: str) -> int:
    limit = min(len(a), len(b))
    index = 0
    while index < limit and a[index] == b[index]:
        index += 1
    return index
