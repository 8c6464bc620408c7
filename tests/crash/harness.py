"""Run the real ``kurate`` command many times fast: kfp.local's tasks forked from one warm process.

kfp.local's SubprocessRunner starts every task as a fresh ``python -m kfp.dsl.executor_main``
(seconds of imports each). Here the same executor runs in a *forked* child of a process that has
imported everything once, so a whole run costs only its work: the crash-point walk can afford a
run per point. Everything else is the real command: ``kurate.cli.main``, the plan, the run-folder
claim, kfp.local's orchestration, the components and the phases.

Test-only. Used by :mod:`tests.crash.driver` (a subprocess of pytest, so the pytest process never
forks after torch ran: OpenMP thread pools do not survive a fork).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from typing import Any


def _in_fork(child: Callable[[], int], *, group: bool = False) -> int:
    """Run ``child()`` in a forked process; its exit code (``-9``: killed). The child never returns:
    it ends with ``os._exit`` (a SystemExit's code, 1 on any other exception, printed as the real
    process would). ``group``: the child leads a process group of its own, killed when it ends."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            if group:
                os.setpgid(0, 0)
            code = child()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # noqa: B036 - the child's own failure, as the real process prints it
            traceback.print_exc()
            code = 1
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    _, status = os.waitpid(pid, 0)
    if group:  # anything of the group still alive (a task orphaned by a crash in the command): gone too
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return os.waitstatus_to_exitcode(status)


def _executor_in_fork(full_command: list[str], env_vars: dict[str, str] | None = None) -> int:
    """Stand-in for kfp.local's ``run_local_subprocess``: the same executor, forked, not exec'd."""
    # full_command = ['sh', '-ec', <script>, <component source>, '--executor_input', ..., ...]
    source, args = full_command[3], list(full_command[4:])
    program = tempfile.mkdtemp(prefix="kurate-fork-task-")
    module = os.path.join(program, "ephemeral_component.py")
    with open(module, "w", encoding="utf-8") as fh:
        fh.write(source)

    def task() -> int:
        os.environ.update(env_vars or {})
        os.environ["_KFP_RUNTIME"] = "true"
        from kfp.dsl.executor_main import executor_main

        sys.argv = ["executor_main", "--component_module_path", module, *args]
        executor_main()
        return 0

    try:
        return _in_fork(task)
    finally:
        shutil.rmtree(program, ignore_errors=True)


def warm_up() -> None:
    """Import what the tasks import, once, in this process (never *run* torch here)."""
    import kfp.local.subprocess_task_handler as handler

    import kurate.cli  # noqa: F401
    import kurate.pipelines.curation  # noqa: F401
    import kurate.pipelines.local  # noqa: F401

    for name in ("torch", "torchvision", "lightly", "PIL.Image", "matplotlib", "av"):
        try:
            __import__(name)
        except ImportError:
            pass
    handler.run_local_subprocess = _executor_in_fork


def run_kurate(argv: Sequence[str], env: dict[str, str], log_path: str) -> int:
    """``kurate argv`` in a forked process group of its own; its exit code, or -9 if it was killed.

    stdout and stderr go to ``log_path``. A crash point with ``KURATE_CRASH_KILL=run`` kills the
    command and the task it runs, as a machine that loses power.
    """

    def command() -> int:
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        os.environ.update(env)
        from kurate.cli import main

        return main(list(argv))

    return _in_fork(command, group=True)


def env_without_crash(extra: dict[str, Any] | None = None) -> dict[str, str]:
    """The environment of a run without any crash switch (inherited ones removed)."""
    for k in [k for k in os.environ if k.startswith("KURATE_CRASH")]:
        del os.environ[k]
    return {k: str(v) for k, v in (extra or {}).items()}
