"""Dumped images never overwrite each other: names that collide after the format change get distinct files."""

from __future__ import annotations

import itertools
import random

import numpy as np
from PIL import Image

from kurate.outputs import export
from tests.helpers import draw_image


def _sources(root, names):
    for k, name in enumerate(names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        fmt = {"jpg": "JPEG", "jpeg": "JPEG"}.get(name.rsplit(".", 1)[-1].lower(), "PNG")
        draw_image(k, size=32).save(path, format=fmt, quality=95)


def test_colliding_names_are_all_dumped_each_from_its_own_source(tmp_path):
    names = sorted(["a.jpg", "a.png", "a.jpg.png", "b.JPG", "b.jpg", "sub/c.jpeg", "sub/c.jpg", "sub/c.png"])
    root = tmp_path / "in"
    _sources(root, names)
    out = tmp_path / "sampled"
    failed = export.dump_samples(str(root), names, str(out), -1, "png")
    assert failed == []
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert len(written) == len(names), written
    targets = export.dump_targets(names, "png")
    assert sorted(targets.values()) == written
    for name in names:  # each file holds its own source's pixels (png is lossless)
        with Image.open(root / name) as src, Image.open(out / targets[name]) as dst:
            assert np.array_equal(np.asarray(src.convert("RGB")), np.asarray(dst.convert("RGB"))), name


def test_names_without_collision_keep_lightlys_layout():
    targets = export.dump_targets(["x/a.jpg", "x/b.png", "c.tif"], "png")
    assert targets == {"x/a.jpg": "x/a.png", "x/b.png": "x/b.png", "c.tif": "c.png"}


def test_targets_are_unique_and_stable_for_any_set_of_names():
    rng = random.Random(0)
    stems = ["a", "a.jpg", "a.png", "A", "b.b", "sub/a", "a.png.png"]
    exts = ["", ".jpg", ".png", ".PNG", ".jpeg", ".tif"]
    pool = sorted({s + e for s, e in itertools.product(stems, exts)})
    for fmt in ("png", "jpg", "tiff"):
        for _ in range(200):
            names = sorted(rng.sample(pool, rng.randint(1, len(pool))))
            targets = export.dump_targets(names, fmt)
            assert sorted(targets) == names
            assert len(set(targets.values())) == len(names), names
            for n, t in targets.items():
                assert t.rsplit(".", 1)[-1] == export.FORMAT_EXT.get(fmt, fmt) or t == n
                assert "/".join(t.split("/")[:-1]) == "/".join(n.split("/")[:-1])  # same folder
            assert export.dump_targets(list(reversed(names)), fmt) == targets  # order-independent
