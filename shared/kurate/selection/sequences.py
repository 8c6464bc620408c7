"""Sequence selection for videos (``selected_sequence_length`` = L > 1): whole blocks of L frames.

Each video is cut into consecutive blocks of L frame numbers starting at frame 0 (frames 0..L-1,
L..2L-1, ...). A block is a candidate only when all its L frames have embeddings; a video's last,
shorter block and blocks with a frame that failed to embed are not. A block's point is the mean of
its frames' embeddings (as selection sees them, i.e. normalized when ``normalize_embeddings``) and
is normalized again in that case, so coreset distances stay on the unit sphere. Images have no
sequences and are never selected in this mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kurate.io.filelist import FileList


@dataclass
class Blocks:
    """Candidate blocks: ``rows[b]`` are the embedding rows of block ``b``'s frames, in frame order."""

    rows: list[list[int]] = field(default_factory=list)
    videos: list[str] = field(default_factory=list)
    incomplete_frames: int = 0  # frames in blocks that cannot be selected (short tail, missing frames)
    images: int = 0  # embedded images (never selected as sequences)


def make_blocks(emb_names: list[str], files: FileList, length: int) -> Blocks:
    """Group the embedded frames of ``files``' videos into complete blocks of ``length`` frames."""
    video_col = files.columns.get("video") or [""] * len(files)
    frame_col = files.columns.get("frame") or [""] * len(files)
    where = {n: (v, f) for n, v, f in zip(files.names, video_col, frame_col, strict=True)}
    by_block: dict[tuple[str, int], dict[int, int]] = {}
    out = Blocks()
    for row, name in enumerate(emb_names):
        v, f = where.get(name, ("", ""))
        if not v or not f:
            out.images += 1
            continue
        i = int(f)
        by_block.setdefault((v, i // length), {})[i % length] = row
    for (v, _b), members in sorted(by_block.items()):
        if len(members) == length:
            out.rows.append([members[k] for k in range(length)])
            out.videos.append(v)
        else:
            out.incomplete_frames += len(members)
    return out


def block_points(x: np.ndarray, blocks: Blocks, renormalize: bool) -> np.ndarray:
    """One point per block: the mean of its frames' rows of ``x`` (float32), renormalized if asked."""
    if not blocks.rows:
        return np.zeros((0, x.shape[1]), np.float32)
    idx = np.asarray(blocks.rows, dtype=np.int64)  # (n_blocks, L)
    pts = np.asarray(x, dtype=np.float32)[idx].mean(axis=1, dtype=np.float64).astype(np.float32)
    if renormalize:
        from kurate.selection.coreset import normalize

        pts = normalize(pts)
    return pts
