"""The run-folder claim: at most one live ``kurate`` run per run folder, and no two runs in one folder.

Built only on :func:`kurate.io.storage.create_exclusive` (local O_EXCL link, S3 ``If-None-Match: *``,
GCS ``ifGenerationMatch=0``), so the same protocol holds on a local disk and in a bucket. Inside the
run folder::

    .kurate/run.json     the run's record, created once (exclusively) by the first claim: its token
                         (the run's identity across resumes: the datapool records it with a commit),
                         when it started and the settings it runs with
    .kurate/lock.json    the live claim: owner host, pid (+ the process's start time, so a reused pid
                         is not mistaken for the owner), a heartbeat; removed by :meth:`Claim.release`

- A named folder (``run_directory``): the lock is created exclusively; if one exists and its owner
  lives, the claim is refused (:class:`RunFolderBusyError`, exit 2, one line naming the owner); if its
  owner is dead (same host: the pid is gone; another host: no heartbeat for :data:`LEASE_S`), the
  stale lock is broken — by exactly one claimant, which first creates the marker
  ``lock.json.break-<nonce>`` exclusively — and taken over.
- A timestamp folder (no ``run_directory``): the first of ``<stamp>``, ``<stamp>-2``, ``<stamp>-3``, …
  that holds nothing and whose record this claimant creates exclusively, so two runs started in
  the same second never share a folder.
- Resuming: the recorded settings must equal this run's (:class:`SettingsChangedError` names the keys
  that differ), the folder loses what a killed attempt left (``.work``, temp files), and a complete
  run (``report.json``) is refused (:class:`~kurate.errors.OutputExistsError`) after the same clean-up.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from kurate.errors import ConfigError, OutputExistsError, RunFolderBusyError, SettingsChangedError
from kurate.io import storage

__all__ = [
    "Claim",
    "RunFolderBusyError",
    "SettingsChangedError",
    "claim",
    "owner_is_live",
    "settings_diff",
    "this_process",
]

log = logging.getLogger("kurate.runfolder")

FORMAT = "kurate.run/1"
LOCK_FORMAT = "kurate.run-lock/1"
META_DIR = ".kurate"
RECORD = f"{META_DIR}/run.json"
LOCK = f"{META_DIR}/lock.json"
#: kfp.local's scratch inside a local run folder (removed after success; by the next claim after a kill).
WORK_DIR = ".work"
#: A lock of another host is live while its heartbeat is younger than this (seconds).
LEASE_S = 600.0
_HEARTBEAT_S = LEASE_S / 5
#: Files a run folder may hold without a record: a claim killed before writing it.
_UNRECORDED_OK = (META_DIR, WORK_DIR)


def _pid_start(pid: int) -> str:
    """The process's start time (clock ticks since boot, /proc) — '' where unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def this_process() -> dict[str, Any]:
    """Who runs this code, as :func:`owner_is_live` checks it: host, pid, the process's start time."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": _pid_start(os.getpid())}


def owner_is_live(owner: dict[str, Any]) -> bool:
    """Whether the process that wrote ``owner`` (a lock record) may still be running."""
    if owner.get("host") == socket.gethostname():
        try:
            pid = int(owner.get("pid", 0))
        except (TypeError, ValueError):
            return False
        if pid <= 0:
            return False
        if not storage.pid_alive(pid):
            return False
        recorded, actual = str(owner.get("pid_start") or ""), _pid_start(pid)
        return not (recorded and actual and recorded != actual)
    try:
        age = time.time() - float(owner.get("heartbeat", 0))
        lease = float(owner.get("lease_s", LEASE_S))
    except (TypeError, ValueError):
        return False
    return age < lease


def describe_owner(owner: dict[str, Any]) -> str:
    started = owner.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(started))) if started else "?"
    return f"pid {owner.get('pid')} on host {owner.get('host')}, since {when}"


def settings_diff(old: dict[str, Any], new: dict[str, Any], may_change: Collection[str] = ()) -> list[str]:
    """``key: old -> new`` for every key whose value differs (keys in ``may_change`` aside)."""
    out = []
    for key in sorted(set(old) | set(new)):
        if key in may_change or old.get(key) == new.get(key):
            continue
        out.append(f"{key}: {old.get(key, '(unset)')!r} -> {new.get(key, '(unset)')!r}")
    return out


def _read_json(uri: str) -> dict[str, Any] | None:
    try:
        data = json.loads(storage.read_text(uri))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


@dataclass
class Claim:
    """A process's hold on a run folder (:func:`claim`); :meth:`release` it when the run ends."""

    run_dir: str
    token: str
    resumed: bool
    settings: dict[str, Any]
    owner: dict[str, Any]
    started: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _beat: threading.Thread | None = field(default=None, repr=False)

    @property
    def lock_uri(self) -> str:
        """Where the lock lives."""
        return storage.join(self.run_dir, LOCK)

    def _heartbeat(self) -> None:
        while not self._stop.wait(_HEARTBEAT_S):
            current = _read_json(self.lock_uri)
            if not current or current.get("nonce") != self.owner["nonce"]:
                return  # someone broke it (we were presumed dead): nothing to refresh
            self.owner["heartbeat"] = time.time()
            storage.write_text(self.lock_uri, json.dumps(self.owner, indent=1))

    def start_heartbeat(self) -> None:
        """Keep the lock fresh for claimants on other hosts (a daemon thread)."""
        if self._beat is None:
            self._beat = threading.Thread(target=self._heartbeat, name="kurate-run-lock", daemon=True)
            self._beat.start()

    def release(self) -> None:
        """Drop the lock (the record stays: it identifies the run folder's run)."""
        self._stop.set()
        current = _read_json(self.lock_uri)
        if current is not None and current.get("nonce") == self.owner["nonce"]:
            storage.remove_tree(self.lock_uri)
        _remove_break_markers(self.run_dir)


