"""Videos as samples: frame names, frame counting, one streaming decode pass, frame corruption score.

Every phase sees a video's frames through :func:`iter_frames`, which demuxes and decodes the file once,
front to back, holding one decoded frame at a time (plus the decoder's own reorder delay), and numbers
the frames in presentation order. A frame the file holds but that does not decode still gets its
number (it is yielded with ``frame=None`` and the reason), so a broken frame can be listed by its name.
The numbering is deterministic, so ingest, check, embed and export agree on which frame is which.

**Frame universe.** A video holds ``count`` frames, decided once by ingest (:func:`probe`):
``use_frame_count_metadata=True`` takes the container's frame count (cheap: header only; containers
without one, e.g. WebM/Matroska, are counted instead); otherwise every packet of the video stream is
counted by demuxing the whole file, without decoding (exact: one packet per frame; decoding to count
would add a full decode pass before the check phase decodes everything anyway, and a frame that
fails to decode must still be counted to be reported corrupt). Frames past ``count`` are ignored;
frame numbers below ``count`` that never come out of the decoder are corrupt ("missing").

**Frame corruption score** (:func:`corruption_score`): the fraction of the frame's 16x16 macroblocks
that are *dead*: perfectly uniform (luma and both chroma planes vary by at most 4 levels in the block)
and of one of the colours decoders leave where picture data is missing: grey (Y, U, V all about
128: FFmpeg's fill for missing references and concealed intra blocks) or green (Y, U, V all about 0:
a zeroed, never-written buffer). Legitimately flat areas are rarely exactly those colours (flat black
and white, the usual ones, are not counted). Frames the decoder itself flags as damaged
(``AV_FRAME_FLAG_CORRUPT``) are corrupt whatever their score.

PyAV (``av``, the ``video`` extra) is imported lazily: importing this module costs nothing.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from kurate.errors import CorruptFileError
from kurate.io import storage
from kurate.media import metadata
from kurate.media.formats import VIDEO_EXTENSIONS, extension

log = logging.getLogger("kurate.media.video")

__all__ = [
    "VIDEO_EXTENSIONS",
    "DecodedFrame",
    "VideoInfo",
    "corruption_score",
    "frame_name",
    "is_video",
    "iter_frames",
    "open_video",
    "pixel_hash",
    "probe",
    "to_rgb",
]

#: Macroblock edge used by the corruption score (the codecs' macroblock size).
BLOCK = 16
#: A block is uniform when every plane varies by at most this many levels inside it.
FLAT_RANGE = 4
#: A uniform block is dead when its mean is within this many levels of a fill colour.
FILL_TOLERANCE = 8
#: (Y, U, V) fill colours of missing picture data: FFmpeg's grey, and a zeroed buffer (green).
FILL_COLOURS = ((128, 128, 128), (0, 0, 0))
#: Pixel formats whose planes the score reads directly (anything else is converted to yuv420p first).
_PLANAR_420 = ("yuv420p", "yuvj420p")


def is_video(name: str) -> bool:
    """True for names with a video extension (case-insensitive)."""
    return extension(name) in VIDEO_EXTENSIONS


def frame_name(video: str, index: int, count: int) -> str:
    """Lightly's frame name: ``<video without extension>-<index padded to len(str(count))>-<ext>.png``.

    Exactly ``lightly.data._video.VideoDataset.get_filename``: the video's path relative to the
    input (subfolders kept), split at its last dot; the extension keeps its case.
    """
    stem, _, ext = video.rpartition(".")
    return f"{stem}-{index:0{len(str(count))}}-{ext}.png"


# --------------------------------------------------------------------------- opening


@contextmanager
def open_video(uri: str) -> Iterator[Any]:
    """Open a video for reading with PyAV; every way it can fail becomes :class:`CorruptFileError`.

    The one place a video file is opened, whatever the storage: local files are opened in place;
    objects in buckets are copied to a temporary local file first (FFmpeg needs to seek), removed
    after use. Systemic storage errors (:class:`StorageError`) propagate.
    """
    import av

    tmp = ""
    try:
        if storage.is_remote(uri):
            data = storage.read_bytes(uri)
            fd, tmp = tempfile.mkstemp(prefix="kurate-video-", suffix="." + extension(uri))
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            path = tmp
        else:
            path = str(storage.local_path(uri))
        try:
            container = av.open(path, "r")
        except FileNotFoundError:
            raise CorruptFileError(uri, "file disappeared after listing") from None
        except IsADirectoryError:
            raise CorruptFileError(uri, "is a folder, not a file") from None
        except PermissionError:
            raise CorruptFileError(uri, "permission denied while reading") from None
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise CorruptFileError(uri, f"cannot open video: {_msg(exc)}") from None
        try:
            if not container.streams.video:
                raise CorruptFileError(uri, "cannot open video: no video stream")
            yield container
        finally:
            container.close()
    finally:
        if tmp:
            os.unlink(tmp)


def _msg(exc: BaseException) -> str:
    """A short, path-free reason (FFmpeg errors carry the file path and an errno prefix)."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(text).splitlines()[0]


