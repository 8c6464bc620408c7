"""The built-in pretagging detector and torchvision's COCO weights: found in the torch hub cache or the
baked weights folder, never downloaded; kept classes; baking them into an image folder.

Weights here are random-initialised detectors of the right architecture (nothing is downloaded), with
the class scores biased so that they predict known classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kurate.errors import ConfigError
from kurate.io import filelist
from kurate.io import predictions as preds_io
from kurate.models import coco, pretag, weights
from kurate.phases.pretag import run_pretag

ARCH = "fasterrcnn_mobilenet_v3_large_320_fpn"  # the small COCO detector: seconds on a CPU


def coco_state_dict(architecture: str, biased: dict[int, float], seed: int = 0) -> dict:
    """A random-initialised COCO detector (91 classes) whose box classifier favours ``biased`` ids."""
    import torch
    import torchvision.models.detection as tvd

    torch.manual_seed(seed)
    model = getattr(tvd, architecture)(weights=None, weights_backbone=None, num_classes=91)
    bias = model.roi_heads.box_predictor.cls_score.bias
    with torch.no_grad():
        bias.zero_()
        for cid, value in biased.items():
            bias[cid] = value
    return model.state_dict()


def put_in_hub_cache(home: Path, architecture: str, biased: dict[int, float]) -> Path:
    import torch

    target = home / "hub" / "checkpoints" / coco.WEIGHT_FILES[architecture]
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(coco_state_dict(architecture, biased), target)
    return target


def _clean(tmp: Path, n: int = 3) -> str:
    rng = np.random.default_rng(0)
    (tmp / "in").mkdir()
    names = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(tmp / "in" / f"p{i}.png")
        names.append(f"p{i}.png")
    filelist.write(str(tmp / "clean"), filelist.FileList(root=str(tmp / "in"), names=names))
    return str(tmp / "clean")


def test_coco_weights_come_from_the_hub_cache_and_classes_are_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("KURATE_WEIGHTS_DIR", raising=False)
    (tmp_path / "s.yaml").write_text(
        f"source: model\narchitecture: {ARCH}\nscore_threshold: 0.2\nclasses: [person]\n"
        "min_requirements: {person: 1}\nnum_workers: 0\nmodel_options: {box_detections_per_img: 1000}\n"
    )
    settings = pretag.load_settings(str(tmp_path / "s.yaml"))
    assert settings["weights"] == "coco" and settings["checkpoint"] == ""
    assert settings["min_requirements"] == {"person": 1} and len(settings["categories"]) == 80
    clean = _clean(tmp_path, 2)
    with pytest.raises(ConfigError) as err:  # no weights anywhere: one line saying how to get them
        pretag.check_weights_here(settings)
    assert coco.WEIGHT_FILES[ARCH] in str(err.value) and err.value.key == "pretagging"
    with pytest.raises(ConfigError):
        run_pretag(clean, str(tmp_path / "none"), {"pretagging": True, "settings": settings})
    put_in_hub_cache(tmp_path / "torch", ARCH, {1: 8.0, 18: 7.0})  # person ~0.7 and dog ~0.26
    pretag.check_weights_here(settings)
    meta = run_pretag(clean, str(tmp_path / "pred"), {"pretagging": True, "settings": settings})
    assert meta["source"].startswith(f"model {ARCH} from {tmp_path / 'torch'}")
    assert meta["categories"] == [{"id": 1, "name": "person"}] and meta["objects"] > 0
    records = list(preds_io.iter_sized_records(str(tmp_path / "pred")))
    assert all(p["category_id"] == 1 for _, ps, _ in records for p in ps)  # dogs were detected, not kept
    assert [size for *_, size in records] == [(64, 48)] * 2

    everything = {**settings, "classes": None}  # the same detector keeping every class: dogs appear
    run_pretag(clean, str(tmp_path / "all"), {"pretagging": True, "settings": everything})
    ids = {p["category_id"] for _, ps in preds_io.iter_records(str(tmp_path / "all")) for p in ps}
    assert ids == {1, 18}


def test_the_baked_folder_wins_over_the_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("KURATE_WEIGHTS_DIR", str(tmp_path / "baked"))
    put_in_hub_cache(tmp_path / "torch", ARCH, {})
    import torch

    torch.save(coco_state_dict(ARCH, {3: 9.0}), tmp_path / "car.pth")
    (baked,) = weights.bake_detectors([ARCH], str(tmp_path / "baked"), from_file=str(tmp_path / "car.pth"))
    assert Path(baked).name == coco.WEIGHT_FILES[ARCH] and coco.find_weights(ARCH) == baked
    assert sorted(p.name for p in (tmp_path / "baked").iterdir()) == [coco.WEIGHT_FILES[ARCH]]
    settings = {**pretag.builtin_settings(), "architecture": ARCH, "classes": ["car"], "score_threshold": 0.5}
    meta = run_pretag(_clean(tmp_path, 1), str(tmp_path / "pred"), {"pretagging": True, "settings": settings})
    assert meta["source"].startswith(f"built-in detector {ARCH} from {baked}") and meta["objects"] > 0


def test_baking_verifies_the_file_and_names_the_detectors(tmp_path, capsys):
    import torch

    assert weights.detector_names(["default"]) == [coco.BUILTIN_ARCHITECTURE]
    assert weights.detector_names(["all"]) == list(coco.WEIGHT_FILES)
    with pytest.raises(ConfigError) as err:
        weights.detector_names(["yolov8"])
    assert err.value.key == "DETECTOR_WEIGHTS" and "default, all" in str(err.value)
    torch.save(coco_state_dict(ARCH, {}), tmp_path / "ok.pth")
    torch.save({"not": torch.zeros(1)}, tmp_path / "bad.pth")
    code = weights.main(
        [str(tmp_path / "dest"), "--detector", ARCH, "--from-file", str(tmp_path / "bad.pth")]
    )
    assert code != 0 and "do not load" in capsys.readouterr().err
    assert not any((tmp_path / "dest").iterdir())  # nothing half-baked left
    code = weights.main([str(tmp_path / "dest"), "--detector", ARCH, "--from-file", str(tmp_path / "ok.pth")])
    assert code == 0 and (tmp_path / "dest" / coco.WEIGHT_FILES[ARCH]).is_file()
    assert list((tmp_path / "dest").iterdir()) == [tmp_path / "dest" / coco.WEIGHT_FILES[ARCH]]


@pytest.mark.slow
def test_the_builtin_detector_runs_from_the_hub_cache(tmp_path, monkeypatch):
    """The real built-in (Faster R-CNN R50-FPN v2, 800 px: slow on a CPU) on one image."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("KURATE_WEIGHTS_DIR", raising=False)
    put_in_hub_cache(tmp_path / "torch", coco.BUILTIN_ARCHITECTURE, {1: 10.0})
    settings = pretag.builtin_settings({"person": 1})
    meta = run_pretag(_clean(tmp_path, 1), str(tmp_path / "pred"), {"pretagging": True, "settings": settings})
    assert meta["source"].startswith(f"built-in detector {coco.BUILTIN_ARCHITECTURE}")
    assert {c["name"] for c in meta["categories"]} == set(coco.LIGHTLY_CLASSES)
    ids = {p["category_id"] for _, ps in preds_io.iter_records(str(tmp_path / "pred")) for p in ps}
    assert ids == {1}  # persons, found by the weights in the hub cache
