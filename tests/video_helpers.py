"""Small real videos made in the tests with PyAV: scenes that change, dead blocks, rotation, damage."""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: (codec, extension) pairs the tests write; all are in PyAV's bundled FFmpeg.
CODECS = [("libx264", "mp4"), ("mpeg4", "mp4"), ("mjpeg", "avi"), ("libvpx-vp9", "webm"), ("libx264", "mkv")]


def scene_frame(
    i: int, n: int, size: tuple[int, int] = (64, 48), scenes: int = 3, seed: int = 0
) -> np.ndarray:
    """Frame ``i`` of ``n`` as HxWx3 RGB: ``scenes`` distinct backgrounds, a square moving within each."""
    w, h = size
    scene = min(scenes - 1, i * scenes // n)
    rng = np.random.default_rng(seed * 1000 + scene)
    base = rng.integers(30, 220, size=3)
    yy, xx = np.mgrid[0:h, 0:w]
    arr = np.empty((h, w, 3), np.uint8)
    for c in range(3):
        arr[..., c] = (base[c] + (xx * (c + 1) + yy * (3 - c)) * (scene + 1)) % 256
    t = i - scene * n // scenes
    x0 = (t * 2) % max(1, w - 12)
    y0 = (t + int(rng.integers(0, h - 12))) % max(1, h - 12)
    arr[y0 : y0 + 12, x0 : x0 + 12] = rng.integers(0, 255, size=3).astype(np.uint8)
    return arr


def dead_blocks(rgb: np.ndarray, colour: str, fraction: float) -> object:
    """A yuv420p ``av.VideoFrame`` of ``rgb`` whose first macroblocks (row-major) are filled grey or green.

    Grey is Y=U=V=128 and green Y=U=V=0: what decoders leave where picture data is missing.
    """
    import av

    h, w = rgb.shape[:2]
    yuv = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p").to_ndarray().copy()
    value = 128 if colour == "grey" else 0
    bw, bh = w // 16, h // 16
    total = bw * bh
    k = int(np.ceil(fraction * total))
    y = yuv[:h]
    u = yuv[h : h + h // 4].reshape(h // 2, w // 2)
    v = yuv[h + h // 4 :].reshape(h // 2, w // 2)
    for b in range(k):
        r, c = divmod(b, bw)
        y[r * 16 : r * 16 + 16, c * 16 : c * 16 + 16] = value
        u[r * 8 : r * 8 + 8, c * 8 : c * 8 + 8] = value
        v[r * 8 : r * 8 + 8, c * 8 : c * 8 + 8] = value
    return av.VideoFrame.from_ndarray(yuv, format="yuv420p")


def make_video(
    path: Path,
    codec: str = "libx264",
    n: int = 60,
    size: tuple[int, int] = (64, 48),
    *,
    rate: int = 25,
    scenes: int = 3,
    seed: int = 0,
    rotation: int | None = None,
    dead: dict[int, tuple[str, float]] | None = None,
    static_from: int | None = None,
    lossless: bool = False,
    frames: list[np.ndarray] | None = None,
) -> Path:
    """Encode a small video. ``dead``: frame -> (grey|green, fraction of blocks); ``static_from``: from
    that frame on every frame repeats it (identical pixels); ``lossless``: x264 qp=0 / best quality."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    dead = dead or {}
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height = size
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        opts: dict[str, str] = {}
        if codec == "libx264":
            opts = {"qp": "0"} if lossless else {"crf": "18"}
            opts["preset"] = "ultrafast" if lossless else "veryfast"
        elif codec == "mjpeg":
            stream.codec_context.qscale = 2
        elif codec == "libvpx-vp9":
            opts = {"deadline": "realtime", "cpu-used": "8", "lossless": "1" if lossless else "0"}
        elif codec == "mpeg4":
            stream.codec_context.qscale = 2
        stream.options = opts
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i in range(n):
            src = static_from if static_from is not None and i > static_from else i
            rgb = frames[src] if frames is not None else scene_frame(src, n, size, scenes, seed)
            if i in dead:
                frame = dead_blocks(rgb, *dead[i])
            else:
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def truncate(path: Path, keep: float) -> Path:
    """Cut the file to ``keep`` (fraction) of its bytes, like an interrupted copy."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def zero_range(path: Path, start: float, length: float) -> Path:
    """Overwrite bytes [start, start+length) (fractions of the size) with zeros, like a bad disk sector."""
    data = bytearray(path.read_bytes())
    a, b = int(len(data) * start), int(len(data) * (start + length))
    data[a:b] = bytes(b - a)
    path.write_bytes(bytes(data))
    return path
