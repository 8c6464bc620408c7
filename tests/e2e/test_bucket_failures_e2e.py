"""``kurate`` against buckets that fail: a dead endpoint, one denied object.

Through the console script, with moto (S3) and the GCS emulator on 127.0.0.1. Each run checks what a
user sees: the exit code, the last line of stderr, how long it took, and that no local scratch folder
is left behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.storage_servers import FAST_RETRY, HungEndpoint

KURATE = str(Path(sys.executable).with_name("kurate"))
FAST = [
    "lightly.collate.input_size=32",
    "lightly.loader.batch_size=8",
    "lightly.loader.num_workers=0",
    "lightly.model.num_ftrs=16",
]


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


@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_a_hung_endpoint_ends_the_run_at_start(env, scheme, tmp_path) -> None:
    var = "AWS_ENDPOINT_URL" if scheme == "s3" else "STORAGE_EMULATOR_HOST"
    with HungEndpoint() as hung:
        t0 = time.monotonic()
        proc = run_kurate(
            {**env, var: hung.url, "KURATE_STORAGE_START_TIMEOUT_S": "4"},
            f"input_dir={scheme}://photos/data",
            f"output_dir={tmp_path / 'out'}",
            "stopping_condition.n_samples=3",
            timeout=60,
        )
        took = time.monotonic() - t0
    assert proc.returncode == 1 and took < 30
    last = _last_line(proc)
    assert last.startswith("kurate: error: ") and "no answer within 4 s" in last, last
    assert hung.url.split("://")[1] in last
