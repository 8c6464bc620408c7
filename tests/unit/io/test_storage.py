"""kurate.io.storage on local paths, URI helpers, and the retry policy (buckets: test_buckets.py)."""

from __future__ import annotations

import os
import random

import pytest

from kurate.errors import StorageError
from kurate.io import remote, retry, storage


def test_uri_helpers() -> None:
    assert storage.split_uri("s3://bkt/a/b.png") == ("s3", "bkt", "a/b.png")
    assert storage.split_uri("gs://bkt") == ("gs", "bkt", "")
    with pytest.raises(StorageError, match="no bucket"):
        storage.split_uri("s3:///key")
    assert storage.join("s3://bkt/out/", "r1", "/report.json") == "s3://bkt/out/r1/report.json"
    assert storage.resolve_relative("lists/x.txt", "gs://b/out") == "gs://b/out/lists/x.txt"
    assert storage.resolve_relative("s3://o/x.txt", "gs://b/out") == "s3://o/x.txt"
    assert storage.is_inside("s3://b/in/out", "s3://b/in") and storage.is_inside("s3://b/in/", "s3://b/in")
    assert not storage.is_inside("s3://b/input2", "s3://b/in")
    assert not storage.is_inside("gs://b/in/out", "s3://b/in") and not storage.is_inside(
        "/b/in/x", "s3://b/in"
    )


def test_local_is_inside_resolves_symlinks(tmp_path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "in")
    assert storage.is_inside(str(tmp_path / "link" / "out"), str(tmp_path / "in"))
    assert not storage.is_inside(str(tmp_path / "other"), str(tmp_path / "in"))


def test_local_create_exclusive_and_read_many(tmp_path) -> None:
    target = str(tmp_path / "d" / "e.json")
    assert storage.create_exclusive(target, b"one") is True
    assert storage.create_exclusive(target, b"two") is False
    assert storage.read_bytes(target) == b"one"
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["e.json"]  # no temp file left
    (tmp_path / "folder").mkdir()
    uris = [target, str(tmp_path / "nope"), str(tmp_path / "folder")]
    out = list(storage.read_many(uris, threads=1))
    assert out[0] == (target, b"one")
    assert isinstance(out[1][1], FileNotFoundError) and isinstance(out[2][1], IsADirectoryError)
    assert list(storage.read_many(uris, threads=3))[0] == (target, b"one")
    with storage.local_copy(target) as path:
        assert path == target  # local files are used in place


def test_local_path_refuses_buckets() -> None:
    with pytest.raises(StorageError):
        storage.local_path("s3://b/k")


def test_read_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    assert storage.read_threads("/data") == 1
    assert storage.read_threads("s3://b/x") == remote.DEFAULT_READ_THREADS
    monkeypatch.setenv("KURATE_STORAGE_READ_THREADS", "5")
    assert storage.read_threads("gs://b/x") == 5
    monkeypatch.setenv("KURATE_STORAGE_READ_THREADS", "many")
    with pytest.raises(StorageError, match="KURATE_STORAGE_READ_THREADS"):
        storage.read_threads("gs://b/x")


# --------------------------------------------------------------------------- retry


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    pol = retry.RetryPolicy(max_attempts=10, base_s=0.1, cap_s=1.0)
    rng = random.Random(0)
    for attempt, full in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (9, 1.0)]:
        delays = [pol.delay(attempt, rng) for _ in range(200)]
        assert all(full / 2 <= d <= full for d in delays)
        assert max(delays) - min(delays) > full / 4  # jittered, not fixed


def test_call_retries_transient_then_succeeds() -> None:
    calls, sleeps = [], []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise retry.TransientError("503 SlowDown")
        return "ok"

    pol = retry.RetryPolicy(max_attempts=5, base_s=0.5, cap_s=10)
    assert retry.call("GET x", flaky, pol, sleep=sleeps.append) == "ok"
    assert len(calls) == 3 and len(sleeps) == 2
    assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0


def test_call_gives_up_with_a_storage_error_and_never_retries_other_errors() -> None:
    calls: list[int] = []

    def always() -> None:
        calls.append(1)
        raise retry.TransientError("500 InternalError")

    with pytest.raises(StorageError, match="GET x: still failing after 4 attempt"):
        retry.call("GET x", always, retry.RetryPolicy(4, 0, 0), sleep=lambda s: None)
    assert len(calls) == 4

    def denied() -> None:
        calls.append(1)
        raise StorageError("access denied")

    calls.clear()
    with pytest.raises(StorageError, match="access denied"):
        retry.call("GET x", denied, retry.RetryPolicy(4, 0, 0), sleep=lambda s: None)
    assert len(calls) == 1


def test_policy_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KURATE_STORAGE_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("KURATE_STORAGE_BACKOFF_S", "0.05")
    monkeypatch.setenv("KURATE_STORAGE_BACKOFF_MAX_S", "2")
    assert retry.policy_from_env() == retry.RetryPolicy(3, 0.05, 2.0)
    monkeypatch.setenv("KURATE_STORAGE_BACKOFF_S", "fast")
    with pytest.raises(StorageError, match="KURATE_STORAGE_BACKOFF_S"):
        retry.policy_from_env()


def test_local_create_exclusive_without_hard_links(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Some mounts (FUSE, SMB) refuse link(); the O_EXCL fallback still lets only the first writer in."""
    import errno
    import os

    def no_links(src: str, dst: str) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    target = str(tmp_path / "e.json")
    assert storage.create_exclusive(target, b"one") is True
    assert storage.create_exclusive(target, b"two") is False
    assert storage.read_bytes(target) == b"one" and os.listdir(tmp_path) == ["e.json"]


def test_local_outputs_get_normal_permissions(tmp_path):
    import stat

    from kurate.io import storage as st

    st.write_text(str(tmp_path / "a.txt"), "x")
    assert st.create_exclusive(str(tmp_path / "b.txt"), b"y")
    umask = os.umask(0o022)
    os.umask(umask)
    for name in ("a.txt", "b.txt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask
