"""Content-addressed embedding cache: no sample is embedded twice with the same model.

An entry's key is the sample's content hash (the check phase's ``sha256``: file bytes, or decoded
pixels for a video frame) inside a folder named after everything else the embedding depends on:
model settings, weights (hash of the checkpoint / model-zoo file, or the seed of a random
initialisation), input size and the transform. Layout::

    <cache root>/<key>/key.json            what the key stands for (readable)
    <cache root>/<key>/chunks/<t>-<id>.npz  sha256 (U64) + embeddings (float32), one file per flush

Chunks are written atomically while embedding (every ``KURATE_EMBED_CACHE_FLUSH_ROWS`` rows, default
1024, or every 30 s), so a run killed at any moment keeps everything up to its last flush and the
next run embeds only the rest. Chunks are never rewritten: writers only add new names, so concurrent
runs (or shards) never conflict; a hash present in two chunks has the same embedding in both.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from kurate.io import storage

log = logging.getLogger("kurate.pool.embed_cache")

FORMAT = "kurate.embed_cache/1"
FLUSH_ROWS_ENV = "KURATE_EMBED_CACHE_FLUSH_ROWS"
DEFAULT_FLUSH_ROWS = 1024
FLUSH_SECONDS = 30.0
#: Changes whenever kurate's image preprocessing changes, so old entries stop matching.
TRANSFORM = "lightly-embed: resize (s,s) bilinear, imagenet normalisation; frames: swscale to (s,s)"


#: Added to the transform when ``kurate.fast_embed_decode`` decodes JPEGs DCT-scaled (other pixels).
FAST_DECODE = "; JPEG DCT-scaled decode to >= s (kurate.fast_embed_decode)"


def cache_key(
    model: dict[str, Any], weights_id: str, input_size: int, fast_decode: bool = False
) -> dict[str, Any]:
    """Everything besides the content that the embedding of a sample depends on."""
    return {
        "format": FORMAT,
        "model": {k: model[k] for k in sorted(model)},
        "weights": weights_id,
        "input_size": int(input_size),
        "transform": TRANSFORM + (FAST_DECODE if fast_decode else ""),
    }


def key_id(key: dict[str, Any]) -> str:
    """Short stable folder name of a key."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def flush_rows() -> int:
    """Rows per chunk (env ``KURATE_EMBED_CACHE_FLUSH_ROWS``)."""
    raw = os.environ.get(FLUSH_ROWS_ENV, "")
    try:
        return max(1, int(raw)) if raw else DEFAULT_FLUSH_ROWS
    except ValueError:
        return DEFAULT_FLUSH_ROWS


class EmbeddingCache:
    """The cache folder of one key under ``root``."""

    def __init__(self, root: str, key: dict[str, Any]) -> None:
        self.key = key
        self.dir = storage.join(root, key_id(key))
        self.chunks = storage.join(self.dir, "chunks")

    def load(self, wanted: Iterable[str]) -> dict[str, np.ndarray]:
        """Hash → embedding for every wanted hash found in the cache (chunks read in parallel).

        A damaged chunk (truncated, empty, not an npz of this layout) is reported, removed and
        ignored: its rows are embedded again and cached in a new chunk. Temp files of killed writers
        are never read, and removed.
        """
        want = {h for h in wanted if h}
        if not want:
            return {}
        if not storage.is_remote(self.chunks) and not os.path.isdir(self.chunks):
            return {}
        storage.remove_stale_temps(self.chunks)
        uris = [
            storage.join(self.chunks, n)
            for n in storage.list_files(self.chunks)
            if n.endswith(".npz") and not storage.is_temp_name(n)
        ]
        found: dict[str, np.ndarray] = {}
        for uri, data in storage.read_many(uris, max(4, storage.read_threads(self.chunks))):
            if isinstance(data, OSError):
                continue
            try:
                hashes, x = _read_chunk(data)
            except Exception as exc:  # noqa: BLE001 - a damaged file fails in many ways (zip, zlib, npy)
                log.warning(
                    "embedding-cache chunk %s is damaged (%s: %s); removed, its rows are embedded again",
                    uri,
                    type(exc).__name__,
                    str(exc).splitlines()[0] if str(exc) else "",
                )
                storage.remove_tree(uri)
                continue
            for i in np.flatnonzero(np.isin(hashes, list(want - found.keys()))):
                found[str(hashes[i])] = np.asarray(x[i], dtype=np.float32)
            if len(found) == len(want):
                break
        return found

    def writer(self) -> CacheWriter:
        """A writer that flushes new embeddings to chunks as they come.

        ``key.json`` is created exclusively (a temp file linked into place): a writer killed before
        the link left that temp file, which goes here.
        """
        storage.remove_stale_temps(self.dir)
        if not storage.exists(storage.join(self.dir, "key.json")):
            storage.create_exclusive(
                storage.join(self.dir, "key.json"), json.dumps(self.key, indent=1, sort_keys=True).encode()
            )
        return CacheWriter(self.chunks)


def _read_chunk(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """A chunk's hashes (N) and embeddings (N×d); ValueError unless it is exactly that."""
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        hashes, x = z["sha256"], z["embeddings"]
    if hashes.ndim != 1 or x.ndim != 2 or len(hashes) != len(x) or not np.all(np.isfinite(x)):
        raise ValueError(f"arrays of shapes {hashes.shape} and {x.shape}")
    return hashes, x


class CacheWriter:
    """Buffers (hash, embedding) pairs and writes them as atomic chunks."""

    def __init__(self, chunks: str) -> None:
        self.chunks = chunks
        self.every = flush_rows()
        self.hashes: list[str] = []
        self.rows: list[np.ndarray] = []
        self.last = time.monotonic()
        self.written = 0

    def add(self, hashes: Sequence[str], x: np.ndarray) -> None:
        """Queue one batch (rows without a hash are not cached); flush when due."""
        for h, row in zip(hashes, np.asarray(x, dtype=np.float32), strict=True):
            if h:
                self.hashes.append(h)
                self.rows.append(row)
        if len(self.hashes) >= self.every or time.monotonic() - self.last >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write the queued rows as one chunk (atomic: complete or absent)."""
        self.last = time.monotonic()
        if not self.hashes:
            return
        buf = io.BytesIO()
        np.savez(buf, sha256=np.asarray(self.hashes, dtype="U64"), embeddings=np.stack(self.rows))
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}.npz"
        storage.write_bytes(storage.join(self.chunks, name), buf.getvalue())
        self.written += len(self.hashes)
        self.hashes, self.rows = [], []
