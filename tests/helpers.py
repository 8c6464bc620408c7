"""Small real data made in the tests: structured images, exact duplicates, corrupt files."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


@dataclass
class Folder:
    root: Path
    images: list[str] = field(default_factory=list)  # valid, unique images
    duplicates: list[str] = field(default_factory=list)  # byte copies (not the first by name)
    corrupt: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # other extensions

    @property
    def listed(self) -> list[str]:
        return sorted(self.images + self.duplicates + self.corrupt)


def draw_image(i: int, size: int = 48) -> Image.Image:
    """A distinct image per index: a gradient background plus shapes placed by a seeded RNG."""
    rng = np.random.default_rng(i)
    base = rng.integers(0, 255, size=3)
    yy, xx = np.mgrid[0:size, 0:size]
    arr = np.zeros((size, size, 3), np.uint8)
    for c in range(3):
        arr[..., c] = (base[c] + (xx * (c + 1) + yy * (3 - c)) * (i % 7 + 1)) % 256
    img = Image.fromarray(arr, "RGB")
    d = ImageDraw.Draw(img)
    for _ in range(3):
        x0, y0 = rng.integers(0, size - 10, size=2)
        w, h = rng.integers(5, size // 2, size=2)
        colour = tuple(int(v) for v in rng.integers(0, 255, size=3))
        if rng.random() < 0.5:
            d.ellipse([int(x0), int(y0), int(x0 + w), int(y0 + h)], fill=colour)
        else:
            d.rectangle([int(x0), int(y0), int(x0 + w), int(y0 + h)], fill=colour)
    return img


def make_image_folder(
    root: Path, n: int = 12, n_dup: int = 2, corrupt: bool = True, subfolders: bool = True
) -> Folder:
    root.mkdir(parents=True, exist_ok=True)
    f = Folder(root=root)
    for i in range(n):
        sub = f"group{i % 2}/" if subfolders else ""
        ext = "jpg" if i % 3 else "png"
        name = f"{sub}img_{i:03d}.{ext}"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        draw_image(i).save(root / name, quality=92)
        f.images.append(name)
    for j in range(n_dup):
        src = f.images[j]
        name = f"zz_copy_{j}.{src.rsplit('.', 1)[1]}"
        shutil.copyfile(root / src, root / name)
        f.duplicates.append(name)
    if corrupt:
        (root / "broken_truncated.jpg").write_bytes((root / f.images[1]).read_bytes()[:200])
        (root / "broken_empty.png").write_bytes(b"")
        (root / "broken_random.jpg").write_bytes(np.random.default_rng(0).bytes(500))
        f.corrupt += ["broken_truncated.jpg", "broken_empty.png", "broken_random.jpg"]
    (root / "notes.txt").write_text("not an image")
    f.ignored.append("notes.txt")
    return f


STRUCTURE_GROUPS = ("stripes", "checks", "dots", "rings")


def draw_structure(
    group: str, rng: np.random.Generator, size: int = 48, palette: list[tuple[tuple, tuple]] | None = None
) -> Image.Image:
    """An image whose *structure* says its group; its two colours say nothing about it.

    The colours are random, or one of ``palette``'s (background, foreground) pairs picked at random, the
    same palette for every group (colour then groups images across structure groups).

    stripes: parallel bands at a random angle (hstripes / vstripes: about horizontal / vertical); checks: a
    checkerboard; dots: scattered discs; rings: concentric circles around a random centre. Scales and
    phases are random too.
    """
    if palette:
        bg, fg = palette[int(rng.integers(len(palette)))]
    else:
        bg, fg = (tuple(int(v) for v in rng.integers(0, 256, size=3)) for _ in range(2))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    if group in ("stripes", "hstripes", "vstripes"):
        a = {"stripes": rng.uniform(0, np.pi), "hstripes": np.pi / 2, "vstripes": 0.0}[group]
        a += 0.0 if group == "stripes" else rng.uniform(-0.15, 0.15)
        period = rng.uniform(5, 10)
        mask = ((xx * np.cos(a) + yy * np.sin(a) + rng.uniform(0, period)) % period) < period / 2
    elif group == "checks":
        cell = rng.uniform(5, 10)
        ox, oy = rng.uniform(0, cell, size=2)
        mask = ((np.floor((xx + ox) / cell) + np.floor((yy + oy) / cell)) % 2) == 0
    elif group == "dots":
        mask = np.zeros((size, size), bool)
        for _ in range(int(rng.integers(12, 24))):
            cx, cy = rng.uniform(0, size, size=2)
            r = rng.uniform(1.5, 3.5)
            mask |= (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    elif group == "rings":
        cx, cy = rng.uniform(size * 0.2, size * 0.8, size=2)
        period = rng.uniform(5, 10)
        mask = (np.hypot(xx - cx, yy - cy) % period) < period / 2
    else:
        raise ValueError(group)
    arr = np.where(mask[..., None], np.array(fg, np.uint8), np.array(bg, np.uint8)).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def make_structure_folder(
    root: Path, n_per_group: int = 40, size: int = 48, seed: int = 0, n_colours: int = 0
) -> dict[str, str]:
    """A flat folder of PNGs in known structure groups; returns ``{filename: group}``.

    ``n_colours`` > 0: colours come from that many random (background, foreground) pairs shared by all
    groups, so a colour-driven embedding groups by palette, not by structure."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    palette = [
        tuple(tuple(int(v) for v in rng.integers(0, 256, size=3)) for _ in range(2)) for _ in range(n_colours)
    ]
    labels: dict[str, str] = {}
    order = [(g, i) for i in range(n_per_group) for g in STRUCTURE_GROUPS]
    for g, i in order:
        name = f"{g}_{i:03d}.png"
        draw_structure(g, rng, size, palette).save(root / name)
        labels[name] = g
    return labels
