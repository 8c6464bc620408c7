"""Exit a phase's task process at once when its work is done and its outputs are written.

A process that imported torch (embed; train and pretag when active) spends about a second in
Python's interpreter shutdown: garbage-collecting every module, torch's own exit handlers, thread
pools. None of it matters once the outputs are on disk: the phase wrote them atomically and closed
them, and the KFP executor wrote its output metadata before the interpreter started to exit. So a
task process that finished without an uncaught exception ends with ``os._exit(0)`` right after
stdio and logging are flushed (and ``weakref.finalize`` callbacks, e.g. temporary folders, have run).

Only task processes are armed: ``python -m kfp.dsl.executor_main`` (what kfp.local and the KFP and
Vertex pods run) and ``python -m kurate.phases.<phase>`` (Argo steps). A phase function called in
any other process (tests, notebooks) leaves that process's exit alone; so does a failure, which keeps
its traceback and exit code.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import weakref
from typing import Any

#: The ``__main__`` modules of task processes.
TASK_MAINS = ("kfp.dsl.executor_main",)
TASK_MAIN_PREFIX = "kurate.phases."

_state = {"armed": False, "failed": False}


def is_task_process() -> bool:
    """Whether this process runs one pipeline task (see the module docstring)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    name = str(getattr(spec, "name", "") or "")
    return name in TASK_MAINS or name.startswith(TASK_MAIN_PREFIX)


def arm(force: bool = False) -> bool:
    """After a phase succeeded: exit fast at interpreter exit, unless an exception goes uncaught.

    Returns whether it is armed (``force`` arms any process: tests).
    """
    if _state["armed"]:
        return True
    if not (force or is_task_process()):
        return False
    previous = sys.excepthook

    def hook(*exc: Any) -> None:
        _state["failed"] = True
        previous(*exc)

    sys.excepthook = hook
    atexit.register(_exit_now)
    _state["armed"] = True
    return True


def _exit_now() -> None:
    """atexit: the normal shutdown minus the interpreter teardown, when nothing failed."""
    if _state["failed"]:
        return
    finalize_all = getattr(weakref.finalize, "_exitfunc", None)
    if finalize_all is not None:
        finalize_all()  # what the interpreter would run at exit: temporary folders and the like
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(0)
