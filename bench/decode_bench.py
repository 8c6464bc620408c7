"""Decode variants on HD JPEGs: what each way of getting pixels costs, per image, in one process.

Baseline: what ``lightly-embed`` does per file (Pillow open + ``convert("RGB")`` + torchvision's
``Resize((64, 64))``); the other rows are ratios to it, measured on the same files in the same
rounds (variants interleaved per round; median over rounds of each variant's time per image):

- ``kurate before`` — the decode before issue 17: full decode + ``ImageOps.exif_transpose`` copy;
- ``kurate.media.decode_image`` — today's full decode (EXIF orientation applied in place);
- ``draft`` — Pillow's DCT-scaled decode (``Image.draft``, 1/8) as the check may use it;
- ``strict draft`` — libjpeg-turbo's scaled decode that reports libjpeg's warnings (simplejpeg);
- ``model`` — the ResNet-18 forward at 64 px (batch 16, this process's threads) for scale.
"""

from __future__ import annotations

import io
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import hd_corpus  # noqa: E402

INPUT = 64


def _variants() -> dict[str, Callable[[bytes], object]]:
    from PIL import Image, ImageOps
    from torchvision.transforms import v2 as T

    from kurate import media

    resize = T.Resize((INPUT, INPUT))

    def lightly(data: bytes) -> object:
        return resize(Image.open(io.BytesIO(data)).convert("RGB"))

    def before(data: bytes) -> object:
        img = Image.open(io.BytesIO(data))
        img.load()
        img = ImageOps.exif_transpose(img) or img  # a full copy, even with nothing to rotate
        return resize(img.convert("RGB"))

    def current(data: bytes) -> object:
        return resize(media.decode_image(data))

    def draft(data: bytes) -> object:
        img = Image.open(io.BytesIO(data))
        img.draft("RGB", (img.width // 8, img.height // 8))
        img.load()
        return img

    out = {"lightly-embed's decode (baseline)": lightly, "kurate before": before}
    out["kurate.media.decode_image + resize"] = current
    out["draft (Pillow, 1/8)"] = draft
    try:
        import simplejpeg

        def strict(data: bytes) -> object:
            return simplejpeg.decode_jpeg(data, min_width=1, min_height=1, min_factor=8, strict=True)

        out["strict draft (libjpeg-turbo warnings, 1/8)"] = strict
    except ImportError:
        pass
    return out


def run(quick: bool = False, rounds: int | None = None) -> str:
    images, spec = hd_corpus.corpus(quick)
    rounds = rounds or (2 if quick else 3)
    files = sorted(images.iterdir())
    groups: dict[str, list[bytes]] = {}
    for f in files:
        size = f.stem.rsplit("_", 1)[-1]
        if len(groups.setdefault(size, [])) < (4 if quick else 12):
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
    model_ms = _model_ms(rounds)
    lines = [
        "## Decode variants (per image, one process)",
        "",
        f"Files from the HD corpus ({hd_corpus.describe(spec)}); median over {rounds} interleaved rounds.",
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
    lines += [
        "",
        f"For scale: the ResNet-18 forward at {INPUT} px takes {model_ms:.1f} ms per image here.",
        "",
    ]
    return "\n".join(lines)


def _model_ms(rounds: int) -> float:
    import torch

    from kurate import embedding

    model = embedding.build_model().eval()
    x = torch.randn(16, 3, INPUT, INPUT)
    out = []
    with torch.inference_mode():
        model.embed(x)
        for _ in range(rounds):
            t0 = time.perf_counter()
            model.embed(x)
            out.append((time.perf_counter() - t0) / 16 * 1000)
    return statistics.median(out)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
