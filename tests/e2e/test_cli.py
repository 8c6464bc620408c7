"""End to end: the `kurate` console script on a small generated dataset, as a user runs it."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import make_image_folder

KURATE = str(Path(sys.executable).with_name("kurate"))
FAST = [
    "lightly.collate.input_size=32",
    "lightly.loader.batch_size=8",
    "lightly.loader.num_workers=0",
    "lightly.model.num_ftrs=16",
]


def run_kurate(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([KURATE, *args], capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    data = make_image_folder(tmp / "photos", n=16, n_dup=3)
    (tmp / "photos" / 'a,comma "name".png').write_bytes(b"")
    # ^ a zero-byte file with an awkward name: corrupt, and its name must survive CSV quoting
    data.corrupt.append('a,comma "name".png')
    before = {p: p.stat().st_mtime_ns for p in data.root.rglob("*")}
    proc = run_kurate(
        f"input_dir={data.root}",
        f"output_dir={tmp / 'out'}",
        "run_directory=r1",
        "stopping_condition.n_samples=5",
        "dump_dataset=True",
        "output_image_size=[20,30]",
        "output_image_format=jpg",
        *FAST,
    )
    return data, tmp / "out" / "r1", proc, before


def test_run_succeeds_and_prints_summary(finished_run):
    _, run_dir, proc, _ = finished_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"outputs in {run_dir}" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == f"kurate: report in {run_dir / 'report.html'}"
    assert not (run_dir / ".work").exists()


def test_output_layout(finished_run):
    _, run_dir, _, _ = finished_run
    for rel in [
        "config/config.yaml",
        "data/embeddings.csv",
        "data/normalized_embeddings.csv",
        "data/selected_embeddings.csv",
        "filenames/corrupt_filenames.txt",
        "filenames/duplicate_filenames.txt",
        "filenames/removed_filenames.txt",
        "filenames/sampled_filenames.txt",
        "filenames/corrupt_reasons.csv",
        "report.json",
        "report.html",
        "plots/distance_distr_before.png",
        "plots/distance_distr_after.png",
        "plots/embedding_pca.png",
    ]:
        assert (run_dir / rel).is_file(), rel
    leftovers = [p for p in run_dir.rglob(".tmp-*")]
    assert leftovers == []


def test_lists_partition_the_input_with_exact_counts(finished_run):
    data, run_dir, _, _ = finished_run
    lists = {
        k: (run_dir / "filenames" / f"{k}_filenames.txt").read_text().splitlines()
        for k in ("corrupt", "duplicate", "removed", "sampled")
    }
    assert len(lists["sampled"]) == 5
    assert sorted(lists["corrupt"]) == sorted(data.corrupt)
    assert sorted(lists["duplicate"]) == sorted(data.duplicates)
    everything = [n for v in lists.values() for n in v]
    assert sorted(everything) == data.listed  # each input exactly once, nothing else
    report = json.loads((run_dir / "report.json").read_text())
    assert report["counts"] == {
        "available": len(data.listed),
        "corrupt": len(data.corrupt),
        "duplicate": len(data.duplicates),
        "embedded": len(data.images),
        "selected": 5,
        "removed": len(data.images) - 5,
    }
    assert report["ignored"]["other_extensions"] == len(data.ignored)
    # every phase that did work has its time (the embed span comes through the merge step)
    assert {"ingest", "check", "embed", "pretag", "select", "export"} <= set(report["phase_durations_s"])
    assert "train" not in report["phase_durations_s"]  # enable_training=False: nothing trained
    assert report["selection"]["device"] == "cpu"  # a tiny input: numpy, GPU or not


def test_corrupt_reasons_and_quoting(finished_run):
    data, run_dir, _, _ = finished_run
    with open(run_dir / "filenames" / "corrupt_reasons.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["filename"] for r in rows) == sorted(data.corrupt)
    assert all(r["reason"] for r in rows)


def test_embeddings_csvs(finished_run):
    data, run_dir, _, _ = finished_run
    with open(run_dir / "data" / "embeddings.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["filenames", *[f"embedding_{i}" for i in range(16)], "labels"]
    assert sorted(r[0] for r in rows[1:]) == sorted(data.images)
    with open(run_dir / "data" / "normalized_embeddings.csv", newline="") as fh:
        norm = list(csv.reader(fh))[1:]
    for r in norm:
        v = [float(x) for x in r[1:-1]]
        assert abs(sum(x * x for x in v) - 1) < 1e-4
    sel = (run_dir / "data" / "selected_embeddings.csv").read_text().splitlines()
    assert len(sel) == 1 + 5


def test_dumped_dataset_resized_and_converted(finished_run):
    from PIL import Image

    _, run_dir, _, _ = finished_run
    sampled = (run_dir / "filenames" / "sampled_filenames.txt").read_text().splitlines()
    files = sorted(p for p in (run_dir / "data" / "sampled").rglob("*") if p.is_file())
    assert len(files) == 5
    for p in files:
        with Image.open(p) as im:
            assert im.format == "JPEG" and im.size == (30, 20)
    stems = sorted(n.rsplit(".", 1)[0] for n in sampled)
    assert sorted(str(p.relative_to(run_dir / "data" / "sampled")).rsplit(".", 1)[0] for p in files) == stems


def test_input_is_never_modified(finished_run):
    data, _, _, before = finished_run
    after = {p: p.stat().st_mtime_ns for p in data.root.rglob("*")}
    assert after == before


def test_saved_config_is_resolved(finished_run):
    import yaml

    _, run_dir, _, _ = finished_run
    cfg = yaml.safe_load((run_dir / "config" / "config.yaml").read_text())
    assert cfg["stopping_condition"]["n_samples"] == 5 and cfg["dump_dataset"] is True


def test_rerun_into_complete_run_directory_is_refused(finished_run, tmp_path):
    data, run_dir, _, _ = finished_run
    proc = run_kurate(
        f"input_dir={data.root}",
        f"output_dir={run_dir.parent}",
        "run_directory=r1",
        "stopping_condition.n_samples=5",
        *FAST,
    )
    assert proc.returncode == 2
    assert "already holds a complete run" in proc.stderr


def test_min_distance_and_fraction(tmp_path):
    data = make_image_folder(tmp_path / "in", n=10, n_dup=1, corrupt=False)
    proc = run_kurate(
        f"input_dir={data.root}",
        f"output_dir={tmp_path / 'out'}",
        "run_directory=r",
        "stopping_condition.n_samples=0.5",
        "stopping_condition.min_distance=0.0001",
        "method=random",
        "dump_sampled_embeddings=False",
        *FAST,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    sampled = (tmp_path / "out" / "r" / "filenames" / "sampled_filenames.txt").read_text().splitlines()
    assert len(sampled) == 5  # floor(0.5 * 11 listed inputs)
    assert not (tmp_path / "out" / "r" / "data" / "selected_embeddings.csv").exists()


def test_token_never_written(tmp_path):
    data = make_image_folder(tmp_path / "in", n=6, n_dup=0, corrupt=False)
    env = dict(os.environ, LIGHTLY_TOKEN="tok-SECRET-123")
    proc = subprocess.run(
        [
            KURATE,
            f"input_dir={data.root}",
            f"output_dir={tmp_path / 'out'}",
            "run_directory=r",
            "stopping_condition.n_samples=2",
            *FAST,
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "tok-SECRET-123" not in proc.stdout + proc.stderr
    for p in (tmp_path / "out").rglob("*"):
        if p.is_file():
            assert b"tok-SECRET-123" not in p.read_bytes(), p


@pytest.mark.parametrize(
    "args, key",
    [
        (["method=foo", "stopping_condition.n_samples=3"], "method"),
        (["stopping_condition.n_samples=1.5"], "stopping_condition.n_samples"),
        (
            ["corruptness_check.corruption_threshold=2", "stopping_condition.n_samples=3"],
            "corruptness_check.corruption_threshold",
        ),
        (["n_example_images=3", "stopping_condition.n_samples=3"], "n_example_images"),
        (["not_a_key=1", "stopping_condition.n_samples=3"], "not_a_key"),
    ],
)
def test_bad_config_one_line_exit_2(args, key, tmp_path):
    proc = run_kurate(f"input_dir={tmp_path}", f"output_dir={tmp_path / 'o'}", *args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"kurate: error: {key}:")
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()


def test_sanity_check():
    proc = run_kurate("sanity_check=True", "lightly.collate.input_size=32")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sanity check passed" in proc.stdout


def test_config_file(tmp_path):
    data = make_image_folder(tmp_path / "in", n=6, n_dup=0, corrupt=False)
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "job.yaml").write_text(
        f"input_dir: {data.root}\noutput_dir: {tmp_path / 'out'}\nstopping_condition:\n  n_samples: 2\n"
        "lightly:\n  collate:\n    input_size: 32\n  loader:\n    num_workers: 0\n"
    )
    proc = run_kurate(
        "--config-path", str(tmp_path / "conf"), "--config-name", "job", "run_directory=fromfile"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (
        len((tmp_path / "out" / "fromfile" / "filenames" / "sampled_filenames.txt").read_text().splitlines())
        == 2
    )


def test_output_inside_input_refused(tmp_path):
    data = make_image_folder(tmp_path / "in", n=3, n_dup=0, corrupt=False)
    proc = run_kurate(
        f"input_dir={data.root}", f"output_dir={data.root / 'out'}", "stopping_condition.n_samples=1"
    )
    assert proc.returncode == 2 and "output_dir" in proc.stderr
    assert not (data.root / "out").exists()
    shutil.rmtree(tmp_path / "in")


def test_killed_run_is_resumed_by_a_rerun(tmp_path):
    """kill -9 mid-pipeline leaves no complete-looking output; the same command then finishes the job."""
    import signal
    import time

    data = make_image_folder(tmp_path / "in", n=12, n_dup=1)
    args = [
        f"input_dir={data.root}",
        f"output_dir={tmp_path / 'out'}",
        "run_directory=r",
        "stopping_condition.n_samples=3",
        *FAST,
    ]
    proc = subprocess.Popen(
        [KURATE, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    run_dir = tmp_path / "out" / "r"
    deadline = time.time() + 120
    while time.time() < deadline and not list(run_dir.glob(".work/*/check/clean/meta.json")):
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "report.json").exists()
    again = run_kurate(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming" in again.stderr
    assert len((run_dir / "filenames" / "sampled_filenames.txt").read_text().splitlines()) == 3
    assert (run_dir / "report.json").is_file() and not (run_dir / ".work").exists()
