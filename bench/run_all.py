"""`make bench`: run every benchmark in bench/ one after the other, each in its own process, and print a
one-line status per benchmark at the end. Each benchmark prints its own figures and ratios.

    flock /tmp/tunesmith-heavy.lock python bench/run_all.py [--train-size small|medium|issue] [--only train rag]

The shared machines run heavy jobs under that lock; this script does not take it itself, because a
benchmark run by hand under ``flock`` would then wait for its own parent.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
# Order: cheap checks first, the long training comparison last. A benchmark whose file is absent is skipped.
BENCHES = ["data_check", "rag", "eval", "serve", "train"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", default=BENCHES, help="benchmarks to run (file names without .py)")
    ap.add_argument("--train-size", default="small", help="bench/train.py --size (small finishes in ~15 min)")
    args = ap.parse_args()
    status = []
    for name in args.only:
        script = HERE / f"{name}.py"
        if not script.exists():
            status.append((name, "absent", 0.0))
            continue
        extra = ["--size", args.train_size] if name == "train" else []
        print(f"\n===== bench/{name}.py {' '.join(extra)}", flush=True)
        t0 = time.perf_counter()
        code = subprocess.call([sys.executable, str(script), *extra])
        status.append((name, "ok" if code == 0 else f"FAILED (exit {code})", time.perf_counter() - t0))
    print("\n===== summary")
    for name, st, secs in status:
        print(f"  {name:12s} {st:18s} {secs:7.1f} s")
    return 0 if all(st in ("ok", "absent") for _, st, _ in status) else 1


if __name__ == "__main__":
    sys.exit(main())
