"""``python``: a user's ``grade(sample, item) -> float`` run in a separate, limited process.

Each ``evaluate`` call starts one process (``sandbox_child.py``, ``python -I`` in an empty temporary folder,
a bare environment) that answers the rows one at a time. Limits:
- **time**: each ``grade()`` call may take ``timeout_s`` (default 5) seconds of wall time; past that the
  process is killed and the grade fails, naming the row (``RLIMIT_CPU`` backs this up should the parent die);
- **memory**: ``RLIMIT_AS`` of ``memory_mb`` (default 1024) MiB, so a 10 GB allocation raises MemoryError
  (or the process dies) and the grade fails saying so;
- **network**: where the kernel allows, the process moves to an empty network namespace (``unshare``);
  always, an audit hook (``sys.addaudithook``, which code cannot remove) refuses creating, binding or
  connecting sockets, name lookups and starting processes, and the grade fails saying what was tried.
The source is compiled (never run) when the grader is loaded, so a syntax error or a missing ``grade``
function is reported before any answer is graded.
"""

from __future__ import annotations

import ast
import json
import math
import os
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError
from tunesmith.graders.base import Grade, Grader

_CHILD = Path(__file__).with_name("sandbox_child.py")
_STARTUP_S = 30.0  # interpreter start and the source's own imports (e.g. numpy), beyond the per-row limit
_HINT = (
    "Fix the grader's source (docs/graders.md, 'python'), or raise timeout_s / memory_mb in the grader file."
)


class PythonGrader(Grader):
    """OpenAI's ``python`` grader, sandboxed (see the module docstring)."""

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        check_source(spec.source, spec.name)

    @property
    def pass_threshold(self) -> float:
        t = self.spec.pass_threshold
        return 0.5 if t is None else float(t)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "timeout_s": self.spec.timeout_s, "memory_mb": self.spec.memory_mb}

    def _evaluate(self, samples: list[dict[str, Any]], items: list[dict[str, Any]]) -> list[Grade]:
        with _Sandbox(self.spec, len(samples)) as box:
            return [
                self._grade(box.grade(s, i, row))
                for row, (s, i) in enumerate(zip(samples, items, strict=True))
            ]


def check_source(source: str, name: str) -> None:
    """Compile ``source`` (without running it) and check it defines ``grade(sample, item)``.

    Raises:
        TunesmithError: on a syntax error (with its line) or when no two-argument ``grade`` is defined.
    """
    try:
        tree = ast.parse(source, filename="<grader source>")
    except SyntaxError as exc:
        raise TunesmithError(
            f"Python grader {name!r}: syntax error on line {exc.lineno} of its source: {exc.msg}.", _HINT
        ) from None
    fns = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "grade"]
    if not fns or len(fns[-1].args.args) < 2:
        raise TunesmithError(
            f"Python grader {name!r}: its source defines no function grade(sample, item).",
            "Define `def grade(sample, item) -> float:` at the top level of the source.",
        )


class _Sandbox:
    """One limited child process and the line protocol with it."""

    def __init__(self, spec: Any, n_rows: int) -> None:
        self.spec, self.name = spec, spec.name
        self.timeout = float(spec.timeout_s)
        self._tmp = tempfile.TemporaryDirectory(prefix="tunesmith-grader-")
        self._err = tempfile.TemporaryFile(mode="w+b")  # noqa: SIM115 (closed in __exit__)
        env = {
            "PATH": "/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": self._tmp.name,
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-I", str(_CHILD)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err,
            cwd=self._tmp.name,
            env=env,
            close_fds=True,
        )
        self._buf = b""
        cpu_s = math.ceil(_STARTUP_S + self.timeout * (n_rows + 1))
        try:
            self._send({"source": spec.source, "memory_mb": spec.memory_mb, "cpu_s": cpu_s})
            reply = self._receive(_STARTUP_S, row=None)
        except BaseException:
            self.__exit__()
            raise
        if "error" in reply:
            self.__exit__()
            raise TunesmithError(
                f"Python grader {self.name!r}: its source failed to load: {reply['message']}.", _HINT
            )

    def grade(self, sample: dict[str, Any], item: dict[str, Any], row: int) -> float:
        self._send({"sample": sample, "item": item})
        reply = self._receive(self.timeout, row=row)
        if "error" in reply:
            what = reply["message"]
            if reply["error"] == "memory":
                what += f" (limit {self.spec.memory_mb} MiB)"
            raise TunesmithError(f"Python grader {self.name!r} failed on row {row}: {what}.", _HINT)
        return float(reply["score"])

    def _send(self, obj: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps(obj, ensure_ascii=False, default=str) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            self._died(None)

    def _receive(self, timeout: float, *, row: int | None) -> dict[str, Any]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                self.proc.kill()
                self.proc.wait()
                where = f"on row {row}" if row is not None else "while loading its source"
                raise TunesmithError(
                    f"Python grader {self.name!r} ran past its time limit of {timeout:g} s {where} "
                    "(an endless loop?) and was stopped.",
                    _HINT,
                )
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    self._died(row)
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def _died(self, row: int | None) -> None:
        code = self.proc.wait()
        self._err.seek(0)
        tail = self._err.read()[-600:].decode(errors="replace").strip()
        where = f"on row {row}" if row is not None else "while loading its source"
        if code in (-9, -24):
            why = (
                f"was killed (signal {-code}): over its CPU time or memory limit ({self.spec.memory_mb} MiB)"
            )
        elif code < 0:
            why = f"was killed by signal {-code} (a memory limit of {self.spec.memory_mb} MiB can cause this)"
        else:
            why = f"exited with code {code}"
        raise TunesmithError(
            f"Python grader {self.name!r}: its process {why} {where}."
            + (f" Its last output: {tail}" if tail else ""),
            _HINT,
        )

    def __enter__(self) -> _Sandbox:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (subprocess.TimeoutExpired, BrokenPipeError, OSError):
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdout, self.proc.stdin):
            if f is not None and not f.closed:
                f.close()
        self._err.close()
        self._tmp.cleanup()
