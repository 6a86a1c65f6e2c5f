"""Keep the libraries' chatter out of the terminal: their warnings go to a log file, their bars are off.

    forgetless train ...             # library warnings -> ~/.cache/forgetless/logs/forgetless.log
    forgetless --verbose train ...   # library warnings on stderr, as the libraries print them

The CLI calls `route_library_output` once before a command runs. Without `--verbose`, Python warnings
(`warnings.warn`: transformers' FutureWarnings, peft's UserWarnings) and the loggers of transformers,
peft, accelerate, datasets and torch write to the log file; their ERROR records still reach stderr.
Hugging Face's tqdm bars are always off: training and probing show forgetless' own rich bars
(`forgetless.utils.console.progress`), one style for everything.
"""

from __future__ import annotations

import logging
import os
from logging.handlers import RotatingFileHandler
from pathlib import Path

LIBRARIES = ("transformers", "peft", "accelerate", "datasets", "torch", "huggingface_hub", "py.warnings")
_handlers: list[logging.Handler] = []


def disable_library_bars() -> None:
    """Hugging Face hub / datasets / transformers tqdm bars off (set before those libraries draw one)."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"


def route_library_output(verbose: bool, path: Path) -> Path | None:
    """Send library warnings to the log file `path`, rotated at 2 MB (None, nothing routed, when `verbose`)."""
    disable_library_bars()
    if verbose or _handlers:
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        to_file: logging.Handler = RotatingFileHandler(path, maxBytes=2_000_000, backupCount=1, delay=True)
    except OSError:  # an unwritable cache: drop the chatter rather than fail the command
        to_file = logging.NullHandler()
    to_file.setFormatter(logging.Formatter("%(asctime)s pid %(process)d %(name)s %(levelname)s: %(message)s"))
    errors = logging.StreamHandler()
    errors.setLevel(logging.ERROR)
    logging.captureWarnings(True)
    for name in LIBRARIES:
        logger = logging.getLogger(name)
        logger.addHandler(to_file)
        logger.addHandler(errors)
        logger.propagate = False
    _quiet_transformers_handler()
    _handlers.extend([to_file, errors])
    return path


def _quiet_transformers_handler() -> None:
    """transformers installs its own stderr handler on first use; take it off (ours log to the file)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_default_handler()
    hf_logging.set_verbosity_warning()
