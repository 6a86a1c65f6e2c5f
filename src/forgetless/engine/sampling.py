"""Decoding options and the token choice shared by every generation path.

from forgetless.engine.sampling import SamplingConfig
SamplingConfig(max_new_tokens=32)                        # greedy
SamplingConfig(temperature=0.5, top_k=40, num_return_sequences=16, seed=0)
"""

from __future__ import annotations

from dataclasses import dataclass

from forgetless.errors import ConfigError
from forgetless.models.runtime import PRECISIONS

# `forgetless generate` runs in fp32 unless told otherwise: its greedy answers then equal plain transformers
# + peft (bf16 autocast changed 3 of 8 in a check); the probes and `serve` keep the faster "auto".
GENERATE_PRECISION = "fp32"


@dataclass
class SamplingConfig:
    """Decoding options: temperature 0 means greedy."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    num_return_sequences: int = 1
    seed: int | None = None
    precision: str = "auto"  # auto: bf16 autocast where the hardware runs it fast (2x on this CPU), else fp32

    def validate(self) -> SamplingConfig:
        if self.max_new_tokens < 1:
            raise ConfigError(f"--max-new-tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ConfigError(f"--temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"--top-p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ConfigError(f"--top-k must be >= 0 (0 = off), got {self.top_k}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision {self.precision!r} is not one of auto, bf16, fp32")
        return self


def pick_tokens(logits, sampling: SamplingConfig, generator):
    """Greedy, or a sample after temperature, top-k and top-p. With top-k the draw is made among the k
    best tokens only (`torch.multinomial` over a 49k vocabulary cost 60 ms per step for 64 rows)."""
    import torch

    if sampling.temperature <= 0:
        return logits.argmax(-1)
    logits, indices = logits / sampling.temperature, None
    if sampling.top_k and sampling.top_k < logits.shape[-1]:
        logits, indices = logits.topk(sampling.top_k, dim=-1)
    probs = torch.softmax(logits, dim=-1)
    if sampling.top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        drop = sorted_probs.cumsum(-1) - sorted_probs > sampling.top_p
        probs = probs.scatter(1, order, sorted_probs.masked_fill(drop, 0.0))
    if indices is None:  # exponential race: an exact categorical draw, without multinomial's slow path
        choice = (probs / torch.empty_like(probs).exponential_(generator=generator)).argmax(-1)
    else:
        choice = torch.multinomial(probs, 1, generator=generator).squeeze(1)
    return choice if indices is None else indices.gather(1, choice[:, None]).squeeze(1)
