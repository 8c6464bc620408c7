"""Per-phase wall times, recorded by each phase in its own output artifacts and collected by export.

Every ``run_<phase>`` function is wrapped by :func:`timed`, which writes a small ``phase.json``
(``{"phase", "started_at", "finished_at", "duration_s"}``, epoch seconds) into each output artifact
folder once the phase has succeeded. A separate file, so the artifact formats stay as they are; and it
travels with the artifact, so the export pod (another machine) reads it without a shared disk. A phase
output reused from KFP's cache keeps its original times; :func:`collect` marks such phases ``cached``.
"""

from __future__ import annotations

import functools
import inspect
import json
import time
from collections.abc import Callable, Iterable
from typing import Any, ParamSpec, TypeVar

from kurate.io import fastexit, storage

PHASE_FILE = "phase.json"

P = ParamSpec("P")
R = TypeVar("R")


def timed(phase: str, *outputs: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a phase function: after it returns, write ``phase.json`` into the artifacts ``outputs``.

    ``outputs`` name the function's parameters that hold output artifact paths.
    """

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        sig = inspect.signature(fn)
        missing = [o for o in outputs if o not in sig.parameters]
        if missing:
            raise TypeError(f"{fn.__name__} has no parameter(s) {missing}")

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            started = time.time()
            result = fn(*args, **kwargs)
            finished = time.time()
            bound = sig.bind(*args, **kwargs)
            for name in outputs:
                _write(str(bound.arguments[name]), phase, started, finished)
            fastexit.arm()  # the outputs are written: a task process may skip interpreter teardown
            return result

        return wrapper

    return decorate


def _write(artifact: str, phase: str, started: float, finished: float, **extra: Any) -> dict[str, Any]:
    """Write the ``phase.json`` of ``artifact`` and return it."""
    info = {
        "phase": phase,
        "started_at": round(started, 3),
        "finished_at": round(finished, 3),
        "duration_s": round(finished - started, 3),
        **extra,
    }
    storage.write_text(storage.join(artifact, PHASE_FILE), json.dumps(info))
    return info


def read(artifact: str) -> dict[str, Any] | None:
    """The ``phase.json`` of one artifact folder, or None (written by an older kurate, or not a phase's)."""
    try:
        data = json.loads(storage.read_text(storage.join(artifact, PHASE_FILE)))
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) and "phase" in data else None


def write_span(
    artifact: str, phase: str, parts: Iterable[dict[str, Any] | None], **extra: Any
) -> dict[str, Any] | None:
    """Write ``phase.json`` spanning ``parts`` (the phase.json of each shard of a fanned-out phase).

    The phase took from the first part's start to the last part's end (they ran side by side); None,
    and nothing written, without parts.
    """
    spans = [p for p in parts if p]
    if not spans:
        return None
    started = min(float(p["started_at"]) for p in spans)
    finished = max(float(p["finished_at"]) for p in spans)
    return _write(artifact, phase, started, finished, **extra)


def collect(artifacts: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Phase name → its times, from the artifacts' ``phase.json`` files (first one per phase wins).

    A phase that finished before ingest started (ingest is never cached) ran in an earlier pipeline run
    and was reused from the cache: it gets ``"cached": True``.
    """
    out: dict[str, dict[str, Any]] = {}
    for a in artifacts:
        info = read(a)
        if info is not None and str(info["phase"]) not in out:
            out[str(info["phase"])] = dict(info)
    first = out.get("ingest", {}).get("started_at")
    for info in out.values():
        info["cached"] = bool(first is not None and float(info.get("finished_at", first)) < float(first))
    return out
