"""Lightly's ``docker run`` command with only the image name changed (``make test-images``).

    docker run --rm -v IN:/home/input_dir:ro -v OUT:/home/shared_dir --ipc=host lightly/sampling:latest \
        token=... stopping_condition.n_samples=0.3

against the all-in-one ``kurate`` image: input from /home/input_dir, outputs and relative paths in
/home/shared_dir, LIGHTLY_TOKEN from the environment, ``--help`` and ``sanity_check=True``, outputs owned
by whoever owns OUT on the host (or ``--user``), exit codes passed through.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from kurate.demo_data import make_tiny_dataset
from kurate.deploy import images
from kurate.io.embeddings_io import write_lightly_csv
from tests.images.containers import LISTS, engine, require_images, run_flags, tree_digest

pytestmark = pytest.mark.containers

HOST_USER = 4321  # stands for the user who runs docker on the host (owner of OUT)


@pytest.fixture(scope="module")
def image() -> str:
    return require_images(engine(), (images.ALL_IN_ONE,))[images.ALL_IN_ONE]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lightly") / "input"
    make_tiny_dataset(root, n=12)
    return root


def _out(tmp_path: Path, owner: int = HOST_USER) -> Path:
    out = tmp_path / "shared"
    out.mkdir()
    if os.geteuid() == 0:
        os.chown(out, owner, owner)
    return out


def lightly_run(
    image: str, data: Path | None, out: Path | None, *args: str, extra: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """Lightly's documented command, the image name changed (``extra``: more ``docker run`` flags)."""
    cmd = [engine(), "run", "--rm", *run_flags(), *extra]
    if data is not None:
        cmd += ["-v", f"{data}:/home/input_dir:ro"]
    if out is not None:
        cmd += ["-v", f"{out}:/home/shared_dir"]
    return subprocess.run([*cmd, "--ipc=host", image, *args], capture_output=True, text=True, timeout=900)


def _run_dir(out: Path) -> Path:
    runs = [p for p in out.iterdir() if (p / "report.json").is_file()]
    assert len(runs) == 1, sorted(p.name for p in out.iterdir())
    return runs[0]


def test_lightlys_command_runs_unchanged(image, data, tmp_path):
    before = tree_digest(data)
    out = _out(tmp_path)
    proc = lightly_run(image, data, out, "token=MY_TOKEN_123", "stopping_condition.n_samples=0.3")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = _run_dir(out)
    lists = {n: (run / "filenames" / f"{n}.txt").read_text().splitlines() for n in LISTS}
    assert lists["corrupt_filenames"] == ["broken.jpg"] and lists["duplicate_filenames"] == [
        "img_000_copy.png"
    ]
    assert len(lists["sampled_filenames"]) == int(0.3 * 14)  # a fraction of every input file (14)
    assert (run / "data" / "embeddings.csv").is_file() and (run / "report.html").is_file()
    # Outputs belong to the owner of OUT on the host, everything under it; the token is never written.
    for p in [out, *out.rglob("*")]:
        st = os.lstat(p)
        assert (st.st_uid, st.st_gid) == (HOST_USER, HOST_USER), p
    assert "MY_TOKEN_123" not in proc.stdout + proc.stderr
    assert not [p for p in out.rglob("*") if p.is_file() and b"MY_TOKEN_123" in p.read_bytes()]
    assert "kurate: done." in proc.stdout + proc.stderr
    assert tree_digest(data) == before


