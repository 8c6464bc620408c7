"""End to end: object-level selection through the `kurate` command (kfp.local), with the boxes of a
Lightly predictions task in the datasource and with this run's own pretagging (lightly_pretagging)."""

from __future__ import annotations

import csv
import json
import shutil

from tests.detector_helpers import make_shapes_folder
from tests.e2e.test_cli import FAST, run_kurate
from tests.unit.phases.test_object_level import make_world


def test_a_lightly_predictions_task_gives_the_crops(tmp_path):
    preds = make_world(tmp_path / "vehicles")  # images + .lightly/predictions/vehicles in the input
    proc = run_kurate(
        f"input_dir={tmp_path / 'vehicles'}",
        f"output_dir={tmp_path / 'out'}",
        "run_directory=r",
        "object_level.task_name=vehicles",
        "object_level.padding=0.1",
        "object_level.crop_dataset_name=my-crops",
        "stopping_condition.n_samples=3",
        *FAST,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "out" / "r"
    rows = list(csv.DictReader((run / "data" / "crops.csv").open(newline="")))
    assert len(rows) == sum(1 for ps in preds.values() for p in ps if p["bbox"][2] > 0)
    chosen = sorted(r["filename"] for r in rows if r["status"] == "sampled")
    assert len(chosen) == 3
    assert (
        sorted(
            str(p.relative_to(run / "crops" / "my-crops")) for p in (run / "crops" / "my-crops").rglob("*.*")
        )
        == chosen
    )
    report = json.loads((run / "report.json").read_text())
    assert report["objects"]["task_name"] == "vehicles" and report["objects"]["padding"] == 0.1
    assert report["counts"]["available"] == 6 and report["counts"]["selected"] == len(
        {c.rsplit("/", 1)[0] for c in chosen}
    )
    assert "lightly" not in (run / "filenames" / "removed_filenames.txt").read_text()  # never listed as input


def test_lightly_pretagging_crops_this_runs_detections(tmp_path, tiny_detector):
    make_shapes_folder(tmp_path / "photos", [[1], [2], [1, 2], [2, 2], [1, 1, 2]], seed=3)
    out = tmp_path / "out"
    out.mkdir()
    shutil.copyfile(tiny_detector, out / "shapes.pt")
    (out / "det.yaml").write_text(
        "source: model\narchitecture: fcos_tiny\ncheckpoint: shapes.pt\n"
        "categories: [__background__, circle, square]\nnum_workers: 0\n"
    )
    proc = run_kurate(
        f"input_dir={tmp_path / 'photos'}",
        f"output_dir={out}",
        "run_directory=r",
        "pretagging=True",
        "pretagging_config=det.yaml",
        "object_level.task_name=lightly_pretagging",
        "stopping_condition.n_samples=0.5",
        *FAST,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = out / "r"
    detections = [
        json.loads(line) for line in (run / "pretagging" / "predictions.jsonl").read_text().splitlines()
    ]
    expected = sorted(
        f"{d['file_name'][:-4]}/{j}_{['__background__', 'circle', 'square'][p['category_id']]}.png"
        for d in detections
        for j, p in enumerate(d["predictions"])
    )
    rows = list(csv.DictReader((run / "data" / "crops.csv").open(newline="")))
    assert sorted(r["filename"] for r in rows) == expected and len(expected) >= 8
    sampled = [r for r in rows if r["status"] == "sampled"]
    assert len(sampled) == len(expected) // 2  # a fraction of the objects
    names = [
        line.split(",")[0] for line in (run / "data" / "selected_embeddings.csv").read_text().splitlines()[1:]
    ]
    assert sorted(names) == sorted(r["filename"] for r in sampled)
