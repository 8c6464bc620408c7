"""The "check" phase's library: split a file list into clean, corrupt and exact-duplicate files.

Every file is read exactly once. From those bytes we always compute a sha256 (later phases key caches
and provenance on content, not names), and, when the corruptness check is on, fully decode the image
with :func:`kurate.media.decode_image` so that truncated, empty, mislabelled or bomb-sized files are
caught here instead of crashing the embedding phase hours later. A bad file is never fatal: it is
listed in ``corrupt`` with a short reason. Systemic storage errors (:class:`StorageError`) still are.

Decoding is CPU-bound, so files are processed by a process pool; the parent sends chunks of *names*
(never bytes) and keeps only a bounded number of chunks in flight, so memory does not grow with the
dataset. From a bucket, each worker fetches its chunk with a bounded thread pool
(:func:`kurate.storage.read_many`), so network latency overlaps decoding. Results are put back in
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

from kurate import media, storage
from kurate.errors import CorruptFileError
from kurate.filelist import FileList, sample_uri

log = logging.getLogger("kurate.check")

#: Reason given for a listed file that is gone by the time we read it.
REASON_DISAPPEARED = "file disappeared after listing"

#: Default (maximum) number of names per chunk sent to a worker process.
DEFAULT_CHUNK_SIZE = 64


class _Bar(tqdm):  # type: ignore[type-arg]
    """tqdm without its monitor thread: the worker pool may fork, and forking a threaded process is unsafe."""

    monitor_interval = 0


# Per-file outcome: (sha256 hex or "" if unreadable, reason or "" if fine).
_Outcome = tuple[str, str]


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


def _check_data(name: str, data: bytes | OSError, decode: bool, max_pixels: int) -> _Outcome:
    if isinstance(data, OSError):
        return "", _reason(data)
    digest = hashlib.sha256(data).hexdigest()
    if not decode:
        return digest, ""
    try:
        media.decode_image(data, name, max_pixels)
    except CorruptFileError as exc:
        return digest, exc.reason
    except Exception as exc:  # a hostile file must never abort the whole run
        # Pillow raises the odd unexpected type (struct.error, ZeroDivisionError...) on fuzzed input.
        log.debug("%s: unexpected %s while decoding", name, type(exc).__name__, exc_info=True)
        return digest, f"cannot decode image: {type(exc).__name__}: {exc}".splitlines()[0]
    return digest, ""


def _check_chunk(root: str, names: Sequence[str], decode: bool, max_pixels: int) -> list[_Outcome]:
    """Worker entry point (module level so it pickles): check a chunk of names.

    From a bucket the chunk's objects are fetched by a bounded thread pool (reads wait on the
    network, decoding needs the CPU), in order; locally they are read one by one.
    """
    uris = (sample_uri(root, n) for n in names)
    reads = storage.read_many(uris, storage.read_threads(root))
    return [_check_data(n, data, decode, max_pixels) for n, (_, data) in zip(names, reads, strict=True)]


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


def _run_parallel(
    root: str,
    names: list[str],
    decode: bool,
    max_pixels: int,
    workers: int,
    chunk: int,
    advance: Callable[[int], Any],
) -> list[_Outcome]:
    """Check ``names`` on a process pool with a bounded number of chunks in flight."""
    outcomes: list[_Outcome | None] = [None] * len(names)
    max_in_flight = workers * 3
    pending: dict[Future[list[_Outcome]], int] = {}

    def collect(done: set[Future[list[_Outcome]]]) -> None:
        for fut in done:
            start = pending.pop(fut)
            res = fut.result()  # re-raises systemic errors (StorageError) from the worker
            outcomes[start : start + len(res)] = res
            advance(len(res))

    with ProcessPoolExecutor(max_workers=workers) as pool:
        try:
            for start, stop in _chunks(len(names), chunk):
                if len(pending) >= max_in_flight:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    collect(done)
                pending[pool.submit(_check_chunk, root, names[start:stop], decode, max_pixels)] = start
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                collect(done)
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise
    assert all(o is not None for o in outcomes)
    return outcomes  # type: ignore[return-value]


def check_files(
    files: FileList,
    enable_corruptness_check: bool = True,
    remove_exact_duplicates: bool = True,
    max_pixels: int = media.DEFAULT_MAX_PIXELS,
    workers: int = -1,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: bool = True,
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

    A name listed twice in ``files`` is checked once and appears once in the result.
    """
    t0 = time.monotonic()
    names = list(dict.fromkeys(files.names))
    if len(names) != len(files.names):
        log.warning("check: %d repeated name(s) in the input list ignored", len(files.names) - len(names))
    n = len(names)
    decode = enable_corruptness_check
    if workers < 1:
        workers = _cpu_count()
    chunk = max(1, min(chunk_size, math.ceil(n / (workers * 4)) if n else 1))
    workers = max(1, min(workers, math.ceil(n / chunk) if n else 1))

    bar = _Bar(total=n, desc="check", unit="file", file=sys.stderr, disable=not progress, dynamic_ncols=True)
    with bar:
        if workers == 1:
            outcomes = []
            for start, stop in _chunks(n, chunk):
                outcomes.extend(_check_chunk(files.root, names[start:stop], decode, max_pixels))
                bar.update(stop - start)
        else:
            outcomes = _run_parallel(files.root, names, decode, max_pixels, workers, chunk, bar.update)

    # Dedup in sorted-name order (not input order, which we don't rely on being sorted).
    keeper_of: dict[str, str] = {}
    duplicate_of: dict[int, str] = {}
    if remove_exact_duplicates:
        for i in sorted(range(n), key=names.__getitem__):
            digest, reason = outcomes[i]
            if reason:
                continue
            kept = keeper_of.setdefault(digest, names[i])
            if kept != names[i]:
                duplicate_of[i] = kept

    clean_i = [i for i in range(n) if not outcomes[i][1] and i not in duplicate_of]
    corrupt_i = [i for i in range(n) if outcomes[i][1]]
    dup_i = [i for i in range(n) if i in duplicate_of]
    result = CheckResult(
        clean=FileList(
            root=files.root,
            names=[names[i] for i in clean_i],
            columns={"sha256": [outcomes[i][0] for i in clean_i]},
            extra=dict(files.extra),
        ),
        corrupt=FileList(
            root=files.root,
            names=[names[i] for i in corrupt_i],
            columns={"reason": [outcomes[i][1] for i in corrupt_i]},
            extra=dict(files.extra),
        ),
        duplicates=FileList(
            root=files.root,
            names=[names[i] for i in dup_i],
            columns={"duplicate_of": [duplicate_of[i] for i in dup_i]},
            extra=dict(files.extra),
        ),
    )

    elapsed = time.monotonic() - t0
    for name, reason in result.corrupt.rows():
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
