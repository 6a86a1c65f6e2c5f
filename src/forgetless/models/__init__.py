"""Base models: loading (HF id, local dir, embedded SmolLM2), fingerprints, device and precision policy.

from forgetless.models import load_model
model, tokenizer, info = load_model(None)   # the embedded SmolLM2-135M-Instruct
"""

from forgetless.models.load import ModelInfo, fingerprint, load_model, load_tokenizer, resolve_model, same_base
from forgetless.models.runtime import pick_device, resolve_precision

__all__ = [
    "ModelInfo",
    "fingerprint",
    "load_model",
    "load_tokenizer",
    "pick_device",
    "resolve_model",
    "resolve_precision",
    "same_base",
]
