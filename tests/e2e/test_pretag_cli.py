"""End to end: the `kurate` command with pretagging from a detector checkpoint and from a predictions
folder (Lightly's layout), into a weighted selection, with debug images and weak labels."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.detector_helpers import CATEGORIES, make_shapes_folder
from tests.e2e.test_cli import FAST, run_kurate

LAYOUTS = [[1], [2], [1, 1], [1, 2], [2, 2, 2], [1, 1, 1], [2, 1], [2, 2]] * 3
COMMON = ["stopping_condition.n_samples=8", "scorer_config.min_score=0.2", "append_weak_labels=True", *FAST]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_detector):
    tmp = tmp_path_factory.mktemp("pretag-e2e")
    make_shapes_folder(tmp / "photos", LAYOUTS, seed=5)
    out = tmp / "out"
    out.mkdir()
    shutil.copyfile(tiny_detector, out / "shapes.pt")
    (out / "pretag.yaml").write_text(  # relative to output_dir, and its checkpoint relative to it
        "source: model\narchitecture: fcos_tiny\ncheckpoint: shapes.pt\n"
        "categories: [__background__, circle, square]\nscore_threshold: 0.5\nnum_workers: 0\n"
    )
    model = run_kurate(
        f"input_dir={tmp / 'photos'}",
        f"output_dir={out}",
        "run_directory=model",
        "pretagging=True",
        "pretagging_config=pretag.yaml",
        "pretagging_debug=True",
        "datapool.name=shapes",  # an empty datapool: the same selection, and the weak labels kept in it
        *COMMON,
    )
    assert model.returncode == 0, model.stderr[-3000:]
    # The same predictions as a user would bring them: Lightly's .lightly/predictions/<task>/ folder;
    # the second run reuses the first one's embeddings, so any difference would come from pretagging.
    task = tmp / "lightly" / ".lightly" / "predictions" / "shapes"
    task.mkdir(parents=True)
    (task.parent / "tasks.json").write_text('["shapes"]')
    cats = [{"id": i, "name": n} for i, n in enumerate(CATEGORIES)]
    (task / "schema.json").write_text(json.dumps({"task_type": "object-detection", "categories": cats}))
    for line in (out / "model" / "pretagging" / "predictions.jsonl").read_text().splitlines():
        rec = json.loads(line)
        (task / rec["file_name"].replace(".png", ".json")).write_text(json.dumps(rec))
    (tmp / "from-file.yaml").write_text(f"source: predictions\npredictions: {tmp / 'lightly'}\n")
    from_file = run_kurate(
        f"input_dir={tmp / 'photos'}",
        f"output_dir={out}",
        "run_directory=file",
        "pretagging=True",
        f"pretagging_config={tmp / 'from-file.yaml'}",
        f"embeddings={out / 'model' / 'data' / 'embeddings.csv'}",  # the same vectors, no torch at all
        *COMMON,
    )
    assert from_file.returncode == 0, from_file.stderr[-3000:]
    return out / "model", out / "file"


def _report(run_dir):
    return json.loads((run_dir / "report.json").read_text())


def test_model_pretagging_weights_the_selection(runs):
    run_dir, _ = runs
    report = _report(run_dir)
    scorer = report["selection"]["scorer"]
    assert scorer["active"] and scorer["min_score"] == 0.2 and scorer["samples_with_predictions"] == 24
    assert scorer["raw_min"] < scorer["raw_max"]  # the layouts score differently
    pre = report["pretagging"]
    assert pre["active"] and pre["source"].startswith("model fcos_tiny") and pre["objects"] >= 40
    assert {c["name"] for c in pre["classes"]} == {"circle", "square"}
    assert sum(c["selected_images"] for c in pre["classes"]) >= 8
    html = (run_dir / "report.html").read_text()
    assert "Pretagging and scores" in html and "weights in [0.2, 1]" in html


def test_debug_images_and_weak_labels_are_written(runs):
    run_dir, _ = runs
    debug = sorted(p.name for p in (run_dir / "pretagging" / "debug").iterdir())
    assert len(debug) == 24 and debug[0] == "shapes_000.jpg"
    weak = json.loads((run_dir / "data" / "weak_labels.json").read_text())
    sampled = (run_dir / "filenames" / "sampled_filenames.txt").read_text().splitlines()
    assert [s["file_name"] for s in weak["samples"]] == sorted(sampled) and len(sampled) == 8
    assert all(s["predictions"] and 0.2 <= s["score"] <= 1 for s in weak["samples"])
    assert {c["name"] for c in weak["categories"]} == set(CATEGORIES)
    # append_weak_labels also stores them with the datapool's entries (each record names its source)
    pool = run_dir.parent / "datapool" / "shapes"
    stored = json.loads((pool / "weak_labels_latest.json").read_text())
    assert [{k: v for k, v in r.items() if k != "source"} for r in stored["samples"]] == weak["samples"]
    assert all(r["source"] == weak["source"] for r in stored["samples"])
    assert stored["categories"] == weak["categories"]


def test_a_predictions_folder_gives_the_same_weighted_selection(runs):
    model_dir, file_dir = runs
    a, b = _report(model_dir), _report(file_dir)
    assert b["pretagging"]["source"].startswith("Lightly predictions") and b["pretagging"]["missing"] == 0
    assert b["selection"]["scorer"]["mean_input"] == a["selection"]["scorer"]["mean_input"]
    sampled = [(d / "filenames" / "sampled_filenames.txt").read_text() for d in (model_dir, file_dir)]
    assert sampled[0] == sampled[1]
    weak = [
        json.loads((d / "data" / "weak_labels.json").read_text())["samples"] for d in (model_dir, file_dir)
    ]
    assert weak[0] == weak[1]
    assert not (file_dir / "pretagging" / "debug").exists()  # pretagging_debug was off
