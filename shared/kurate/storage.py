"""Storage behind one small interface, addressed by URI, so no phase special-cases a scheme.

Only local paths are implemented here; `s3://` and `gs://` back-ends plug in behind
:func:`open_location` without the phases changing.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from kurate.errors import StorageError

REMOTE_SCHEMES = ("s3://", "gs://")


def is_remote(uri: str) -> bool:
    """True for bucket URIs (s3://, gs://)."""
    return uri.startswith(REMOTE_SCHEMES)


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


def _check_local(uri: str) -> None:
    if is_remote(uri):
        raise StorageError(f"{uri}: bucket storage (s3://, gs://) is not supported yet in this version")


def read_bytes(uri: str) -> bytes:
    """Read a whole object."""
    _check_local(uri)
    with open(uri, "rb") as fh:
        return fh.read()


def exists(uri: str) -> bool:
    """True if the object or folder exists."""
    _check_local(uri)
    return os.path.exists(uri)


def makedirs(uri: str) -> None:
    """Create a folder (no-op on object stores)."""
    _check_local(uri)
    os.makedirs(uri, exist_ok=True)


@contextmanager
def atomic_writer(uri: str, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """Open ``uri`` for writing so that it appears complete or not at all.

    The data goes to a temporary file in the same folder, fsynced, then renamed over the final
    name; a crash at any moment leaves either the old file or the new one, never half of one.
    """
    _check_local(uri)
    parent = os.path.dirname(os.path.abspath(uri))
    os.makedirs(parent, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix="-" + os.path.basename(uri)[:40], dir=parent)
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
    """Write a whole object atomically."""
    with atomic_writer(uri, "wb") as fh:
        fh.write(data)


def write_text(uri: str, text: str) -> None:
    """Write UTF-8 text atomically."""
    write_bytes(uri, text.encode("utf-8"))


def read_text(uri: str) -> str:
    """Read UTF-8 text."""
    return read_bytes(uri).decode("utf-8")


def list_files(root: str) -> Iterator[str]:
    """Yield every file under ``root`` as a '/'-separated path relative to it, in no particular order.

    Streams (os.scandir), so a folder of millions of files is never held twice in memory. Symlinked
    folders are not followed (no cycles); symlinked files are listed.
    """
    _check_local(root)
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
    """The local path of a local URI (errors for buckets)."""
    _check_local(uri)
    return Path(uri)
