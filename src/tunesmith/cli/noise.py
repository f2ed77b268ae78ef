"""Libraries' own output kept off the user's terminal (issue 17): bitsandbytes' "Failed to load CPU
gemm_4bit_forward from kernels-community" line, transformers/peft ``FutureWarning``s and other Python
warnings, and tqdm bars drawn inside transformers, huggingface_hub, datasets and sentence-transformers.
They go to ``$TUNESMITH_HOME/logs/libraries.log`` instead; ``tunesmith --verbose`` leaves them on stderr.
tunesmith's own progress and messages are printed by the CLI (rich), never through these channels."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

LIBRARY_LOGGERS = (
    "bitsandbytes",
    "transformers",
    "peft",
    "trl",
    "torch",
    "datasets",
    "sentence_transformers",
)
PROGRESS_ENV = {
    "TQDM_DISABLE": "1",  # tqdm >= 4.66 reads TQDM_* defaults: bars made with plain tqdm (GGUF conversion)
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}


def log_path() -> Path:
    """Where library output goes when not ``--verbose``."""
    from tunesmith.paths import tunesmith_home

    return tunesmith_home() / "logs" / "libraries.log"


def quiet_libraries(verbose: bool = False) -> Path | None:
    """Route library loggers and Python warnings to :func:`log_path` and turn off library progress bars.
    Call before the libraries are imported (the environment variables are read at import); the loggers and
    the transformers switch are also set when they are already loaded. With ``verbose`` nothing changes.
    Returns the log file, or None when verbose."""
    if verbose:
        return None
    for key, value in PROGRESS_ENV.items():
        os.environ.setdefault(key, value)
    path = log_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8", delay=True)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    for name in (*LIBRARY_LOGGERS, "py.warnings"):
        logger = logging.getLogger(name)
        if not any(getattr(h, "baseFilename", None) == handler.baseFilename for h in logger.handlers):
            logger.addHandler(handler)
        logger.propagate = False  # not to the root logger's stderr handler
    logging.captureWarnings(True)  # warnings.warn(...) -> the "py.warnings" logger -> the file
    warnings.simplefilter("default")  # each distinct warning once, in the file
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        for h in list(hf_logging.get_logger().handlers):  # transformers' own stderr handler
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                hf_logging.get_logger().removeHandler(h)
    return path
