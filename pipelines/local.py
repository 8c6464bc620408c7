"""Run the curation pipeline on this machine through kfp.local (the same DAG the clusters run)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import warnings
from collections.abc import Iterator
from typing import Any

from kurate.errors import PhaseFailedError
from kurate.io import runfolder, storage
from kurate.phases import _entry
from kurate.plan import TASKS, RunPlan

log = logging.getLogger("kurate.local")


def pipeline_arguments(plan: RunPlan, embed_shards: int | None = None) -> dict[str, Any]:
    """The pipeline's parameters for ``plan``: one JSON string of keys per task (and the shard count)."""
    args: dict[str, Any] = {f"{t}_config": json.dumps(plan.task_configs[t], sort_keys=True) for t in TASKS}
    if embed_shards is not None:
        args["embed_shards"] = int(embed_shards)
    return args


#: Inside the scratch folder: the error record of a failed task, and the tasks' $TMPDIR.
ERROR_RECORD = "error.json"
TASK_TMP = "tmp"
#: The longest $TMPDIR the tasks get inside the scratch folder. multiprocessing's AF_UNIX listeners live
#: at ``$TMPDIR/pymp-XXXXXXXX/listener-XXXXXXXX`` (torch's DataLoader workers hand tensors over through
#: them) and a socket path holds at most 107 bytes: beyond it a worker's batch is lost and embed waits
#: forever. A deeper run folder gets a private folder in the system's temp dir instead.
MAX_TASK_TMP = 70
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@contextlib.contextmanager
def _task_environment(work_dir: str) -> Iterator[str]:
    """The tasks' environment: where a failing phase leaves its error record, and a $TMPDIR of their own.

    KFP's component command makes a ``mktemp -d`` folder per task and never removes it; with
    ``TMPDIR`` inside the scratch folder they go with it (and so does kfp.local's workspace); when
    that path is too long for sockets (:data:`MAX_TASK_TMP`), a private temp folder removed at the end.
    Returns the error record's path.
    """
    record = os.path.join(work_dir, ERROR_RECORD)
    tmp = os.path.join(work_dir, TASK_TMP)
    private = ""
    if len(os.fsencode(os.path.abspath(tmp))) > MAX_TASK_TMP:
        private = tmp = _make_scratch(keep=False)  # a killed run's is swept like a bucket run's scratch
    os.makedirs(tmp, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(record)
    saved = {k: os.environ.get(k) for k in (_entry.ERROR_FILE_ENV, "TMPDIR")}
    saved_tempdir = tempfile.tempdir
    os.environ[_entry.ERROR_FILE_ENV] = record
    os.environ["TMPDIR"] = tmp
    tempfile.tempdir = tmp
    try:
        yield record
    finally:
        if private:
            shutil.rmtree(private, ignore_errors=True)
        tempfile.tempdir = saved_tempdir
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def task_failure(record_path: str, exc: BaseException) -> PhaseFailedError:
    """The error of the task that failed, as its phase raised it (the record), else what kfp.local says."""
    record = _entry.read_error_record(record_path)
    if record is not None:
        return PhaseFailedError(
            str(record.get("message") or "the task failed"),
            exit_code=int(record.get("exit_code") or 1),
            phase=str(record.get("phase") or ""),
            error_class=str(record.get("class") or ""),
            detail=str(record.get("traceback") or ""),
        )
    names = re.findall(r"(?:[Tt]ask failed: |Task )'([^']+)'", _ANSI.sub("", str(exc)))
    task = names[-1] if names else "a"
    return PhaseFailedError(
        f"the {task} task ended without an error of its own (killed, or out of memory?)",
        detail=_ANSI.sub("", str(exc)),
    )


#: A bucket run's local scratch folder: ``<temp dir>/kurate-work-<pid>-<random>``, with its owner record.
SCRATCH_PREFIX = "kurate-work-"
SCRATCH_OWNER = "owner.json"
_SCRATCH_NAME = re.compile(rf"^{SCRATCH_PREFIX}(\d+)-")


def _make_scratch(keep: bool) -> str:
    """A bucket run's local scratch folder, recording who owns it (and whether it is kept on purpose)."""
    work_dir = tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-")
    with open(os.path.join(work_dir, SCRATCH_OWNER), "w", encoding="utf-8") as fh:
        json.dump({**runfolder.this_process(), "keep": keep}, fh)
    return work_dir


def sweep_scratch(tmpdir: str | None = None) -> list[str]:
    """Remove the local scratch folders of bucket runs whose ``kurate`` process is gone (killed).

    A failed run removes its own; a killed one cannot, so the next bucket run on this machine does.
    Folders kept on purpose (``keep_work``) and those of live runs stay. Returns the removed paths.
    """
    root = tmpdir or tempfile.gettempdir()
    removed: list[str] = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed
    for entry in entries:
        m = _SCRATCH_NAME.match(entry.name)
        try:
            if not m or not entry.is_dir(follow_symlinks=False):
                continue
            with open(os.path.join(entry.path, SCRATCH_OWNER), encoding="utf-8") as fh:
                owner = json.load(fh)
        except (OSError, ValueError):  # no record (killed before writing it): the pid in its name
            owner = {"host": socket.gethostname(), "pid": int(m.group(1))} if m else None
        if not isinstance(owner, dict) or owner.get("keep") or runfolder.owner_is_live(owner):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(entry.path)
    return removed


def run_local(plan: RunPlan, keep_work: bool = False, embed_shards: int = 1) -> None:
    """Execute every task with kfp.local's SubprocessRunner in this Python environment.

    ``embed_shards`` > 1 runs the sharded embedding (ParallelFor + merge) exactly as a cluster does,
    the shards one after another.

    kfp.local's scratch (pipeline_root) is the run's own ``.work`` folder, removed when the run ends
    (failed too) unless ``keep_work``; its workspace_root and the tasks' ``$TMPDIR`` are inside it.
    kfp.local handles only local artifact paths, so when the run directory is in a bucket
    (``plan.work_dir`` empty) the scratch is a local temporary folder instead: the artifacts between
    phases stay on this machine, the input is read from and the outputs written to the buckets.
    """
    from kfp import local

    from kurate.pipelines.curation import build_pipeline

    for gone in sweep_scratch():  # a bucket run's scratch, or a deep run folder's private $TMPDIR
        log.info("removed %s, the scratch folder of a killed run", gone)
    work_dir = plan.work_dir or _make_scratch(keep_work)
    os.makedirs(work_dir, exist_ok=True)
    if not plan.work_dir:
        log.info("intermediate artifacts in %s (the outputs go to %s)", work_dir, plan.run_dir)
    try:
        with _task_environment(work_dir) as record, warnings.catch_warnings():
            local.init(
                runner=local.SubprocessRunner(use_venv=False), pipeline_root=work_dir, raise_on_error=True
            )
            # The components name their cluster images; locally they run in this environment on purpose.
            warnings.filterwarnings("ignore", message=".*non-Python base image.*", category=RuntimeWarning)
            warnings.filterwarnings("ignore", message=".*no effect in the current local runner.*")
            try:
                build_pipeline(target="local")(**pipeline_arguments(plan, embed_shards))
            except RuntimeError as exc:  # kfp.local: a task failed; its phase left the error record
                raise task_failure(record, exc) from None
    finally:  # failed too: kfp.local never reuses an earlier attempt's artifacts, so nothing is lost
        if not keep_work:
            if plan.work_dir:  # inside the run folder: a crash point like every durable change
                storage.remove_tree(work_dir)
            else:
                shutil.rmtree(work_dir, ignore_errors=True)
