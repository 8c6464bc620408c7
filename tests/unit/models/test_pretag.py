"""Pretagging without torch: the settings file, user-supplied predictions (Lightly's layout, JSON, JSONL),
the inactive artifact, debug images, weak labels and what export writes of them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kurate.config.load import compose_config
from kurate.errors import ConfigError
from kurate.io import filelist
from kurate.io import predictions as preds_io
from kurate.io.filelist import FileList
from kurate.models import pretag
from kurate.outputs import export
from kurate.outputs.inputs import RunInputs
from kurate.phases.pretag import run_pretag
from kurate.plan import make_plan

CATS = [{"id": 0, "name": "cat"}, {"id": 1, "name": "dog"}]
TINY = "source: model\narchitecture: fcos_tiny\ncheckpoint: p.jsonl\n"


def _settings(tmp_path: Path, text: str, name: str = "pretag.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_model_settings_are_validated_and_paths_resolved(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "det.pt").write_bytes(b"x")
    p = _settings(
        tmp_path,
        "source: model\narchitecture: fasterrcnn_mobilenet_v3_large_320_fpn\ncheckpoint: models/det.pt\n"
        "categories: [__background__, person, car]\nmodel_options: {min_size: 320}\n",
    )
    s = pretag.load_settings(str(p))
    assert s["checkpoint"] == str(tmp_path / "models" / "det.pt")
    assert s["categories"][2] == {"id": 2, "name": "car"} and s["score_threshold"] == 0.5
    assert s["model_options"] == {"min_size": 320} and s["batch_size"] == 8 and s["device"] == "auto"


def test_predictions_settings_accept_json(tmp_path):
    (tmp_path / "preds.jsonl").write_text("")
    p = _settings(tmp_path, json.dumps({"source": "predictions", "predictions": "preds.jsonl"}), "p.json")
    s = pretag.load_settings(str(p))
    assert s["predictions"] == str(tmp_path / "preds.jsonl") and s["score_threshold"] == 0.0


@pytest.mark.parametrize(
    "text, says",
    [
        ("source: magic\n", "source: got 'magic'; allowed: model, predictions"),
        ("source: predictions\npredictions: nope.json\n", "predictions: "),
        ("source: predictions\npredictions: p.jsonl\nbatch_size: 4\n", "batch_size: unknown key"),
        ("source: predictions\npredictions: p.jsonl\nscore_threshold: 2\n", "score_threshold: got 2"),
        ("source: model\narchitecture: yolo\ncheckpoint: p.jsonl\n", "architecture: got 'yolo'"),
        (TINY, "categories: missing"),
        (TINY + "categories: [bg, a]\nbatch_size: 0\n", "batch_size: got 0"),
        (TINY + "categories: {1: a, one: b}\n", "categories: category id 'one' is not an integer"),
        ("- just\n- a list\n", "expected Lightly's requirements file"),
        ("source: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_settings_fail_with_one_line_naming_the_key(tmp_path, text, says):
    (tmp_path / "p.jsonl").write_text("")
    p = _settings(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        pretag.load_settings(str(p))
    assert err.value.key == "pretagging_config" and says in str(err.value), str(err.value)
    assert "\n" not in str(err.value) and str(p) in str(err.value)


def test_plan_reads_the_settings_file_relative_to_output_dir(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "p.jsonl").write_text("")
    _settings(tmp_path / "out", "source: predictions\npredictions: p.jsonl\n")
    base = [
        f"input_dir={tmp_path / 'in'}",
        f"output_dir={tmp_path / 'out'}",
        "stopping_condition.n_samples=3",
    ]
    plan = make_plan(compose_config([*base, "pretagging=True", "pretagging_config=pretag.yaml"]))
    task = plan.task_configs["pretag"]
    assert task["pretagging_config"] == str(tmp_path / "out" / "pretag.yaml")
    assert task["settings"]["predictions"] == str(tmp_path / "out" / "p.jsonl")
    assert "append_weak_labels" not in task and plan.task_configs["export"]["append_weak_labels"] is False
    assert make_plan(compose_config(base)).task_configs["pretag"] == {"pretagging": False}
    (tmp_path / "out" / "pretag.yaml").write_text("source: predictions\n")
    with pytest.raises(ConfigError, match="predictions: missing"):
        make_plan(compose_config([*base, "pretagging=True", "pretagging_config=pretag.yaml"]))


# --------------------------------------------------------------------------- user predictions


def _clean(tmp_path: Path, names: list[str]) -> FileList:
    root = tmp_path / "images"
    for i, n in enumerate(names):
        (root / n).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 30), (20 * i, 10, 10)).save(root / n)
    files = FileList(root=str(root), names=names)
    filelist.write(str(tmp_path / "clean"), files)
    return files


def _lightly_folder(tmp_path: Path) -> Path:
    """Lightly's layout: tasks.json, a task with schema.json and a JSON per image (mirroring subfolders)."""
    base = tmp_path / "lightly" / ".lightly" / "predictions"
    task = base / "my-detector"
    (task / "sub").mkdir(parents=True)
    (base / "tasks.json").write_text(json.dumps(["my-detector"]))
    (task / "schema.json").write_text(json.dumps({"task_type": "object-detection", "categories": CATS}))
    recs = {
        "a.json": [
            {"category_id": 0, "bbox": [1, 2, 10, 8], "score": 0.9},
            {"category_id": 0, "bbox": [20, 5, 10, 8], "score": 0.2},
        ],
        "sub/b.json": [{"category_id": 1, "bbox": [3, 3, 12, 12], "score": 0.8}],
    }
    for rel, ps in recs.items():
        (task / rel).write_text(json.dumps({"file_name": rel.replace(".json", ".png"), "predictions": ps}))
    (task / "c.json").write_text("{not json")  # corrupt: reported and skipped
    return tmp_path / "lightly"


