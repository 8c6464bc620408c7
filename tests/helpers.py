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