# --------------------------------------------------------------------------- probing (ingest)


@dataclass
class VideoInfo:
    """What ingest learns about one video (stored in the file list's ``extra["videos"]``)."""

    name: str
    count: int = 0  # frames that are samples (named 0..count-1)
    count_source: str = ""  # "metadata" or "counted"
    metadata_count: int | None = None  # the container's frame count, if it has one
    estimated_count: int | None = None  # duration x frame rate, when the container has no frame count
    counted: int | None = None  # packets of the video stream, if counted
    fps: float = 0.0
    duration_s: float = 0.0
    width: int = 0
    height: int = 0
    codec: str = ""
    error: str = ""  # why it could not be probed ("" if fine); such a video is one sample, its file
    times: list[float] | None = None  # presentation time (s from the first frame) of each counted frame

    def mismatch(self) -> dict[str, Any] | None:
        """``{video, metadata, counted}`` when the container's count and the counted frames disagree.

        An estimate from the duration (containers without a frame count) only counts as disagreeing
        when it is off by more than one frame (durations are rounded).
        """
        if self.counted is None:
            return None
        if self.metadata_count is not None and self.metadata_count != self.counted:
            return {"video": self.name, "metadata": self.metadata_count, "counted": self.counted}
        if self.estimated_count is not None and abs(self.estimated_count - self.counted) > 1:
            return {"video": self.name, "metadata_estimate": self.estimated_count, "counted": self.counted}
        return None

    def to_json(self) -> dict[str, Any]:
        """JSON-able data without the per-frame times (they go to the file list rows)."""
        d = asdict(self)
        d.pop("times")
        return d


def probe(uri: str, name: str, use_metadata: bool) -> VideoInfo:
    """Frame count and basics of one video (see the module doc for the two ways of counting)."""
    info = VideoInfo(name=name)
    try:
        with open_video(uri) as container:
            stream = container.streams.video[0]
            info.width, info.height = int(stream.width or 0), int(stream.height or 0)
            info.codec = str(stream.codec_context.name or "")
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            info.fps = float(rate) if rate else 0.0
            info.metadata_count = int(stream.frames) if stream.frames else None
            if stream.duration is not None and stream.time_base is not None:
                info.duration_s = float(stream.duration * stream.time_base)
            elif container.duration:
                info.duration_s = container.duration / 1_000_000
            if not info.metadata_count and info.duration_s > 0 and info.fps > 0:
                info.estimated_count = round(info.duration_s * info.fps)
            if use_metadata and info.metadata_count:
                info.count, info.count_source = info.metadata_count, "metadata"
                if info.fps > 0:
                    info.times = [round(i / info.fps, 6) for i in range(info.count)]
                return info
            keys, demux_error = _packet_keys(container, stream)
            info.counted = len(keys)
            info.count, info.count_source = len(keys), "counted"
            tb = stream.time_base or Fraction(1, 1)
            if keys:
                first = keys[0]
                info.times = [round(float((k - first) * tb), 6) for k in keys]
            if demux_error:
                log.warning(
                    "%s: demuxing stopped early (%s): %d frame(s) counted", name, demux_error, len(keys)
                )
    except CorruptFileError as exc:
        info.error = exc.reason
    return info


