"""Object crops (object_level): Lightly's crop names and padding, the crop list, cutting crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kurate.io import filelist
from kurate.io import predictions as preds_io
from kurate.media import crops


def test_names_follow_lightly_crop():
    names = {1: "car", 2: "traffic/light", 3: ""}
    assert crops.crop_name("img/a.jpg", 1, crops.class_label(1, names)) == "img/a/1_car.jpg"
    assert crops.crop_name("clips/c-007-mp4.png", 0, "person") == "clips/c-007-mp4/0_person.png"
    assert crops.class_label(2, names) == "traffic_light"  # a class name never adds a folder
    assert crops.class_label(3, names) == "class3" and crops.class_label(9, names) == "class9"
    assert crops.crop_name("a.b.PNG", 2, "x") == "a.b/2_x.PNG"
    assert crops.crop_name(".hidden", 0, "x") == ".hidden/0_x"  # a dot file has no extension


@pytest.mark.parametrize(
    ("bbox", "padding", "size", "box"),
    [
        ([10, 20, 30, 40], 0.0, (100, 100), (10, 20, 40, 60)),
        ([10, 20, 30, 40], 0.1, (100, 100), (8, 18, 41, 62)),  # 33 x 44 about the centre (25, 40)
        ([0, 0, 10, 10], 1.0, (100, 100), (0, 0, 15, 15)),  # clipped at the image's edge
        ([90.5, 5.2, 20, 3.3], 0.0, (100, 50), (90, 5, 100, 8)),  # truncated corners, clipped
        ([120, 10, 5, 5], 0.0, (100, 100), None),  # outside the image
    ],
)
def test_the_cut_box_is_lightlys(bbox, padding, size, box):
    assert crops.crop_box(bbox, padding, *size) == box


def _artifact(tmp: Path, records: list[tuple[str, list[dict]]], categories) -> str:
    path = tmp / "preds"
    preds_io.write(
        str(path),
        [n for n, _ in records],
        [ps for _, ps in records],
        {"source": "test", "categories": preds_io.categories_from(categories, "test")},
    )
    return str(path)


def test_the_crop_list_links_each_crop_to_its_image_and_box(tmp_path):
    clean = filelist.FileList(
        root="/data",
        names=["a.png", "b.jpg", "c.png"],
        columns={"sha256": ["aa", "bb", "cc"]},
    )
    p = _artifact(
        tmp_path,
        [
            ("a.png", [{"category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.9}]),
            ("b.jpg", []),
            (
                "c.png",
                [
                    {"category_id": 2, "bbox": [0, 0, 0, 5], "score": 0.5},  # zero width: no crop
                    {"category_id": 2, "bbox": [5, 5, 10, 10], "score": 0.7},
                ],
            ),
        ],
        {1: "car", 2: "person"},
    )
    got = crops.crop_list(clean, p, padding=0.2)
    assert got.names == ["a/0_car.png", "c/1_person.png"]
    assert got.columns["image"] == ["a.png", "c.png"]
    assert got.columns["box_index"] == ["0", "1"]
    assert got.columns["category"] == ["car", "person"]
    assert crops.bbox_of(got, 1) == [5.0, 5.0, 10.0, 10.0]
    assert got.extra["object_level"] == {
        "padding": 0.2,
        "images": 3,
        "images_with_objects": 2,
        "crops": 2,
        "empty_boxes": 1,
        "source": "test",
    }
    # the cache key follows the image content and the box, not the name
    same = crops.crop_list(
        filelist.FileList(
            root="/x", names=["a.png", "b.jpg", "c.png"], columns={"sha256": ["aa", "bb", "cc"]}
        ),
        p,
        padding=0.2,
    )
    assert same.columns["sha256"] == got.columns["sha256"]
    other = crops.crop_list(clean, p, padding=0.3)
    assert other.columns["sha256"] != got.columns["sha256"]
    assert crops.crop_images(p) == {"a/0_car.png": "a.png", "c/1_person.png": "c.png"}


def test_crops_are_cut_from_each_image_once(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)
    (tmp_path / "in").mkdir()
    Image.fromarray(arr).save(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "bad.png").write_bytes(b"not a png")
    clean = filelist.FileList(root=str(tmp_path / "in"), names=["a.png", "bad.png"])
    p = _artifact(
        tmp_path,
        [
            (
                "a.png",
                [
                    {"category_id": 1, "bbox": [10, 5, 20, 10], "score": 1.0},
                    {"category_id": 1, "bbox": [100, 100, 5, 5], "score": 1.0},  # outside
                ],
            ),
            ("bad.png", [{"category_id": 1, "bbox": [0, 0, 4, 4], "score": 1.0}]),
        ],
        {1: "thing"},
    )
    files = crops.crop_list(clean, p, padding=0.0)
    from kurate.media import samples

    decoded = []
    real = samples.iter_samples

    def counting(f, rows, max_pixels):
        decoded.extend(f.names[r] for r in rows)
        yield from real(f, rows, max_pixels)

    monkeypatch.setattr(samples, "iter_samples", counting)
    got = {r: (img, why) for r, img, why in crops.iter_crops(files, [0, 1, 2], 10**8)}
    assert sorted(decoded) == ["a.png", "bad.png"]
    assert np.array_equal(np.asarray(got[0][0]), arr[5:15, 10:30])
    assert got[1] == (None, "the box lies outside its image")
    assert got[2][0] is None and got[2][1]