def recorded_identity(run_dir: str) -> tuple[str, float] | None:
    """(token, start time) of the run recorded in ``run_dir``, or None (no run started there yet)."""
    record = _read_json(storage.join(run_dir, RECORD))
    if not record or not record.get("token"):
        return None
    return str(record["token"]), float(record.get("started") or 0.0)


def _owner(token: str) -> dict[str, Any]:
    now = time.time()
    return {
        "format": LOCK_FORMAT,
        "token": token,
        "nonce": uuid.uuid4().hex,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "pid_start": _pid_start(os.getpid()),
        "started": now,
        "heartbeat": now,
        "lease_s": LEASE_S,
    }


def _remove_break_markers(run_dir: str) -> None:
    meta = storage.join(run_dir, META_DIR)
    if storage.is_remote(meta) or os.path.isdir(meta):
        for rel in list(storage.list_files(meta)):
            if ".break-" in rel and not storage.is_temp_name(rel.rsplit("/", 1)[-1]):
                storage.remove_tree(storage.join(meta, rel))


def _lock(run_dir: str, owner: dict[str, Any]) -> None:
    """Take the folder's lock for ``owner`` or raise RunFolderBusyError."""
    uri = storage.join(run_dir, LOCK)
    body = json.dumps(owner, indent=1).encode()
    for _ in range(50):
        if storage.create_exclusive(uri, body):
            return
        current = _read_json(uri)
        if current is None:
            continue  # released meanwhile: try again
        if current and owner_is_live(current):
            raise RunFolderBusyError(
                f"{run_dir} is in use by another kurate run ({describe_owner(current)}); wait for it to "
                "finish, or choose another run_directory"
            )
        # stale (its owner is dead) or unreadable: exactly one claimant may break it
        nonce = str(current.get("nonce") or "unreadable")
        if not storage.create_exclusive(f"{uri}.break-{nonce}", body):
            time.sleep(0.05)
            continue
        again = _read_json(uri)
        if again is not None and str(again.get("nonce") or "unreadable") == nonce:
            log.warning(
                "run folder %s: taking over the lock of a kurate run that is gone (%s)",
                run_dir,
                describe_owner(current) if current else "unreadable lock",
            )
            storage.remove_tree(uri)
    raise RunFolderBusyError(f"{run_dir}: could not take the run folder's lock; another run keeps taking it")


def _clean_leftovers(run_dir: str) -> None:
    """What a killed attempt leaves in a run folder this process now holds: .work and temp files."""
    storage.remove_tree(storage.join(run_dir, WORK_DIR))
    if not storage.is_remote(run_dir):
        # everything but .kurate/ is ours alone; there other claimants may be writing their lock
        storage.remove_stale_temps(run_dir, recursive=True, any_owner=True, skip=(META_DIR,))
        storage.remove_stale_temps(storage.join(run_dir, META_DIR))


def _is_output(rel: str) -> bool:
    """Whether ``rel`` (a file under a run folder) is something a run may not silently share.

    The record/lock folder and ``.work`` are a claim's own; a write probe's object
    (``.kurate-probe-*``) can be left in a bucket that refuses deletes.
    """
    first = rel.split("/", 1)[0]
    return first not in _UNRECORDED_OK and not rel.rsplit("/", 1)[-1].startswith(storage.PROBE_PREFIX)


