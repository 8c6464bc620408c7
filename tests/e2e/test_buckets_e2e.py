"""End to end over buckets: ``kurate input_dir=s3://... output_dir=gs://...`` through the console script.

The input is in moto's S3 and the outputs go to the GCS emulator, both on 127.0.0.1; the endpoints
reach the ``kurate`` process the standard way (``AWS_ENDPOINT_URL``, ``STORAGE_EMULATOR_HOST``), as
credentials would. A second run goes through fault-injecting proxies on both sides and must produce
the same outputs. Then buckets as they really are: hostile keys (``..`` segments, an empty segment,
``data//img00.jpg`` beside a different ``data/img00.jpg``) with ``dump_dataset`` into a local folder
and into a bucket, and a dead endpoint; each checks the exit code, the last line, what was written
where, and that no local scratch folder is left behind.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import draw_image, make_image_folder
from tests.storage_servers import FAST_RETRY, GCS, S3, FaultProxy, HungEndpoint, every

KURATE = str(Path(sys.executable).with_name("kurate"))
FAST = [
    "lightly.collate.input_size=32",
    "lightly.loader.batch_size=8",
    "lightly.loader.num_workers=0",
    "lightly.model.num_ftrs=16",
]
LAYOUT = [
    "config/config.yaml",
    "data/embeddings.csv",
    "data/normalized_embeddings.csv",
    "data/selected_embeddings.csv",
    "filenames/corrupt_filenames.txt",
    "filenames/corrupt_reasons.csv",
    "filenames/duplicate_filenames.txt",
    "filenames/duplicate_of.csv",
    "filenames/removed_filenames.txt",
    "filenames/sampled_filenames.txt",
    "report.json",
]


def run_kurate(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([KURATE, *args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def setup(s3_server, gcs_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bucket-e2e")
    data = make_image_folder(tmp / "photos", n=16, n_dup=3)
    s3, gcs = S3(s3_server), GCS(gcs_server)
    src = s3.bucket()
    s3.upload_folder(data.root, src, "photos")
    before = {k: s3.get(src, k) for k in s3.keys(src)}
    (tmp / "tmpdir").mkdir()
    env = {
        **os.environ,
        **FAST_RETRY,
        "AWS_ENDPOINT_URL": s3_server,
        "STORAGE_EMULATOR_HOST": gcs_server,
        "TMPDIR": str(tmp / "tmpdir"),
    }
    return data, s3, gcs, src, before, env, tmp


def _args(src: str, out: str, run: str) -> list[str]:
    return [
        f"input_dir=s3://{src}/photos",
        f"output_dir=gs://{out}/curation",
        f"run_directory={run}",
        "stopping_condition.n_samples=5",
        "dump_dataset=True",
        "output_image_size=24",
        *FAST,
    ]


@pytest.fixture(scope="module")
def clean_run(setup):
    data, s3, gcs, src, _, env, _ = setup
    out = gcs.bucket()
    proc = run_kurate(env, *_args(src, out, "r1"))
    return out, proc


def _outputs(gcs: GCS, bucket: str, run: str) -> dict[str, bytes]:
    prefix = f"curation/{run}/"
    return {k[len(prefix) :]: gcs.get(bucket, k) for k in gcs.keys(bucket, prefix)}


def test_s3_to_gcs_run_writes_the_layout_and_counts(setup, clean_run):
    data, s3, gcs, src, before, env, tmp = setup
    out, proc = clean_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"outputs in gs://{out}/curation/r1" in proc.stdout
    files = _outputs(gcs, out, "r1")
    assert set(LAYOUT) <= set(files)
    assert not [k for k in files if ".work" in k or ".tmp-" in k]  # scratch stayed local
    lists = {
        k: files[f"filenames/{k}_filenames.txt"].decode().splitlines()
        for k in ("corrupt", "duplicate", "removed", "sampled")
    }
    assert sorted(lists["corrupt"]) == sorted(data.corrupt)
    assert sorted(lists["duplicate"]) == sorted(data.duplicates)
    assert len(lists["sampled"]) == 5
    assert sorted(n for v in lists.values() for n in v) == data.listed
    report = json.loads(files["report.json"])
    assert report["input"] == f"s3://{src}/photos"
    assert report["counts"] == {
        "available": len(data.listed),
        "corrupt": len(data.corrupt),
        "duplicate": len(data.duplicates),
        "embedded": len(data.images),
        "selected": 5,
        "removed": len(data.images) - 5,
    }
    rows = list(csv.reader(io.StringIO(files["data/embeddings.csv"].decode(), newline="")))
    assert sorted(r[0] for r in rows[1:]) == sorted(data.images)
    dumped = sorted(k for k in files if k.startswith("data/sampled/"))
    assert len(dumped) == 5
    assert f"output_dir: gs://{out}/curation" in files["config/config.yaml"].decode()
    assert {k: s3.get(src, k) for k in s3.keys(src)} == before  # the input is only read
    assert not list((tmp / "tmpdir").glob("kurate-work-*"))  # the local scratch is cleaned up


def test_rerun_on_a_complete_bucket_run_is_refused(setup, clean_run):
    _, _, _, src, _, env, _ = setup
    out, first = clean_run
    assert first.returncode == 0
    again = run_kurate(env, *_args(src, out, "r1"))
    assert again.returncode == 2 and "already holds a complete run" in again.stderr


def test_run_through_faulty_endpoints_completes_with_the_same_outputs(setup, clean_run):
    """Every 5th request to S3 and to GCS fails (500, 503, dropped connection, cut-off body, in turn)."""
    data, s3, gcs, src, before, env, tmp = setup
    out, proc = clean_run
    assert proc.returncode == 0
    with (
        FaultProxy(s3.endpoint, every(5), "s3") as s3_proxy,
        FaultProxy(gcs.endpoint, every(5), "gcs", paginate=True) as gcs_proxy,
    ):
        flaky = run_kurate(
            {**env, "AWS_ENDPOINT_URL": s3_proxy.url, "STORAGE_EMULATOR_HOST": gcs_proxy.url},
            *_args(src, out, "r2"),
        )
    assert flaky.returncode == 0, flaky.stderr[-3000:]
    assert sum(s3_proxy.faults.values()) >= 4 and sum(gcs_proxy.faults.values()) >= 4
    assert len(set(s3_proxy.faults) | set(gcs_proxy.faults)) == 4  # every kind of fault happened
    clean, faulty = _outputs(gcs, out, "r1"), _outputs(gcs, out, "r2")
    assert set(clean) == set(faulty)
    for k in clean:
        # run dir, durations; the run's record (its token, start) and log
        if k not in ("report.json", "report.html", "config/config.yaml", ".kurate/run.json", "kurate.log"):
            assert faulty[k] == clean[k], k
    assert json.loads(faulty["report.json"])["counts"] == json.loads(clean["report.json"])["counts"]
    assert {k: s3.get(src, k) for k in s3.keys(src)} == before


def test_missing_bucket_fails_at_once_with_one_clear_line(setup):
    _, _, gcs, _, _, env, _ = setup
    proc = run_kurate(
        env,
        "input_dir=s3://kurate-no-such-bucket/photos",
        f"output_dir=gs://{gcs.bucket()}/o",
        "stopping_condition.n_samples=2",
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "kurate: error: s3://kurate-no-such-bucket: no such bucket (The specified bucket does not exist)"
    )


def test_object_deleted_after_listing_is_reported_corrupt_and_the_run_goes_on(setup):
    """The last listed object is deleted (for real, in moto) when the check phase sends its first read."""
    data, s3, gcs, _, _, env, _ = setup
    src, out = s3.bucket(), gcs.bucket()
    s3.upload_folder(data.root, src, "photos")
    victim = data.listed[-1]
    assert len(data.listed) > 18  # the check phase's first chunks in flight cannot include the victim
    state = {"deleted": False}

    def delete_on_first_object_read(n: int, method: str, path: str) -> None:
        if method == "GET" and "/photos/" in path and not state["deleted"]:
            s3.delete(src, f"photos/{victim}")
            state["deleted"] = True

    with FaultProxy(s3.endpoint, delete_on_first_object_read, "s3") as proxy:
        proc = run_kurate({**env, "AWS_ENDPOINT_URL": proxy.url}, *_args(src, out, "r1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = _outputs(gcs, out, "r1")
    rows = list(csv.reader(io.StringIO(files["filenames/corrupt_reasons.csv"].decode(), newline="")))
    assert [victim, "file disappeared after listing"] in rows
    report = json.loads(files["report.json"])
    assert report["counts"]["available"] == len(data.listed)
    assert report["counts"]["corrupt"] == len(data.corrupt) + 1
    listed = [
        n
        for k in ("corrupt", "duplicate", "removed", "sampled")
        for n in files[f"filenames/{k}_filenames.txt"].decode().splitlines()
    ]
    assert sorted(listed) == data.listed


# --------------------------------------------------------------------------- buckets as they really are

UNSAFE = {
    "data/../../../../ESCAPED.jpg": "../../../../ESCAPED.jpg",
    "data//double.jpg": "/double.jpg",
    "data//img00.jpg": "/img00.jpg",
    "data/sub/../../up.jpg": "sub/../../up.jpg",
}


def _jpeg(i: int) -> bytes:
    buf = io.BytesIO()
    draw_image(i).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _last_line(proc: subprocess.CompletedProcess) -> str:
    return proc.stderr.strip().splitlines()[-1]


def _hostile_bucket(helper) -> tuple[str, list[str]]:
    bucket = helper.bucket()
    valid = [f"img{i:02d}.jpg" for i in range(6)]
    for i, n in enumerate(valid):
        helper.put(bucket, f"data/{n}", _jpeg(i))
    for j, key in enumerate(UNSAFE):
        helper.put(bucket, key, _jpeg(20 + j))
    return bucket, valid


def _corrupt_reasons(text: str) -> dict[str, str]:
    rows = list(csv.reader(io.StringIO(text, newline="")))
    return dict((r[0], r[1]) for r in rows[1:])


def _everything(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_hostile_s3_keys_into_a_local_output(setup, tmp_path) -> None:
    """The reported case: with dump_dataset, ESCAPED.png landed in <output_dir>/.. ."""
    _, s3, _, _, _, env, tmp = setup
    bucket, valid = _hostile_bucket(s3)
    out = tmp_path / "a" / "b" / "out"
    out.parent.mkdir(parents=True)
    proc = run_kurate(
        env,
        *FAST,
        f"input_dir=s3://{bucket}/data",
        f"output_dir={out}",
        "run_directory=r1",
        "stopping_condition.n_samples=10",  # everything clean is selected and dumped
        "dump_dataset=True",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    outside = {p for p in _everything(tmp_path) if not p.startswith("a/b/out/")}
    assert not outside, outside
    run = out / "r1"
    reasons = _corrupt_reasons((run / "filenames" / "corrupt_reasons.csv").read_text())
    assert set(reasons) == set(UNSAFE.values())
    assert all(r.startswith("unsafe name: ") for r in reasons.values())
    assert sorted((run / "filenames" / "sampled_filenames.txt").read_text().split("\n")[:-1]) == valid
    assert not (run / "filenames" / "duplicate_filenames.txt").read_text()  # /img00.jpg is not a copy
    assert sorted(p.name for p in (run / "data" / "sampled").iterdir()) == [
        n.replace(".jpg", ".png") for n in valid
    ]
    assert not list((tmp / "tmpdir").glob("kurate-work-*"))


def test_hostile_gcs_keys_into_an_s3_output(setup) -> None:
    _, s3, gcs, _, _, env, _ = setup
    bucket, valid = _hostile_bucket(gcs)
    out = s3.bucket()
    proc = run_kurate(
        env,
        *FAST,
        f"input_dir=gs://{bucket}/data",
        f"output_dir=s3://{out}/x/runs",
        "run_directory=r1",
        "stopping_condition.n_samples=10",
        "dump_dataset=True",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    keys = s3.keys(out)
    assert keys and all(k.startswith("x/runs/") for k in keys), [k for k in keys if "x/runs/" not in k]
    sampled = sorted(k.rsplit("/", 1)[-1] for k in keys if k.startswith("x/runs/r1/data/sampled/"))
    assert sampled == [n.replace(".jpg", ".png") for n in valid]
    reasons = _corrupt_reasons(s3.get(out, "x/runs/r1/filenames/corrupt_reasons.csv").decode())
    assert set(reasons) == set(UNSAFE.values())
    assert sorted(gcs.keys(bucket)) == sorted([*UNSAFE, *(f"data/{n}" for n in valid)])  # input untouched


@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_a_hung_endpoint_ends_the_run_at_start(setup, scheme, tmp_path) -> None:
    env = setup[5]
    var = "AWS_ENDPOINT_URL" if scheme == "s3" else "STORAGE_EMULATOR_HOST"
    with HungEndpoint() as hung:
        t0 = time.monotonic()
        proc = run_kurate(
            {**env, var: hung.url, "KURATE_STORAGE_START_TIMEOUT_S": "4"},
            f"input_dir={scheme}://photos/data",
            f"output_dir={tmp_path / 'out'}",
            "stopping_condition.n_samples=3",
            *FAST,
            timeout=60,
        )
        took = time.monotonic() - t0
    assert proc.returncode == 1 and took < 30
    last = _last_line(proc)
    assert last.startswith("kurate: error: ") and "no answer within 4 s" in last, last
    assert hung.url.split("://")[1] in last


@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_one_denied_object_is_the_last_line_naming_it_and_its_cause(setup, scheme) -> None:
    """One object answers 403 (access denied is systemic: the run stops, README): the ``kurate``
    command's last line names that object and the store's words, exit 1, no traceback; the failed
    run removes its local scratch, and the scratch of an earlier killed run goes too."""
    _, s3, gcs, _, _, env, tmp = setup
    helper, other = (s3, gcs) if scheme == "s3" else (gcs, s3)  # the outputs go to the other store
    bucket, valid = _hostile_bucket(helper)
    out_scheme, out_bucket = ("gs" if scheme == "s3" else "s3"), other.bucket()
    victim = valid[3]
    killed = tmp / "tmpdir" / "kurate-work-999999999-left"  # a bucket run killed earlier (no such pid)
    killed.mkdir()

    def deny(n: int, method: str, path: str) -> str | None:
        return "403" if method == "GET" and victim in path else None

    endpoint = "AWS_ENDPOINT_URL" if scheme == "s3" else "STORAGE_EMULATOR_HOST"
    with FaultProxy(helper.endpoint, deny, "s3" if scheme == "s3" else "gcs") as proxy:
        proc = run_kurate(
            {**env, endpoint: proxy.url},
            f"input_dir={scheme}://{bucket}/data",
            f"output_dir={out_scheme}://{out_bucket}/out",
            "run_directory=r",
            "stopping_condition.n_samples=2",
            *FAST,
        )
    assert proc.returncode == 1, proc.stderr[-3000:]
    last = _last_line(proc)
    assert last.startswith(f"kurate: error: {scheme}://{bucket}/data/{victim}: access denied ("), last
    assert ("AccessDenied" if scheme == "s3" else "403") in last
    assert "Traceback" not in proc.stderr and "\x1b[" not in proc.stderr
    assert proxy.faults["403"] >= 1
    log = other.get(out_bucket, "out/r/kurate.log").decode()
    assert "Traceback" in log and f"{victim}: access denied" in log  # everything is in the run's log
    assert not list((tmp / "tmpdir").glob("kurate-work-*"))
