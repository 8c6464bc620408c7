"""Decode variants and the CPU forward, per image, in one process (alternated per round).

Decode: baseline is what ``lightly-embed`` does per file (Pillow open + ``convert("RGB")`` +
torchvision's ``Resize((64, 64))``); the rows are ratios to it on the same files in the same rounds:

- ``before issue 17`` — kurate's decode then: full decode + an ``ImageOps.exif_transpose`` copy + resize;
- ``decode_image + transform`` — kurate's embed decode now (EXIF orientation in place; same pixels);
- ``fast embed decode`` — ``kurate.fast_embed_decode``: DCT-scaled to >= 64 px, then the transform;
- ``check before`` — the check's decode before issue 17 (full decode, EXIF copy, no resize);
- ``check_image, strict off`` / ``check_image (default)`` — the check's decode now.

Forward: eager torch (the reference) vs ONNX Runtime on the same batches, and the fast decode's
embedding deviation (same model) from the exact decode's.
"""

from __future__ import annotations

import io
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import hd_corpus  # noqa: E402

INPUT = 64


def _variants() -> dict[str, Callable[[bytes], object]]:
    from PIL import Image, ImageOps
    from torchvision.transforms import v2 as T

    from kurate.media import image
    from kurate.models import embedding

    resize = T.Resize((INPUT, INPUT))
    ours = embedding.build_transform(INPUT)

    def lightly(data: bytes) -> object:
        return resize(Image.open(io.BytesIO(data)).convert("RGB"))

    def before_full(data: bytes) -> Image.Image:
        img = Image.open(io.BytesIO(data))
        img.load()
        return (ImageOps.exif_transpose(img) or img).convert(
            "RGB"
        )  # a full copy, even with nothing to rotate

    return {
        "lightly-embed's decode (baseline)": lightly,
        "before issue 17: decode + EXIF copy + resize": lambda d: resize(before_full(d)),
        "decode_image + transform (embed now)": lambda d: ours(image.decode_image(d)),
        "kurate.fast_embed_decode + transform": lambda d: ours(image.decode_image(d, reduce_to=INPUT)),
        "check before issue 17 (full decode + EXIF copy)": before_full,
        "check_image, strict_jpeg=False": lambda d: image.check_image(d, strict_jpeg=False),
        "check_image (default, strict)": lambda d: image.check_image(d),
    }


def _forward_rows(datas: list[bytes], rounds: int) -> list[str]:
    import torch

    from kurate.media import image
    from kurate.models import embedding, onnx_backbone

    torch.manual_seed(0)
    model = embedding.build_model().eval()
    tf = embedding.build_transform(INPUT)
    exact = torch.stack([tf(image.decode_image(d)) for d in datas[:32]])
    fast_in = torch.stack([tf(image.decode_image(d, reduce_to=INPUT)) for d in datas[:32]])
    ort = onnx_backbone.OnnxBackbone(model.backbone, torch.get_num_threads())
    batch = exact[:16]
    t_torch, t_ort = [], []
    with torch.inference_mode():
        ref = model.embed(exact).numpy()
        fast = model.embed(fast_in).numpy()
        for _ in range(rounds * 2):
            t0 = time.perf_counter()
            model.embed(batch)
            t_torch.append((time.perf_counter() - t0) / len(batch))
            t0 = time.perf_counter()
            ort(batch.numpy())
            t_ort.append((time.perf_counter() - t0) / len(batch))
    got = ort(exact.numpy())
    mt, mo = statistics.median(t_torch), statistics.median(t_ort)
    rel = np.linalg.norm(fast - ref, axis=1) / np.linalg.norm(ref, axis=1)
    cos = (fast * ref).sum(1) / np.linalg.norm(fast, axis=1) / np.linalg.norm(ref, axis=1)
    return [
        f"CPU forward, ResNet-18 at {INPUT} px, batch 16, {torch.get_num_threads()} threads (random-init"
        " weights; median of interleaved batches):",
        "",
        "| forward | ms/img | ratio | max abs diff vs torch |",
        "|---|---|---|---|",
        f"| torch eager (reference, `KURATE_EMBED_BACKEND=torch`) | {mt * 1000:.1f} | 1.00 | 0 |",
        f"| ONNX Runtime (default on the CPU) | {mo * 1000:.1f} | **{mo / mt:.2f}** |"
        f" {np.abs(got - ref).max():.1e} |",
        "",
        f"`kurate.fast_embed_decode` vs the exact decode, same model, {len(ref)} HD files: max abs diff"
        f" {np.abs(fast - ref).max():.1e} (embedding values up to {np.abs(ref).max():.2f}), relative"
        f" deviation median {np.median(rel):.2%} / max {rel.max():.2%}, min cosine similarity"
        f" {cos.min():.5f}.",
        "",
    ]


def run(quick: bool = False, rounds: int | None = None) -> str:
    images, spec = hd_corpus.corpus(quick)
    rounds = rounds or (2 if quick else 3)
    groups: dict[str, list[bytes]] = {}
    for f in sorted(images.iterdir()):
        size = f.stem.rsplit("_", 1)[-1]
        if len(groups.setdefault(size, [])) < (4 if quick else 16):
            groups[size].append(f.read_bytes())
    variants = _variants()
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(rounds):
        for size, datas in groups.items():
            for name, fn in variants.items():
                fn(datas[0])  # warm
                t0 = time.perf_counter()
                for data in datas:
                    fn(data)
                times.setdefault((size, name), []).append((time.perf_counter() - t0) / len(datas))
    lines = [
        "## Decode variants and the CPU forward (per image, one process)",
        "",
        f"Files from the HD corpus ({hd_corpus.describe(spec)}); median over {rounds} interleaved rounds;"
        " ratio = variant / lightly-embed's decode of the same files.",
        "",
        "| variant | " + " | ".join(f"{s} ms | ratio" for s in groups) + " |",
        "|---|" + "---|---|" * len(groups),
    ]
    base = next(iter(variants))
    for name in variants:
        cells = []
        for size in groups:
            med = statistics.median(times[(size, name)])
            ref = statistics.median(times[(size, base)])
            cells.append(f"{med * 1000:.1f} | {med / ref:.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    all_data = [d for datas in groups.values() for d in datas]
    lines += _forward_rows(all_data, rounds)
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
