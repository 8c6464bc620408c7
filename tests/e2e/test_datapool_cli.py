"""End to end through the `kurate` command: the datapool over a growing folder, and resuming a killed run."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np

from tests.e2e.test_cli import FAST, KURATE, run_kurate
from tests.helpers import draw_image, make_image_folder


def _report(run_dir: Path) -> dict:
    return json.loads((run_dir / "report.json").read_text())


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _csv_names(path: Path) -> list[str]:
    with open(path, newline="") as fh:
        return [row[0] for row in list(csv.reader(fh))[1:]]


def test_incremental_runs_over_a_growing_folder(tmp_path):
    data = make_image_folder(tmp_path / "photos", n=10, n_dup=1, corrupt=False)
    out = tmp_path / "out"
    pool = out / "datapool" / "pool"
    common = [f"input_dir={data.root}", f"output_dir={out}", "datapool.name=pool", *FAST]

    first = run_kurate(*common, "run_directory=r1", "stopping_condition.n_samples=3")
    assert first.returncode == 0, first.stderr[-3000:]
    r1 = _report(out / "r1")
    assert r1["embedding"]["computed"] == 10 and r1["datapool"]["version"] == 1
    picked1 = _lines(out / "r1" / "filenames" / "sampled_filenames.txt")

    new = [f"new/late_{i}.png" for i in range(5)]
    (data.root / "new").mkdir()
    for i, name in enumerate(new):
        draw_image(500 + i).save(data.root / name)
    second = run_kurate(*common, "run_directory=r2", "stopping_condition.n_samples=3", "upload_dataset=True")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "10 already in the datapool" in second.stdout
    r2 = _report(out / "r2")
    picked2 = _lines(out / "r2" / "filenames" / "sampled_filenames.txt")
    # only the new files were embedded and considered; none of the first run's samples was picked
    assert r2["embedding"]["computed"] == 5 and r2["counts"]["embedded"] == 5
    assert r2["counts"]["seen"] == 10 and sorted(
        _lines(out / "r2" / "filenames" / "seen_filenames.txt")
    ) == sorted(data.images)
    assert len(picked2) == 3 and set(picked2) <= set(new) and not set(picked2) & set(picked1)
    assert r2["datapool"]["version"] == 2 and r2["datapool"]["entries"] == 6
    # both states in history (by version, time and run id); the latest in Lightly's layout
    states = sorted(p.name for p in (pool / "history").iterdir())
    assert len(states) == 2 and states[0].startswith("00000001_") and "_r1_" in states[0]
    assert states[1].startswith("00000002_") and "_r2_" in states[1]
    assert sorted(_csv_names(pool / "datapool_latest.csv")) == sorted(picked1 + picked2)
    assert sorted(_csv_names(pool / "history" / states[0] / "datapool.csv")) == sorted(picked1)
    assert sorted(str(p.relative_to(pool / "samples")) for p in (pool / "samples").rglob("*.*")) == sorted(
        picked2
    )

    # process_all=True considers everything again (all from the cache: nothing embedded) and, with
    # enable_datapool_update=False, leaves the datapool untouched; it never re-picks a datapool entry
    before = {p: p.stat().st_mtime_ns for p in pool.rglob("*") if "cache" not in p.parts}
    third = run_kurate(
        *common,
        "run_directory=r3",
        "stopping_condition.n_samples=3",
        "datasource.process_all=True",
        "datasource.enable_datapool_update=False",
    )
    assert third.returncode == 0, third.stderr[-3000:]
    r3 = _report(out / "r3")
    assert r3["embedding"]["computed"] == 0 and r3["embedding"]["cache_hits"] == 15
    assert r3["counts"]["embedded"] == 15 and "seen" not in r3["counts"]
    picked3 = _lines(out / "r3" / "filenames" / "sampled_filenames.txt")
    assert len(picked3) == 3 and not set(picked3) & set(picked1 + picked2)
    assert r3["datapool"]["updated"] is False
    assert {p: p.stat().st_mtime_ns for p in pool.rglob("*") if "cache" not in p.parts} == before


def _chunks(pool: Path) -> list[Path]:
    """The cache's chunks (not a writer's temp file: a killed writer's is removed, never read)."""
    return [p for p in pool.glob("cache/embeddings/*/chunks/*.npz") if not p.name.startswith(".tmp-")]


def _cached_rows(pool: Path) -> int:
    total = 0
    for chunk in _chunks(pool):
        with np.load(chunk) as z:
            total += len(z["sha256"])
    return total


def test_killed_run_resumes_and_embeds_only_what_is_missing(tmp_path):
    data = make_image_folder(tmp_path / "photos", n=60, n_dup=0, corrupt=False)
    keys = [f"input_dir={data.root}", "datapool.name=pool", "stopping_condition.n_samples=5", *FAST]
    keys = [k for k in keys if not k.startswith("lightly.collate.input_size")] + [
        "lightly.collate.input_size=64"
    ]
    ref = run_kurate(*keys, f"output_dir={tmp_path / 'ref'}", "run_directory=r")
    assert ref.returncode == 0, ref.stderr[-3000:]

    out = tmp_path / "out"
    pool = out / "datapool" / "pool"
    env = {**os.environ, "KURATE_EMBED_CACHE_FLUSH_ROWS": "4"}
    proc = subprocess.Popen(
        [KURATE, *keys, f"output_dir={out}", "run_directory=r"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,  # its own process group: kill -9 reaches the kfp.local task too
    )
    deadline = time.monotonic() + 300
    try:
        while not _chunks(pool):
            assert proc.poll() is None, "the run ended before its first cache chunk was seen"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    cached = _cached_rows(pool)
    assert 0 < cached < 60
    assert not (out / "r" / "report.json").exists() and not (pool / "versions").exists()

    rerun = run_kurate(*keys, f"output_dir={out}", "run_directory=r")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    report = _report(out / "r")
    assert report["embedding"]["cache_hits"] == cached
    assert report["embedding"]["computed"] == 60 - cached  # fewer images embedded the second time
    assert _lines(out / "r" / "filenames" / "sampled_filenames.txt") == _lines(
        tmp_path / "ref" / "r" / "filenames" / "sampled_filenames.txt"
    )
    with (
        open(out / "r" / "data" / "embeddings.csv", newline="") as a,
        open(tmp_path / "ref" / "r" / "data" / "embeddings.csv", newline="") as b,
    ):
        got, want = list(csv.reader(a))[1:], list(csv.reader(b))[1:]
    assert [r[0] for r in got] == [r[0] for r in want]
    np.testing.assert_allclose(
        np.array([r[1:-1] for r in got], float), np.array([r[1:-1] for r in want], float), atol=1e-4
    )
