"""End to end: a Lightly Worker selection_config through the `kurate` command, on generated images."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

KURATE = str(Path(sys.executable).with_name("kurate"))
FAST = [
    "lightly.collate.input_size=32",
    "lightly.loader.batch_size=8",
    "lightly.loader.num_workers=0",
    "lightly.model.num_ftrs=16",
]


def run_kurate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([KURATE, *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sel")
    photos = tmp / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(24):  # every third image is blurred: low lightly.sharpness
        img = Image.fromarray(rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8))
        if i % 3 == 0:
            img = img.filter(ImageFilter.GaussianBlur(4))
        img.save(photos / f"img_{i:02d}.png")
    # Lightly's documented "Metadata Thresholding" example with DIVERSITY, as a YAML config file; the
    # threshold suits these images (blurred noise scores about 32, sharp noise about 112)
    (tmp / "run.yaml").write_text(
        "selection_config:\n"
        "  n_samples: 10\n"
        "  strategies:\n"
        "    - input: {type: METADATA, key: lightly.sharpness}\n"
        "      strategy: {type: THRESHOLD, threshold: 60, operation: BIGGER}\n"
        "    - input: {type: EMBEDDINGS}\n"
        "      strategy: {type: DIVERSITY}\n"
    )
    proc = run_kurate(
        "--config-path", str(tmp), "--config-name", "run",
        f"input_dir={photos}", f"output_dir={tmp / 'out'}", "run_directory=r", *FAST,
    )  # fmt: skip
    return tmp, tmp / "out" / "r", proc


def test_the_selection_keeps_only_samples_above_the_threshold(run):
    _tmp, out, proc = run
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out / "data" / "metadata.csv", newline="") as fh:
        rows = {r["filename"]: r for r in csv.DictReader(fh)}
    assert len(rows) == 24 and set(next(iter(rows.values()))) >= {"lightly.sharpness", "lightly.snr"}
    sampled = (out / "filenames" / "sampled_filenames.txt").read_text().split()
    sharp = {n: float(r["lightly.sharpness"]) for n, r in rows.items()}
    assert len(sampled) == 10 and all(sharp[n] > 60 for n in sampled)
    blurred = {f"img_{i:02d}.png" for i in range(0, 24, 3)}
    assert all(sharp[n] <= 60 for n in blurred) and not blurred & set(sampled)


def test_report_has_a_section_per_strategy_and_the_metadata(run):
    _tmp, out, proc = run
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    strategies = report["selection"]["strategies"]
    assert strategies["source"] == "selection_config"
    assert [s["strategy"] for s in strategies["strategies"]] == ["THRESHOLD", "DIVERSITY"]
    assert strategies["strategies"][0]["removed"] == 8
    assert report["metadata"]["summary"]["lightly.width"]["max"] == 64
    html = (out / "report.html").read_text()
    assert "Selection strategies" in html and "Computed metadata" in html
    assert (out / "plots" / "strategy_0_values.png").is_file()


def test_selection_config_with_stopping_condition_is_one_line_exit_2(run):
    tmp, _out, _proc = run
    proc = run_kurate(
        "--config-path", str(tmp), "--config-name", "run", f"input_dir={tmp / 'photos'}",
        f"output_dir={tmp / 'out'}", "stopping_condition.n_samples=3",
    )  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "selection_config" in lines[0] and "stopping_condition.n_samples" in lines[0]
