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
  Locally, an entry that is not a regular file (FIFO, socket, device, a symlink loop or a dangling
  link) or whose name is not UTF-8 is never listed (``on_skip`` hears why) and never opened: reads
  open without blocking and refuse anything but a regular file.
- Every write is a crash point (:mod:`kurate.io.crash`): :func:`atomic_writer`, :func:`write_bytes`,
  :func:`create_exclusive` and :func:`remove_tree` call :func:`kurate.io.crash.point` just before the
  change becomes visible, so a write site needs no registration to be walked by the crash tests.
- Local temp files are named ``.tmp-<host>-<pid>-<random>-<name>``: :func:`remove_stale_temps` removes
  those of processes that are gone (a killed writer's), never a live writer's.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import io
import logging
import os
import re
import shutil
import socket
import stat
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from kurate.errors import StorageError
from kurate.io import crash, remote, retry

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


_KINDS = {
    stat.S_IFIFO: "FIFO",
    stat.S_IFSOCK: "socket",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
    stat.S_IFDIR: "folder",
}


def _kind(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "special file")


def read_bytes(uri: str) -> bytes:
    """Read a whole object (FileNotFoundError if it does not exist).

    A local path is opened without blocking and must be a regular file: a FIFO, socket or device is
    an OSError at once ("not a regular file (FIFO)"), never a read that waits or never ends.
    """
    if is_remote(uri):
        be, bucket, key = _remote(uri)
        return be.read(bucket, key)
    try:
        fd = os.open(uri, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno != errno.ENXIO:  # ENXIO: a socket (or a device without its driver)
            raise
        raise OSError(errno.EINVAL, f"not a regular file ({_kind(os.stat(uri).st_mode)})", uri) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            code = errno.EISDIR if stat.S_ISDIR(mode) else errno.EINVAL
            raise OSError(code, f"not a regular file ({_kind(mode)})", uri)
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb") as fh:
            fd = -1
            return fh.read()
    finally:
        if fd >= 0:
            os.close(fd)


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


def printable_name(name: str) -> str:
    r"""A name as it can be shown and stored: bytes that are not UTF-8 and control characters escaped.

    A Latin-1 ``café.png`` (its bytes read with surrogateescape) shows as ``café.png``.
    """
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _not_a_file(path: str, entry: os.DirEntry[str]) -> str:
    """Why a listed entry that is neither a folder nor a regular file is skipped."""
    try:
        if entry.is_symlink():
            try:
                os.stat(path)
            except FileNotFoundError:
                return "dangling symbolic link (its target does not exist)"
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    return "symbolic link loop"
                return f"cannot follow the symbolic link ({exc.strerror})"
            target = os.stat(path).st_mode
            if stat.S_ISDIR(target):
                return ""  # a symlinked folder: not followed (no cycles), not an odd entry
            return f"not a regular file ({_kind(target)}, through a symbolic link)"
        return f"not a regular file ({_kind(entry.stat(follow_symlinks=False).st_mode)})"
    except OSError as exc:
        return f"cannot inspect it ({exc.strerror})"


def list_files(
    root: str, page_size: int = 1000, on_skip: Callable[[str, str], None] | None = None
) -> Iterator[str]:
    """Yield every file under ``root`` as a '/'-separated path relative to it, in no particular order.

    Streams: local folders with os.scandir, buckets page by page (``page_size`` names per request;
    S3 returns at most 1000), so millions of files are never held twice in memory. Locally,
    symlinked folders are not followed (no cycles) and symlinked files are listed. In buckets,
    "folder marker" objects (names ending in '/') are skipped.

    Locally, entries that cannot be samples are skipped and ``on_skip(name, reason)`` is told (the
    name as :func:`printable_name` shows it): a name that is not UTF-8, a FIFO, socket or device
    (never opened), a symlink loop or a dangling link, a subfolder that cannot be listed.
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

    def skip(name: str, reason: str) -> None:
        if on_skip is not None and reason:
            on_skip(printable_name(name), reason)

    stack = [""]
    while stack:
        rel = stack.pop()
        path = os.path.join(root, rel) if rel else root
        try:
            it = os.scandir(path)
        except OSError as exc:
            if not rel:
                raise StorageError(f"{path}: cannot list the folder ({exc.strerror})") from exc
            skip(rel + "/", f"cannot list this folder ({exc.strerror})")
            continue
        with it:
            for entry in it:
                name = f"{rel}/{entry.name}" if rel else entry.name
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(name)
                        continue
                    regular = entry.is_file()
                except OSError as exc:
                    skip(
                        name,
                        "symbolic link loop"
                        if exc.errno == errno.ELOOP
                        else f"cannot inspect it ({exc.strerror})",
                    )
                    continue
                if not regular:
                    skip(name, _not_a_file(entry.path, entry))
                    continue
                try:
                    name.encode("utf-8")
                except UnicodeEncodeError:
                    skip(name, "the file name is not valid UTF-8 (rename the file)")
                    continue
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


#: This machine, short, in temp-file names (a folder shared between hosts must not confuse their pids).
HOST_TAG = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]
TEMP_PREFIX = ".tmp-"
_TEMP_NAME = re.compile(r"\.tmp-([0-9a-f]{6})-(\d+)-")


def _temp_beside(uri: str, parent: str) -> tuple[int, str]:
    """A temp file beside ``uri`` (same file system: the rename is atomic), with normal permissions.

    Named ``.tmp-<host>-<pid>-<random>-<name>`` so that :func:`remove_stale_temps` can tell a killed
    writer's leftover from a live writer's file.
    """
    fd, tmp = tempfile.mkstemp(
        prefix=f"{TEMP_PREFIX}{HOST_TAG}-{os.getpid()}-", suffix="-" + os.path.basename(uri)[:40], dir=parent
    )
    os.fchmod(fd, _file_mode())
    return fd, tmp


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host still runs: it exists and is not a zombie.

    A process killed but not yet reaped by its parent (or init) writes nothing any more.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in (b"Z", b"X")


def is_temp_name(name: str) -> bool:
    """Whether a file name is one of :func:`atomic_writer`'s temp files (never a result)."""
    return name.startswith(TEMP_PREFIX)


def remove_stale_temps(
    folder: str, recursive: bool = False, any_owner: bool = False, skip: Iterable[str] = ()
) -> int:
    """Remove the temp files a killed writer left in a local ``folder``; returns how many.

    A temp file of a live process on this host, or of another host, is left alone unless
    ``any_owner`` (the caller holds the folder exclusively: nothing else writes there). ``skip``:
    subfolders of ``folder`` not to enter. Buckets have no temp objects (every write is one PUT),
    so this is a no-op for them.
    """
    if is_remote(folder) or not os.path.isdir(folder):
        return 0
    removed = 0
    skipped = set(skip)
    walk = os.walk(folder) if recursive else [(folder, [], os.listdir(folder))]
    for dirpath, dirnames, filenames in walk:
        if dirpath == folder:
            dirnames[:] = [d for d in dirnames if d not in skipped]
        for name in filenames:
            if not is_temp_name(name):
                continue
            m = _TEMP_NAME.match(name)
            if not any_owner and (m is None or m.group(1) != HOST_TAG or pid_alive(int(m.group(2)))):
                continue
            try:
                os.unlink(os.path.join(dirpath, name))
                removed += 1
            except FileNotFoundError:
                pass
    return removed


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
            crash.point(uri)
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
        crash.point(uri)
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
        crash.point(uri)
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
        crash.point(uri)
        return be.write(bucket, key, io.BytesIO(data), len(data), if_absent=True)
    parent = os.path.dirname(os.path.abspath(uri))
    os.makedirs(parent, exist_ok=True)
    fd, tmp = _temp_beside(uri, parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        crash.point(uri)
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
        for attempt in range(20):
            try:
                os.makedirs(uri, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=name, dir=uri)
            except (FileNotFoundError, FileExistsError):  # a concurrent probe removed a folder it made
                if attempt == 19:
                    raise
                time.sleep(0.01 * (attempt + 1))
                continue
            os.close(fd)
            os.unlink(tmp)
            break
    finally:
        for path in made:  # deepest first
            try:
                os.rmdir(path)
            except OSError:
                break


def remove_tree(uri: str) -> None:
    """Delete a file or a whole folder (every object under ``uri/`` in a bucket); absent: no-op.

    Not atomic: callers only remove what nothing refers to any more (an unreferenced datapool state).
    A crash point (before anything is removed) when there is something to remove.
    """
    if is_remote(uri) or os.path.lexists(uri):
        crash.point(uri)
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
