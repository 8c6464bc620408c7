"""kurate.io.storage against real HTTP endpoints on 127.0.0.1: moto (S3) and gcp-storage-emulator (GCS).

The same contract is checked on both back-ends where the servers allow it. What a server cannot do
is said where it matters: the GCS emulator ignores generation preconditions (the test fixture
answers ``ifGenerationMatch=0`` uploads of existing names with GCS's 412 in its place, see
``tests/storage_servers.py``), does not paginate (the fault proxy serves its listing in pages as
GCS does) and has no IAM (access denied on GCS is a 403 answered by the proxy; on S3 it comes from
moto's IAM enforcement).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from kurate.errors import StorageError
from kurate.io import s3 as s3_backend
from kurate.io import storage
from tests.storage_servers import FaultProxy, every


@dataclass
class Store:
    scheme: str
    helper: Any
    bucket: str

    def uri(self, key: str = "") -> str:
        return f"{self.scheme}://{self.bucket}/{key}" if key else f"{self.scheme}://{self.bucket}"


@pytest.fixture(params=["s3", "gs"])
def store(request: pytest.FixtureRequest) -> Store:
    helper = request.getfixturevalue("s3" if request.param == "s3" else "gcs")
    return Store(request.param, helper, helper.bucket())


def _proxied(store: Store, monkeypatch: pytest.MonkeyPatch, proxy: FaultProxy) -> None:
    """Point kurate (not the helper) at ``proxy``."""
    env = "AWS_ENDPOINT_URL" if store.scheme == "s3" else "STORAGE_EMULATOR_HOST"
    monkeypatch.setenv(env, proxy.url)


def _proxy(store: Store, rule: Any = None, paginate: bool = False) -> FaultProxy:
    return FaultProxy(
        store.helper.endpoint, rule, flavor="s3" if store.scheme == "s3" else "gcs", paginate=paginate
    )


# --------------------------------------------------------------------------- the basic contract


def test_write_read_exists(store: Store) -> None:
    storage.write_bytes(store.uri("run/data/blob.bin"), b"\x00\x01binary")
    storage.write_text(store.uri("run/report.json"), '{"ok": true}')
    assert storage.read_bytes(store.uri("run/data/blob.bin")) == b"\x00\x01binary"
    assert storage.read_text(store.uri("run/report.json")) == '{"ok": true}'
    assert store.helper.get(store.bucket, "run/report.json") == b'{"ok": true}'  # really in the bucket
    assert storage.exists(store.uri("run/report.json"))
    assert storage.exists(store.uri("run")) and storage.exists(store.uri("run/"))  # a "folder"
    assert storage.exists(store.uri("run/data"))
    assert not storage.exists(store.uri("run/missing.json"))
    assert not storage.exists(store.uri("ru"))  # a name prefix is not a folder
    storage.makedirs(store.uri("run/empty"))  # no-op on object stores
    assert not storage.exists(store.uri("run/empty"))


def test_atomic_writer_uploads_only_on_success(store: Store) -> None:
    with storage.atomic_writer(store.uri("a/text.csv"), "w", encoding="utf-8") as fh:
        fh.write("filename\r\n")
        fh.write('"a,b.png"\r\n')
    assert store.helper.get(store.bucket, "a/text.csv") == b'filename\r\n"a,b.png"\r\n'  # newline="" kept
    with pytest.raises(RuntimeError), storage.atomic_writer(store.uri("a/half.bin")) as fh:
        fh.write(b"half of it")
        raise RuntimeError("crash mid-write")
    assert store.helper.keys(store.bucket, "a/") == ["a/text.csv"]  # nothing half-written is visible
    with storage.atomic_writer(store.uri("a/text.csv")) as fh:  # replaces as a whole
        fh.write(b"v2")
    assert store.helper.get(store.bucket, "a/text.csv") == b"v2"


def test_missing_object_is_file_not_found(store: Store) -> None:
    store.helper.put(store.bucket, "x/present.png", b"1")
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(store.uri("x/absent.png"))
    with pytest.raises(FileNotFoundError), storage.local_copy(store.uri("x/absent.png")):
        pass


def test_no_such_bucket_is_a_clear_storage_error(store: Store) -> None:
    uri = f"{store.scheme}://kurate-no-such-bucket-{store.bucket[-8:]}/prefix"
    for op in (
        lambda: storage.read_bytes(uri + "/a.png"),
        lambda: storage.exists(uri),
        lambda: list(storage.list_files(uri)),
        lambda: storage.write_text(uri + "/out.txt", "x"),
    ):
        with pytest.raises(StorageError, match="no such bucket"):
            op()


def test_local_copy_downloads_and_cleans_up(store: Store) -> None:
    payload = bytes(range(256)) * 5000
    store.helper.put(store.bucket, "m/model.ckpt", payload)
    with storage.local_copy(store.uri("m/model.ckpt")) as path:
        with open(path, "rb") as fh:
            assert fh.read() == payload
    import os

    assert not os.path.exists(path)


def test_list_files_relative_names_and_folder_markers(store: Store) -> None:
    for key in ("in/a.png", "in/sub/b.jpg", "in/sub/deeper/c.png", "inside.png", "other/d.png"):
        store.helper.put(store.bucket, key, b"x")
    store.helper.put(store.bucket, "in/emptydir/", b"")  # a console-made "folder" marker
    assert sorted(storage.list_files(store.uri("in"))) == ["a.png", "sub/b.jpg", "sub/deeper/c.png"]
    assert sorted(storage.list_files(store.uri("in/"))) == ["a.png", "sub/b.jpg", "sub/deeper/c.png"]
    assert len(list(storage.list_files(store.uri()))) == 5  # the whole bucket


def test_read_many_keeps_order_and_reports_missing(store: Store) -> None:
    keys = [f"many/{i:03d}.bin" for i in range(40)]
    for k in keys:
        store.helper.put(store.bucket, k, k.encode())
    uris = [store.uri(k) for k in keys]
    uris.insert(7, store.uri("many/gone.bin"))
    out = list(storage.read_many(uris, threads=6))
    assert [u for u, _ in out] == uris
    assert isinstance(out[7][1], FileNotFoundError)
    assert [d for _, d in out[:7] + out[8:]] == [k.encode() for k in keys]


def test_read_many_holds_a_bounded_window(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """At most 2 x threads reads are started ahead of the consumer."""
    started: list[str] = []
    lock = threading.Lock()

    def fake_read(uri: str) -> bytes:
        with lock:
            started.append(uri)
        return b"x"

    monkeypatch.setattr(storage, "read_bytes", fake_read)
    gen = storage.read_many((store.uri(f"k{i}") for i in range(1000)), threads=4)
    next(gen)
    assert len(started) <= 9
    gen.close()


# --------------------------------------------------------------------------- listing at scale


def test_s3_listing_beyond_one_page_of_1000(s3) -> None:
    """S3 returns at most 1000 keys per ListObjectsV2 page: 1100 keys need two pages, all listed once."""
    bucket = s3.bucket()
    client = s3.client
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda i: client.put_object(Bucket=bucket, Key=f"big/{i:05d}.png", Body=b""), range(1100)
            )
        )
    calls: list[dict] = []
    real = s3_backend.backend().client.list_objects_v2

    def spy(**kw: Any) -> Any:
        calls.append(kw)
        return real(**kw)

    s3_backend.backend().client.list_objects_v2 = spy
    names = list(storage.list_files(f"s3://{bucket}/big"))
    assert sorted(names) == [f"{i:05d}.png" for i in range(1100)]
    assert len(calls) == 2 and "ContinuationToken" in calls[1]


def test_listing_is_paged_and_streamed(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(25):
        store.helper.put(store.bucket, f"p/{i:02d}.png", b"")
    lists = []

    def count(n: int, method: str, path: str) -> None:
        if method == "GET" and ("list-type=2" in path or path.split("?")[0].endswith("/o")):
            lists.append(path)
        return None

    with _proxy(store, count, paginate=True) as proxy:
        _proxied(store, monkeypatch, proxy)
        it = storage.list_files(store.uri("p"), page_size=10)
        first = next(it)
        assert len(lists) == 1  # the first name arrives before the second page is asked for
        rest = list(it)
    assert sorted([first, *rest]) == [f"{i:02d}.png" for i in range(25)]
    assert len(lists) == 3
    if store.scheme == "gs":
        assert proxy.pages == 3


# --------------------------------------------------------------------------- writes: multipart, exclusive


def test_s3_multipart_upload_is_complete_or_absent(s3, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = s3.bucket()
    monkeypatch.setattr(s3_backend, "MULTIPART_THRESHOLD", 6 * 1024 * 1024)
    monkeypatch.setattr(s3_backend, "PART_SIZE", 5 * 1024 * 1024)
    data = bytes(range(256)) * (11 * 4096)  # 11 MiB: three parts
    seen: list[str] = []
    with FaultProxy(s3.endpoint, lambda n, m, p: seen.append(f"{m} {p}")) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        with storage.atomic_writer(f"s3://{bucket}/big/data.bin") as fh:
            fh.write(data)
            assert s3.keys(bucket) == []  # nothing visible while writing
        assert s3.get(bucket, "big/data.bin") == data
        assert sum("partNumber=" in s for s in seen) == 3 and any(
            "uploadId=" in s and s.startswith("POST") for s in seen
        )
        assert storage.create_exclusive(f"s3://{bucket}/big/data.bin", data[::-1]) is False
        assert s3.get(bucket, "big/data.bin") == data
        assert not s3.client.list_multipart_uploads(Bucket=bucket).get("Uploads")  # the refused one aborted


@pytest.mark.parametrize("where", ["local", "s3", "gs"])
def test_create_exclusive_has_exactly_one_winner(
    where: str, request: pytest.FixtureRequest, tmp_path
) -> None:
    if where == "local":
        base = str(tmp_path)
    else:
        helper = request.getfixturevalue("s3" if where == "s3" else "gcs")
        base = f"{where}://{helper.bucket()}"
    uri = storage.join(base, "pool/entry.json")
    assert storage.create_exclusive(uri, b"first") is True
    assert storage.create_exclusive(uri, b"second") is False
    assert storage.read_bytes(uri) == b"first"
    race = storage.join(base, "pool/race.json")
    with ThreadPoolExecutor(8) as pool:
        wins = list(pool.map(lambda i: storage.create_exclusive(race, f"writer {i}".encode()), range(8)))
    assert wins.count(True) == 1
    assert storage.read_bytes(race) == f"writer {wins.index(True)}".encode()
    if where == "local":
        assert sorted(p.name for p in (tmp_path / "pool").iterdir()) == ["entry.json", "race.json"]


def test_gcs_create_exclusive_sends_the_generation_precondition(gcs, monkeypatch: pytest.MonkeyPatch) -> None:
    """The request carries the precondition (the test emulator honours it only for kurate's value, 0)."""
    bucket = gcs.bucket()
    uploads: list[str] = []
    with FaultProxy(gcs.endpoint, lambda n, m, p: uploads.append(p) if m == "POST" else None, "gcs") as proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        assert storage.create_exclusive(f"gs://{bucket}/pool/entry.json", b"first") is True
        storage.write_bytes(f"gs://{bucket}/pool/plain.json", b"x")
    assert "ifGenerationMatch=0" in uploads[0]
    assert "ifGenerationMatch" not in uploads[1]


@pytest.mark.parametrize("where", ["s3", "gs"])
def test_retried_exclusive_create_recognises_its_own_first_attempt(
    where: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first upload lands but its answer is lost; the retry meets "exists" and must still say True."""
    helper = request.getfixturevalue("s3" if where == "s3" else "gcs")
    bucket = helper.bucket()
    state = {"lost": 0}

    def lose_first_upload(n: int, method: str, path: str) -> str | None:
        if method in ("PUT", "POST") and not state["lost"]:
            state["lost"] += 1
            return "lost"
        return None

    flavor = "s3" if where == "s3" else "gcs"
    with FaultProxy(helper.endpoint, lose_first_upload, flavor) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL" if where == "s3" else "STORAGE_EMULATOR_HOST", proxy.url)
        assert storage.create_exclusive(f"{where}://{bucket}/pool/e.json", b"mine") is True
        assert storage.create_exclusive(f"{where}://{bucket}/pool/e.json", b"other") is False
    assert proxy.faults["lost"] == 1 and helper.get(bucket, "pool/e.json") == b"mine"


# --------------------------------------------------------------------------- transient faults


def test_transient_faults_are_retried_and_results_exact(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every 3rd request fails (500, 503, dropped connection, body cut in half, in turn)."""
    payloads = {f"f/{i:02d}.bin": bytes([i]) * (1000 + 37 * i) for i in range(24)}
    with _proxy(store, every(3), paginate=True) as proxy:
        _proxied(store, monkeypatch, proxy)
        for k, v in payloads.items():
            storage.write_bytes(store.uri(k), v)
        names = sorted(storage.list_files(store.uri("f"), page_size=5))
        got = {u: d for u, d in storage.read_many([store.uri(k) for k in payloads], threads=4)}
        with storage.local_copy(store.uri("f/05.bin")) as path, open(path, "rb") as fh:
            assert fh.read() == payloads["f/05.bin"]
    assert names == sorted(k[2:] for k in payloads)
    assert got == {store.uri(k): v for k, v in payloads.items()}
    assert {store.helper.get(store.bucket, k) for k in payloads} == set(payloads.values())
    assert set(proxy.faults) == {"500", "503", "drop", "truncate"} and sum(proxy.faults.values()) >= 20


def test_persistent_failure_gives_up_with_a_clear_error(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.helper.put(store.bucket, "a.png", b"x")
    monkeypatch.setenv("KURATE_STORAGE_MAX_ATTEMPTS", "3")
    reads: list[str] = []

    def always_503(n: int, method: str, path: str) -> str:
        if "a.png" in path:  # (the GCS library also fetches bucket metadata after a failed download)
            reads.append(path)
        return "503"

    with _proxy(store, always_503) as proxy:
        _proxied(store, monkeypatch, proxy)
        with pytest.raises(StorageError, match="still failing after 3 attempt"):
            storage.read_bytes(store.uri("a.png"))
    assert len(reads) == 3


# --------------------------------------------------------------------------- systemic errors


def test_s3_access_denied_is_fatal_and_clear(moto_auth, monkeypatch: pytest.MonkeyPatch) -> None:
    """moto with IAM enforced: the user may read one bucket; the other is denied by policy."""
    from kurate.io.filelist import FileList
    from kurate.media.quality import check_files

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_auth.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto_auth.reader_key[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", moto_auth.reader_key[1])
    assert list(storage.list_files(f"s3://{moto_auth.allowed}/data")) == ["a.png"]
    assert storage.read_bytes(f"s3://{moto_auth.allowed}/data/a.png") == b"x"
    denied = f"s3://{moto_auth.denied}/data"
    for op in (
        lambda: list(storage.list_files(denied)),
        lambda: storage.read_bytes(denied + "/a.png"),
        lambda: storage.exists(denied),
        lambda: storage.write_text(denied + "/out.txt", "x"),
    ):
        with pytest.raises(StorageError, match=r"access denied \((AccessDenied|403)"):
            op()  # (a HEAD answer has no body, so no error code: just the 403)
    with pytest.raises(StorageError, match="access denied"):  # fatal, not "3 corrupt files"
        check_files(FileList(root=denied, names=["a.png", "b.png", "c.png"]), workers=1, progress=False)


def test_s3_unknown_access_key_is_fatal_and_clear(moto_auth, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_auth.endpoint)  # dummy "testing" keys: unknown to IAM
    with pytest.raises(StorageError, match=r"access key id in use is not known .* \(InvalidAccessKeyId"):
        storage.read_bytes(f"s3://{moto_auth.allowed}/data/a.png")


def test_missing_aws_credentials_is_fatal_and_clear(s3, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(StorageError, match="no usable AWS credentials"):
        storage.read_bytes(f"s3://{s3.bucket()}/a.png")


def test_unknown_aws_profile_is_fatal_and_clear(s3, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    with pytest.raises(StorageError, match="profile"):
        storage.read_bytes("s3://some-bucket/a.png")


def test_aws_profile_from_config_files_is_used(s3, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Credentials and region from a named profile, the standard way (moto does not check keys)."""
    bucket = s3.bucket()
    (tmp_path / "credentials").write_text(
        "[curate]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = s\n"
    )
    (tmp_path / "config").write_text("[profile curate]\nregion = eu-west-1\n")
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_PROFILE", "curate")
    storage.write_text(f"s3://{bucket}/p.txt", "via profile")
    client = s3_backend.backend().client
    assert client.meta.region_name == "eu-west-1"
    assert client._request_signer._credentials.access_key == "AKIDPROFILE"
    assert s3.get(bucket, "p.txt") == b"via profile"


def test_missing_google_credentials_is_fatal_and_clear(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)  # real GCS would need ADC ...
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)  # ... and finds none
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    from tests.storage_servers import reset_clients

    reset_clients()
    with pytest.raises(StorageError, match="no Google credentials"):
        storage.read_bytes("gs://some-bucket/a.png")


def test_gcs_access_denied_is_fatal_and_clear(gcs, monkeypatch: pytest.MonkeyPatch) -> None:
    """The emulator has no IAM: the 403 (GCS's JSON error) is answered by the proxy in its place."""
    bucket = gcs.bucket()
    gcs.put(bucket, "data/a.png", b"x")
    seen: list[str] = []
    with FaultProxy(gcs.endpoint, lambda n, m, p: seen.append(f"{m} {p}") or "403", "gcs") as proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        for op in (
            lambda: list(storage.list_files(f"gs://{bucket}/data")),
            lambda: storage.read_bytes(f"gs://{bucket}/data/a.png"),
            lambda: storage.write_text(f"gs://{bucket}/out.txt", "x"),
        ):
            with pytest.raises(StorageError, match=r"access denied \(HTTP 403"):
                op()
    assert len(seen) == len(set(seen))  # fatal at once: no request is retried


def test_clients_are_created_lazily() -> None:
    """Importing the storage layer makes no client (and so reads no credentials, probes nothing)."""
    import subprocess
    import sys

    code = (
        "import sys, kurate.io.storage, kurate.media.quality, kurate.io.embeddings_io;"
        "print(any(m in sys.modules for m in ('boto3', 'google.cloud.storage', 'kurate.io.s3')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