def test_relative_paths_and_the_token_from_the_environment(image, data, tmp_path):
    """``relevant_filenames_file`` and ``embeddings`` are read from the shared dir; LIGHTLY_TOKEN from env."""
    out = _out(tmp_path)
    keep = [f"img_{i:03d}.{'png' if i % 2 == 0 else 'jpg'}" for i in range(6)]
    (out / "relevant.txt").write_text("\n".join(keep) + "\n")
    vectors = np.random.default_rng(0).standard_normal((len(keep), 8)).astype(np.float32)
    (out / "emb").mkdir()
    write_lightly_csv(str(out / "emb" / "embeddings.csv"), keep, vectors)
    proc = lightly_run(
        image,
        data,
        out,
        "relevant_filenames_file=relevant.txt",
        "embeddings=emb/embeddings.csv",
        "stopping_condition.n_samples=3",
        "run_directory=rel",
        extra=("-e", "LIGHTLY_TOKEN=ENV_TOKEN_456"),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "rel" / "report.json").read_text())
    assert report["counts"]["available"] == 6 and report["counts"]["selected"] == 3
    sampled = (out / "rel" / "filenames" / "sampled_filenames.txt").read_text().splitlines()
    assert set(sampled) <= set(keep) and len(sampled) == 3
    saved = (out / "rel" / "config" / "config.yaml").read_text()
    assert "ENV_TOKEN_456" not in saved and "token:" in saved  # read, then redacted


def test_as_the_host_user_with_dash_dash_user(image, data, tmp_path):
    out = _out(tmp_path, owner=HOST_USER)
    proc = lightly_run(
        image, data, out, "stopping_condition.n_samples=2", extra=("--user", f"{HOST_USER}:{HOST_USER}")
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert os.stat(_run_dir(out) / "report.json").st_uid == HOST_USER


def test_help_and_sanity_check_as_in_lightlys_image(image, tmp_path):
    helped = lightly_run(image, None, None, "--help")
    assert helped.returncode == 0 and "usage: kurate" in helped.stdout
    sane = lightly_run(image, None, None, "sanity_check=True")
    assert sane.returncode == 0, sane.stdout[-3000:] + sane.stderr[-3000:]
    assert "sanity check passed" in sane.stdout + sane.stderr


def test_exit_codes_are_passed_through(image, data, tmp_path):
    out = _out(tmp_path)
    bad = lightly_run(image, data, out, "stopping_condition.n_sample=3")
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("kurate: error:")
    assert "n_sample" in bad.stderr
    # The input folder is not mounted: the image's empty /home/input_dir -> a clear error, not exit 0.
    missing = lightly_run(image, None, out, "stopping_condition.n_samples=2")
    assert missing.returncode != 0
    assert "no image or video files found under /home/input_dir" in missing.stdout + missing.stderr


def test_docker_stop_ends_a_running_job_with_sigterm(image, data, tmp_path):
    """`docker stop` during a (1000-epoch) training task ends the job at once with 143 (SIGTERM), although
    kfp.local waits for the running task's own process: the entry point passes the signal on to it."""
    eng, out = engine(), _out(tmp_path)
    name = f"kurate-stop-{os.getpid()}"
    cmd = [eng, "run", "-d", "--name", name, *run_flags(), "-v", f"{data}:/home/input_dir:ro"]
    cmd += ["-v", f"{out}:/home/shared_dir", image, "stopping_condition.n_samples=3", "enable_training=True"]
    cmd += [
        "lightly.trainer.max_epochs=1000",
        "lightly.loader.num_workers=0",
        "lightly.collate.input_size=32",
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    try:
        for _ in range(300):
            logs = subprocess.run([eng, "logs", name], capture_output=True, text=True)
            if "Executing task" in logs.stdout + logs.stderr and "'train'" in logs.stdout + logs.stderr:
                break
            time.sleep(1)
        else:
            pytest.fail("the training task never started")
        time.sleep(3)
        start = time.monotonic()
        subprocess.run([eng, "stop", "-t", "120", name], check=True, capture_output=True)
        took = time.monotonic() - start
        state = subprocess.run(
            [eng, "inspect", name, "--format", "{{.State.ExitCode}}"], capture_output=True, text=True
        )
        assert state.stdout.strip() == "143"
        # Signalled, the task's process ends at once; unsignalled it ran on until its next write hit the
        # closed log pipe (about 20 s here), or, silent, until the grace period ended.
        assert took < 15, f"docker stop took {took:.0f} s"
    finally:
        subprocess.run([eng, "rm", "-f", name], capture_output=True)
    assert not list(out.glob("*/report.json")), "a stopped run is left incomplete (resumable), never complete"
