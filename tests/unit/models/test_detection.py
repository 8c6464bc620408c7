"""Pretagging with a real detector: one trained in the test on generated shapes finds them, a predictions
file of the same boxes gives the same scores, torchvision builders load offline from checkpoints."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from kurate.errors import ConfigError, KurateError
from kurate.io import filelist
from kurate.io import predictions as preds_io
from kurate.models import pretag
from kurate.phases.check import run_check
from kurate.phases.ingest import run_ingest
from kurate.phases.pretag import run_pretag
from kurate.selection.scorer import score_samples
from tests.detector_helpers import CATEGORIES, make_shapes_folder, match

#: Class ids per test image: one to three shapes, repeated and mixed classes (their scores differ).
LAYOUTS = [[1], [2], [1, 1], [1, 2], [2, 2, 2], [1, 1, 1], [2, 1], [2, 2]] * 3


def _clean(tmp_path: Path, layouts=LAYOUTS):
    truth = make_shapes_folder(tmp_path / "shapes", layouts, seed=11)
    run_ingest(str(tmp_path / "a" / "files"), {"input_dir": str(tmp_path / "shapes")})
    run_check(
        str(tmp_path / "a" / "files"),
        *(str(tmp_path / "a" / k) for k in ("clean", "corrupt", "dups")),
        {"workers": 1},
    )
    return truth, str(tmp_path / "a" / "clean")


def _model_settings(tmp_path: Path, checkpoint: Path, **extra) -> dict:
    lines = {
        "source": "model",
        "architecture": "fcos_tiny",
        "checkpoint": str(checkpoint),
        "categories": CATEGORIES,
        "score_threshold": 0.5,
        "num_workers": 0,
        **extra,
    }
    (tmp_path / "model.json").write_text(json.dumps(lines))
    return pretag.load_settings(str(tmp_path / "model.json"))


def test_the_trained_detector_finds_the_shapes(tmp_path, tiny_detector):
    truth, clean = _clean(tmp_path)
    settings = _model_settings(tmp_path, tiny_detector)
    meta = run_pretag(
        clean, str(tmp_path / "pred"), {"pretagging": True, "pretagging_debug": True, "settings": settings}
    )
    assert meta["device"] in ("cpu", "cuda") and meta["failed"] == []
    tp = fn = fp = 0
    for name, ps in preds_io.iter_records(str(tmp_path / "pred")):
        a, b, c = match(truth[name], ps)
        tp, fn, fp = tp + a, fn + b, fp + c
    n_shapes = sum(len(v) for v in truth.values())
    assert tp + fn == n_shapes == 48
    assert tp / n_shapes >= 0.85 and fp <= 0.15 * n_shapes, (tp, fn, fp)
    assert meta["debug_images"] == len(truth) and len(list((tmp_path / "pred" / "debug").iterdir())) == 24


def test_a_predictions_file_gives_the_same_scores_as_the_model(tmp_path, tiny_detector):
    """The model's predictions written in Lightly's layout and read back: identical records and scores."""
    _, clean = _clean(tmp_path)
    names = filelist.read(clean).names
    run_pretag(
        clean,
        str(tmp_path / "model"),
        {"pretagging": True, "settings": _model_settings(tmp_path, tiny_detector)},
    )
    task = tmp_path / "lightly" / ".lightly" / "predictions" / "shapes"
    task.mkdir(parents=True)
    (task.parent / "tasks.json").write_text(json.dumps(["shapes"]))
    cats = [{"id": i, "name": n} for i, n in enumerate(CATEGORIES)]
    (task / "schema.json").write_text(json.dumps({"task_type": "object-detection", "categories": cats}))
    computed = dict(preds_io.iter_records(str(tmp_path / "model")))
    for name, ps in computed.items():
        (task / name.replace(".png", ".json")).write_text(json.dumps({"file_name": name, "predictions": ps}))
    (tmp_path / "file.yaml").write_text(f"source: predictions\npredictions: {tmp_path / 'lightly'}\n")
    settings = pretag.load_settings(str(tmp_path / "file.yaml"))
    meta = run_pretag(clean, str(tmp_path / "file"), {"pretagging": True, "settings": settings})
    assert meta["missing"] == 0 and meta["categories"] == cats
    assert dict(preds_io.iter_records(str(tmp_path / "file"))) == computed
    for penalty, low in ((0.25, 0.9), (0.5, 0.1)):
        a = score_samples(names, str(tmp_path / "model"), "object-frequency", penalty, low)
        b = score_samples(names, str(tmp_path / "file"), "object-frequency", penalty, low)
        assert a.active and b.active
        np.testing.assert_array_equal(a.weights, b.weights)
        assert a.raw is not None and len(set(a.raw.tolist())) > 1  # the layouts really score differently


def test_torchvision_builders_load_offline_from_a_checkpoint(tmp_path, monkeypatch):
    """fasterrcnn_mobilenet_v3_large_320_fpn built with weights=None, weights_backbone=None: nothing is
    downloaded (an empty TORCH_HOME stays empty), its checkpoint loads, predictions come out well-formed."""
    import torch
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    torch.manual_seed(0)
    model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=3
    )
    torch.save({"model": model.state_dict()}, tmp_path / "frcnn.pth")  # torchvision references' layout
    _, clean = _clean(tmp_path, LAYOUTS[:3])
    (tmp_path / "s.yaml").write_text(
        "source: model\narchitecture: fasterrcnn_mobilenet_v3_large_320_fpn\ncheckpoint: frcnn.pth\n"
        "categories: [__background__, circle, square]\nscore_threshold: 0.0\nnum_workers: 0\n"
    )
    settings = pretag.load_settings(str(tmp_path / "s.yaml"))
    meta = run_pretag(clean, str(tmp_path / "pred"), {"pretagging": True, "settings": settings})
    assert meta["count"] == 3 and meta["model"]["options"]["box_score_thresh"] == 0.0
    for _, ps in preds_io.iter_records(str(tmp_path / "pred")):
        for p in ps:
            assert p["category_id"] in (1, 2) and p == preds_io.clean_prediction(p)
            x, y, w, h = p["bbox"]
            assert 0 <= x <= x + w <= 64 and 0 <= y <= y + h <= 64
    assert not (tmp_path / "torch-home").exists() or not any(os.scandir(tmp_path / "torch-home"))


def test_a_checkpoint_that_does_not_fit_is_one_clear_error(tmp_path, tiny_detector):
    _, clean = _clean(tmp_path, LAYOUTS[:2])
    wrong_arch = _model_settings(tmp_path, tiny_detector)
    wrong_arch["architecture"] = "ssdlite320_mobilenet_v3_large"
    with pytest.raises(ConfigError, match="holds a 'fcos_tiny'"):
        run_pretag(clean, str(tmp_path / "p1"), {"pretagging": True, "settings": wrong_arch})
    import torch

    from kurate.models.detection import fcos_tiny

    torch.save(fcos_tiny(5).state_dict(), tmp_path / "five.pt")  # a plain state dict with 5 classes
    with pytest.raises(KurateError, match="shape mismatch"):
        settings = _model_settings(tmp_path, tmp_path / "five.pt")
        run_pretag(clean, str(tmp_path / "p2"), {"pretagging": True, "settings": settings})
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(KurateError, match="cannot be loaded safely"):
        settings = _model_settings(tmp_path, tmp_path / "junk.pt")
        run_pretag(clean, str(tmp_path / "p3"), {"pretagging": True, "settings": settings})


def test_video_frames_are_pretagged_in_list_order_by_any_number_of_workers(tmp_path, tiny_detector):
    """Frames are samples: each is decoded from its video (one pass), predictions come back in list order."""
    from PIL import Image

    from kurate.phases.ingest import list_input
    from tests.detector_helpers import draw_shapes
    from tests.video_helpers import make_video

    rng = np.random.default_rng(4)
    shots = [draw_shapes(rng, kinds) for kinds in LAYOUTS[:8]]
    make_video(
        tmp_path / "in" / "clip.mp4",
        n=8,
        size=(64, 64),
        lossless=True,
        frames=[np.array(img) for img, _ in shots],
    )
    for i, (img, _) in enumerate(shots[:3]):
        img.save(tmp_path / "in" / f"still_{i}.png")
    files = list_input(str(tmp_path / "in"))
    filelist.write(str(tmp_path / "clean"), files)
    truth = {video_name: shapes for video_name, (_, shapes) in zip(files.names[:8], shots, strict=True)}
    truth |= {f"still_{i}.png": shots[i][1] for i in range(3)}
    metas = []
    for workers in (0, 2):
        settings = _model_settings(tmp_path, tiny_detector, num_workers=workers)
        cfg = {"pretagging": True, "pretagging_debug": True, "settings": settings}
        metas.append(run_pretag(str(tmp_path / "clean"), str(tmp_path / f"p{workers}"), cfg))
    recs = [list(preds_io.iter_records(str(tmp_path / f"p{w}"))) for w in (0, 2)]
    assert [n for n, _ in recs[0]] == files.names and recs[0] == recs[1]
    assert files.names[0] == "clip-0-mp4.png" and all(m["failed"] == [] for m in metas)
    tp = sum(match(truth[n], ps)[0] for n, ps in recs[0])
    assert tp >= 0.8 * sum(len(s) for s in truth.values())
    debug = sorted(p.name for p in (tmp_path / "p0" / "debug").iterdir())
    assert "clip-0-mp4.jpg" in debug and len(debug) == 11
    assert Image.open(tmp_path / "p0" / "debug" / "clip-0-mp4.jpg").size == (64, 64)
