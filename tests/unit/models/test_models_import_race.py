"""Loading tokenizers from several threads at once in a fresh process: transformers' lazy imports are not
thread-safe, and a fresh server that got 8 requests at once answered 500 (``cannot import name
'AutoTokenizer' from 'transformers'``). ``models.load`` resolves them once under a lock."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tunesmith.models.tiny import ensure_tiny_model

pytestmark = pytest.mark.unit

SCRIPT = """
import sys, threading
from tunesmith.serve import prompts
errors, barrier = [], threading.Barrier(8)
def load():
    barrier.wait()
    try:
        prompts._tokenizer(sys.argv[1])
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=load) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(errors[:1])
sys.exit(1 if errors else 0)
"""


def test_eight_threads_loading_a_tokenizer_in_a_fresh_process_all_succeed() -> None:
    tiny = str(ensure_tiny_model())
    for _ in range(2):  # the race lost every time in 3 of 3 tries before the fix
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT, tiny], capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stdout + done.stderr[-2000:]