def test_predictions_from_a_lightly_folder(tmp_path):
    files = _clean(tmp_path, ["a.png", "c.png", "d.png", "sub/b.png"])
    folder = _lightly_folder(tmp_path)
    settings = {"source": "predictions", "predictions": str(folder), "score_threshold": 0.5, "categories": []}
    preds, meta = pretag.from_predictions(files, settings)
    assert [len(p) for p in preds] == [1, 0, 0, 1]  # the 0.2 box of a.png is under the threshold
    assert preds[3] == [{"category_id": 1, "bbox": [3.0, 3.0, 12.0, 12.0], "score": 0.8}]
    assert meta["categories"] == CATS and meta["missing"] == 1 and meta["missing_examples"] == ["d.png"]
    assert meta["bad_file_count"] == 1 and meta["bad_files"][0][0] == "c.png"
    assert "not valid JSON" in meta["bad_files"][0][1]


def test_predictions_from_json_and_jsonl_files(tmp_path):
    files = _clean(tmp_path, ["a.png", "b.png"])
    recs = [
        {"file_name": "a.png", "predictions": [{"category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.7}]},
        {"file_name": "elsewhere.png", "predictions": []},
        {"file_name": "b.png", "predictions": [{"category_id": 1, "bbox": [0, 0, -5, 5]}]},  # bad bbox
    ]
    (tmp_path / "p.json").write_text(json.dumps({"categories": CATS, "predictions": recs}))
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n{broken\n")
    for name in ("p.json", "p.jsonl"):
        settings = {"source": "predictions", "predictions": str(tmp_path / name), "categories": []}
        preds, meta = pretag.from_predictions(files, settings)
        assert preds == [[{"category_id": 1, "bbox": [0.0, 0.0, 5.0, 5.0], "score": 0.7}], []]
        assert meta["unmatched_records"] == 1 and meta["missing"] == 1
        assert any("width and height" in why for _, why in meta["bad_files"])
    assert (
        pretag.from_predictions(files, {**settings, "predictions": str(tmp_path / "p.json")})[1]["categories"]
        == CATS
    )


def test_a_folder_with_two_detection_tasks_needs_task_name(tmp_path):
    files = _clean(tmp_path, ["a.png", "sub/b.png"])
    folder = _lightly_folder(tmp_path)
    base = folder / ".lightly" / "predictions"
    other = base / "other"
    other.mkdir()
    (other / "schema.json").write_text(json.dumps({"task_type": "object-detection", "categories": CATS}))
    (base / "tasks.json").write_text(json.dumps(["my-detector", "other"]))
    with pytest.raises(ConfigError, match="task_name"):
        pretag.from_predictions(files, {"source": "predictions", "predictions": str(folder)})
    preds, _ = pretag.from_predictions(
        files, {"source": "predictions", "predictions": str(folder), "task_name": "my-detector"}
    )
    assert len(preds[0]) == 2


def test_pretag_off_writes_an_inactive_artifact(tmp_path):
    _clean(tmp_path, ["a.png"])
    meta = run_pretag(str(tmp_path / "clean"), str(tmp_path / "pred"), {"pretagging": False})
    assert meta["active"] is False
    assert preds_io.read_meta(str(tmp_path / "pred"))["reason"] == "pretagging=False"
    assert list(preds_io.iter_records(str(tmp_path / "pred"))) == []
    assert (tmp_path / "pred" / "phase.json").is_file()


def test_pretag_from_predictions_with_debug_images_and_weak_labels(tmp_path):
    _clean(tmp_path, ["a.png", "c.png", "d.png", "sub/b.png"])
    folder = _lightly_folder(tmp_path)
    _settings(
        tmp_path, f"source: predictions\npredictions: {folder}\nscore_threshold: 0.5\ndebug_max_images: 3\n"
    )
    cfg = {"pretagging": True, "pretagging_debug": True, "pretagging_config": str(tmp_path / "pretag.yaml")}
    meta = run_pretag(str(tmp_path / "clean"), str(tmp_path / "pred"), cfg)
    assert (
        meta["active"] and meta["objects"] == 2 and meta["samples_with_objects"] == 2 and meta["count"] == 4
    )
    assert meta["debug_images"] == 3  # the first three of the list
    debug = tmp_path / "pred" / "debug"
    assert sorted(p.name for p in debug.iterdir()) == ["a.jpg", "c.jpg", "d.jpg"]
    img = np.asarray(Image.open(debug / "a.jpg").convert("RGB")).astype(int)
    plain = np.asarray(Image.open(tmp_path / "images" / "a.png").convert("RGB")).astype(int)
    # the box (x 1..10, y 2..9) is outlined in the colour of class 0 (red), the rest of the image kept
    assert img[9, 5, 0] - plain[9, 5, 0] > 100 and img[9, 5, 0] - img[9, 5, 1] > 80  # JPEG blurs it a bit
    assert abs(img[20, 30] - plain[20, 30]).max() < 12

    labels = pretag.weak_labels(str(tmp_path / "pred"), ["sub/b.png", "d.png"], {"sub/b.png": 1.0})
    assert labels["categories"] == CATS and labels["format"] == "kurate.weak_labels/1"
    assert labels["samples"] == [
        {"file_name": "d.png", "predictions": []},
        {
            "file_name": "sub/b.png",
            "predictions": [{"category_id": 1, "bbox": [3.0, 3.0, 12.0, 12.0], "score": 0.8}],
            "score": 1.0,
        },
    ]
    counts = pretag.class_counts(str(tmp_path / "pred"), {"a.png"})
    assert counts == [
        {"id": 0, "name": "cat", "objects": 1, "images": 1, "selected_objects": 1, "selected_images": 1},
        {"id": 1, "name": "dog", "objects": 1, "images": 1, "selected_objects": 0, "selected_images": 0},
    ]


def test_export_writes_predictions_debug_images_and_weak_labels(tmp_path):
    files = _clean(tmp_path, ["a.png", "c.png", "d.png", "sub/b.png"])
    folder = _lightly_folder(tmp_path)
    settings = pretag.load_settings(
        str(_settings(tmp_path, f"source: predictions\npredictions: {folder}\nscore_threshold: 0.5\n"))
    )
    run_pretag(
        str(tmp_path / "clean"),
        str(tmp_path / "pred"),
        {"pretagging": True, "pretagging_debug": True, "settings": settings},
    )
    inputs = RunInputs(
        files=FileList(root=files.root, names=files.names, extra={"input_count": 4}),
        clean=files,
        corrupt=FileList(root=files.root, names=[], columns={"reason": []}),
        duplicates=FileList(root=files.root, names=[], columns={"duplicate_of": []}),
        selection=FileList(
            root=files.root,
            names=["sub/b.png", "a.png"],
            columns={"score": ["1", "0.9"]},
            extra={"scorer": {"active": True, "scorer": "object-frequency"}},
        ),
        emb_names=files.names,
        embeddings=np.eye(4, dtype=np.float32),
        predictions=str(tmp_path / "pred"),
    )
    report = export.export_run(
        str(tmp_path / "run"), inputs, {"append_weak_labels": True, "upload_report": False}
    )
    run = tmp_path / "run"
    assert sorted(p.name for p in (run / "pretagging" / "debug").rglob("*.jpg")) == [
        "a.jpg",
        "b.jpg",
        "c.jpg",
        "d.jpg",
    ]
    assert (run / "pretagging" / "predictions.jsonl").read_text().count("\n") == 4
    assert json.loads((run / "pretagging" / "schema.json").read_text())["categories"] == CATS
    weak = json.loads((run / "data" / "weak_labels.json").read_text())
    assert [s["file_name"] for s in weak["samples"]] == ["a.png", "sub/b.png"]
    assert weak["samples"][0]["score"] == 0.9 and len(weak["samples"][0]["predictions"]) == 1
    section = report["pretagging"]
    assert section["active"] and section["weak_labels"] == "data/weak_labels.json"
    assert section["debug_image_count"] == 4 and section["objects"] == 2
    assert report["selection"]["scorer"]["active"]


def test_export_without_pretagging_says_so(tmp_path):
    files = _clean(tmp_path, ["a.png"])
    preds_io.write_inactive(str(tmp_path / "pred"), "pretagging=False")
    inputs = RunInputs(
        files=FileList(root=files.root, names=files.names, extra={"input_count": 1}),
        clean=files,
        corrupt=FileList(root=files.root, names=[], columns={"reason": []}),
        duplicates=FileList(root=files.root, names=[], columns={"duplicate_of": []}),
        selection=FileList(root=files.root, names=["a.png"]),
        emb_names=files.names,
        embeddings=np.ones((1, 3), dtype=np.float32),
        predictions=str(tmp_path / "pred"),
    )
    report = export.export_run(str(tmp_path / "run"), inputs, {"upload_report": False})
    assert report["pretagging"] == {"active": False, "reason": "pretagging=False"}
    assert (
        not (tmp_path / "run" / "pretagging").exists()
        and not (tmp_path / "run" / "data" / "weak_labels.json").exists()
    )


def test_debug_drawing_survives_degenerate_boxes():
    """Detectors emit sub-pixel and zero-size boxes, at the border too: drawing them must not fail."""
    img = Image.new("RGB", (32, 24), (0, 0, 0))  # (the sub-pixel box once made PIL raise "y1 < y0")
    preds = [
        {"category_id": 3, "bbox": [0.0, 15.4, 0.75, 0.6], "score": 0.1},  # 15.4 + 1 - 1 < 15.4 in floats
        {"category_id": 0, "bbox": [31.9, 23.9, 0.0, 0.0], "score": 0.2},
        {"category_id": 1, "bbox": [0.0, 0.0, 32.0, 24.0], "score": 1.0},
    ]
    out = pretag.draw_boxes(img, preds, {1: "dog"})
    assert out.size == img.size and np.asarray(out).max() > 0 and np.asarray(img).max() == 0
