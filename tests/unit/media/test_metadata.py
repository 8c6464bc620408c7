"""Computed lightly.* metadata: checked against PIL's own operations and hand-computed images."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from kurate.media import metadata as md


def _numpy_laplacian_std(grey: np.ndarray) -> float:
    """An independent reference: PIL's Kernel filter rules (clip to uint8, border copied) in numpy."""
    g = grey.astype(np.int32)
    out = g.copy()
    if g.shape[0] >= 3 and g.shape[1] >= 3:
        nb = sum(
            g[1 + dy : g.shape[0] - 1 + dy, 1 + dx : g.shape[1] - 1 + dx]
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
            if dy or dx
        )
        out[1:-1, 1:-1] = np.clip(8 * g[1:-1, 1:-1] - nb, 0, 255)
    return float(out.std())


@pytest.mark.parametrize("shape", [(37, 53, 3), (2, 5, 3), (64, 64, 3), (1, 1, 3)])
def test_sharpness_and_snr_are_lightlys_formulas(shape):
    rng = np.random.default_rng(sum(shape))
    a = rng.integers(0, 256, size=shape, dtype=np.uint8)
    img = Image.fromarray(a)
    m = md.image_metadata(img, 1234)
    # lightly.api.utils (<= 1.1.7): np.std(L.filter(Kernel(3x3 Laplacian, scale 1, offset 0))); mean/std
    lightly_sharpness = np.std(
        img.convert("L").filter(ImageFilter.Kernel((3, 3), (-1, -1, -1, -1, 8, -1, -1, -1, -1), 1, 0))
    )
    assert m["lightly.sharpness"] == pytest.approx(lightly_sharpness)
    assert m["lightly.sharpness"] == pytest.approx(_numpy_laplacian_std(np.asarray(img.convert("L"))))
    px = np.asanyarray(img)
    assert m["lightly.snr"] == pytest.approx(0 if px.std() == 0 else px.mean() / px.std())
    assert (m["lightly.width"], m["lightly.height"], m["lightly.sizeInBytes"]) == (shape[1], shape[0], 1234)


def test_luma_matches_pil_and_arrays_give_the_same_metadata():
    a = np.random.default_rng(1).integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    np.testing.assert_array_equal(md._luma(a), np.asarray(Image.fromarray(a).convert("L")))
    from_img = md.image_metadata(Image.fromarray(a))
    from_arr = md.image_metadata(a)
    assert from_img.keys() == from_arr.keys()
    for k in from_img:
        assert from_img[k] == pytest.approx(from_arr[k], nan_ok=True)
    assert np.isnan(from_arr["lightly.sizeInBytes"])  # a frame has no file size


def test_hand_computed_images():
    flat = np.full((10, 4, 3), 51, dtype=np.uint8)  # grey 51 = 20% luminance, no contrast, no edges
    m = md.image_metadata(flat)
    assert m["lightly.luminance"] == pytest.approx(20.0)
    assert m["lightly.contrast"] == 0 and m["lightly.snr"] == 0
    # PIL (so Lightly) keeps the 24 border pixels (51) and the 16 inside are 0: std of that image
    assert m["lightly.sharpness"] == pytest.approx(np.sqrt(24 / 40 * 51**2 - (24 / 40 * 51) ** 2))
    assert m["lightly.uniformRowRatio"] == 1.0
    half = np.zeros((10, 4, 3), dtype=np.uint8)
    half[:5] = np.arange(12, dtype=np.uint8).reshape(4, 3)  # 5 varied rows, 5 black rows
    m = md.image_metadata(half)
    assert m["lightly.uniformRowRatio"] == 0.5
    bw = np.zeros((2, 2, 3), dtype=np.uint8)
    bw[0] = 255  # grey 255 and 0: mean 50%, std 50%
    m = md.image_metadata(bw)
    assert (m["lightly.luminance"], m["lightly.contrast"]) == (pytest.approx(50.0), pytest.approx(50.0))
    assert m["lightly.snr"] == pytest.approx(1.0)  # mean 127.5 / std 127.5
