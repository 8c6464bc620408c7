"""Storage behind one small interface, addressed by URI, so no phase special-cases a scheme.

A location is a local path, ``s3://bucket/key`` (boto3: ``AWS_ENDPOINT_URL``, profiles, region and
credentials resolved the standard way) or ``gs://bucket/key`` (google-cloud-storage: application
default credentials, ``STORAGE_EMULATOR_HOST``). The bucket back-ends live in :mod:`kurate.io.s3` and
:mod:`kurate.io.gcs` (on the base :mod:`kurate.io.remote`); they are imported and their clients created on
first use (never at import time), once per process and credential environment.

The contract every back-end keeps, which the phases rely on:

- A missing object raises :class:`FileNotFoundError` (for a listed input file: "disappeared after
  listing", a per-file problem, reported like a corrupt file).
- Systemic problems (missing credentials, access denied, no such bucket, a storage that keeps
  failing) raise :class:`~kurate.errors.StorageError`: fatal at once, with a clear message.
- Transient errors (5xx, throttling, dropped connections) are retried with exponential backoff and
  jitter (:mod:`kurate.io.retry`).
- Writes are complete-or-absent: local files go to a temp name and are renamed; S3 objects are one
  PUT or a completed multipart upload; GCS objects one upload. :func:`create_exclusive` never
  overwrites (O_EXCL link locally, ``If-None-Match: *`` on S3, ``ifGenerationMatch=0`` on GCS).
- Listing is paginated and streamed; :func:`read_many` reads many objects with a bounded pool.
"""

from __future__ import annotations

import errno
import functools
import io
import logging
import os
import shutil
import tempfile
import uuid
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from kurate.errors import StorageError
from kurate.io import remote, retry

log = logging.getLogger("kurate.io.storage")

REMOTE_SCHEMES = ("s3://", "gs://")

#: In-memory size of a remote write before it spills to a temporary file.
_SPOOL_BYTES = 32 * 1024 * 1024


# --------------------------------------------------------------------------- start checks


@contextmanager
def start_checks() -> Iterator[float]:
    """Bucket requests made inside get the short start budget (:func:`kurate.io.retry.start_checks`).

    For the checks before anything runs (input there? output writable?): a dead or hung endpoint
    fails them in ``KURATE_STORAGE_START_TIMEOUT_S`` (20 s) instead of minutes of retries.
    """
    with retry.start_checks() as budget:
        yield budget


# --------------------------------------------------------------------------- URIs


def is_remote(uri: str) -> bool:
    """True for bucket URIs (s3://, gs://)."""
    return uri.startswith(REMOTE_SCHEMES)


def split_uri(uri: str) -> tuple[str, str, str]:
    """``s3://bucket/a/b`` → ``("s3", "bucket", "a/b")``; StorageError for a URI without a bucket."""
    scheme, _, rest = uri.partition("://")
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise StorageError(f"{uri}: no bucket name in the URI (expected {scheme}://bucket/prefix)")
    return scheme, bucket, key


def join(base: str, *parts: str) -> str:
    """Join a URI or path with relative parts using '/' (never the OS separator for URIs)."""
    out = base.rstrip("/") if base not in ("", "/") else base
    for p in parts:
        if not p:
            continue
        out = f"{out}/{p.lstrip('/')}" if out else p
    return out


def resolve_relative(value: str, base: str) -> str:
    """Resolve a spec path that is 'relative to the output directory' unless absolute or a URI."""
    if not value or is_remote(value) or os.path.isabs(value):
        return value
    return join(base, value)


def is_inside(child: str, parent: str) -> bool:
    """True if location ``child`` is ``parent`` or below it (symlinks resolved for local paths)."""
    if is_remote(child) != is_remote(parent):
        return False
    if is_remote(child):
        c, p = child.rstrip("/"), parent.rstrip("/")
        return c == p or c.startswith(p + "/")
    c, p = os.path.realpath(child), os.path.realpath(parent)
    return c == p or c.startswith(p.rstrip(os.sep) + os.sep)