def _packet_key(packet: Any, last: int) -> int:
    """A packet's presentation key: pts, else dts, else the one after ``last`` (arrival order).

    Counting (:func:`_packet_keys`) and decoding (:func:`iter_frames`) number frames by this one rule.
    """
    key = packet.pts if packet.pts is not None else packet.dts
    return int(key) if key is not None else last + 1


def _packet_keys(container: Any, stream: Any) -> tuple[list[int], str]:
    """Sorted presentation keys (pts, else dts, else arrival order) of the stream's non-empty packets."""
    import av

    keys: list[int] = []
    error = ""
    last = -1
    try:
        for packet in container.demux(stream):
            if not packet.size:
                continue
            last = _packet_key(packet, last)
            keys.append(last)
    except (av.error.FFmpegError, OSError) as exc:
        error = _msg(exc)
    keys.sort()
    return keys, error


# --------------------------------------------------------------------------- decoding


@dataclass
class DecodedFrame:
    """One frame number of a video in presentation order: the frame, or why there is none."""

    index: int
    frame: Any  # av.VideoFrame, or None when the frame did not decode
    reason: str = ""
    time_s: float | None = None


@dataclass
class _Numbering:
    index: int = 0  # next frame number
    first: int | None = None  # key of the first frame (time 0)
    last: int = -1  # key of the last packet (for packets without timestamps)


def iter_frames(container: Any, threads: int = 1, *, stop_after: int | None = None) -> Iterator[DecodedFrame]:
    """Decode the first video stream once, yielding every frame number in presentation order.

    Each non-empty packet is one frame. The decoder outputs frames in presentation order; a packet
    whose frame never comes out (the decoder raised on it, dropped it, or the file ended) is yielded
    as ``frame=None`` at its place by timestamp, so numbering matches :func:`probe`'s count. Memory
    holds one decoded frame plus the decoder's reorder delay, whatever the video's length.
    ``stop_after``: stop once that frame number has been yielded (export decodes no further than the
    last frame it needs). ``threads``: decoder threads (0 lets FFmpeg pick).
    """
    import av

    stream = container.streams.video[0]
    ctx = stream.codec_context
    ctx.thread_count = max(0, int(threads))
    if threads != 1:
        ctx.thread_type = "AUTO"
    tb = stream.time_base or Fraction(1, 1)
    pending: list[int] = []  # keys of packets sent but whose frame has not come out yet
    failed: dict[int, str] = {}
    state = _Numbering()

    def time_of(key: int | None) -> float | None:
        if key is None:
            return None
        if state.first is None:
            state.first = key
        return round(float((key - state.first) * tb), 6)

    def lost(key: int) -> DecodedFrame:
        reason = failed.pop(key, "frame did not decode (no picture came out of the decoder)")
        out = DecodedFrame(state.index, None, reason, time_of(key))
        state.index += 1
        return out

    def emit(frame: Any) -> Iterator[DecodedFrame]:
        key = frame.pts
        if key is None and pending:
            key = pending[0]
        while pending and key is not None and pending[0] < key:
            yield lost(heapq.heappop(pending))
        if pending and pending[0] == key:
            heapq.heappop(pending)
        reason = "the decoder flagged this frame as damaged" if frame.is_corrupt else ""
        yield DecodedFrame(state.index, frame, reason, time_of(key))
        state.index += 1

    def done() -> bool:
        return stop_after is not None and state.index > stop_after

    demux_error = ""
    try:
        for packet in container.demux(stream):
            if not packet.size:
                continue
            key = state.last = _packet_key(packet, state.last)
            heapq.heappush(pending, key)
            try:
                frames = ctx.decode(packet)
            except av.error.FFmpegError as exc:
                failed[key] = f"frame failed to decode: {_msg(exc)}"
                continue
            for frame in frames:
                yield from emit(frame)
                if done():
                    return
    except (av.error.FFmpegError, OSError) as exc:
        demux_error = _msg(exc)
    try:
        rest = ctx.decode(None)
    except av.error.FFmpegError:
        rest = []
    for frame in rest:
        yield from emit(frame)
        if done():
            return
    while pending:
        key = heapq.heappop(pending)
        if demux_error and key not in failed:
            failed[key] = f"frame did not decode (reading the file failed: {demux_error})"
        yield lost(key)
        if done():
            return