def _has_outputs(run_dir: str) -> bool:
    """Whether ``run_dir`` holds any file (empty folders, e.g. made by the write probe, do not count)."""
    if not storage.is_remote(run_dir) and not os.path.isdir(run_dir):
        return False
    odd: list[str] = []  # an entry the listing skips (a FIFO, an odd name) is not ours either
    try:
        return any(
            _is_output(rel) for rel in storage.list_files(run_dir, on_skip=lambda n, r: odd.append(n))
        ) or bool(odd)
    except FileNotFoundError:
        return False


def sweep_finished(output_dir: str) -> int:
    """Remove what a kill after its ``report.json`` left in a finished run folder of a local ``output_dir``.

    Such a folder is never resumed (complete), so nothing will write there again: its ``.work`` and a
    lock whose owner is gone go. Run at every claim, so the leftover lasts until the next run at the
    latest. Returns how many folders were tidied.
    """
    if storage.is_remote(output_dir) or not os.path.isdir(output_dir):
        return 0
    tidied = 0
    with os.scandir(output_dir) as it:
        for entry in it:
            try:
                if not entry.is_dir(follow_symlinks=False) or not os.path.exists(
                    os.path.join(entry.path, "report.json")
                ):
                    continue
            except OSError:
                continue
            work = os.path.join(entry.path, WORK_DIR)
            lock = _read_json(os.path.join(entry.path, LOCK))
            if lock and owner_is_live(lock):
                continue  # its run is just finishing: it removes them itself
            if os.path.lexists(work):
                storage.remove_tree(work)
                tidied += 1
            if lock is not None:
                storage.remove_tree(os.path.join(entry.path, LOCK))
    return tidied


def claim(
    output_dir: str,
    name: str | None,
    settings: dict[str, Any],
    now: float | None = None,
    *,
    may_change: Collection[str] = (),
) -> Claim:
    """Claim ``<output_dir>/<name>`` (or a fresh timestamp folder when ``name`` is None) for this run."""
    if name:
        return _claim_named(storage.join(output_dir, name), settings, may_change)
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(now))
    for i in range(1, 10_000):
        run_dir = storage.join(output_dir, stamp if i == 1 else f"{stamp}-{i}")
        if _has_outputs(run_dir):  # an older run's (an empty folder, e.g. the write probe's, is free)
            continue
        token = uuid.uuid4().hex
        started = time.time()
        record = {"format": FORMAT, "token": token, "started": started, "settings": settings}
        if not storage.create_exclusive(storage.join(run_dir, RECORD), json.dumps(record, indent=1).encode()):
            continue  # another run took this name first
        owner = _owner(token)
        _lock(run_dir, owner)
        return Claim(run_dir, token, False, settings, owner, started)
    raise RunFolderBusyError(f"no free run folder for timestamp {stamp} under {output_dir}")


def _claim_named(run_dir: str, settings: dict[str, Any], may_change: Collection[str]) -> Claim:
    record = _read_json(storage.join(run_dir, RECORD))  # only a lock holder creates it: safe to read first
    token = str((record or {}).get("token") or uuid.uuid4().hex)
    owner = _owner(token)
    _lock(run_dir, owner)
    try:
        record = _read_json(storage.join(run_dir, RECORD))
        complete = storage.exists(storage.join(run_dir, "report.json"))
        if record is None and not complete and _has_outputs(run_dir):
            raise ConfigError(
                "run_directory",
                f"{run_dir} holds files kurate did not record as a run (an older kurate version or "
                "another program); choose another run_directory, or empty that folder",
            )
        _clean_leftovers(run_dir)
        if complete:
            raise OutputExistsError(
                f"run_directory: {run_dir} already holds a complete run; choose another name"
            )
        if record:
            if str(record.get("token")) != token:  # written by a claim that ended between our two reads
                token = owner["token"] = str(record.get("token"))
                storage.write_text(storage.join(run_dir, LOCK), json.dumps(owner, indent=1))
            diff = settings_diff(dict(record.get("settings") or {}), settings, may_change)
            if diff:
                raise SettingsChangedError(
                    f"{run_dir} was started with other settings ({'; '.join(diff)}); rerun with the "
                    "same settings to resume it, or choose another run_directory"
                )
            return Claim(run_dir, token, True, settings, owner, float(record.get("started") or time.time()))
        started = time.time()
        record = {"format": FORMAT, "token": token, "started": started, "settings": settings}
        storage.create_exclusive(storage.join(run_dir, RECORD), json.dumps(record, indent=1).encode())
        return Claim(run_dir, token, False, settings, owner, started)
    except BaseException:
        Claim(run_dir, token, False, settings, owner).release()
        raise