def _remote(uri: str) -> tuple[remote.Backend, str, str]:
    """The back-end, bucket and key of a bucket URI (the back-end is created on first use)."""
    scheme, bucket, key = split_uri(uri)
    if scheme == "s3":
        from kurate.io import s3

        return s3.backend(), bucket, key
    if scheme == "gs":
        from kurate.io import gcs

        return gcs.backend(), bucket, key
    raise StorageError(f"{uri}: unsupported scheme {scheme!r} (use a local path, s3:// or gs://)")


def _folder_prefix(key: str) -> str:
    return key.rstrip("/") + "/" if key.strip("/") else ""


# --------------------------------------------------------------------------- reading


def read_bytes(uri: str) -> bytes:
    """Read a whole object (FileNotFoundError if it does not exist)."""
    if is_remote(uri):
        be, bucket, key = _remote(uri)
        return be.read(bucket, key)
    with open(uri, "rb") as fh:
        return fh.read()


def read_text(uri: str) -> str:
    """Read UTF-8 text."""
    return read_bytes(uri).decode("utf-8")


def read_threads(uri: str) -> int:
    """How many objects :func:`read_many` should read at once under ``uri``.

    1 for local paths (the caller's process pool already keeps the disk busy); for buckets, where
    each read waits on the network, :func:`kurate.io.remote.read_threads`.
    """
    return remote.read_threads() if is_remote(uri) else 1


def _read_outcome(uri: str) -> bytes | OSError:
    try:
        return read_bytes(uri)
    except OSError as exc:  # per-object (missing, a folder, unreadable): the caller reports it
        return exc


def read_many(uris: Iterable[str], threads: int = 1) -> Iterator[tuple[str, bytes | OSError]]:
    """Yield ``(uri, bytes or the per-object OSError)`` in input order, ``threads`` reads at a time.

    At most ``2 * threads`` objects are held (read ahead) at once, whatever the number of URIs.
    Systemic errors (:class:`StorageError`) propagate and stop the iteration.
    """
    if threads <= 1:
        for u in uris:
            yield u, _read_outcome(u)
        return
    window = 2 * threads
    pending: deque[tuple[str, Future[bytes | OSError]]] = deque()
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="kurate-read") as pool:
        try:
            for u in uris:
                pending.append((u, pool.submit(_read_outcome, u)))
                if len(pending) >= window:
                    u0, fut = pending.popleft()
                    yield u0, fut.result()
            while pending:
                u0, fut = pending.popleft()
                yield u0, fut.result()
        finally:
            for _, fut in pending:
                fut.cancel()


def exists(uri: str) -> bool:
    """True if the object or folder (any object under ``uri/``) exists.

    For buckets, a missing bucket or denied access is a :class:`StorageError`, not ``False``.
    """
    if is_remote(uri):
        return is_file(uri) or is_folder(uri)
    return os.path.exists(uri)


def is_file(uri: str) -> bool:
    """True if ``uri`` is a file (an object, in a bucket); a folder is not a file."""
    if is_remote(uri):
        be, bucket, key = _remote(uri)
        return bool(key.strip("/")) and be.exists(bucket, key)
    return os.path.isfile(uri)


def is_folder(uri: str) -> bool:
    """True if ``uri`` is a folder (in a bucket: some object lies under ``uri/``)."""
    if is_remote(uri):
        be, bucket, key = _remote(uri)
        return be.any_under(bucket, _folder_prefix(key))
    return os.path.isdir(uri)


