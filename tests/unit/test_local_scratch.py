"""A bucket run's local scratch folder (``<temp dir>/kurate-work-*``) never outlives its run for long:
a failed run removes its own, and one left by a killed run goes at the next bucket run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

from kurate.io import runfolder
from kurate.pipelines import local


def _dead_pid() -> int:
    return int(
        subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True).stdout
    )


def test_scratch_of_a_killed_run_is_swept_live_and_kept_ones_stay(tmp_path, monkeypatch):
    monkeypatch.setattr(local.tempfile, "tempdir", str(tmp_path))
    mine = local._make_scratch(keep=False)  # this process: live
    kept = local._make_scratch(keep=True)
    dead = tmp_path / f"{local.SCRATCH_PREFIX}{_dead_pid()}-abc"
    (dead / "kfp").mkdir(parents=True)
    (dead / local.SCRATCH_OWNER).write_text(json.dumps({"host": socket.gethostname(), "pid": _dead_pid()}))
    unrecorded = tmp_path / f"{local.SCRATCH_PREFIX}{_dead_pid()}-xyz"  # killed before its record
    unrecorded.mkdir()
    reused = tmp_path / f"{local.SCRATCH_PREFIX}{os.getpid()}-old"  # a dead run's pid, reused by us now
    reused.mkdir()
    (reused / local.SCRATCH_OWNER).write_text(json.dumps({**runfolder.this_process(), "pid_start": "1"}))
    other = tmp_path / "kurate-work-notapid"
    other.mkdir()
    swept = local.sweep_scratch()
    assert sorted(swept) == sorted(str(p) for p in (dead, unrecorded, reused))
    assert os.path.isdir(mine) and os.path.isdir(kept) and other.is_dir()
    assert not dead.exists() and not unrecorded.exists() and not reused.exists()


_LISTEN = "from multiprocessing.connection import Listener; Listener(family='AF_UNIX').close()"


def test_the_tasks_tmpdir_leaves_room_for_multiprocessing_sockets(tmp_path):
    """torch's DataLoader workers hand batches over through AF_UNIX sockets under $TMPDIR (107 bytes at
    most): in a deep run folder the tasks' TMPDIR must stay short, or embed with loader workers hangs."""
    deep = tmp_path / ("d" * 60) / ("e" * 40) / "run" / ".work"
    deep.mkdir(parents=True)
    too_long = {**os.environ, "TMPDIR": str(deep / local.TASK_TMP)}
    (deep / local.TASK_TMP).mkdir()
    assert subprocess.run([sys.executable, "-c", _LISTEN], env=too_long, capture_output=True).returncode != 0
    with local._task_environment(str(deep)):
        tmp = os.environ["TMPDIR"]
        assert len(tmp) <= local.MAX_TASK_TMP and not tmp.startswith(str(deep))
        assert subprocess.run([sys.executable, "-c", _LISTEN], capture_output=True).returncode == 0
    assert not os.path.exists(tmp)  # the private folder goes with the run
    shallow = tmp_path.parent / "w"
    shallow.mkdir(exist_ok=True)
    if len(str(shallow / local.TASK_TMP)) <= local.MAX_TASK_TMP:
        with local._task_environment(str(shallow)):
            assert os.environ["TMPDIR"] == str(shallow / local.TASK_TMP)  # inside the scratch, as before
