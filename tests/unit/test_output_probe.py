"""Every output location is probed for writing at start: one line naming the URI, exit 2.

The run folder, the datapool and the embedding cache (and training's checkpoint folder when it is
elsewhere) each get a small create-and-delete before anything runs, locally and in buckets. Before,
a location that could be read but not written passed the start checks and failed inside embed.
On S3 the denial comes from moto's IAM enforcement (a bucket the user may list and read, not
write); the GCS emulator has no IAM, so a proxy answers its uploads with GCS's 403.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kurate.config.load import compose_config
from kurate.errors import ConfigError
from kurate.plan import make_plan
from tests.storage_servers import FaultProxy, reset_clients

KURATE = str(Path(sys.executable).with_name("kurate"))


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    from tests.helpers import draw_image

    root = tmp_path / "photos"
    root.mkdir()
    for i in range(3):
        draw_image(i).save(root / f"img{i}.png")
    return root


@pytest.fixture
def unwritable_dir(tmp_path: Path) -> Path:
    """An existing folder this process cannot write into.

    A mode-0555 folder for an ordinary user; root writes anywhere regardless of modes, so as root
    sysfs's top folder, which nobody can create files in.
    """
    ro = tmp_path / "read-only"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        (ro / "x").write_bytes(b"")
    except PermissionError:
        yield ro
        ro.chmod(0o755)
        return
    (ro / "x").unlink()
    ro.chmod(0o755)
    sysfs = Path("/sys")
    assert sysfs.is_dir() and not os.access(sysfs / "kurate-probe", os.F_OK)
    yield sysfs


def _plan(*overrides: str):
    return make_plan(compose_config(["stopping_condition.n_samples=2", *overrides]))


def _refused(key: str, uri: str, *overrides: str) -> str:
    with pytest.raises(ConfigError) as err:
        _plan(*overrides)
    assert err.value.key == key, err.value
    msg = str(err.value)
    assert "\n" not in msg and uri in msg and "not writable" in msg, msg
    return msg


def test_dev_null_as_output_dir(photos) -> None:
    msg = _refused("output_dir", "/dev/null", f"input_dir={photos}", "output_dir=/dev/null")
    assert "Not a directory" in msg


def test_an_unwritable_output_folder(photos, unwritable_dir) -> None:
    _refused("output_dir", str(unwritable_dir), f"input_dir={photos}", f"output_dir={unwritable_dir}")


def test_an_unwritable_datapool(photos, tmp_path, unwritable_dir) -> None:
    _refused(
        "datapool.dataset_id",
        str(unwritable_dir / "pool"),
        f"input_dir={photos}",
        f"output_dir={tmp_path / 'out'}",
        f"datapool.dataset_id={unwritable_dir / 'pool'}",
    )


def test_an_unwritable_embedding_cache(photos, tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / ".kurate-cache").write_bytes(b"a file where the cache folder goes")
    _refused("output_dir", str(out / ".kurate-cache"), f"input_dir={photos}", f"output_dir={out}")


def test_the_probe_leaves_nothing_behind(photos, tmp_path) -> None:
    plan = _plan(f"input_dir={photos}", f"output_dir={tmp_path / 'out'}", "datapool.name=pool")
    leftovers = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert not leftovers and plan.run_dir.startswith(str(tmp_path / "out"))


def test_kurate_exits_2_with_one_line(photos) -> None:
    proc = subprocess.run(
        [KURATE, f"input_dir={photos}", "output_dir=/dev/null", "stopping_condition.n_samples=2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("kurate: error: output_dir: /dev/null") and "not writable" in last


def test_s3_bucket_readable_but_not_writable(moto_auth, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_auth.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto_auth.reader_key[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", moto_auth.reader_key[1])
    reset_clients()
    inp = f"input_dir=s3://{moto_auth.allowed}/data"
    out = f"s3://{moto_auth.readonly}/runs"
    msg = _refused("output_dir", out, inp, f"output_dir={out}", "run_directory=r1")
    assert "AccessDenied" in msg
    msg = _refused(
        "datapool.dataset_id",
        f"s3://{moto_auth.readonly}/pool",
        inp,
        f"output_dir=s3://{moto_auth.allowed}/runs",
        f"datapool.dataset_id=s3://{moto_auth.readonly}/pool",
    )
    plan = _plan(inp, f"output_dir=s3://{moto_auth.allowed}/runs", "run_directory=r2")  # writable: fine
    assert plan.run_dir == f"s3://{moto_auth.allowed}/runs/r2"
    import boto3

    reader = boto3.client(
        "s3",
        endpoint_url=moto_auth.endpoint,
        region_name="us-east-1",
        aws_access_key_id=moto_auth.reader_key[0],
        aws_secret_access_key=moto_auth.reader_key[1],
    )
    keys = [o["Key"] for o in reader.list_objects_v2(Bucket=moto_auth.allowed).get("Contents", [])]
    assert not [k for k in keys if "probe" in k], keys  # the probe objects were deleted


def test_gcs_bucket_readable_but_not_writable(gcs, monkeypatch) -> None:
    bucket = gcs.bucket()
    gcs.put(bucket, "data/a.png", b"x")

    def deny_uploads(n: int, method: str, path: str) -> str | None:
        return "403" if method in ("POST", "PUT") and path.startswith("/upload/") else None

    with FaultProxy(gcs.endpoint, deny_uploads, "gcs") as proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        msg = _refused(
            "output_dir",
            f"gs://{bucket}/runs/r1",
            f"input_dir=gs://{bucket}/data",
            f"output_dir=gs://{bucket}/runs",
            "run_directory=r1",
        )
    assert "403" in msg and proxy.faults["403"] >= 1
    assert gcs.keys(bucket) == ["data/a.png"]


def test_a_bucket_that_refuses_deletes_only_warns(gcs, monkeypatch, caplog) -> None:
    """Writing works, deleting is denied: the run goes on (kurate deletes only what it no longer needs)."""
    bucket = gcs.bucket()
    gcs.put(bucket, "data/a.png", b"x")

    def deny_deletes(n: int, method: str, path: str) -> str | None:
        return "403" if method == "DELETE" else None

    with FaultProxy(gcs.endpoint, deny_deletes, "gcs") as proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        plan = _plan(f"input_dir=gs://{bucket}/data", f"output_dir=gs://{bucket}/runs", "run_directory=r1")
    assert plan.run_dir == f"gs://{bucket}/runs/r1" and proxy.faults["403"] == 2  # run folder, cache
    left = [k for k in gcs.keys(bucket) if ".kurate-probe-" in k]
    assert len(left) == 2
    assert sum("could not delete the write probe" in r.message for r in caplog.records) == 2


def test_the_local_probe_leaves_no_folder_it_made(tmp_path: Path, photos: Path):
    """Folders the probe needed are removed again: made by the submitting user (root, say), a task's
    container running as another user could not write into them (the images' tests caught this)."""
    out = tmp_path / "out"
    out.mkdir()
    plan = _plan(f"input_dir={photos}", f"output_dir={out}", "run_directory=r1")
    assert plan.run_dir == str(out / "r1")
    assert list(out.iterdir()) == []  # neither r1 nor .kurate-cache/embeddings


def test_a_probe_into_an_existing_folder_keeps_it(tmp_path: Path):
    from kurate.io import storage

    (tmp_path / "keep").mkdir()
    storage.probe_writable(str(tmp_path / "keep" / "a" / "b"))
    assert (tmp_path / "keep").is_dir() and list((tmp_path / "keep").iterdir()) == []


def test_concurrent_probes_of_one_missing_folder_all_pass(tmp_path):
    """Runs started together probe the same missing folders: one's probe removes the folders it made
    while another's is inside them; each retries instead of failing with 'No such file or directory'."""
    from concurrent.futures import ThreadPoolExecutor

    from kurate.io import storage

    for round_ in range(20):
        target = tmp_path / f"out{round_}" / "datapool" / "pool" / "cache"
        with ThreadPoolExecutor(8) as pool:
            for f in [pool.submit(storage.probe_writable, str(target)) for _ in range(8)]:
                f.result()  # (a folder may stay: the runs that probe it together are about to use it)