@contextmanager
def local_copy(uri: str) -> Iterator[str]:
    """A local path holding the object's bytes: ``uri`` itself if local, else a temporary download.

    For readers that need a real file (``torch.load``, memory maps, large CSVs). The temporary copy
    is removed on exit. FileNotFoundError if the object does not exist.
    """
    if not is_remote(uri):
        yield uri
        return
    be, bucket, key = _remote(uri)
    suffix = "-" + key.rsplit("/", 1)[-1][-40:]
    fd, tmp = tempfile.mkstemp(prefix="kurate-copy-", suffix=suffix)
    try:
        with os.fdopen(fd, "w+b") as fh:
            be.download(bucket, key, fh)
        yield tmp
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def list_files(root: str, page_size: int = 1000) -> Iterator[str]:
    """Yield every file under ``root`` as a '/'-separated path relative to it, in no particular order.

    Streams: local folders with os.scandir, buckets page by page (``page_size`` names per request;
    S3 returns at most 1000), so millions of files are never held twice in memory. Locally,
    symlinked folders are not followed (no cycles) and symlinked files are listed. In buckets,
    "folder marker" objects (names ending in '/') are skipped.
    """
    if is_remote(root):
        be, bucket, key = _remote(root)
        prefix = _folder_prefix(key)
        for name in be.list_keys(bucket, prefix, page_size):
            rel = name[len(prefix) :]
            if rel and not rel.endswith("/"):
                yield rel
        return
    if not os.path.isdir(root):
        raise StorageError(f"{root}: input folder does not exist or is not a folder")
    stack = [""]
    while stack:
        rel = stack.pop()
        path = os.path.join(root, rel) if rel else root
        try:
            it = os.scandir(path)
        except PermissionError as exc:
            raise StorageError(f"{path}: permission denied while listing ({exc.strerror})") from exc
        with it:
            for entry in it:
                name = f"{rel}/{entry.name}" if rel else entry.name
                if entry.is_dir(follow_symlinks=False):
                    stack.append(name)
                elif entry.is_file():
                    yield name


def local_path(uri: str) -> Path:
    """The local path of a local URI (errors for buckets: use :func:`local_copy`)."""
    if is_remote(uri):
        raise StorageError(f"{uri}: a bucket URI has no local path (internal error: use local_copy)")
    return Path(uri)


# --------------------------------------------------------------------------- writing


def makedirs(uri: str) -> None:
    """Create a folder (no-op on object stores, which have no folders)."""
    if not is_remote(uri):
        os.makedirs(uri, exist_ok=True)


def _text_or_binary(raw: IO[bytes], mode: str, encoding: str | None) -> IO[Any]:
    if "b" in mode:
        return raw
    return io.TextIOWrapper(raw, encoding=encoding or "utf-8", newline="", write_through=True)


@functools.cache
def _file_mode() -> int:
    """Mode for new output files: 0o666 less the process umask, as ``open()`` would give.

    mkstemp creates 0600 files; outputs (reports, lists) must be as readable as any file the user
    writes. The umask is read from /proc (setting it to read it back would race with other threads).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    return 0o644


def _temp_beside(uri: str, parent: str) -> tuple[int, str]:
    """A temp file beside ``uri`` (same file system: the rename is atomic), with normal permissions."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix="-" + os.path.basename(uri)[:40], dir=parent)
    os.fchmod(fd, _file_mode())
    return fd, tmp


@contextmanager
def atomic_writer(uri: str, mode: str = "wb", encoding: str | None = None) -> Iterator[IO[Any]]:
    """Open ``uri`` for writing so that it appears complete or not at all.

    Locally the data goes to a temporary file in the same folder, fsynced, then renamed over the
    final name; a crash at any moment leaves either the old file or the new one, never half of one.
    For buckets it is spooled (memory, then a temporary file) and uploaded in one go on a clean
    exit; an exception inside the block uploads nothing.
    """
    if is_remote(uri):
        be, bucket, key = _remote(uri)
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES, mode="w+b") as spool:
            fh = _text_or_binary(spool, mode, encoding)  # type: ignore[arg-type]
            yield fh
            fh.flush()
            if fh is not spool:
                fh.detach()  # type: ignore[attr-defined]  # keep the spool open
            size = spool.seek(0, io.SEEK_END)
            spool.seek(0)
            be.write(bucket, key, spool, size, if_absent=False)  # type: ignore[arg-type]
        return
    parent = os.path.dirname(os.path.abspath(uri))
    os.makedirs(parent, exist_ok=True)
    fd, tmp = _temp_beside(uri, parent)
    try:
        with os.fdopen(fd, mode, encoding=encoding, newline="" if "b" not in mode else None) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, uri)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_bytes(uri: str, data: bytes) -> None:
    """Write a whole object atomically (replacing any previous one)."""
    if is_remote(uri):
        be, bucket, key = _remote(uri)
        be.write(bucket, key, io.BytesIO(data), len(data), if_absent=False)
        return
    with atomic_writer(uri, "wb") as fh:
        fh.write(data)


