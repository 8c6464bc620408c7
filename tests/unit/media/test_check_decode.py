"""The check's decode: as cheap as its verdict allows, and stricter about damaged JPEG scans.

Pins correctness, never timings: the DCT-scaled check gives the full decode's verdict (and reason) on
every file of a corrupt corpus; the stricter check only adds "damaged JPEG data" verdicts, reports the
scan damage libjpeg notices, and never a clean file of any flavour.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from kurate.errors import CorruptFileError
from kurate.media import image
from tests import jpeg_corpus as jc


def _verdict(fn, data: bytes) -> str:
    try:
        fn(data, "f.jpg")
    except CorruptFileError as exc:
        return exc.reason
    return ""


@pytest.fixture(scope="module")
def corpus() -> tuple[list[tuple[str, bytes]], list[tuple[str, str, bytes]]]:
    originals = list(jc.photo_jpegs([(320, 240)] * 4 + [(480, 320)] * 2, seed=11))
    return originals, list(jc.damaged_corpus(originals, seed=12, copies=2))


def test_scaled_check_gives_the_full_decodes_verdict(corpus):
    originals, damaged = corpus
    for name, kind, data in damaged:
        full = _verdict(image.decode_image, data)
        scaled = _verdict(lambda d, n: image.check_image(d, n, strict_jpeg=False), data)
        assert scaled == full, (name, kind)
    # structural damage is caught by both, scan damage by neither (what the stricter check adds)
    kinds = {k for _, k, d in damaged if _verdict(image.decode_image, d)}
    assert set(jc.STRUCTURE_DAMAGE) <= kinds


def test_strict_check_only_adds_damaged_scan_verdicts(corpus):
    _, damaged = corpus
    added = 0
    for name, kind, data in damaged:
        full = _verdict(image.decode_image, data)
        strict = _verdict(lambda d, n: image.check_image(d, n, strict_jpeg=True), data)
        if full:
            assert strict == full, (name, kind)  # Pillow's reason, unchanged
        elif strict:
            assert strict.startswith("damaged JPEG data: "), (name, strict)
            assert kind in jc.SCAN_DAMAGE
            added += 1
    assert added > 0


@pytest.mark.parametrize("kind", ["eoi", "zero4k"])
def test_strict_check_reports_lost_scan_data(corpus, kind):
    _, damaged = corpus
    files = [d for _, k, d in damaged if k == kind]
    reasons = [_verdict(image.check_image, d) for d in files]
    assert all(r.startswith("damaged JPEG data: Corrupt JPEG data") for r in reasons), reasons


def test_no_false_positive_on_clean_jpegs_of_every_flavour():
    photo = jc.photos()[1][1]
    items = jc.jpeg_flavours(photo, np.random.default_rng(3)) + list(jc.photo_jpegs([(640, 360)] * 4, seed=4))
    for name, data in items:
        assert _verdict(image.check_image, data) == "", name


def test_check_image_is_upright_rgb_and_reduced():
    photo = jc.photos()[0][1]
    base = jc.photo_image(photo, (800, 600), np.random.default_rng(0))
    exif = Image.Exif()
    exif[0x0112] = 6
    for strict in (True, False):
        plain = image.check_image(jc.encode_jpeg(base), "a.jpg", strict_jpeg=strict)
        rotated = image.check_image(jc.encode_jpeg(base, exif=exif.tobytes()), "b.jpg", strict_jpeg=strict)
        assert plain.mode == rotated.mode == "RGB"
        assert plain.size == (100, 75)  # DCT-scaled 1/8, short side >= CHECK_MIN_EDGE
        assert rotated.size == (75, 100)  # EXIF orientation 6 applied, as decode_image does
        assert plain.info[image.HEADER_SIZE] == rotated.info[image.HEADER_SIZE] == (800, 600)  # the header's
        assert plain.info[image.UPRIGHT_SIZE] == (800, 600)  # full size, upright: decode_image's size
        assert rotated.info[image.UPRIGHT_SIZE] == (600, 800)
        full = image.decode_image(jc.encode_jpeg(base, exif=exif.tobytes()))
        small = np.asarray(full.resize(rotated.size, Image.Resampling.BOX), dtype=np.int16)
        assert np.abs(small - np.asarray(rotated, dtype=np.int16)).mean() < 6  # same picture


def test_small_and_non_jpeg_images_are_decoded_whole():
    img = jc.photo_image(jc.photos()[0][1], (120, 90), np.random.default_rng(1))
    small = image.check_image(jc.encode_jpeg(img), "s.jpg")
    assert small.size == (120, 90)  # too small to scale down
    assert small.info[image.HEADER_SIZE] == small.info[image.UPRIGHT_SIZE] == (120, 90)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    png = image.check_image(buf.getvalue(), "p.png")
    assert np.array_equal(np.asarray(png), np.asarray(image.decode_image(buf.getvalue())))
    exif = Image.Exif()
    exif[0x0112] = 8
    buf = io.BytesIO()
    img.save(buf, "PNG", exif=exif.tobytes())  # a PNG turned by its eXIf chunk: decoded whole, upright
    turned = image.check_image(buf.getvalue(), "t.png")
    assert turned.info[image.HEADER_SIZE] == (120, 90)
    assert (
        turned.info[image.UPRIGHT_SIZE] == turned.size == image.decode_image(buf.getvalue()).size == (90, 120)
    )


def test_exif_transpose_in_place_keeps_pixels():
    """decode_image no longer copies the image to apply EXIF orientation; the pixels are unchanged."""
    from PIL import ImageOps

    img = jc.photo_image(jc.photos()[0][1], (64, 48), np.random.default_rng(2))
    exif = Image.Exif()
    for orientation in (1, 3, 6, 8):
        exif[0x0112] = orientation
        data = jc.encode_jpeg(img, exif=exif.tobytes())
        ref = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
        ours = image.decode_image(data)
        assert ours.size == ref.size
        assert np.array_equal(np.asarray(ours), np.asarray(ref.convert("RGB")))


def test_check_phase_lists_damaged_jpegs_unless_the_key_is_off(tmp_path):
    from kurate.io.filelist import FileList
    from kurate.media import quality

    originals = list(jc.photo_jpegs([(320, 240)] * 3, seed=21))
    jc.write_all(tmp_path, originals)
    (tmp_path / "z_damaged.jpg").write_bytes(jc.damage(originals[0][1], "eoi", np.random.default_rng(0)))
    files = FileList(root=str(tmp_path), names=sorted(p.name for p in tmp_path.iterdir()))
    strict = quality.check_files(files, workers=1, progress=False)
    assert strict.corrupt.names == ["z_damaged.jpg"]
    assert strict.corrupt.column("reason")[0].startswith("damaged JPEG data: Corrupt JPEG data")
    lenient = quality.check_files(files, workers=1, progress=False, strict_jpeg=False)
    assert lenient.corrupt.names == [] and len(lenient.clean) == 4
