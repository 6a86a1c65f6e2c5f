"""The generation engine: one batched `generate` (per-row adapters too), shared-prefix probing with
continuous batching and cascade attention, and inference weights (LoRA merged, bf16 where fast).

    from forgetless.engine import SamplingConfig, generate_texts, generate_shared_prefix

Modules, bottom up: `sampling` (options, token choice), `tokens` (stop tokens), `weights` (inference
layout), `generate` (the batched `model.generate`), `prefix_cache` (a prefix's KV cache), `attention`
(cascade attention), `batching` (continuous batching behind prefixes), `prefix` (the probe engine).
"""

from forgetless.engine.generate import generate_batch, generate_texts
from forgetless.engine.prefix import generate_shared_prefix
from forgetless.engine.sampling import SamplingConfig
from forgetless.engine.weights import inference_weights

__all__ = ["SamplingConfig", "generate_batch", "generate_shared_prefix", "generate_texts", "inference_weights"]
