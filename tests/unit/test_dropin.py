"""The all-in-one image's entry point and the container defaults of input_dir/output_dir (no engine needed;
the image itself runs Lightly's command in tests/images/test_dropin.py)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from kurate import dropin
from kurate.config.load import compose_config


def _in_child(fn) -> int:
    """Run ``fn`` in a forked child (uid changes must not touch this process); its exit status."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os._exit(fn())
        except BaseException:
            os._exit(99)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root (CI runs as root)")
def test_root_becomes_the_owner_of_the_shared_dir():
    top = Path(tempfile.mkdtemp(prefix="kurate-dropin-"))  # pytest's tmp_path is closed to other users
    top.chmod(0o755)
    shared = top / "shared"
    shared.mkdir()
    os.chown(shared, 4321, 4322)
    try:
        _check_becomes_owner(shared)
    finally:
        shutil.rmtree(top)


def _check_becomes_owner(shared: Path) -> None:

    def child() -> int:
        got = dropin.become_owner_of(str(shared))
        ok = got == (4321, 4322) and os.getuid() == os.geteuid() == 4321 and os.getgid() == 4322
        ok = ok and os.getgroups() == [] and (open(shared / "f", "w").close() is None)
        return 0 if ok else 1

    assert _in_child(child) == 0
    assert os.stat(shared / "f").st_uid == 4321


def test_a_root_owned_shared_dir_or_a_non_root_process_changes_nothing(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    uid = os.geteuid()
    if uid == 0:
        os.chown(shared, 0, 0)
    assert (
        _in_child(lambda: 0 if dropin.become_owner_of(str(shared)) is None and os.geteuid() == uid else 1)
        == 0
    )
    assert _in_child(lambda: 0 if dropin.become_owner_of(str(tmp_path / "absent")) is None else 1) == 0


def test_an_unwritable_home_is_replaced(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    dropin.ensure_writable_home()
    assert os.environ["HOME"] == str(home)
    if os.geteuid() != 0:  # root can write anywhere: the access check is only meaningful for others
        home.chmod(stat.S_IRUSR | stat.S_IXUSR)
        dropin.ensure_writable_home()
        assert os.environ["HOME"] != str(home) and os.access(os.environ["HOME"], os.W_OK)
    monkeypatch.setenv("HOME", str(tmp_path / "missing"))
    dropin.ensure_writable_home()
    assert os.environ["HOME"] != str(tmp_path / "missing") and os.access(os.environ["HOME"], os.W_OK)


def test_container_defaults_for_input_and_output_dir(tmp_path):
    env = {"KURATE_INPUT_DIR": "/home/input_dir", "KURATE_OUTPUT_DIR": "/home/shared_dir"}
    stop = "stopping_condition.n_samples=2"
    cfg = compose_config([stop], environ=env)
    assert (cfg.input_dir, cfg.output_dir) == ("/home/input_dir", "/home/shared_dir")
    given = compose_config([f"input_dir={tmp_path}", "output_dir=/elsewhere", stop], environ=env)
    assert (given.input_dir, given.output_dir) == (str(tmp_path), "/elsewhere")
    by_id = compose_config([f"datasource.dataset_id={tmp_path}", stop], environ=env)
    assert not by_id.input_dir and by_id.output_dir == "/home/shared_dir"
    assert not compose_config([stop], environ={}).input_dir


def test_sigterm_reaches_the_running_task_process():
    """As PID 1 the entry point gets `docker stop`'s SIGTERM; kfp.local then waits for the running task's
    process (Popen's context manager), so the handler passes the signal on to the process group."""
    script = (
        "import signal, subprocess, sys\n"
        "from kurate import dropin\n"
        "signal.signal(signal.SIGTERM, dropin._terminate)\n"
        "with subprocess.Popen(['sleep', '1000']) as task:\n"
        "    print(task.pid, flush=True)\n"
        "    task.wait()\n"
    )
    # Its own session: the handler signals its whole process group, which must not be pytest's.
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    task_pid = int(proc.stdout.readline())
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(timeout=20) == 128 + signal.SIGTERM
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    with pytest.raises(ProcessLookupError):
        os.kill(task_pid, 0)
