"""The run-folder claim: one live run per run folder, stale locks recovered, timestamp folders unique.

Written against ``storage.create_exclusive`` only, so the same claim holds on a local disk and in a
bucket (checked here on the moto S3 server and the GCS emulator too).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time

import pytest

from kurate.errors import ConfigError, OutputExistsError
from kurate.io import runfolder, storage

SETTINGS = {"input_dir": "/data/in", "stopping_condition.n_samples": 5, "output_image_format": "png"}


def _out(where, request, tmp_path) -> str:
    if where in ("s3", "gs"):
        helper = request.getfixturevalue("s3" if where == "s3" else "gcs")
        return f"{where}://{helper.bucket()}/out"
    return str(tmp_path / "out")


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("where", ["local", "s3", "gs"])
def test_claim_makes_the_folder_its_record_and_a_lock_release_drops_the_lock(where, request, tmp_path):
    out = _out(where, request, tmp_path)
    claim = runfolder.claim(out, "r1", SETTINGS)
    assert claim.run_dir == storage.join(out, "r1") and not claim.resumed
    record = json.loads(storage.read_text(storage.join(claim.run_dir, runfolder.RECORD)))
    assert record["token"] == claim.token and record["settings"] == SETTINGS
    lock = json.loads(storage.read_text(storage.join(claim.run_dir, runfolder.LOCK)))
    assert lock["pid"] == os.getpid() and lock["host"] == socket.gethostname()
    assert lock["token"] == claim.token
    claim.release()
    assert not storage.exists(storage.join(claim.run_dir, runfolder.LOCK))
    again = runfolder.claim(out, "r1", SETTINGS)
    assert again.resumed and again.token == claim.token  # the run keeps its identity across resumes
    again.release()


@pytest.mark.parametrize("where", ["local", "s3", "gs"])
def test_a_second_live_claimant_is_refused_with_one_line(where, request, tmp_path):
    out = _out(where, request, tmp_path)
    first = runfolder.claim(out, "r1", SETTINGS)
    with pytest.raises(runfolder.RunFolderBusyError) as err:
        runfolder.claim(out, "r1", SETTINGS)
    assert isinstance(err.value, ConfigError) and err.value.exit_code == 2
    text = str(err.value)
    assert "\n" not in text and "run_directory" in text and str(os.getpid()) in text
    first.release()


@pytest.mark.parametrize("where", ["local", "s3", "gs"])
def test_a_stale_lock_of_a_dead_process_is_recovered(where, request, tmp_path):
    out = _out(where, request, tmp_path)
    first = runfolder.claim(out, "r1", SETTINGS)
    lock_uri = storage.join(first.run_dir, runfolder.LOCK)
    lock = json.loads(storage.read_text(lock_uri))
    lock["pid"] = _dead_pid()  # the owner died without releasing (kill -9, power loss)
    storage.write_text(lock_uri, json.dumps(lock))
    second = runfolder.claim(out, "r1", SETTINGS)
    assert second.resumed
    assert json.loads(storage.read_text(lock_uri))["pid"] == os.getpid()
    second.release()


def test_a_reused_pid_is_not_mistaken_for_the_owner(tmp_path):
    first = runfolder.claim(str(tmp_path), "r1", SETTINGS)
    lock_uri = os.path.join(first.run_dir, runfolder.LOCK)
    lock = json.loads(open(lock_uri).read())
    lock["pid_start"] = "1"  # same pid number, but another process (started at another time)
    storage.write_text(lock_uri, json.dumps(lock))
    second = runfolder.claim(str(tmp_path), "r1", SETTINGS)
    assert second.resumed
    second.release()


def test_a_lock_from_another_host_lives_while_its_heartbeat_is_fresh(tmp_path):
    first = runfolder.claim(str(tmp_path), "r1", SETTINGS)
    lock_uri = os.path.join(first.run_dir, runfolder.LOCK)
    lock = json.loads(open(lock_uri).read())
    lock.update(host="elsewhere.example", heartbeat=time.time())
    storage.write_text(lock_uri, json.dumps(lock))
    with pytest.raises(runfolder.RunFolderBusyError) as err:
        runfolder.claim(str(tmp_path), "r1", SETTINGS)
    assert "elsewhere.example" in str(err.value)
    lock["heartbeat"] = time.time() - 10 * runfolder.LEASE_S
    storage.write_text(lock_uri, json.dumps(lock))
    runfolder.claim(str(tmp_path), "r1", SETTINGS).release()


def _claim_in_process(args):
    out, name, now = args
    from kurate.io import runfolder as rf

    try:
        c = rf.claim(out, name, SETTINGS, now=now)
    except rf.RunFolderBusyError:
        return "busy"
    time.sleep(0.5)  # hold it while the others try
    return c.run_dir


def _race(args_list):
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(len(args_list)) as pool:
        return pool.map(_claim_in_process, args_list)


@pytest.mark.parametrize("where", ["local", "s3", "gs"])
def test_timestamp_folders_never_collide(where, request, tmp_path):
    out = _out(where, request, tmp_path)
    now = time.time()
    results = _race([(out, None, now)] * 6)
    assert len(set(results)) == 6 and "busy" not in results
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(now))
    assert all(r.rsplit("/", 1)[-1].startswith(stamp) for r in results)
    assert storage.join(out, stamp) in results  # the first keeps Lightly's plain name


def test_a_timestamp_never_reuses_an_existing_folder(tmp_path):
    now = time.time()
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(now))
    (tmp_path / stamp).mkdir()
    (tmp_path / stamp / "report.json").write_text("{}")  # an older finished run (no kurate record)
    claim = runfolder.claim(str(tmp_path), None, SETTINGS, now=now)
    assert claim.run_dir != str(tmp_path / stamp) and os.path.basename(claim.run_dir).startswith(stamp)
    claim.release()


@pytest.mark.parametrize("where", ["local", "s3", "gs"])
def test_one_name_claimed_by_many_processes_at_once_has_exactly_one_winner(where, request, tmp_path):
    results = _race([(_out(where, request, tmp_path), "same", None)] * 6)
    assert results.count("busy") == 5


def test_many_processes_recovering_one_stale_lock_have_exactly_one_winner(tmp_path):
    first = runfolder.claim(str(tmp_path), "same", SETTINGS)
    lock_uri = os.path.join(first.run_dir, runfolder.LOCK)
    lock = json.loads(open(lock_uri).read())
    lock["pid"] = _dead_pid()
    storage.write_text(lock_uri, json.dumps(lock))
    results = _race([(str(tmp_path), "same", None)] * 6)
    assert results.count("busy") == 5


@pytest.mark.parametrize("where", ["local", "s3", "gs"])
def test_resuming_with_other_settings_is_refused_naming_the_keys(where, request, tmp_path):
    out = _out(where, request, tmp_path)
    runfolder.claim(out, "r1", SETTINGS).release()
    changed = {**SETTINGS, "stopping_condition.n_samples": 3, "output_image_format": "jpg"}
    with pytest.raises(runfolder.SettingsChangedError) as err:
        runfolder.claim(out, "r1", changed)
    text = str(err.value)
    assert err.value.exit_code == 2 and "\n" not in text
    assert "stopping_condition.n_samples" in text and "output_image_format" in text
    assert "input_dir" not in text
    assert "run_directory" in text
    # the refused attempt left the lock free: the original settings still resume it
    runfolder.claim(out, "r1", SETTINGS).release()


def test_a_complete_run_is_refused_and_its_leftovers_are_cleaned(tmp_path):
    claim = runfolder.claim(str(tmp_path), "r1", SETTINGS)
    run = tmp_path / "r1"
    (run / "report.json").write_text("{}")
    (run / ".work" / "x").mkdir(parents=True)  # killed after report.json, before its clean-up
    lock = json.loads((run / runfolder.LOCK).read_text())
    lock["pid"] = _dead_pid()
    (run / runfolder.LOCK).write_text(json.dumps(lock))
    del claim
    with pytest.raises(OutputExistsError):
        runfolder.claim(str(tmp_path), "r1", SETTINGS)
    assert not (run / ".work").exists() and not (run / runfolder.LOCK).exists()
    assert (run / "report.json").exists()


def test_a_resumed_folder_loses_the_killed_attempts_temp_files_and_work(tmp_path):
    runfolder.claim(str(tmp_path), "r1", SETTINGS).release()
    run = tmp_path / "r1"
    (run / "filenames").mkdir()
    (run / "filenames" / ".tmp-123-abc-sampled_filenames.txt").write_text("half")
    (run / ".work" / "run-1").mkdir(parents=True)
    (run / "filenames" / "corrupt_filenames.txt").write_text("a.jpg\n")
    runfolder.claim(str(tmp_path), "r1", SETTINGS).release()
    assert not (run / "filenames" / ".tmp-123-abc-sampled_filenames.txt").exists()
    assert not (run / ".work").exists()
    assert (run / "filenames" / "corrupt_filenames.txt").exists()  # outputs stay until rewritten


def test_a_folder_with_outputs_but_no_run_record_is_not_resumed_blindly(tmp_path):
    (tmp_path / "old" / "filenames").mkdir(parents=True)
    (tmp_path / "old" / "filenames" / "sampled_filenames.txt").write_text("a.jpg\n")
    with pytest.raises(ConfigError) as err:
        runfolder.claim(str(tmp_path), "old", SETTINGS)
    assert err.value.key == "run_directory"
    (tmp_path / "empty").mkdir()  # an empty folder (killed before its record was written): fine
    runfolder.claim(str(tmp_path), "empty", SETTINGS).release()


def test_a_finished_run_killed_in_its_last_steps_is_tidied_by_the_next_claim(tmp_path):
    """Killed after report.json (a timestamp run, never claimed again): the next claim there tidies it."""
    old = tmp_path / "2026-01-01_00-00-00"
    (old / ".work" / "kfp").mkdir(parents=True)
    (old / "report.json").write_text("{}")
    (old / ".kurate").mkdir()
    (old / runfolder.LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": _dead_pid()}))
    busy = tmp_path / "2026-01-01_00-00-01"  # finished, but its command is still tidying up itself
    (busy / ".work").mkdir(parents=True)
    (busy / "report.json").write_text("{}")
    (busy / ".kurate").mkdir()
    (busy / runfolder.LOCK).write_text(
        json.dumps(
            {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": runfolder._pid_start(os.getpid())}
        )
    )
    unfinished = tmp_path / "2026-01-01_00-00-02"  # resumable: left alone
    (unfinished / ".work").mkdir(parents=True)
    assert runfolder.sweep_finished(str(tmp_path)) == 1
    assert not (old / ".work").exists() and not (old / runfolder.LOCK).exists()
    assert (busy / ".work").exists() and (unfinished / ".work").exists()


def test_empty_folders_and_write_probe_objects_are_not_outputs_of_another_program(tmp_path):
    """The start-time write probe may leave an empty folder (or, in a bucket refusing deletes, its
    object): the claim takes such a folder; a real file or an odd entry (a FIFO) is refused."""
    run = tmp_path / "r"
    (run / "checkpoints").mkdir(parents=True)
    (run / f"{storage.PROBE_PREFIX}0123abcd").write_bytes(b"")
    runfolder.claim(str(tmp_path), "r", SETTINGS).release()
    (tmp_path / "f").mkdir()
    os.mkfifo(tmp_path / "f" / "pipe")
    with pytest.raises(ConfigError, match="did not record"):
        runfolder.claim(str(tmp_path), "f", SETTINGS)
    (tmp_path / "g" / "sub").mkdir(parents=True)
    (tmp_path / "g" / "sub" / "x.txt").write_text("x")
    with pytest.raises(ConfigError, match="did not record"):
        runfolder.claim(str(tmp_path), "g", SETTINGS)


@pytest.mark.parametrize("where", ["s3", "gs"])
def test_a_write_probe_object_left_in_a_bucket_run_folder_is_not_another_programs_file(
    where, request, tmp_path
):
    """A bucket that refuses deletes keeps the start probe's ``.kurate-probe-*`` object: still claimable."""
    out = _out(where, request, tmp_path)
    storage.write_bytes(storage.join(out, "r", f"{storage.PROBE_PREFIX}0123abcd"), b"")
    runfolder.claim(out, "r", SETTINGS).release()
    storage.write_bytes(storage.join(out, "other", "notes.txt"), b"x")
    with pytest.raises(ConfigError, match="did not record"):
        runfolder.claim(out, "other", SETTINGS)


def test_a_killed_owner_not_yet_reaped_is_dead(tmp_path):
    """A zombie (killed, its parent or init not done reaping it) writes nothing any more: its lock is
    stale and its temp files are removed (the crash walk's rerun found a killed task's temp kept)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while open(f"/proc/{proc.pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    try:
        assert not storage.pid_alive(proc.pid) and storage.pid_alive(os.getpid())
        owner = {"host": socket.gethostname(), "pid": proc.pid, "pid_start": runfolder._pid_start(proc.pid)}
        assert not runfolder.owner_is_live(owner)
        temp = tmp_path / f"{storage.TEMP_PREFIX}{storage.HOST_TAG}-{proc.pid}-abcd-x.npz"
        temp.write_bytes(b"half")
        assert storage.remove_stale_temps(str(tmp_path)) == 1 and not temp.exists()
    finally:
        proc.wait()
