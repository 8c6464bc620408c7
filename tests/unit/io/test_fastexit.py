"""Task processes skip the interpreter teardown once a phase succeeded; failures and other processes don't."""

from __future__ import annotations

import subprocess
import sys

PRELUDE = (
    "import atexit, sys\n"
    "from kurate.io import fastexit\n"
    "atexit.register(lambda: print('teardown ran', flush=True))\n"  # runs last: only on a normal exit
)


def _py(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", PRELUDE + code], capture_output=True, text=True, timeout=60)


def test_armed_process_exits_at_once_with_its_output_flushed():
    out = _py("print('phase output'); sys.stdout.write('unflushed tail'); assert fastexit.arm(force=True)\n")
    assert out.returncode == 0
    assert out.stdout.startswith("phase output\nunflushed tail")
    assert "teardown ran" not in out.stdout  # the slow part was skipped


def test_a_failure_keeps_the_normal_exit_and_traceback():
    out = _py("fastexit.arm(force=True)\nraise RuntimeError('boom')\n")
    assert out.returncode == 1
    assert "RuntimeError: boom" in out.stderr
    assert "teardown ran" in out.stdout


def test_only_task_processes_are_armed(tmp_path):
    out = _py("print(fastexit.is_task_process(), fastexit.arm())\n")
    assert out.stdout.splitlines()[0] == "False False"  # python -c, pytest, notebooks: left alone
    assert "teardown ran" in out.stdout
    from kurate.io import fastexit

    assert "kfp.dsl.executor_main" in fastexit.TASK_MAINS and fastexit.TASK_MAIN_PREFIX == "kurate.phases."


def test_a_phase_entry_point_exits_fast_and_right(tmp_path):
    """python -m kurate.phases.<phase> (an Argo step): exit code 0 after the outputs are written."""
    import json

    src = tmp_path / "in"
    src.mkdir()
    from PIL import Image

    Image.new("RGB", (8, 8)).save(src / "a.png")
    cfg = json.dumps({"input_dir": str(src)})
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "kurate.phases.ingest",
            "--files-out",
            str(tmp_path / "files"),
            "--config",
            cfg,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "files" / "files.csv").read_text().splitlines()[-1] == "a.png"
    assert (tmp_path / "files" / "phase.json").is_file()
    # and a failing one keeps its exit code (armed only after success)
    bad = subprocess.run(
        [sys.executable, "-m", "kurate.phases.ingest", "--files-out", str(tmp_path / "f2"), "--config", "{}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "kurate: error" in bad.stderr
