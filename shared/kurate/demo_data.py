"""Sample datasets that look like real curation input, for demos, benchmarks and sanity checks.

- :func:`make_demo_dataset` builds a few hundred small images from real photographs shipped inside
  scikit-image's package: clusters of near-duplicates (crops, flips, small rotations, colour and
  brightness changes, JPEG re-encodes, resizes) spread over a few camera-like folders, plus exact byte
  copies and corrupt files, so every curation step (check, dedup, diversity selection) has work to do.
- :func:`make_tiny_dataset` needs only numpy and Pillow (it runs inside images without scikit-image).

Both are deterministic for a seed, write nothing but the files they report (so counts stay exact),
and return a summary of what they wrote. Nothing is ever downloaded: the photos are read straight from
the installed scikit-image package, never through its network fetchers.

Run ``python -m kurate.demo_data OUT_DIR [--seed N] [--tiny]`` to write one.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from kurate.errors import CorruptFileError
from kurate.media import image

#: Colour photographs shipped as files inside scikit-image's package (``skimage/data/``):
#: (name in the summary, file name). Only these are read, and only if the file is present, so
#: making the demo never touches the network (scikit-image downloads its other images via pooch).
PHOTOS: tuple[tuple[str, str], ...] = (
    ("astronaut", "astronaut.png"),
    ("chelsea", "chelsea.png"),
    ("coffee", "coffee.png"),
    ("rocket", "rocket.jpg"),
    ("hubble_deep_field", "hubble_deep_field.jpg"),
    ("retina", "retina.jpg"),
    ("immunohistochemistry", "ihc.png"),
    ("motorcycle", "motorcycle_left.png"),
)

#: Camera-like folders the demo images are spread over (all sort before the copy folder below).
FOLDERS = ("dcim/100CANON", "dcim/101CANON", "exports", "phone/2023-06")
#: Folder for some exact copies; sorts after FOLDERS so a checker that keeps the first copy by
#: sorted name keeps the original and reports exactly the names we list as copies.
COPY_FOLDER = "shared_album"

MAX_EDGE = 256
MIN_EDGE = 128
_WORK_EDGE = 512  # photos are downscaled once to this before cropping, so crops stay sharp


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _encode(img: Image.Image, fmt: str, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.save(buf, "JPEG", quality=quality)
    else:
        img.save(buf, "PNG")
    return buf.getvalue()


def _fit(img: Image.Image, edge: int) -> Image.Image:
    """Resize so the longest edge is ``edge`` (never upscales past the source)."""
    w, h = img.size
    scale = min(1.0, edge / max(w, h))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return img if size == img.size else img.resize(size, Image.Resampling.LANCZOS)


def _is_corrupt(data: bytes) -> bool:
    try:
        image.decode_image(data)
    except CorruptFileError:
        return True
    return False


def _prepare_out_dir(out_dir: str | Path) -> Path:
    """Create ``out_dir``; refuse a non-empty one, since the summary must describe every file in it."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out}: output folder exists and is not empty")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _write(out: Path, name: str, data: bytes) -> None:
    path = out.joinpath(*name.split("/"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _corrupt_files(rng: np.random.Generator, jpeg: bytes, png: bytes) -> list[tuple[str, bytes]]:
    """The usual kinds of broken files found in real folders, each verified to fail decoding."""
    out: list[tuple[str, bytes]] = []
    for cut in (0.6, 0.4, 0.2, 0.05):  # a truncated download / interrupted copy
        if _is_corrupt(jpeg[: int(len(jpeg) * cut)]):
            out.append(("jpg", jpeg[: int(len(jpeg) * cut)]))
            break
    for cut in (0.5, 0.3, 0.1):
        if _is_corrupt(png[: int(len(png) * cut)]):
            out.append(("png", png[: int(len(png) * cut)]))
            break
    out.append(("jpg", b""))  # zero-byte file
    while True:  # random bytes named .jpg; re-drawn in the (unlikely) case Pillow accepts them
        noise = rng.integers(0, 256, size=4096, dtype=np.uint8).tobytes()
        if _is_corrupt(noise):
            out.append(("jpg", noise))
            break
    out.append(("png", b"<html><body><h1>404 Not Found</h1></body></html>\n"))  # text saved as .png
    return out


def _summary(
    out: Path,
    seed: int,
    names: list[str],
    copies: dict[str, str],
    corrupt: list[str],
    clusters: dict[str, list[str]],
    photos: list[str],
) -> dict[str, Any]:
    return {
        "root": str(out),
        "seed": seed,
        "files": len(names) + len(copies) + len(corrupt),
        "images": len(names) + len(copies),
        "unique_images": len(names),
        "exact_duplicates": sorted(copies),
        "duplicate_of": dict(sorted(copies.items())),
        "corrupt": sorted(corrupt),
        "clusters": {k: sorted(v) for k, v in sorted(clusters.items())},
        "photos": photos,
    }


# ----------------------------------------------------------------------------------------------------
# Demo dataset (real photographs from scikit-image)
# ----------------------------------------------------------------------------------------------------


def _load_photos() -> list[tuple[str, Image.Image]]:
    """The PHOTOS present as files in the installed scikit-image, as RGB, downscaled once."""
    import skimage.data  # lazy: only the demo needs scikit-image

    data_dir = Path(skimage.data.__file__).parent
    photos = []
    for label, filename in PHOTOS:
        path = data_dir / filename
        if not path.is_file():  # not shipped in this version: would need a download, skip it
            continue
        with Image.open(path) as img:
            if img.mode not in ("RGB", "RGBA", "P"):
                continue  # colour photos only
            photos.append((label, _fit(img.convert("RGB"), _WORK_EDGE)))
    if len(photos) < 3:
        raise RuntimeError(
            f"only {len(photos)} scikit-image photos found offline in {data_dir}; need at least 3"
        )
    return photos


def _detail_view(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A close-up of the same scene: a crop of about half the width, near the centre."""
    w, h = img.size
    side = float(rng.uniform(0.45, 0.6))
    cw, ch = round(w * side), round(h * side)
    cx = w / 2 + float(rng.uniform(-0.15, 0.15)) * w
    cy = h / 2 + float(rng.uniform(-0.15, 0.15)) * h
    left = int(min(max(0, cx - cw / 2), w - cw))
    top = int(min(max(0, cy - ch / 2), h - ch))
    return img.crop((left, top, left + cw, top + ch))


def _variant(view: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, str, int]:
    """One near-duplicate of ``view``: a random mix of the edits photos pick up in the wild."""
    img = view
    w, h = img.size
    if rng.random() < 0.7:  # re-framed crop
        fw, fh = rng.uniform(0.75, 1.0, size=2)
        cw, ch = max(8, round(w * fw)), max(8, round(h * fh))
        left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        img = img.crop((left, top, left + cw, top + ch))
    if rng.random() < 0.3:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if rng.random() < 0.35:  # slightly tilted, then cropped so no empty corners show
        angle = float(rng.uniform(-8, 8))
        img = img.rotate(angle, resample=Image.Resampling.BICUBIC)
        w2, h2 = img.size
        m = math.sin(math.radians(abs(angle)))
        dx, dy = math.ceil(h2 * m), math.ceil(w2 * m)
        if w2 - 2 * dx > 16 and h2 - 2 * dy > 16:
            img = img.crop((dx, dy, w2 - dx, h2 - dy))
    if rng.random() < 0.5:
        img = ImageEnhance.Brightness(img).enhance(float(rng.uniform(0.7, 1.3)))
    if rng.random() < 0.4:
        img = ImageEnhance.Contrast(img).enhance(float(rng.uniform(0.75, 1.25)))
    if rng.random() < 0.4:
        img = ImageEnhance.Color(img).enhance(float(rng.uniform(0.5, 1.4)))
    if rng.random() < 0.15:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 1.2))))
    img = _fit(img, int(rng.integers(MIN_EDGE, MAX_EDGE + 1)))
    if rng.random() < 0.2:
        return img, "PNG", 0
    return img, "JPEG", int(rng.integers(45, 96))


def make_demo_dataset(out_dir: str | Path, seed: int = 0, per_photo: int = 20) -> dict[str, Any]:
    """Write a realistic demo dataset built from scikit-image's photographs into ``out_dir``.

    Each photo gives two clusters (the whole scene and a close-up), each of ``per_photo`` distinct
    near-duplicate images (the first is the plain view), named like camera files and spread over a
    few folders. On top of that: one exact byte copy per photo (names sorting after their originals)
    and five corrupt files (truncated JPEG, truncated PNG, zero bytes, random bytes named .jpg, text
    named .png). With the default 8 photos and ``per_photo=20``: 333 files, each at most 256 px.

    Returns a summary: ``files``, ``images`` (decodable files), ``unique_images``,
    ``exact_duplicates`` (copy names), ``duplicate_of`` (copy -> original), ``corrupt`` (names),
    ``clusters`` (cluster id -> names, copies excluded), ``photos`` (photos used), ``seed``, ``root``.
    ``out_dir`` must be empty or absent.
    """
    if per_photo < 1:
        raise ValueError("per_photo must be >= 1")
    photos = _load_photos()
    out = _prepare_out_dir(out_dir)
    rng = np.random.default_rng(seed)

    # 1. Render every near-duplicate (bytes), keyed by cluster; all distinct by construction+check.
    rendered: list[tuple[str, str, bytes]] = []  # (cluster, extension, bytes)
    seen: set[str] = set()
    for label, photo in photos:
        for view_name, view in (("wide", photo), ("detail", _detail_view(photo, rng))):
            cluster = f"{label}/{view_name}"
            for k in range(per_photo):
                while True:
                    if k == 0:
                        img, fmt, quality = _fit(view, MAX_EDGE), "JPEG", 92
                    else:
                        img, fmt, quality = _variant(view, rng)
                    data = _encode(img, fmt, quality)
                    if _sha(data) not in seen:  # never an accidental exact duplicate
                        break
                seen.add(_sha(data))
                rendered.append((cluster, "png" if fmt == "PNG" else "jpg", data))

    # 2. Camera-like names, in a shuffled order so names reveal nothing about clusters.
    order = rng.permutation(len(rendered))
    names: list[str] = []
    by_name: dict[str, bytes] = {}
    clusters: dict[str, list[str]] = {}
    for number, idx in enumerate(order, start=1):
        cluster, ext, data = rendered[int(idx)]
        folder = FOLDERS[int(rng.integers(len(FOLDERS)))]
        name = f"{folder}/IMG_{number:04d}.{ext}"
        names.append(name)
        by_name[name] = data
        clusters.setdefault(cluster, []).append(name)
        _write(out, name, data)

    # 3. One exact copy per photo: half beside the original ("_copy"), half in a shared album.
    copies: dict[str, str] = {}
    for i, (label, _) in enumerate(photos):
        members = clusters[f"{label}/wide"] + clusters[f"{label}/detail"]
        original = sorted(members)[int(rng.integers(len(members)))]
        folder, base = original.rsplit("/", 1)
        stem, ext = base.rsplit(".", 1)
        copy = f"{folder}/{stem}_copy.{ext}" if i % 2 == 0 else f"{COPY_FOLDER}/{base}"
        copies[copy] = original
        _write(out, copy, by_name[original])

    # 4. Corrupt files, made from fresh renders (so they share no bytes with any valid file).
    view = _fit(photos[0][1], MAX_EDGE)
    corrupt: list[str] = []
    broken = _corrupt_files(rng, _encode(view, "JPEG", 85), _encode(view, "PNG"))
    for j, (ext, data) in enumerate(broken):
        folder = FOLDERS[j % len(FOLDERS)]
        name = f"{folder}/IMG_{len(names) + j + 1:04d}.{ext}"
        corrupt.append(name)
        _write(out, name, data)

    return _summary(out, seed, names, copies, corrupt, clusters, [label for label, _ in photos])


# ----------------------------------------------------------------------------------------------------
# Tiny dataset (numpy + Pillow only)
# ----------------------------------------------------------------------------------------------------


def _synthetic(i: int, rng: np.random.Generator, size: int = 96) -> Image.Image:
    """A distinct synthetic picture: a two-colour gradient at its own angle plus a few shapes."""
    c0, c1 = rng.integers(0, 256, size=(2, 3))
    angle = 2 * math.pi * (i / 7.0 + float(rng.uniform(0, 0.1)))
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    t = np.clip((xx - 0.5) * math.cos(angle) + (yy - 0.5) * math.sin(angle) + 0.5, 0, 1)[..., None]
    arr = (c0 * (1 - t) + c1 * t).astype(np.uint8)
    img = Image.fromarray(arr)
    draw = ImageDraw.Draw(img)
    for s in range(1 + i % 3):
        x0, y0 = (int(v) for v in rng.integers(0, size * 2 // 3, size=2))
        x1, y1 = x0 + int(rng.integers(12, size // 2)), y0 + int(rng.integers(12, size // 2))
        fill = tuple(int(v) for v in rng.integers(0, 256, size=3))
        kind = (i + s) % 3
        if kind == 0:
            draw.ellipse((x0, y0, x1, y1), fill=fill)
        elif kind == 1:
            draw.rectangle((x0, y0, x1, y1), fill=fill)
        else:
            draw.polygon([(x0, y1), ((x0 + x1) // 2, y0), (x1, y1)], fill=fill)
    return img


def make_tiny_dataset(out_dir: str | Path, n: int = 12, seed: int = 0) -> dict[str, Any]:
    """Write ``n`` small synthetic images plus one exact copy and one corrupt file into ``out_dir``.

    Needs only numpy and Pillow, so pipeline sanity checks can run in images without scikit-image.
    Images alternate PNG/JPEG; the copy is ``img_000_copy.png`` (sorts after ``img_000.png``) and the
    corrupt file is ``broken.jpg`` (a truncated JPEG). Returns the same summary as
    :func:`make_demo_dataset` (each image is its own cluster; ``photos`` is empty).
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    out = _prepare_out_dir(out_dir)
    rng = np.random.default_rng(seed)
    names: list[str] = []
    by_name: dict[str, bytes] = {}
    seen: set[str] = set()
    for i in range(n):
        fmt = "PNG" if i % 2 == 0 else "JPEG"
        data = _encode(_synthetic(i, rng), fmt, 90)
        if _sha(data) in seen:  # cannot happen with random colours; guard the "exact" in the summary
            raise RuntimeError("synthetic images collided; choose another seed")
        seen.add(_sha(data))
        name = f"img_{i:03d}.{'png' if fmt == 'PNG' else 'jpg'}"
        names.append(name)
        by_name[name] = data
        _write(out, name, data)
    copies = {"img_000_copy.png": names[0]}
    _write(out, "img_000_copy.png", by_name[names[0]])
    jpeg = _encode(_synthetic(n, rng), "JPEG", 90)
    cuts = (jpeg[: len(jpeg) * pct // 100] for pct in (50, 30, 10))
    broken = next((cut for cut in cuts if _is_corrupt(cut)), jpeg[:20])  # 20 bytes: header only
    _write(out, "broken.jpg", broken)
    clusters = {name.rsplit(".", 1)[0]: [name] for name in names}
    return _summary(out, seed, names, copies, ["broken.jpg"], clusters, [])


def main(argv: Sequence[str]) -> None:
    """Command line: write a demo (or ``--tiny``) dataset to OUT_DIR and print what was written."""
    parser = argparse.ArgumentParser(prog="python -m kurate.demo_data", description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", help="folder to create (must be empty or absent)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="tiny synthetic dataset (no scikit-image)")
    parser.add_argument("--per-photo", type=int, default=20, help="images per cluster (demo dataset)")
    parser.add_argument("-n", type=int, default=12, help="number of images (tiny dataset)")
    args = parser.parse_args(list(argv))
    try:
        if args.tiny:
            summary = make_tiny_dataset(args.out_dir, n=args.n, seed=args.seed)
        else:
            summary = make_demo_dataset(args.out_dir, seed=args.seed, per_photo=args.per_photo)
    except (FileExistsError, ValueError, RuntimeError) as exc:
        parser.exit(2, f"error: {exc}\n")
    print(
        f"wrote {summary['files']} files to {summary['root']}: {summary['unique_images']} unique images "
        f"in {len(summary['clusters'])} clusters, {len(summary['exact_duplicates'])} exact duplicates, "
        f"{len(summary['corrupt'])} corrupt files"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
