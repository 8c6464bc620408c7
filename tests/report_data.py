"""A small finished run for the report tests: real images, clustered embeddings, a coreset selection."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kurate.io.filelist import FileList
from kurate.outputs.inputs import RunInputs
from kurate.selection.coreset import coreset_with_info, normalize
from tests.helpers import draw_image


def clustered(n: int, d: int = 8, k: int = 5, seed: int = 0, spread: float = 0.1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, d))
    return (centers[np.arange(n) % k] + spread * rng.standard_normal((n, d))).astype(np.float32)


def make_run_inputs(root: Path, n: int = 40, k: int = 6, videos: bool = False) -> RunInputs:
    """A small run: real images (clusters of look-alikes), clustered embeddings, a coreset selection."""
    root.mkdir(parents=True, exist_ok=True)
    names = [f"cam{i % 2}/img_{i:03d}.png" for i in range(n)]
    if videos:
        names += [f"clips/drive-{f:03d}-mp4.png" for f in range(12)]
    for i, name in enumerate(names):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        draw_image(3 * (i % 5), size=72).save(root / name)
    x = clustered(len(names), d=12, k=5, seed=7, spread=0.12)
    res = coreset_with_info(normalize(x), n_samples=k)
    sel = [names[i] for i in res.indices]
    (root / "broken.jpg").write_bytes(b"not a jpeg")
    (root / "zz_copy.png").write_bytes((root / names[0]).read_bytes())
    files = sorted([*names, "broken.jpg", "zz_copy.png"])
    return RunInputs(
        files=FileList(root=str(root), names=files, extra={"input_count": len(files)}),
        clean=FileList(root=str(root), names=names),
        corrupt=FileList(
            root=str(root), names=["broken.jpg"], columns={"reason": ["cannot decode image <b>"]}
        ),
        duplicates=FileList(root=str(root), names=["zz_copy.png"], columns={"duplicate_of": [names[0]]}),
        selection=FileList(
            root=str(root),
            names=sel,
            columns={
                "index": [str(i) for i in res.indices],
                "pick_distance": [f"{v:.6g}" for v in res.pick_distances],
            },
            extra={
                "normalized": True,
                "method": "coreset",
                "requested": k,
                "min_distance": 0.05,
                "stop_reason": res.stop_reason,
            },
        ),
        emb_names=names,
        embeddings=x,
        emb_meta={
            "source": "test weights",
            "model": {"name": "resnet-18", "num_ftrs": 12},
            "dim": 12,
            "checkpoint": "/ckpt/model.ckpt",
            "checkpoint_sha256": "ab" * 32,
        },
        phases={
            "ingest": {
                "phase": "ingest",
                "duration_s": 0.2,
                "started_at": 10.0,
                "finished_at": 10.2,
                "cached": False,
            }
        },
    )
