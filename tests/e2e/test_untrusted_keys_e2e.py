"""``kurate`` over buckets holding hostile keys: nothing escapes the output folder, nothing is misread.

Through the console script, with moto (S3) and the GCS emulator on 127.0.0.1 (both keep object names
exactly): keys with ``..`` segments, an empty segment after the prefix, and ``data//img00.jpg`` next
to a different ``data/img00.jpg``, with ``dump_dataset=True`` into a local folder and into a bucket.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import draw_image
from tests.storage_servers import FAST_RETRY, GCS, S3

KURATE = str(Path(sys.executable).with_name("kurate"))
FAST = [
    "lightly.collate.input_size=32",
    "lightly.loader.batch_size=8",
    "lightly.loader.num_workers=0",
    "lightly.model.num_ftrs=16",
]
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


@pytest.fixture
def env(s3_server, gcs_server, tmp_path):
    (tmp_path / "tmpdir").mkdir()
    return {
        **os.environ,
        **FAST_RETRY,
        "AWS_ENDPOINT_URL": s3_server,
        "STORAGE_EMULATOR_HOST": gcs_server,
        "TMPDIR": str(tmp_path / "tmpdir"),
    }


def run_kurate(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([KURATE, *args, *FAST], capture_output=True, text=True, timeout=timeout, env=env)


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


def test_hostile_s3_keys_into_a_local_output(env, s3_server, tmp_path) -> None:
    """The reported case: with dump_dataset, ESCAPED.png landed in <output_dir>/.. ."""
    s3 = S3(s3_server)
    bucket, valid = _hostile_bucket(s3)
    out = tmp_path / "a" / "b" / "out"
    out.parent.mkdir(parents=True)
    proc = run_kurate(
        env,
        f"input_dir=s3://{bucket}/data",
        f"output_dir={out}",
        "run_directory=r1",
        "stopping_condition.n_samples=10",  # everything clean is selected and dumped
        "dump_dataset=True",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    outside = {
        p for p in _everything(tmp_path) if not p.startswith("a/b/out/") and not p.startswith("tmpdir")
    }
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
    assert not list((tmp_path / "tmpdir").glob("kurate-work-*"))


def test_hostile_gcs_keys_into_an_s3_output(env, s3_server, gcs_server) -> None:
    gcs, s3 = GCS(gcs_server), S3(s3_server)
    bucket, valid = _hostile_bucket(gcs)
    out = s3.bucket()
    proc = run_kurate(
        env,
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
