"""The "check" phase's library: split a file list into clean, corrupt and exact-duplicate files.

Every file is read exactly once. From those bytes we always compute a sha256 (later phases key caches
and provenance on content, not names), and, when the corruptness check is on, fully decode the image
with :func:`kurate.media.image.check_image` so that truncated, empty, mislabelled or bomb-sized files are
caught here instead of crashing the embedding phase hours later. A bad file is never fatal: it is
listed in ``corrupt`` with a short reason. Systemic storage errors (:class:`StorageError`) still are.

Decoding is CPU-bound, so files are processed by a process pool; the parent sends chunks of *names*
(never bytes) and keeps only a bounded number of chunks in flight, so memory does not grow with the
dataset. From a bucket, each worker fetches its chunk with a bounded thread pool
(:func:`kurate.io.storage.read_many`), so network latency overlaps decoding. Results are put back in
input order, so the output is identical for any number of workers.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from kurate.errors import CorruptFileError
from kurate.io import storage
from kurate.io.filelist import FileList, sample_uri
from kurate.io.names import unsafe_reason
from kurate.media import image, metadata

log = logging.getLogger("kurate.check")

#: Reason given for a listed file that is gone by the time we read it.
REASON_DISAPPEARED = "file disappeared after listing"

#: Default (maximum) number of names per chunk sent to a worker process.
DEFAULT_CHUNK_SIZE = 64


class _Bar(tqdm):  # type: ignore[type-arg]
    """tqdm without its monitor thread: the worker pool may fork, and forking a threaded process is unsafe."""

    monitor_interval = 0


# Per-file outcome: (sha256 hex or "" if unreadable, reason or "" if fine, the lightly.* metadata of
# the decoded pixels or None when not decoded).
_Outcome = tuple[str, str, dict[str, float] | None]


@dataclass
class CheckResult:
    """The three-way partition of the input: every input name is in exactly one list.

    ``clean`` has a ``sha256`` column, ``corrupt`` a ``reason`` column and ``duplicates`` a
    ``duplicate_of`` column (the name of the kept copy, which is in ``clean``). All three keep the
    input's root, so later phases can find the files without any other context.
    """

    clean: FileList
    corrupt: FileList
    duplicates: FileList


def _reason(exc: OSError) -> str:
    """The corrupt-file reason for a per-file read error (systemic ones never get here)."""
    if isinstance(exc, FileNotFoundError):
        return REASON_DISAPPEARED
    if isinstance(exc, IsADirectoryError):
        return "is a folder, not a file"
    if isinstance(exc, PermissionError):
        return "permission denied while reading"
    return f"cannot read file: {exc.strerror or exc}"


def _check_data(
    name: str, data: bytes | OSError, decode: bool, max_pixels: int, strict_jpeg: bool = True
) -> _Outcome:
    if isinstance(data, OSError):
        return "", _reason(data), None
    digest = hashlib.sha256(data).hexdigest()
    if not decode:
        return digest, "", None
    try:
        img = image.check_image(data, name, max_pixels, strict_jpeg=strict_jpeg)
    except CorruptFileError as exc:
        return digest, exc.reason, None
    except Exception as exc:  # a hostile file must never abort the whole run
        # Pillow raises the odd unexpected type (struct.error, ZeroDivisionError...) on fuzzed input.
        log.debug("%s: unexpected %s while decoding", name, type(exc).__name__, exc_info=True)
        return digest, f"cannot decode image: {type(exc).__name__}: {exc}".splitlines()[0], None
    # Lightly's computed metadata from the pixels the check decoded (no second decode): measured on
    # the check's reduced pixels (JPEGs DCT-scaled), width and height the file's own, upright.
    meta = metadata.image_metadata(img, len(data))
    meta["lightly.width"], meta["lightly.height"] = map(float, img.info[image.UPRIGHT_SIZE])
    return digest, "", meta


def _check_chunk(
    root: str, names: Sequence[str], decode: bool, max_pixels: int, strict_jpeg: bool = True
) -> list[_Outcome]:
    """Worker entry point (module level so it pickles): check a chunk of names.

    From a bucket the chunk's objects are fetched by a bounded thread pool (reads wait on the
    network, decoding needs the CPU), in order; locally they are read one by one.
    """
    uris = (sample_uri(root, n) for n in names)
    reads = storage.read_many(uris, storage.read_threads(root))
    return [
        _check_data(n, data, decode, max_pixels, strict_jpeg)
        for n, (_, data) in zip(names, reads, strict=True)
    ]


def _cpu_count() -> int:
    """Cores this process may use (affinity-aware where the OS tells us)."""
    if hasattr(os, "process_cpu_count"):  # Python >= 3.13
        return os.process_cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(n, start + size)


#: A unit of work: (function, args, positions of its outcomes in the name list, progress weight).
_Task = tuple[Callable[..., Any], tuple, list[int], int]


def _video_task(args: tuple) -> tuple[list[_Outcome], int | None]:
    """Worker entry point for one video (module level so it pickles); see :func:`video.check_video`."""
    from kurate.media import video

    uri, name, frames, count, check, dedup, threshold, threads = args
    return video.check_video(
        uri, name, frames, count, check=check, dedup=dedup, threshold=threshold, threads=threads
    )


def _run_tasks(tasks: list[_Task], workers: int, on_result: Callable[[int, Any], None]) -> None:
    """Run ``tasks`` (in a process pool unless ``workers == 1``) with a bounded number in flight.

    ``on_result(task index, result)`` is called in this process as tasks finish (in any order).
    """
    if workers == 1:
        for k, task in enumerate(tasks):
            on_result(k, task[0](*task[1]))
        return
    max_in_flight = workers * 3
    pending: dict[Future[Any], int] = {}

    def collect(done: set[Future[Any]]) -> None:
        for fut in done:
            on_result(pending.pop(fut), fut.result())  # re-raises systemic errors (StorageError)

    with ProcessPoolExecutor(max_workers=workers) as pool:
        try:
            for k, task in enumerate(tasks):
                if len(pending) >= max_in_flight:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    collect(done)
                pending[pool.submit(task[0], *task[1])] = k
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                collect(done)
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise


def check_files(
    files: FileList,
    enable_corruptness_check: bool = True,
    remove_exact_duplicates: bool = True,
    max_pixels: int = image.DEFAULT_MAX_PIXELS,
    workers: int = -1,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: bool = True,
    corruption_threshold: float = 0.1,
    strict_jpeg: bool = True,
) -> CheckResult:
    """Read, hash and (optionally) decode every file; partition into clean / corrupt / duplicates.

    - ``enable_corruptness_check=False`` skips decoding (fast, hash only): then only unreadable
      files (e.g. deleted after listing) are corrupt.
    - ``remove_exact_duplicates``: among non-corrupt files with identical bytes, the first by sorted
      name stays clean and the others go to ``duplicates``. A corrupt file is never a keeper, so a
      clean copy of a corrupt file's bytes cannot happen (same bytes, same verdict) unless the check
      is off, in which case such files are all "clean" and deduplicated like any other.
    - ``workers``: processes to use; ``-1`` (or any value < 1) means all available cores; ``1``
      runs in this process (debugging, tests).
    - ``strict_jpeg``: also report JPEGs whose compressed data libjpeg finds damaged (see
      :func:`kurate.media.image.check_image`; key ``kurate.strict_jpeg_check``).

    A name listed twice in ``files`` is checked once and appears once in the result. A name that is
    not a clean relative path (:func:`kurate.io.names.unsafe_reason`: object keys are untrusted) is
    corrupt with that reason and never read.

    Video frames (rows with a ``video`` column) are checked one video per task by
    :func:`kurate.media.video.check_video`: each frame decoded once, scored against
    ``corruption_threshold`` (check on) and hashed on its decoded pixels (dedup on).
    """
    t0 = time.monotonic()
    first_row: dict[str, int] = {}
    for i, name in enumerate(files.names):
        first_row.setdefault(name, i)
    names = list(first_row)
    if len(names) != len(files.names):
        log.warning("check: %d repeated name(s) in the input list ignored", len(files.names) - len(names))
    n = len(names)
    decode = enable_corruptness_check
    video_col = files.columns.get("video") or [""] * len(files.names)
    frame_col = files.columns.get("frame") or [""] * len(files.names)
    image_pos: list[int] = []
    videos: dict[str, list[int]] = {}
    outcomes: list[_Outcome] = [("", "", None)] * n
    for i, name in enumerate(names):
        v = video_col[first_row[name]]
        unsafe = unsafe_reason(v or name)
        if unsafe:  # never read: the name would not stay inside the input folder (kurate.io.names)
            outcomes[i] = ("", unsafe, None)
        elif v:
            videos.setdefault(v, []).append(i)
        else:
            image_pos.append(i)
    if workers < 1:
        workers = _cpu_count()

    tasks: list[_Task] = []
    chunk = max(1, min(chunk_size, math.ceil(len(image_pos) / (workers * 4)) if image_pos else 1))
    for start, stop in _chunks(len(image_pos), chunk):
        pos = image_pos[start:stop]
        chunk_args = (files.root, [names[i] for i in pos], decode, max_pixels, strict_jpeg)
        tasks.append((_check_chunk, chunk_args, pos, len(pos)))
    video_info = files.extra.get("videos") or {}
    threads = 1 if len(videos) >= workers else 0  # few long videos: let FFmpeg thread each decode
    for v, pos in videos.items():
        frames = [
            int(frame_col[first_row[names[i]]]) if frame_col[first_row[names[i]]] else None for i in pos
        ]
        count = int((video_info.get(v) or {}).get("count", len(pos)))
        args = (sample_uri(files.root, v), v, frames, count, decode, remove_exact_duplicates,
                corruption_threshold, threads)  # fmt: skip
        tasks.append((_video_task, (args,), pos, len(pos)))
    workers = max(1, min(workers, len(tasks)))

    held: dict[str, int] = {}
    bar = _Bar(
        total=n, desc="check", unit="sample", file=sys.stderr, disable=not progress, dynamic_ncols=True
    )

    def on_result(k: int, res: Any) -> None:
        func, args, pos, weight = tasks[k]
        if func is _video_task:
            res, frames_held = res
            if frames_held is not None:
                held[args[0][1]] = frames_held
        for p, o in zip(pos, res, strict=True):
            outcomes[p] = o
        bar.update(weight)

    with bar:
        bar.update(n - sum(len(t[2]) for t in tasks))  # the unsafe names: decided without reading
        _run_tasks(tasks, workers, on_result)
    mismatches = decoded_mismatches(video_info, held)

    # Dedup in sorted-name order (not input order, which we don't rely on being sorted).
    keeper_of: dict[str, str] = {}
    duplicate_of: dict[int, str] = {}
    if remove_exact_duplicates:
        for i in sorted(range(n), key=names.__getitem__):
            digest, reason, _meta = outcomes[i]
            if reason or not digest:
                continue
            kept = keeper_of.setdefault(digest, names[i])
            if kept != names[i]:
                duplicate_of[i] = kept

    clean_i = [i for i in range(n) if not outcomes[i][1] and i not in duplicate_of]
    corrupt_i = [i for i in range(n) if outcomes[i][1]]
    dup_i = [i for i in range(n) if i in duplicate_of]
    # Video rows keep their video/frame columns, so later phases need not parse frame names.
    carried = {k: files.columns[k] for k in ("video", "frame", "time_s") if k in files.columns}

    def cols(idx: list[int], own: dict[str, list[str]]) -> dict[str, list[str]]:
        return {**own, **{k: [c[first_row[names[i]]] for i in idx] for k, c in carried.items()}}

    extra = dict(files.extra)
    if videos:
        extra["frames_held"] = held
        extra["decoded_frame_count_mismatches"] = mismatches
    result = CheckResult(
        clean=FileList(
            root=files.root,
            names=[names[i] for i in clean_i],
            columns=cols(
                clean_i, {"sha256": [outcomes[i][0] for i in clean_i], **_metadata_columns(outcomes, clean_i)}
            ),
            extra=extra,
        ),
        corrupt=FileList(
            root=files.root,
            names=[names[i] for i in corrupt_i],
            columns=cols(corrupt_i, {"reason": [outcomes[i][1] for i in corrupt_i]}),
            extra=dict(extra),
        ),
        duplicates=FileList(
            root=files.root,
            names=[names[i] for i in dup_i],
            columns=cols(dup_i, {"duplicate_of": [duplicate_of[i] for i in dup_i]}),
            extra=dict(extra),
        ),
    )

    elapsed = time.monotonic() - t0
    for name, reason, *_ in result.corrupt.rows():
        log.debug("corrupt: %s: %s", name, reason)
    log.info(
        "check: %d files in %.1f s (%.0f files/s, %d worker(s), decode=%s): "
        "%d clean, %d corrupt, %d exact duplicates",
        n,
        elapsed,
        n / elapsed if elapsed > 0 else 0.0,
        workers,
        decode,
        len(result.clean),
        len(result.corrupt),
        len(result.duplicates),
    )
    return result


def _metadata_columns(outcomes: list[_Outcome], rows: list[int]) -> dict[str, list[str]]:
    """The clean list's ``lightly.*`` columns (empty when nothing was decoded: the check is off)."""
    if not any(outcomes[i][2] for i in rows):
        return {}
    out: dict[str, list[str]] = {k: [] for k in metadata.KEYS}
    for i in rows:
        meta = outcomes[i][2] or {}
        for k in metadata.KEYS:
            v = meta.get(k)
            out[k].append("" if v is None or v != v else f"{v:.6g}")
    return out


def decoded_mismatches(video_info: dict[str, Any], held: dict[str, int]) -> list[dict[str, Any]]:
    """Videos whose decoded frame count differs from the metadata count ingest used (logged)."""
    out = []
    for v, n_held in sorted(held.items()):
        info = video_info.get(v) or {}
        if info.get("count_source") == "metadata" and int(info.get("count", 0)) != n_held:
            out.append({"video": v, "metadata": int(info["count"]), "decoded": n_held})
            log.warning(
                "%s: container metadata says %s frames but the file holds %d", v, info["count"], n_held
            )
    return out


def summarize(result: CheckResult) -> dict[str, Any]:
    """Counts for reports and logs; corrupt files are also counted by kind of reason.

    The kind is the reason up to its first ':' (e.g. "cannot decode image"), so per-file details
    such as byte counts don't split the tally.
    """
    kinds = Counter(r.split(":", 1)[0] for r in result.corrupt.column("reason"))
    return {
        "total": len(result.clean) + len(result.corrupt) + len(result.duplicates),
        "clean": len(result.clean),
        "corrupt": len(result.corrupt),
        "duplicates": len(result.duplicates),
        "corrupt_by_reason": dict(sorted(kinds.items())),
    }
