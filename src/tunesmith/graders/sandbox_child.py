"""The process a ``python`` grader's source runs in (started by ``tunesmith.graders.python``; stdlib only).

Order matters: limits and the network block are set up before the user's source is executed, so the source
cannot lift them (hard rlimits equal the soft ones; an audit hook cannot be removed).

Protocol: the first stdin line is ``{"source", "memory_mb", "cpu_s"}``; each later line ``{"sample", "item"}``
is answered on the original stdout with one line, ``{"score": x}`` or ``{"error": kind, "message": text}``.
The source's own prints go to stderr, so they cannot break the protocol.
"""

import json
import os
import resource
import sys
import traceback

_BLOCKED = (
    "socket.__new__",
    "socket.connect",
    "socket.bind",
    "socket.getaddrinfo",
    "socket.gethostbyname",
    "socket.sendto",
    "subprocess.Popen",
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.fork",
    "os.forkpty",
)
_violations = []


class SandboxViolation(PermissionError):
    pass


def _hook(event, args):
    if event in _BLOCKED:
        what = "open a network socket" if event.startswith("socket.") else "start another process"
        _violations.append((event, what))
        raise SandboxViolation(f"python graders run without network and cannot {what} ({event} refused)")


def _unshare_network():
    """A new, empty network namespace where the kernel lets us (root with CAP_SYS_ADMIN); else the audit hook
    alone blocks sockets."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.unshare(0x40000000) == 0  # CLONE_NEWNET
    except Exception:
        return False


def main():
    proto = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    header = json.loads(sys.stdin.readline())
    limit = int(header["memory_mb"]) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    cpu = int(header["cpu_s"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024 * 1024, 16 * 1024 * 1024))
    _unshare_network()
    sys.addaudithook(_hook)
    namespace = {"__name__": "grader"}
    try:
        exec(compile(header["source"], "<grader source>", "exec"), namespace)
        grade = namespace["grade"]
    except BaseException as exc:  # the source itself failed to load
        proto.write(json.dumps(_error(exc)) + "\n")
        return
    proto.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        req = json.loads(line)
        _violations.clear()
        try:
            score = grade(req["sample"], req["item"])
            reply = {"score": score} if not _violations else _violation()
            json.dumps(reply)
        except BaseException as exc:
            reply = _violation() if _violations else _error(exc)
        if isinstance(reply.get("score"), bool) or not isinstance(reply.get("score", 0), int | float):
            reply = {
                "error": "type",
                "message": f"grade() returned {reply['score']!r} ({type(reply['score']).__name__}); it must return a number",
            }
        proto.write(json.dumps(reply) + "\n")


def _violation():
    event, what = _violations[0]
    return {
        "error": "sandbox",
        "message": f"tried to {what} ({event}); python graders run without network or subprocesses",
    }


def _error(exc):
    if isinstance(exc, MemoryError):
        return {"error": "memory", "message": "ran out of memory (MemoryError)"}
    tb = traceback.extract_tb(exc.__traceback__)
    lines = [f.lineno for f in tb if f.filename == "<grader source>"]
    where = f" (line {lines[-1]} of the source)" if lines else ""
    return {"error": "exception", "message": f"{type(exc).__name__}: {exc}{where}"}


if __name__ == "__main__":
    main()
