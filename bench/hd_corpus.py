"""The HD JPEG corpus of the speed benches: real photographs at camera sizes (cached between runs).

Full: 400 files at 1920x1080 and 40 at 4000x3000, JPEG quality 90, made from scikit-image's bundled
photographs (``tests/jpeg_corpus.py``: seeded crop, bicubic resize, mild luminance noise). Quick: 20
at 640x360 and 2 at 1600x1200. The corpus is written once into ``$KURATE_BENCH_CACHE`` (default: a
``kurate-bench-<name>`` folder in the system temp dir) and reused while its manifest matches.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FULL = {"name": "hd440", "sizes": [[1920, 1080]] * 400 + [[4000, 3000]] * 40, "quality": 90, "seed": 0}
QUICK = {"name": "hd22-quick", "sizes": [[640, 360]] * 20 + [[1600, 1200]] * 2, "quality": 90, "seed": 0}


def cache_root() -> Path:
    return Path(os.environ.get("KURATE_BENCH_CACHE") or tempfile.gettempdir())


def corpus(quick: bool = False) -> tuple[Path, dict]:
    """``(folder of JPEGs, spec)``; made on first use, then reused."""
    spec = QUICK if quick else FULL
    folder = cache_root() / f"kurate-bench-{spec['name']}"
    manifest = folder / ".manifest.json"
    if manifest.is_file() and json.loads(manifest.read_text()) == spec:
        return folder / "images", spec
    sys.path.insert(0, str(ROOT))
    from tests import jpeg_corpus

    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    for old in images.iterdir():
        old.unlink()
    sizes = [tuple(s) for s in spec["sizes"]]
    jpeg_corpus.write_all(images, jpeg_corpus.photo_jpegs(sizes, seed=spec["seed"], quality=spec["quality"]))
    manifest.write_text(json.dumps(spec))
    return images, spec


def describe(spec: dict) -> str:
    counts: dict[tuple[int, int], int] = {}
    for w, h in spec["sizes"]:
        counts[(w, h)] = counts.get((w, h), 0) + 1
    parts = [f"{n} at {w}x{h}" for (w, h), n in counts.items()]
    return f"{len(spec['sizes'])} JPEGs ({', '.join(parts)}, quality {spec['quality']})"
