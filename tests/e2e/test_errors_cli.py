"""Errors keep their meaning on the way out: a phase's error class and one-line message reach the user.

Through ``python -m kurate.phases.<phase>`` (what an Argo step runs) and through the ``kurate``
command (kfp.local) alike: the exit code is the class's (config 2, datapool conflict 3, other 1),
stderr ends with one plain line, no traceback and no ANSI codes (stderr is not a terminal here);
the traceback is in the run's log file, and on the console only with ``KURATE_DEBUG=1``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import make_image_folder

KURATE = str(Path(sys.executable).with_name("kurate"))
FAST = [
    "lightly.collate.input_size=32",
    "lightly.loader.batch_size=8",
    "lightly.loader.num_workers=0",
    "lightly.model.num_ftrs=16",
    "lightly.model.name=resnet-9",
    "lightly.model.width=0.25",
    "lightly.pre_trained=False",
    "upload_report=False",
]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KURATE_")}
    env.update(extra)
    return env


def kurate(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([KURATE, *args], capture_output=True, text=True, timeout=600, env=_env(**env))


def phase(name: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"kurate.phases.{name}", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(**env),
    )


def assert_one_plain_line(proc: subprocess.CompletedProcess, code: int, *words: str) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stderr[-3000:])
    out = proc.stdout + proc.stderr
    assert "\x1b[" not in out, "ANSI codes although stderr is not a terminal"
    assert "Traceback" not in out, out[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("kurate: error: "), proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert errors == [last], errors  # one line says what went wrong, once
    for w in words:
        assert w in last, (w, last)
    return last


# --------------------------------------------------------------------------- python -m entry points


def test_phase_entry_point_config_error_exit_2_and_error_record(tmp_path):
    inp = make_image_folder(tmp_path / "in", n=2, n_dup=0, corrupt=False).root
    record = tmp_path / "err.json"
    cfg = json.dumps({"input_dir": str(inp), "relevant_filenames_file": str(tmp_path / "nope.txt")})
    proc = phase("ingest", "--files-out", str(tmp_path / "o"), "--config", cfg, KURATE_ERROR_FILE=str(record))
    assert_one_plain_line(proc, 2, "relevant_filenames_file", "nope.txt")
    data = json.loads(record.read_text())
    assert data["class"] == "ConfigError" and data["exit_code"] == 2
    assert "relevant_filenames_file" in data["message"] and "\n" not in data["message"]
    assert "Traceback" in data["traceback"]


def test_phase_entry_point_runtime_error_exit_1(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = phase(
        "ingest",
        "--files-out",
        str(tmp_path / "o"),
        "--config",
        json.dumps({"input_dir": str(tmp_path / "empty")}),
    )
    assert_one_plain_line(proc, 1, "no image or video files")


def test_phase_entry_point_os_error_is_one_line_too(tmp_path):
    inp = make_image_folder(tmp_path / "in", n=2, n_dup=0, corrupt=False).root
    (tmp_path / "file").write_text("not a folder")
    proc = phase(
        "ingest", "--files-out", str(tmp_path / "file" / "o"), "--config", json.dumps({"input_dir": str(inp)})
    )
    assert_one_plain_line(proc, 1, str(tmp_path / "file"))


def test_phase_entry_point_traceback_with_the_debug_switch(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = phase(
        "ingest",
        "--files-out",
        str(tmp_path / "o"),
        "--config",
        json.dumps({"input_dir": str(tmp_path / "empty")}),
        KURATE_DEBUG="1",
    )
    assert proc.returncode == 1 and "Traceback" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("kurate: error: no image or video files")


def test_disk_full_reads_as_one_line():
    import errno

    from kurate.errors import describe

    exc = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/out/r/data/embeddings.csv")
    text, code = describe(exc)
    assert code == 1 and "\n" not in text
    assert "no space left" in text.lower() and "/out/r/data/embeddings.csv" in text


# --------------------------------------------------------------------------- the kurate command


def test_kurate_error_inside_a_task_is_one_plain_line_with_the_class_exit_code(tmp_path):
    (tmp_path / "empty").mkdir()
    args = [
        f"input_dir={tmp_path / 'empty'}",
        f"output_dir={tmp_path / 'out'}",
        "run_directory=r",
        "stopping_condition.n_samples=2",
        *FAST,
    ]
    proc = kurate(*args)
    assert_one_plain_line(proc, 1, "no image or video files", str(tmp_path / "empty"))
    log = (tmp_path / "out" / "r" / "kurate.log").read_text()
    assert "Traceback" in log and "no image or video files" in log  # always in the run's log file
    assert "kurate.log" in proc.stderr  # the user is told where the details are
    debug = kurate(*args, KURATE_DEBUG="1")
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_kurate_config_error_raised_inside_a_task_exits_2(tmp_path):
    inp = make_image_folder(tmp_path / "in", n=3, n_dup=0, corrupt=False).root
    rel = tmp_path / "relevant.txt"
    rel.write_text("a.png\n")
    os.chmod(rel, 0)
    if os.access(rel, os.R_OK):  # root reads anything: make it unreadable another way
        rel.unlink()
        rel.mkdir()
    proc = kurate(
        f"input_dir={inp}",
        f"output_dir={tmp_path / 'out'}",
        f"relevant_filenames_file={rel}",
        "stopping_condition.n_samples=2",
        *FAST,
    )
    assert_one_plain_line(proc, 2, "relevant_filenames_file")


def test_the_datapool_race_loser_exits_3_with_the_readmes_words(tmp_path):
    """A second run commits while the first one runs: the first stops with exit 3, its datapool intact."""
    import numpy as np

    from kurate.pool import datapool

    data = make_image_folder(tmp_path / "in", n=8, n_dup=0)
    out = tmp_path / "out"
    args = [
        f"input_dir={data.root}",
        f"output_dir={out}",
        "run_directory=r",
        "datapool.name=pool",
        "stopping_condition.n_samples=2",
        *FAST,
    ]
    proc = subprocess.Popen(
        [KURATE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
    )
    deadline = time.time() + 300
    while time.time() < deadline and not list((out / "r").glob(".work/**/check/clean/meta.json")):
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before the other commit could be made"
    loc = str(out / "datapool" / "pool")
    x = np.zeros((1, 16), np.float32)
    desc = {"dim": 16, "source": "another run"}
    datapool.commit(loc, 0, ["other.png"], x, ["0" * 64], desc, run_id="other")
    stdout, stderr = proc.communicate(timeout=600)
    done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert_one_plain_line(done, 3, "was updated by another run")
    assert datapool.latest_version(loc) == 1  # the loser added nothing
    again = kurate(*args)  # and the README's advice works: run it again
    assert again.returncode == 0, again.stderr[-2000:]
    assert datapool.latest_version(loc) == 2


def test_a_second_live_run_into_the_same_run_folder_is_refused(tmp_path):
    def start(*args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [KURATE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
        )

    data = make_image_folder(tmp_path / "in", n=10, n_dup=0)
    out = tmp_path / "out"
    args = [
        f"input_dir={data.root}",
        f"output_dir={out}",
        "run_directory=r",
        "stopping_condition.n_samples=2",
        *FAST,
    ]
    first = start(*args)
    deadline = time.time() + 300
    while time.time() < deadline and not (out / "r" / ".kurate" / "lock.json").exists():
        time.sleep(0.05)
    second = kurate(*args)
    assert first.poll() is None, "the first run ended before the second started"
    assert second.returncode == 2, second.stderr[-2000:]
    last = second.stderr.strip().splitlines()[-1]
    assert last.startswith("kurate: error: run_directory: ") and "in use by another kurate run" in last
    assert str(first.pid) in last
    _, first_err = first.communicate(timeout=600)  # (reads its output: a full pipe would block it)
    assert first.returncode == 0, first_err[-3000:]
    assert len((out / "r" / "filenames" / "sampled_filenames.txt").read_text().splitlines()) == 2
