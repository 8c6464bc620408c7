"""torchvision's COCO detectors as kurate knows them without torch: file names, classes, where found."""

from __future__ import annotations

import pytest

from kurate.models import coco, pretag


@pytest.mark.parametrize("architecture", sorted(coco.WEIGHT_FILES))
def test_weight_files_and_classes_are_torchvisions(architecture):
    from torchvision.models import get_model_weights

    weights = get_model_weights(architecture).COCO_V1
    assert coco.DOWNLOAD_BASE + coco.WEIGHT_FILES[architecture] == weights.url
    assert list(coco.COCO_LABELS) == weights.meta["categories"]


def test_every_coco_architecture_kurate_builds_has_a_file():
    assert set(coco.WEIGHT_FILES) == set(pretag.ARCHITECTURES) - {"fcos_tiny"}
    assert coco.BUILTIN_ARCHITECTURE in coco.WEIGHT_FILES


def test_lightlys_classes_are_coco_classes():
    kept = coco.categories(coco.LIGHTLY_CLASSES)
    assert [c["name"] for c in kept] == ["person", "bicycle", "car", "motorcycle", "bus", "train", "truck"]
    assert [c["id"] for c in kept] == [1, 2, 3, 4, 6, 7, 8]
    every = coco.categories()
    assert len(every) == 80 and all(c["name"] not in ("N/A", "__background__") for c in every)


def test_weights_are_found_in_the_baked_folder_then_the_hub_cache(tmp_path):
    baked, home = tmp_path / "baked", tmp_path / "torch"
    env = {"KURATE_WEIGHTS_DIR": str(baked), "TORCH_HOME": str(home)}
    name = coco.WEIGHT_FILES["ssd300_vgg16"]
    assert coco.find_weights("ssd300_vgg16", env) == ""
    hint = coco.missing_weights_hint("ssd300_vgg16", env)
    assert name in hint and str(baked) in hint and str(home / "hub" / "checkpoints") in hint
    assert "DETECTOR_WEIGHTS=default" in hint and "\n" not in hint
    (home / "hub" / "checkpoints").mkdir(parents=True)
    (home / "hub" / "checkpoints" / name).write_bytes(b"x")
    assert coco.find_weights("ssd300_vgg16", env) == str(home / "hub" / "checkpoints" / name)
    baked.mkdir()
    (baked / name).write_bytes(b"y")
    assert coco.find_weights("ssd300_vgg16", env) == str(baked / name)


def test_the_hub_folder_follows_torchs_rule(tmp_path, monkeypatch):
    import torch.hub

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    assert coco.hub_checkpoints_dir() == f"{torch.hub.get_dir()}/checkpoints"
    monkeypatch.delenv("TORCH_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert coco.hub_checkpoints_dir() == f"{torch.hub.get_dir()}/checkpoints"
