"""Crash points: the storage write primitives are crash points; a trace records them, a switch kills at one.

``KURATE_CRASH_TRACE=file`` appends one line per point hit (any process of the run);
``KURATE_CRASH_AT=k`` (the k-th point of the run) or ``module:function[#n]`` (the n-th point hit
inside that function) makes the process die there with SIGKILL, just before the write becomes
visible; ``KURATE_CRASH_KILL=run`` takes the whole ``kurate`` command down with it (``KURATE_RUN_PID``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from kurate.io import crash, storage


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KURATE_")}
    env.update(extra)
    return env


def _trace(path):
    return [line.split("\t") for line in path.read_text().splitlines()]


def test_every_write_primitive_is_a_crash_point(tmp_path, monkeypatch):
    trace = tmp_path / "trace"
    monkeypatch.setenv(crash.ENV_TRACE, str(trace))
    storage.write_text(str(tmp_path / "a.txt"), "a")
    with storage.atomic_writer(str(tmp_path / "b.bin")) as fh:
        fh.write(b"b")
    assert storage.create_exclusive(str(tmp_path / "c.json"), b"{}")
    storage.remove_tree(str(tmp_path / "a.txt"))
    lines = _trace(trace)
    assert [int(line[0]) for line in lines] == [1, 2, 3, 4]
    assert {line[1] for line in lines} == {str(os.getpid())}
    here = f"{__name__}:test_every_write_primitive_is_a_crash_point"
    assert [line[2] for line in lines] == [here] * 4
    assert [line[3] for line in lines] == [str(tmp_path / n) for n in ("a.txt", "b.bin", "c.json", "a.txt")]


def test_no_switch_no_trace(tmp_path, monkeypatch):
    monkeypatch.delenv(crash.ENV_TRACE, raising=False)
    monkeypatch.delenv(crash.ENV_AT, raising=False)
    storage.write_text(str(tmp_path / "a.txt"), "a")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_the_site_is_the_function_that_asked_for_the_write(tmp_path, monkeypatch):
    trace = tmp_path / "trace"
    monkeypatch.setenv(crash.ENV_TRACE, str(trace))

    def writer_of_lists():
        storage.write_text(str(tmp_path / "x.txt"), "x")

    writer_of_lists()
    site, stack = _trace(trace)[0][2], _trace(trace)[0][4]
    assert site.endswith("writer_of_lists")
    assert "test_the_site_is_the_function_that_asked_for_the_write" in stack  # callers, outermost first


SCRIPT = textwrap.dedent(
    """
    import sys
    from kurate.io import storage

    def first(d):
        storage.write_text(d + "/one.txt", "1")

    def second(d):
        storage.write_text(d + "/two.txt", "2")
        storage.write_text(d + "/three.txt", "3")

    first(sys.argv[1]); second(sys.argv[1])
    print("finished")
    """
)


@pytest.mark.parametrize(
    "at, present",
    [
        ("1", []),
        ("2", ["one.txt"]),
        ("3", ["one.txt", "two.txt"]),
        ("__main__:second#2", ["one.txt", "two.txt"]),
        ("__main__:second", ["one.txt"]),
        ("__main__:first#1", []),
    ],
)
def test_the_switch_kills_just_before_the_chosen_write(tmp_path, at, present):
    trace = tmp_path / "trace"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        env=_clean_env(KURATE_CRASH_AT=at, KURATE_CRASH_TRACE=str(trace)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert "finished" not in proc.stdout
    assert (
        sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".txt" and not p.name.startswith("."))
        == present
    )


def test_the_switch_without_a_trace_file_still_counts(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        env=_clean_env(KURATE_CRASH_AT="2"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL
    assert sorted(
        p.name for p in tmp_path.iterdir() if p.suffix == ".txt" and not p.name.startswith(".")
    ) == ["one.txt"]


def test_points_are_counted_across_the_processes_of_a_run(tmp_path):
    trace = tmp_path / "trace"
    env = _clean_env(KURATE_CRASH_TRACE=str(trace))
    for _ in range(2):
        subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], env=env, check=True, timeout=120)
    assert [int(line[0]) for line in _trace(trace)] == [1, 2, 3, 4, 5, 6]
    assert len({line[1] for line in _trace(trace)}) == 2


def test_kill_run_takes_the_parent_command_down_too(tmp_path):
    parent = textwrap.dedent(
        f"""
        import os, subprocess, sys, time
        os.environ["KURATE_RUN_PID"] = str(os.getpid())
        subprocess.run([sys.executable, "-c", {SCRIPT!r}, sys.argv[1]])
        time.sleep(1)
        print("parent survived")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", parent, str(tmp_path)],
        env=_clean_env(KURATE_CRASH_AT="2", KURATE_CRASH_KILL="run"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL and "parent survived" not in proc.stdout


def test_a_bucket_write_is_a_crash_point_too(tmp_path, monkeypatch, s3):
    trace = tmp_path / "trace"
    monkeypatch.setenv(crash.ENV_TRACE, str(trace))
    bucket = s3.bucket()
    uri, other = f"s3://{bucket}/out/x.txt", f"s3://{bucket}/out/y.txt"
    storage.write_text(uri, "x")
    assert storage.create_exclusive(other, b"y")
    assert [line[3] for line in _trace(trace)] == [uri, other]


def test_a_killed_atomic_write_leaves_the_old_content(tmp_path):
    (tmp_path / "one.txt").write_text("old")
    start = time.time()
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        env=_clean_env(KURATE_CRASH_AT="1"),
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL and time.time() - start < 120
    assert (tmp_path / "one.txt").read_text() == "old"
