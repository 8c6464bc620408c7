"""Crash points: every durable write of a run is one, so tests can kill a run at any of them.

The storage write primitives (:func:`kurate.io.storage.atomic_writer`, ``write_bytes``/``write_text``,
``create_exclusive``, ``remove_tree``) call :func:`point` just before their write becomes visible
(locally: the data is in its temp file, fsynced, not yet renamed; in a bucket: before the upload),
so every write site is a crash point by construction and needs no name. A step that changes durable
state without those primitives calls :func:`point` itself.

Test switches (environment; off, the cost is one dictionary lookup per write):

``KURATE_CRASH_TRACE=FILE``
    append ``n<TAB>pid<TAB>site<TAB>target<TAB>stack`` for every point hit, ``n`` counting the
    points of all processes that share the file (the ``kurate`` command and its tasks).
``KURATE_CRASH_AT=k`` or ``KURATE_CRASH_AT=module:function[#n]``
    die at the k-th point, or at the n-th point (default 1) hit while ``module:function`` is on
    the call stack (``kurate.pool.datapool:_after_commit#1``: right after a datapool commit).
``KURATE_CRASH_KILL=process|run``
    ``process`` (default): SIGKILL this process. ``run``: also SIGKILL the ``kurate`` command
    (``KURATE_RUN_PID``, set by the command for its tasks), as when the machine loses power.

A point's *site* is the function that asked for the write: the innermost caller outside the
storage layer (``module:qualname``); the trace's ``stack`` lists the kurate callers outermost first.
"""

from __future__ import annotations

import fcntl
import os
import signal
import sys
import tempfile
from types import FrameType

ENV_TRACE = "KURATE_CRASH_TRACE"
ENV_AT = "KURATE_CRASH_AT"
ENV_KILL = "KURATE_CRASH_KILL"
ENV_RUN_PID = "KURATE_RUN_PID"

#: Modules whose frames are the primitives themselves, never a site.
_PRIMITIVE_MODULES = (
    "kurate.io.crash",
    "kurate.io.storage",
    "kurate.io.s3",
    "kurate.io.gcs",
    "kurate.io.remote",
    "contextlib",
)


def active() -> bool:
    """Whether a crash switch is on (tracing or killing)."""
    return ENV_TRACE in os.environ or ENV_AT in os.environ


def prepare_run() -> None:
    """Called by the ``kurate`` command at start: its tasks learn its pid, and a kill switch gets a counter.

    ``KURATE_CRASH_AT`` counts points across the command and its tasks, which needs a file they
    share: a temporary one unless ``KURATE_CRASH_TRACE`` names one.
    """
    os.environ[ENV_RUN_PID] = str(os.getpid())
    if ENV_AT in os.environ:
        _ensure_trace()


def _ensure_trace() -> str:
    """The trace file that counts the points (a temporary one when none was named)."""
    if not os.environ.get(ENV_TRACE):
        fd, path = tempfile.mkstemp(prefix="kurate-crash-", suffix=".trace")
        os.close(fd)
        os.environ[ENV_TRACE] = path
    return os.environ[ENV_TRACE]


def _frames() -> list[tuple[str, str]]:
    """(module, qualname) of the callers, innermost first, without the primitives' own frames."""
    out: list[tuple[str, str]] = []
    f: FrameType | None = sys._getframe(2)
    while f is not None:
        module = f.f_globals.get("__name__", "?")
        if not module.startswith(_PRIMITIVE_MODULES):
            out.append((module, f.f_code.co_qualname.replace("<locals>.", "")))
        f = f.f_back
    return out


def _record(trace: str, line_without_n: str) -> int:
    """Append one point to the shared trace file; its number (1-based) among all points there."""
    fd = os.open(trace, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        count = 0
        if size:
            os.lseek(fd, 0, os.SEEK_SET)
            data = b""
            while chunk := os.read(fd, 1 << 20):
                data += chunk
            count = data.count(b"\n")
        n = count + 1
        os.write(fd, f"{n}\t{line_without_n}\n".encode("utf-8", "backslashreplace"))
        return n
    finally:
        os.close(fd)


def _matches(at: str, n: int, frames: list[tuple[str, str]], trace: str) -> bool:
    if at.isdigit():
        return n == int(at)
    want, _, nth = at.partition("#")
    if not any(f"{m}:{q}" == want for m, q in frames):
        return False
    occurrence = 0  # how many points so far (this one included) had `want` on their stack
    with open(trace, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            stack = line.rstrip("\n").split("\t")[-1].split(";")
            occurrence += want in stack
    return occurrence == int(nth or 1)


def die() -> None:
    """SIGKILL this process (and, with ``KURATE_CRASH_KILL=run``, the kurate command first)."""
    if os.environ.get(ENV_KILL, "process") == "run":
        root = int(os.environ.get(ENV_RUN_PID) or 0)
        if root and root != os.getpid():
            try:
                os.kill(root, signal.SIGKILL)
            except ProcessLookupError:
                pass
    os.kill(os.getpid(), signal.SIGKILL)


def point(target: str) -> None:
    """A durable write of ``target`` is about to become visible: trace it, or die here if asked."""
    trace = os.environ.get(ENV_TRACE)
    at = os.environ.get(ENV_AT)
    if not trace and not at:
        return
    frames = _frames()
    site = f"{frames[0][0]}:{frames[0][1]}" if frames else "?"
    stack = ";".join(f"{m}:{q}" for m, q in reversed(frames) if m.startswith(("kurate", "__main__", "tests")))
    if not trace:  # AT without a trace file (outside the kurate command): count in this process only
        trace = _ensure_trace()
    n = _record(trace, f"{os.getpid()}\t{site}\t{target}\t{stack}")
    if at and _matches(at, n, frames, trace):
        sys.stdout.flush()
        sys.stderr.flush()
        die()
