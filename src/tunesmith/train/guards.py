"""What the machine has free, read before a run plans its memory (train/plan.py sizes micro-batches from it)."""

from __future__ import annotations

from pathlib import Path


def available_memory() -> int | None:
    """MemAvailable, capped by a cgroup (container) limit when there is one; None when unknown."""
    found: list[int] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    for path, used_path in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            raw = Path(path).read_text().strip()
            if raw != "max" and int(raw) < 1 << 60:
                found.append(int(raw) - int(Path(used_path).read_text().strip()))
        except (OSError, ValueError):
            continue
    return min(found) if found else None
