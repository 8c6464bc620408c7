"""JPEG corpora made from real photographs: intact HD photos, and copies damaged the ways files break.

Used by the tests (small sizes) and by ``bench/`` (HD sizes). The photographs are the colour photos that
ship inside scikit-image's package (no download); each output is a seeded crop of one, resized to the
wanted size with a little sensor-like noise (an upscaled photo is unnaturally smooth, which makes its
JPEG smaller and faster to decode than a camera's), saved as JPEG.

Damage kinds (:data:`SCAN_DAMAGE` are inside the entropy-coded scan, where Pillow decodes without
complaint; :data:`STRUCTURE_DAMAGE` cut the file, which Pillow reports):

- ``flip``: a few bytes of the scan XOR-ed with a random non-zero value;
- ``zero4k``: a 4 KiB run of the scan set to zero;
- ``eoi``: an end-of-image marker (``FF D9``) written over two bytes of the scan;
- ``trunc50`` / ``trunc90`` / ``trunc99``: the file cut at 50 / 90 / 99 % of its bytes;
- ``cut_eoi``: the final end-of-image marker removed.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

#: scikit-image's bundled colour photographs (file names in ``skimage/data``).
PHOTO_FILES = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "motorcycle_left.png",
    "ihc.png",
)

SCAN_DAMAGE = ("flip", "zero4k", "eoi")
STRUCTURE_DAMAGE = ("trunc50", "trunc90", "trunc99", "cut_eoi")
DAMAGE_KINDS = SCAN_DAMAGE + STRUCTURE_DAMAGE


def photos() -> list[tuple[str, Image.Image]]:
    """The bundled photographs present in the installed scikit-image, as RGB."""
    import skimage.data

    root = Path(skimage.data.__file__).parent
    out = []
    for name in PHOTO_FILES:
        path = root / name
        if path.is_file():
            with Image.open(path) as img:
                out.append((name.rsplit(".", 1)[0], img.convert("RGB")))
    if len(out) < 3:
        raise RuntimeError(f"need at least 3 of scikit-image's photos in {root}, found {len(out)}")
    return out


def photo_image(photo: Image.Image, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """A seeded crop of ``photo`` with the aspect of ``size``, resized to ``size``, plus mild noise."""
    w, h = photo.size
    tw, th = size
    scale = float(rng.uniform(0.6, 1.0))
    cw = min(w, round(h * scale * tw / th))
    ch = min(h, round(cw * th / tw))
    cw = round(ch * tw / th)
    left = int(rng.integers(0, max(1, w - cw + 1)))
    top = int(rng.integers(0, max(1, h - ch + 1)))
    img = photo.crop((left, top, left + cw, top + ch))
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    img = img.resize(size, Image.Resampling.BICUBIC)
    arr = np.asarray(img, dtype=np.int16)
    noise = rng.normal(0.0, 3.0, size=(th, tw, 1)).astype(np.int16)  # luminance grain
    return Image.fromarray(np.clip(arr + noise, 0, 255).astype(np.uint8), "RGB")


def encode_jpeg(img: Image.Image, quality: int = 90, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, **kwargs)
    return buf.getvalue()


def photo_jpegs(
    sizes: list[tuple[int, int]], seed: int = 0, quality: int = 90
) -> Iterator[tuple[str, bytes]]:
    """``(name, JPEG bytes)`` for each entry of ``sizes``, cycling over the photographs."""
    rng = np.random.default_rng(seed)
    pics = photos()
    for i, size in enumerate(sizes):
        label, photo = pics[i % len(pics)]
        yield f"{label}_{i:04d}_{size[0]}x{size[1]}.jpg", encode_jpeg(photo_image(photo, size, rng), quality)


def scan_range(data: bytes) -> tuple[int, int]:
    """``(start, end)`` of the entropy-coded data of the first scan (after SOS, up to the next marker)."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ValueError(f"not a marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == 0xDA:  # SOS: the scan follows its header
            start = pos + 2 + length
            end = start
            while end + 1 < len(data):
                if data[end] == 0xFF and data[end + 1] not in (0x00, *range(0xD0, 0xD8)):
                    break
                end += 1
            return start, end
        pos += 2 + length
    raise ValueError("no SOS marker")


