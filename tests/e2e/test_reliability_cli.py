"""Nothing lost, whatever happens — the ``kurate`` command under concurrent runs, resumes and odd input.

- several whole runs into one output folder and one datapool at once (locally; on S3 in the slow suite);
- a second live run into the same run folder is refused (exit 2, one line);
- a run killed after its datapool commit rolls forward to the uninterrupted result;
- resuming with other settings is refused, naming the keys;
- no temporary folders are left behind (kfp.local's per-task ``mktemp -d``);
- a hostile input folder (tests/hostile.py) runs through, every odd entry reported and skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

# the same command line, fast model and environment as the error tests
from tests.e2e.test_errors_cli import FAST, KURATE, _env, kurate
from tests.helpers import make_image_folder


def start(*args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [KURATE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(**env)
    )


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _datapool_is_consistent(loc: str) -> tuple[int, list[str]]:
    """Versions 1..n without gaps, each pointing at a readable state; returns (n, latest entries)."""
    from kurate.pool import datapool

    n = datapool.latest_version(loc)
    names: list[str] = []
    for v in range(1, n + 1):
        head = datapool.read_head(loc, v)
        assert head is not None
        names, x, hashes, _ = datapool.read_state(head.state)
        assert len(names) == len(x) == len(hashes)
    history = sorted(p.name for p in (Path(loc) / datapool.HISTORY).iterdir()) if n else []
    assert len(history) == n, history  # no orphan state folder
    return n, list(names)


def test_concurrent_runs_into_one_output_folder_and_one_datapool(tmp_path):
    data = make_image_folder(tmp_path / "in", n=12, n_dup=1)
    out = tmp_path / "out"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    args = [
        f"input_dir={data.root}",
        f"output_dir={out}",
        "datapool.name=pool",
        "datasource.process_all=True",  # every run considers every sample: each commit adds 2 new picks
        "stopping_condition.n_samples=2",
        *FAST,
    ]
    procs = [start(*args, TMPDIR=str(scratch)) for _ in range(3)]
    results = [(*p.communicate(timeout=900), p.returncode) for p in procs]
    results = [(code, out, err) for out, err, code in results]
    codes = sorted(code for code, _, _ in results)
    for code, _, err in results:
        assert code in (0, 3), err[-3000:]
        if code == 3:
            assert err.strip().splitlines()[-1].startswith("kurate: error: datapool ")
    folders = sorted(p for p in out.iterdir() if p.name != "datapool")
    assert len(folders) == 3, folders  # three runs, three run folders, even within one second
    complete = [f for f in folders if (f / "report.json").exists()]
    assert len(complete) == codes.count(0) >= 1
    loc = str(out / "datapool" / "pool")
    n, _ = _datapool_is_consistent(loc)
    assert n == codes.count(0)
    for f in folders:  # the losers' README advice: run again (a new timestamp run) until it lands
        if not (f / "report.json").exists():
            assert kurate(*args, TMPDIR=str(scratch)).returncode == 0
    n, entries = _datapool_is_consistent(loc)
    assert n == 3 and len(entries) == 6 and len(set(entries)) == 6  # each run added 2 new samples
    assert not list(scratch.iterdir()), list(scratch.iterdir())  # no tmp.* folders leaked by the tasks
    for f in out.iterdir():
        assert not (f / ".work").exists() and not (f / ".kurate" / "lock.json").exists()


@pytest.mark.slow
def test_concurrent_runs_on_the_s3_endpoint(tmp_path, s3):
    data = make_image_folder(tmp_path / "in", n=10, n_dup=0)
    bucket = s3.bucket()
    out = f"s3://{bucket}/out"
    args = [
        f"input_dir={data.root}",
        f"output_dir={out}",
        "datapool.name=pool",
        "stopping_condition.n_samples=2",
        *FAST,
    ]
    env = {
        k: os.environ[k]
        for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        if k in os.environ
    }
    procs = [start(*args, **env) for _ in range(3)]
    errs = [p.communicate(timeout=900)[1] for p in procs]
    codes = [p.returncode for p in procs]
    assert all(c in (0, 3) for c in codes), errs
    keys = s3.keys(bucket, "out/")
    runs = {k.split("/")[1] for k in keys if k.split("/")[1] != "datapool"}
    assert len(runs) == 3, runs
    assert sum(f"out/{r}/report.json" in keys for r in runs) == codes.count(0)
    versions = [k for k in keys if k.startswith("out/datapool/pool/versions/")]
    assert len(versions) == codes.count(0)


def test_a_run_killed_after_its_datapool_commit_rolls_forward(tmp_path):
    """Killed after the commit, before report.json: the rerun completes the same selection."""
    data = make_image_folder(tmp_path / "in", n=12, n_dup=1)
    out = tmp_path / "out"
    args = [
        f"input_dir={data.root}",
        f"output_dir={out}",
        "run_directory=r",
        "datapool.name=pool",
        "stopping_condition.n_samples=3",
        *FAST,
    ]
    proc = kurate(*args, KURATE_CRASH_AT="kurate.pool.datapool:_after_commit#1", KURATE_CRASH_KILL="run")
    assert proc.returncode == -9, proc.stderr[-2000:]
    pool = out / "datapool" / "pool"
    assert (pool / "versions" / "00000001.json").exists() and not (out / "r" / "report.json").exists()
    again = kurate(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    sampled = lines(out / "r" / "filenames" / "sampled_filenames.txt")
    assert len(sampled) == 3
    report = json.loads((out / "r" / "report.json").read_text())
    assert report["counts"]["selected"] == 3 and report["datapool"]["version"] == 1
    assert report["datapool"]["added"] == 3
    latest = (pool / "datapool_latest.csv").read_text().splitlines()
    assert sorted(r.split(",")[0] for r in latest[1:]) == sorted(sampled)
    assert (pool / "model" / "model.json").exists()
    assert sorted(p.name for p in (pool / "versions").iterdir()) == ["00000001.json"]


def test_resuming_with_other_settings_is_refused_naming_the_keys(tmp_path):
    data = make_image_folder(tmp_path / "in", n=12, n_dup=1)
    out = tmp_path / "out"
    base = [f"input_dir={data.root}", f"output_dir={out}", "run_directory=r", "dump_dataset=True", *FAST]
    killed = kurate(
        *base,
        "stopping_condition.n_samples=8",
        KURATE_CRASH_AT="kurate.outputs.export:dump_samples.one#8",
        KURATE_CRASH_KILL="run",
    )
    assert killed.returncode == -9
    dumped = [p for p in (out / "r" / "data" / "sampled").rglob("*.png") if not p.name.startswith(".")]
    assert len(dumped) == 7  # killed while dumping its 8th image
    other = kurate(*base, "stopping_condition.n_samples=3", "output_image_format=jpg")
    assert other.returncode == 2, other.stderr[-2000:]
    last = other.stderr.strip().splitlines()[-1]
    assert (
        "stopping_condition.n_samples" in last and "output_image_format" in last and "run_directory" in last
    )
    same = kurate(*base, "stopping_condition.n_samples=8")  # the same settings resume it
    assert same.returncode == 0, same.stderr[-2000:]
    files = [p for p in (out / "r" / "data" / "sampled").rglob("*") if p.is_file()]
    assert len(files) == 8 and all(p.suffix == ".png" for p in files)  # no leftover temp file either


def test_a_hostile_input_folder_runs_through(tmp_path):
    from tests.hostile import make_hostile_corpus

    corpus = make_hostile_corpus(tmp_path / "in")
    try:
        out = tmp_path / "out"
        proc = kurate(
            f"input_dir={corpus.root}",
            f"output_dir={out}",
            "run_directory=r",
            "stopping_condition.n_samples=5",
            "dump_dataset=True",
            *FAST,
        )
    finally:
        corpus.close()
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = out / "r"
    lists = {
        k: lines(run / "filenames" / f"{k}_filenames.txt")
        for k in ("corrupt", "duplicate", "removed", "sampled")
    }
    listed = sorted(n for v in lists.values() for n in v)
    assert listed == corpus.good  # a partition of exactly the valid entries
    report = json.loads((run / "report.json").read_text())
    reported = {e["name"]: e["reason"] for e in report["ignored"]["entries"]}
    assert set(reported) == set(corpus.skipped)
    dumped = [p for p in (run / "data" / "sampled").rglob("*") if p.is_file()]
    assert len(dumped) == 5


def test_a_deep_run_folder_with_loader_workers_runs(tmp_path):
    """The tasks' $TMPDIR is a short scratch folder in the system's temp folder, not inside the run
    folder: multiprocessing's Unix sockets (embed's loader workers hand batches over through them)
    take paths of 108 bytes at most, and a deep output_dir made embed wait forever."""
    data = make_image_folder(tmp_path / "in", n=6, n_dup=0)
    out = tmp_path / ("d" * 60) / ("e" * 60)
    args = [f"input_dir={data.root}", f"output_dir={out}", "stopping_condition.n_samples=2"]
    fast = [a for a in FAST if not a.startswith("lightly.loader.num_workers")]
    proc = kurate(*args, *fast, "lightly.loader.num_workers=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