def _planes(frame: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y, U, V planes of a 4:2:0 frame (other formats are converted first)."""
    if frame.format.name not in _PLANAR_420:
        frame = frame.reformat(format="yuv420p")
    out = []
    for plane in frame.planes[:3]:
        arr = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
        out.append(arr[:, : plane.width])
    return out[0], out[1], out[2]


def _block_stats(plane: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-block (min, max, mean) over ``size`` x ``size`` blocks (a plane smaller than a block is one)."""
    h, w = plane.shape
    bh, bw = max(1, h // size), max(1, w // size)
    sh, sw = (h // bh), (w // bw)
    blocks = plane[: bh * sh, : bw * sw].reshape(bh, sh, bw, sw)
    return blocks.min(axis=(1, 3)), blocks.max(axis=(1, 3)), blocks.mean(axis=(1, 3), dtype=np.float32)


def corruption_score(frame: Any) -> float:
    """Fraction of 16x16 macroblocks that are dead (uniform grey or green: see the module doc)."""
    y, u, v = _planes(frame)
    ymin, ymax, ymean = _block_stats(y, BLOCK)
    umin, umax, umean = _block_stats(u, BLOCK // 2)
    vmin, vmax, vmean = _block_stats(v, BLOCK // 2)
    if umin.shape != ymin.shape:  # odd sizes: align chroma blocks to luma blocks
        return _score_aligned(y, u, v)
    flat = ((ymax - ymin) <= FLAT_RANGE) & ((umax - umin) <= FLAT_RANGE) & ((vmax - vmin) <= FLAT_RANGE)
    dead = np.zeros_like(flat)
    for cy, cu, cv in FILL_COLOURS:
        dead |= (
            (np.abs(ymean - cy) <= FILL_TOLERANCE)
            & (np.abs(umean - cu) <= FILL_TOLERANCE)
            & (np.abs(vmean - cv) <= FILL_TOLERANCE)
        )
    return float((flat & dead).mean())


def _score_aligned(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> float:
    """Fallback for frames whose chroma block grid differs from the luma grid: upsample chroma."""
    uu = np.repeat(np.repeat(u, 2, axis=0), 2, axis=1)[: y.shape[0], : y.shape[1]]
    vv = np.repeat(np.repeat(v, 2, axis=0), 2, axis=1)[: y.shape[0], : y.shape[1]]
    stats = [_block_stats(p, BLOCK) for p in (y, uu, vv)]
    shape = min(s[0].shape for s in stats)
    flat = np.ones(shape, bool)
    for lo, hi, _ in stats:
        flat &= (hi[: shape[0], : shape[1]] - lo[: shape[0], : shape[1]]) <= FLAT_RANGE
    dead = np.zeros(shape, bool)
    for colour in FILL_COLOURS:
        match = np.ones(shape, bool)
        for (_, _, mean), c in zip(stats, colour, strict=True):
            match &= np.abs(mean[: shape[0], : shape[1]] - c) <= FILL_TOLERANCE
        dead |= match
    return float((flat & dead).mean())


#: Bytes per pixel of every plane for the pixel formats hashed as decoded (others are converted).
_HASH_BPP = {
    "yuv420p": 1,
    "yuvj420p": 1,
    "yuv422p": 1,
    "yuvj422p": 1,
    "yuv444p": 1,
    "yuvj444p": 1,
    "gray": 1,
    "gbrp": 1,
    "rgb24": 3,
    "bgr24": 3,
}


def pixel_hash(frame: Any) -> str:
    """sha256 of the frame's decoded pixels: visible plane bytes, with size, pixel format and rotation.

    Identical hashes mean identical decoded pixels (the spec's exact duplicates for frames). Pixel
    formats outside a small common set are converted losslessly to 16-bit 4:4:4 first.
    """
    if frame.format.name not in _HASH_BPP:
        frame = frame.reformat(format="yuv444p16le")
        bpp = 2
    else:
        bpp = _HASH_BPP[frame.format.name]
    h = hashlib.sha256(f"{frame.width}x{frame.height}:{frame.format.name}:{frame.rotation}".encode())
    for plane in frame.planes:
        arr = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
        h.update(np.ascontiguousarray(arr[:, : plane.width * bpp]).data)
    return h.hexdigest()


def to_rgb(frame: Any, size: tuple[int, int] | None = None) -> np.ndarray:
    """The frame as an upright HxWx3 uint8 RGB array, optionally resized to ``size`` = (w, h).

    One swscale pass converts and resizes (bilinear, area-averaging when shrinking); the display
    matrix's rotation is applied after, so ``size`` is the size *before* rotation by 90/270 degrees.
    """
    if size is None:
        arr = frame.to_ndarray(format="rgb24")
    else:
        arr = frame.reformat(width=int(size[0]), height=int(size[1]), format="rgb24", interpolation="AREA")
        arr = arr.to_ndarray()
    return upright(arr, frame.rotation)


def quarter_turns(rotation: float | int | None) -> int:
    """Counter-clockwise quarter turns that show a frame upright, from its display-matrix rotation."""
    if not rotation:
        return 0
    # FFmpeg's display-matrix angle turns the picture counter-clockwise; so does np.rot90.
    return int(round(float(rotation) / 90.0)) % 4


def upright(arr: np.ndarray, rotation: float | int | None) -> np.ndarray:
    """Rotate an HxWxC array as the display matrix says (FFmpeg's autorotate), contiguous."""
    k = quarter_turns(rotation)
    return np.ascontiguousarray(np.rot90(arr, k)) if k else arr


# --------------------------------------------------------------------------- check phase

#: Per-frame outcome of the check: (pixel sha256 or "", corrupt reason or "").
#: (pixel sha256 or "", corruption reason or "", computed lightly.* metadata or None)
Outcome = tuple[str, str, dict[str, float] | None]


def check_video(
    uri: str,
    name: str,
    frames: list[int | None],
    count: int,
    *,
    check: bool = True,
    dedup: bool = True,
    threshold: float = 0.1,
    threads: int = 1,
) -> tuple[list[Outcome], int | None]:
    """Check one video's listed frames in one decode pass: ``(outcomes aligned with frames, frames held)``.

    ``frames`` are the listed frame numbers (``None`` for a video listed as one sample, its file: it
    is corrupt, with the reason it cannot be used). Each frame is decoded once; with ``check`` it is
    corrupt if it did not decode, if the decoder flagged it, or if :func:`corruption_score` exceeds
    ``threshold``; with ``dedup`` its :func:`pixel_hash` is computed. Frame numbers the file does not
    hold (fewer frames than ``count``, the metadata's) are corrupt ("missing"). The second value is
    how many frames the file held (decoded or not), ``None`` when nothing was decoded.
    """
    out: list[Outcome] = [("", "", None)] * len(frames)
    want = {f: k for k, f in enumerate(frames) if f is not None}
    whole = [k for k, f in enumerate(frames) if f is None]
    if not (check or dedup or whole):
        return out, None
    held = 0
    try:
        with open_video(uri) as container:
            if whole:
                # Ingest could not use it (no frames, or it failed to open then): the file is the sample.
                held = sum(1 for _ in iter_frames(container, threads)) if not want else 0
                for k in whole:
                    out[k] = (
                        "",
                        "video holds no frames" if held == 0 else "video could not be read when listed",
                        None,
                    )
                if not want:
                    return out, held
            for df in iter_frames(container, threads):
                held = df.index + 1
                pos = want.get(df.index)
                if pos is None:
                    continue  # past the listed count: not a sample (ingest's count rules)
                if df.frame is None:
                    out[pos] = ("", df.reason, None)
                    continue
                digest = pixel_hash(df.frame) if dedup else ""
                reason = ""
                if check:
                    if df.reason:
                        reason = df.reason
                    else:
                        score = corruption_score(df.frame)
                        if score > threshold:
                            reason = (
                                f"corruption score {score:.2f} > corruption_threshold {threshold:g} "
                                f"({score:.0%} of macroblocks uniform grey/green)"
                            )
                # the check's decode also gives the frame's lightly.* metadata (no second pass)
                meta = metadata.image_metadata(to_rgb(df.frame)) if check and not reason else None
                out[pos] = (digest, reason, meta)
    except CorruptFileError as exc:
        return [("", exc.reason, None)] * len(frames), None
    for f, k in want.items():
        if f >= held:
            out[k] = ("", f"frame missing: the file holds {held} frame(s), {count} expected", None)
    return out, held


# --------------------------------------------------------------------------- export


def iter_selected_rgb(
    uri: str, wanted: set[int], threads: int = 0
) -> Iterator[tuple[int, np.ndarray | None, str]]:
    """``(frame number, upright full-size RGB array or None, reason)`` for each wanted frame, in order.

    Decodes front to back once and stops after the last wanted frame; frames the file does not hold
    come last with a reason. Opening errors raise :class:`CorruptFileError`.
    """
    left = set(wanted)
    if not left:
        return
    with open_video(uri) as container:
        for df in iter_frames(container, threads, stop_after=max(left)):
            if df.index not in left:
                continue
            left.discard(df.index)
            if df.frame is None:
                yield df.index, None, df.reason
            else:
                yield df.index, to_rgb(df.frame), ""
    for i in sorted(left):
        yield i, None, "frame missing from the file"


TIMELINE_FORMAT = "kurate.video_timeline/1"


def sampling_timeline(
    video_col: list[str],
    frame_col: list[str],
    time_col: list[str],
    names: list[str],
    status: dict[str, str],
    infos: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """The per-video sampling timeline the report draws (format documented in ARCHITECTURE.md).

    ``status`` maps every input name to one of sampled, removed, corrupt, duplicate.
    """
    videos: dict[str, dict[str, Any]] = {}
    for name, v, f, t in zip(names, video_col, frame_col, time_col, strict=True):
        if not v:
            continue
        info = infos.get(v) or {}
        entry = videos.get(v)
        if entry is None:
            entry = videos[v] = {
                "video": v,
                "frame_count": int(info.get("count", 0)),
                "count_source": info.get("count_source", ""),
                "fps": info.get("fps", 0.0),
                "duration_s": info.get("duration_s", 0.0),
                "error": info.get("error", ""),
                "selected": [],
                "counts": {"sampled": 0, "removed": 0, "corrupt": 0, "duplicate": 0},
            }
        st = status.get(name, "removed")
        entry["counts"][st] += 1
        if st == "sampled" and f:
            entry["selected"].append({"frame": int(f), "time_s": float(t) if t else None, "name": name})
    for entry in videos.values():
        entry["selected"].sort(key=lambda s: s["frame"])
    return {"format": TIMELINE_FORMAT, "videos": [videos[k] for k in sorted(videos)]}
