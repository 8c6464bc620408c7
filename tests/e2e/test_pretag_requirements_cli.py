"""End to end: Lightly's pretagging requirements through the `kurate` command -- only images with
enough objects of each named class are selected -- and the built-in detector's start-time check."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from tests.detector_helpers import make_shapes_folder
from tests.e2e.test_cli import FAST, KURATE, run_kurate

LAYOUTS = [[1], [2], [1, 1], [1, 2], [2, 2, 2], [1, 1, 1], [2, 1], [2, 2], [1, 1, 2]] * 2


def test_requirements_restrict_the_selection_and_lightlys_boxes_are_written(tmp_path, tiny_detector):
    make_shapes_folder(tmp_path / "photos", LAYOUTS, seed=5)
    out = tmp_path / "out"
    out.mkdir()
    shutil.copyfile(tiny_detector, out / "shapes.pt")
    (out / "req.yaml").write_text(
        "source: model\narchitecture: fcos_tiny\ncheckpoint: shapes.pt\n"
        "categories: [__background__, circle, square]\nnum_workers: 0\nmin_requirements: {circle: 2}\n"
    )
    proc = run_kurate(
        f"input_dir={tmp_path / 'photos'}",
        f"output_dir={out}",
        "run_directory=r",
        "pretagging=True",
        "pretagging_config=req.yaml",
        "stopping_condition.n_samples=4",
        *FAST,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = out / "r"
    circles = {}
    for line in (run / "pretagging" / "predictions.jsonl").read_text().splitlines():
        rec = json.loads(line)
        circles[rec["file_name"]] = sum(p["category_id"] == 1 for p in rec["predictions"])
        assert (rec["width"], rec["height"]) == (64, 64)
    sampled = (run / "filenames" / "sampled_filenames.txt").read_text().split()
    meeting = {n for n, c in circles.items() if c >= 2}
    assert len(meeting) >= 4 and len(sampled) == 4 and set(sampled) <= meeting
    report = json.loads((run / "report.json").read_text())
    req = report["selection"]["requirements"]
    assert req["min_requirements"] == {"circle": 2} and req["met"] == len(meeting) == 18 - req["not_met"]
    assert "circle &ge; 2" in (run / "report.html").read_text()
    boxes = json.loads((run / "data" / "bounding_boxes.json").read_text())  # Lightly's pretagging output
    assert sorted(b["filename"] for b in boxes) == sorted(circles)
    one = next(b for b in boxes if b["boxes"])
    assert all(0 <= v <= 1 for box in one["boxes"] for v in box) and set(one["labels"]) <= {
        "circle",
        "square",
    }
    assert report["pretagging"]["bounding_boxes"] == "data/bounding_boxes.json"


def test_the_builtin_detector_without_weights_stops_at_start(tmp_path):
    make_shapes_folder(tmp_path / "photos", LAYOUTS[:2], seed=1)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "min_requirements.json").write_text('{"person": 1}')
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "empty-torch"), "KURATE_WEIGHTS_DIR": ""}
    proc = subprocess.run(
        [
            KURATE,
            f"input_dir={tmp_path / 'photos'}",
            f"output_dir={tmp_path / 'out'}",
            "pretagging=True",
            "pretagging_config=min_requirements.json",
            "stopping_condition.n_samples=1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("kurate: error: pretagging: the COCO weights of fasterrcnn_resnet50_fpn_v2")
    assert "DETECTOR_WEIGHTS=default" in last and str(tmp_path / "empty-torch") in last
    assert list((tmp_path / "out").iterdir()) == [tmp_path / "out" / "min_requirements.json"]  # nothing ran
