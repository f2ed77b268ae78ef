"""Where tunesmith keeps its caches (converted models, tokenization caches)."""

from __future__ import annotations

import os
from pathlib import Path


def tunesmith_home() -> Path:
    """``TUNESMITH_HOME`` if set, else ``~/.cache/tunesmith``; created on first use."""
    home = Path(os.environ.get("TUNESMITH_HOME") or Path.home() / ".cache" / "tunesmith")
    home.mkdir(parents=True, exist_ok=True)
    return home