def write_text(uri: str, text: str) -> None:
    """Write UTF-8 text atomically."""
    write_bytes(uri, text.encode("utf-8"))


def create_exclusive(uri: str, data: bytes) -> bool:
    """Create ``uri`` with ``data`` only if nothing is there yet; True if created, False if it existed.

    Atomic and race-free: of several writers, exactly one wins. Locally a complete temp file is
    hard-linked to the final name (``link`` fails if the name exists); S3 uses ``If-None-Match: *``
    (on a single PUT or the multipart completion) and GCS ``ifGenerationMatch=0``.
    """
    if is_remote(uri):
        be, bucket, key = _remote(uri)
        return be.write(bucket, key, io.BytesIO(data), len(data), if_absent=True)
    parent = os.path.dirname(os.path.abspath(uri))
    os.makedirs(parent, exist_ok=True)
    fd, tmp = _temp_beside(uri, parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, uri)
        except FileExistsError:
            return False
        except OSError as exc:  # a file system without hard links (some FUSE mounts, SMB)
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            return _create_exclusive_no_link(uri, data)
        return True
    finally:
        os.unlink(tmp)


#: Name prefix of :func:`probe_writable`'s short-lived file.
PROBE_PREFIX = ".kurate-probe-"


def probe_writable(uri: str) -> None:
    """Prove that files can be created (and deleted) in folder ``uri``: create a small one, delete it.

    A missing folder is created for the probe and removed again (with any parents it needed), so the
    probe leaves nothing behind: a folder made here by the submitting user could not be written by
    the user a task's container runs as. Raises what writing there raises: :class:`OSError` locally (not a
    folder, permission denied, read-only file system), :class:`StorageError` in a bucket (access
    denied, no such bucket). A bucket that lets us write but not delete gets a warning naming the
    object left behind (kurate deletes only what it no longer needs, so that is no reason to stop).
    """
    name = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
    if is_remote(uri):
        be, bucket, key = _remote(uri)
        probe = _folder_prefix(key) + name
        be.write(bucket, probe, io.BytesIO(b"kurate"), 6, if_absent=True)
        try:
            be.delete(bucket, probe)
        except StorageError as exc:
            log.warning("could not delete the write probe %s: %s", join(uri, name), exc)
        return
    made: list[str] = []
    folder = os.path.abspath(uri)
    while not os.path.lexists(folder):
        made.append(folder)
        folder = os.path.dirname(folder)
    try:
        os.makedirs(uri, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=name, dir=uri)
        os.close(fd)
        os.unlink(tmp)
    finally:
        for path in made:  # deepest first
            try:
                os.rmdir(path)
            except OSError:
                break


def remove_tree(uri: str) -> None:
    """Delete a file or a whole folder (every object under ``uri/`` in a bucket); absent: no-op.

    Not atomic: callers only remove what nothing refers to any more (an unreferenced datapool state).
    """
    if is_remote(uri):
        be, bucket, key = _remote(uri)
        prefix = _folder_prefix(key)
        for name in list(be.list_keys(bucket, prefix, 1000)) if prefix else []:
            be.delete(bucket, name)
        if key.strip("/"):
            be.delete(bucket, key)
        return
    if os.path.isdir(uri) and not os.path.islink(uri):
        shutil.rmtree(uri, ignore_errors=True)
    else:
        try:
            os.unlink(uri)
        except FileNotFoundError:
            pass


def _create_exclusive_no_link(uri: str, data: bytes) -> bool:
    """O_EXCL create where hard links are unsupported: still exclusive, but a crash can leave it partial."""
    try:
        fd = os.open(uri, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return True
