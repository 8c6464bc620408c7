"""The bucket back-end base: what the S3 and GCS back-ends share, written once.

The interface :mod:`kurate.io.storage` calls, lazy clients, one cached back-end per credential
environment, retried calls with error mapping, the content check behind conditional creates, and how
many objects to read at once. The back-ends import this module, never the storage front.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, BinaryIO, ClassVar, TypeVar

from kurate.errors import StorageError
from kurate.io import retry

T = TypeVar("T")
B = TypeVar("B", bound="Backend")

#: Objects read concurrently per process from a bucket (``KURATE_STORAGE_READ_THREADS`` overrides).
DEFAULT_READ_THREADS = 16

_lock = threading.Lock()
_backends: dict[tuple[Any, ...], Backend] = {}


def read_threads() -> int:
    """How many bucket objects to read at once: ``KURATE_STORAGE_READ_THREADS`` (default 16)."""
    raw = os.environ.get("KURATE_STORAGE_READ_THREADS", "")
    try:
        return max(1, int(raw)) if raw else DEFAULT_READ_THREADS
    except ValueError:
        raise StorageError(f"KURATE_STORAGE_READ_THREADS={raw!r} is not an integer") from None


def cached(cls: type[B], env_keys: Sequence[str]) -> B:
    """The ``cls`` back-end for this process and credential environment (created on first use).

    A forked worker or a changed credential environment gets a new one: clients are neither
    fork-safe nor re-read their configuration.
    """
    key = (cls, os.getpid(), *(os.environ.get(k) for k in env_keys))
    be = _backends.get(key)
    if be is None:
        with _lock:
            be = _backends.get(key)
            if be is None:
                be = _backends[key] = cls()
    return be  # type: ignore[return-value]


class UnreadableObjectError(OSError):
    """One object cannot be read for a reason of its own (S3: archived in Glacier), not the store's.

    An :class:`OSError`, so a listed input in that state is reported corrupt with the reason (like
    a file that disappeared), while access denied or a missing bucket stay fatal.
    """

    def __init__(self, uri: str, reason: str) -> None:
        super().__init__(0, reason, uri)


def verb(op: str) -> str:
    """What an operation does to a location, for messages ("read", "write", "list", "delete")."""
    first = op.split(" ", 1)[0]
    if first in ("GET", "HEAD"):
        return "read"
    if first == "LIST":
        return "list"
    if first == "DELETE":
        return "delete"
    return "write"


class Backend:
    """Base of a bucket back-end: subclasses make the client and classify its errors."""

    #: Shown in retry logs ("S3", "GCS").
    LABEL: ClassVar[str] = ""
    #: Exceptions that already follow kurate.io.storage's contract and pass through unmapped.
    PASSTHROUGH: ClassVar[tuple[type[BaseException], ...]] = ()

    def __init__(self) -> None:
        self._clients: dict[Any, Any] = {}
        self._client_lock = threading.Lock()

    @property
    def client(self) -> Any:
        """The library client, made on first use (nothing connects at import or construction).

        One per :meth:`_client_key` (a back-end whose timeouts are client settings keeps one client
        for the run's timeouts and one for the start checks').
        """
        key = self._client_key()
        client = self._clients.get(key)
        if client is None:
            with self._client_lock:
                client = self._clients.get(key)
                if client is None:
                    client = self._clients[key] = self._make_client()
        return client

    def _client_key(self) -> Any:
        return None

    def _make_client(self) -> Any:
        raise NotImplementedError

    @property
    def endpoint(self) -> str:
        """Where requests go (named in errors: a dead endpoint is told by its address)."""
        raise NotImplementedError

    def _classify(self, uri: str, exc: BaseException, op: str = "") -> BaseException:
        """The exception of kurate.io.storage's contract for ``exc``, raised by ``op`` on ``uri``."""
        raise NotImplementedError

    # The interface kurate.io.storage calls (keys are full object names inside ``bucket``).

    def read(self, bucket: str, key: str) -> bytes:
        """The object's bytes (FileNotFoundError when it is missing)."""
        raise NotImplementedError

    def download(self, bucket: str, key: str, fh: BinaryIO) -> None:
        """Stream the object into ``fh`` (rewound and truncated on retries)."""
        raise NotImplementedError

    def write(self, bucket: str, key: str, fh: BinaryIO, size: int, *, if_absent: bool) -> bool:
        """Upload ``size`` bytes of ``fh`` (at 0) atomically; False if ``if_absent`` and it exists."""
        raise NotImplementedError

    def exists(self, bucket: str, key: str) -> bool:
        """True if the object exists."""
        raise NotImplementedError

    def any_under(self, bucket: str, prefix: str) -> bool:
        """True if at least one object's name starts with ``prefix`` (StorageError if no such bucket)."""
        raise NotImplementedError

    def list_keys(self, bucket: str, prefix: str, page_size: int) -> Iterator[str]:
        """Full names of the objects under ``prefix``, page by page."""
        raise NotImplementedError

    def delete(self, bucket: str, key: str) -> None:
        """Delete the object; no error if it is already absent."""
        raise NotImplementedError

    def _call(self, uri: str, what: str, fn: Callable[[], T]) -> T:
        """Run one operation with error mapping and retries (kurate.io.retry)."""

        def attempt() -> T:
            try:
                return fn()
            except self.PASSTHROUGH:
                raise
            except Exception as exc:  # noqa: BLE001 - classified below
                mapped = self._classify(uri, exc, what)
                if mapped is exc:
                    raise
                raise mapped from exc

        return retry.call(f"{uri}: {self.LABEL} {what} at {self.endpoint}", attempt)

    def _same_content(self, bucket: str, key: str, fh: BinaryIO) -> bool:
        """Whether the stored object holds ``fh``'s bytes (a retried create whose first answer was lost)."""
        fh.seek(0)
        ours = hashlib.md5(usedforsecurity=False)
        for block in iter(lambda: fh.read(1024 * 1024), b""):
            ours.update(block)
        try:
            theirs = self.read(bucket, key)
        except FileNotFoundError:
            return False
        return ours.digest() == hashlib.md5(theirs, usedforsecurity=False).digest()