def damage(data: bytes, kind: str, rng: np.random.Generator) -> bytes:
    """A damaged copy of the JPEG ``data`` (see the module docstring for the kinds)."""
    buf = bytearray(data)
    start, end = scan_range(data)
    # Damage lands in the first 80 % of the scan, as a bad sector or a bit rot anywhere would: damage in
    # the very last bytes can leave nothing visible to detect.
    hi = start + int((end - start) * 0.8)
    if kind == "flip":
        for pos in rng.choice(np.arange(start, hi), size=3, replace=False):
            buf[int(pos)] ^= int(rng.integers(1, 256))
    elif kind == "zero4k":
        pos = int(rng.integers(start, max(start + 1, hi - 4096)))
        buf[pos : pos + 4096] = bytes(min(4096, end - pos))
    elif kind == "eoi":
        pos = int(rng.integers(start, hi))
        buf[pos : pos + 2] = b"\xff\xd9"
    elif kind.startswith("trunc"):
        return bytes(buf[: len(buf) * int(kind[5:]) // 100])
    elif kind == "cut_eoi":
        assert buf[-2:] == b"\xff\xd9"
        return bytes(buf[:-2])
    else:
        raise ValueError(f"unknown damage kind {kind!r}")
    return bytes(buf)


def damaged_corpus(
    originals: list[tuple[str, bytes]], kinds: tuple[str, ...] = DAMAGE_KINDS, seed: int = 0, copies: int = 1
) -> Iterator[tuple[str, str, bytes]]:
    """``(name, kind, damaged bytes)``: ``copies`` damaged copies of every original for every kind."""
    rng = np.random.default_rng(seed)
    for name, data in originals:
        stem = name.rsplit(".", 1)[0]
        for kind in kinds:
            for c in range(copies):
                yield f"{stem}__{kind}{c}.jpg", kind, damage(data, kind, rng)


def write_all(root: Path, items: Iterator[tuple[str, bytes]] | list[tuple[str, bytes]]) -> list[str]:
    root.mkdir(parents=True, exist_ok=True)
    names = []
    for name, data in items:
        (root / name).write_bytes(data)
        names.append(name)
    return names


def pillow_valid_images(folder: Path, opener: Callable[[bytes], object] | None = None) -> list[Path]:
    """Image files in a copy of Pillow's ``Tests/images`` that Pillow itself opens and decodes fully.

    Pillow's test suite also holds deliberately broken files (fuzzer crashes, truncated samples); the
    "valid" set is the files Pillow loads without an error, in the formats kurate lists as images.
    """
    from PIL import ImageFile

    exts = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
    out = []
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = 89_478_485  # Pillow's default (kurate's decode lifts it): no bomb loads here
    try:
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() not in exts or not path.is_file():
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error", Image.DecompressionBombWarning)
                    with Image.open(path) as img:
                        img.load()
            except Exception:  # noqa: BLE001 - broken (or bombs) on purpose in Pillow's suite
                continue
            out.append(path)
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    return out


def jpeg_flavours(photo: Image.Image, rng: np.random.Generator) -> list[tuple[str, bytes]]:
    """Intact JPEGs of every flavour a camera, phone or editor writes (for "no false positive" checks).

    Baseline and progressive, optimized Huffman tables, 4:4:4 / 4:2:2 / 4:2:0, greyscale, CMYK, tiny,
    odd sizes, low and high quality, EXIF orientation, an ICC profile, restart markers.
    """
    from PIL import ImageCms

    base = photo_image(photo, (333, 250), rng)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    out = [
        ("baseline.jpg", encode_jpeg(base)),
        ("progressive.jpg", encode_jpeg(base, progressive=True)),
        ("optimized.jpg", encode_jpeg(base, optimize=True)),
        ("s444.jpg", encode_jpeg(base, subsampling=0)),
        ("s422.jpg", encode_jpeg(base, subsampling=1)),
        ("grey.jpg", encode_jpeg(base.convert("L"))),
        ("cmyk.jpg", encode_jpeg(base.convert("CMYK"))),
        ("tiny_1x1.jpg", encode_jpeg(base.resize((1, 1)))),
        ("odd_17x9.jpg", encode_jpeg(base.resize((17, 9)))),
        ("q5.jpg", encode_jpeg(base, quality=5)),
        ("q100.jpg", encode_jpeg(base, quality=100)),
        ("exif_rotated.jpg", encode_jpeg(base, exif=exif.tobytes())),
        ("icc.jpg", encode_jpeg(base, icc_profile=icc)),
        ("restart_markers.jpg", encode_jpeg(base, restart_marker_blocks=4)),
        ("big_8k_strip.jpg", encode_jpeg(photo_image(photo, (8000, 64), rng))),
    ]
    return out
