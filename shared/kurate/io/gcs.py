"""The GCS back-end of :mod:`kurate.io.storage` (google-cloud-storage).

Credentials come from application default credentials: ``GOOGLE_APPLICATION_CREDENTIALS``,
``gcloud auth application-default login``, or workload identity / the node's service account in
the cluster. ``STORAGE_EMULATOR_HOST`` points the client at an emulator (anonymous). The project is
``GOOGLE_CLOUD_PROJECT`` if set, else whatever ADC says (reading objects needs none).

The library's own retries are switched off (``retry=None``): :mod:`kurate.io.retry` retries whole
operations, so attempts don't multiply and a stream that drops mid-download starts over.
"""

from __future__ import annotations

import http.client
import logging
import mimetypes
import os
from collections.abc import Iterator
from functools import partial
from typing import Any, BinaryIO, TypeVar

from kurate.errors import StorageError
from kurate.io import remote, retry

log = logging.getLogger("kurate.io.storage")

T = TypeVar("T")

_ENV_KEYS = (
    "STORAGE_EMULATOR_HOST",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_CLOUD_PROJECT",
    "GCLOUD_PROJECT",
    "CLOUDSDK_CONFIG",
)
_CREDENTIAL_HINT = (
    "set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file, run `gcloud auth "
    "application-default login`, or use workload identity in the cluster"
)


def _timeout() -> tuple[float, float]:
    """(connect, read) seconds for a request made now (kurate.io.retry: the run's or the start checks')."""
    return retry.timeouts().pair()


def _credentials_error(uri: str, exc: BaseException) -> StorageError:
    """What is wrong with the application default credentials, said plainly.

    A key file named by ``GOOGLE_APPLICATION_CREDENTIALS`` that is missing or malformed is said to be
    so, instead of "no credentials found".
    """
    path = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS", "")
    if not path:
        return StorageError(f"{uri}: no Google credentials found ({exc}); {_CREDENTIAL_HINT}")
    if not os.path.exists(path):
        return StorageError(f"{uri}: GOOGLE_APPLICATION_CREDENTIALS={path}: no such file; {_CREDENTIAL_HINT}")
    why = ": ".join(str(a) for a in getattr(exc, "args", ()) if str(a)) or str(exc)
    return StorageError(
        f"{uri}: GOOGLE_APPLICATION_CREDENTIALS={path}: not a usable service-account key file "
        f"({why.splitlines()[0] if why else type(exc).__name__}); create a new key (JSON) or use "
        f"workload identity"
    )


def backend() -> GCSBackend:
    """The back-end for this process and credential environment (created on first use)."""
    return remote.cached(GCSBackend, _ENV_KEYS)


class _PreconditionFailed(Exception):
    """412 on a conditional write: the object already exists."""


class _NotFound(Exception):
    """404: the object or the bucket is missing (told apart by the caller)."""


class GCSBackend(remote.Backend):
    """google-cloud-storage client plus the error mapping of :mod:`kurate.io.storage`'s contract."""

    LABEL = "GCS"
    PASSTHROUGH = (StorageError, retry.TransientError, _NotFound, _PreconditionFailed)

    def __init__(self) -> None:
        super().__init__()
        self._buckets_seen: set[str] = set()

    # ----------------------------------------------------------------- plumbing

    def _make_client(self) -> Any:
        import google.auth.exceptions as gae
        import requests.adapters
        from google.cloud import storage as gcs

        project = os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("GCLOUD_PROJECT")
        try:
            client = gcs.Client(project=project) if project else gcs.Client()
        except gae.DefaultCredentialsError as exc:
            raise _credentials_error("gs://", exc) from exc
        except Exception as exc:  # noqa: BLE001 - any failure to build the client is systemic
            raise StorageError(
                f"gs://: cannot create the storage client: {type(exc).__name__}: {exc}"
            ) from exc
        # One connection per reading thread (requests keeps 10 by default and drops the rest).
        size = 2 * max(remote.DEFAULT_READ_THREADS, remote.read_threads())
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=size)
        client._http.mount("https://", adapter)
        client._http.mount("http://", adapter)
        return client

    @property
    def endpoint(self) -> str:
        """The API endpoint requests go to (the emulator's or a custom one when set)."""
        return str(self.client.api_endpoint)

    def _classify(self, uri: str, exc: BaseException, op: str = "") -> BaseException:
        """Map a library/HTTP exception to _NotFound, _PreconditionFailed, TransientError or StorageError."""
        import google.auth.exceptions as gae
        import requests.exceptions as rqe
        from google.api_core import exceptions as gax
        from google.cloud.storage.exceptions import DataCorruption
        from urllib3 import exceptions as ue

        if isinstance(exc, gax.NotFound):
            return _NotFound(uri)
        if isinstance(exc, gax.PreconditionFailed):
            return _PreconditionFailed(uri)
        if isinstance(exc, gax.Unauthorized):
            return StorageError(
                f"{uri}: the Google credentials in use were not accepted (HTTP 401: {exc.message}); "
                f"{_CREDENTIAL_HINT}"
            )
        if isinstance(exc, gax.Forbidden):
            return StorageError(
                f"{uri}: access denied (HTTP {exc.code}: {exc.message}): the credentials in use "
                f"(ADC / workload identity) may not {remote.verb(op)} here; check the bucket IAM permissions"
            )
        if isinstance(exc, gax.GoogleAPICallError) and ((exc.code or 0) >= 500 or exc.code in (408, 429)):
            return retry.TransientError(f"HTTP {exc.code}: {exc.message}")
        if isinstance(exc, gax.GoogleAPICallError):
            return StorageError(f"{uri}: GCS error HTTP {exc.code}: {exc.message}")
        if isinstance(exc, gae.DefaultCredentialsError):
            return _credentials_error(uri, exc)
        if isinstance(exc, gae.RefreshError) and not getattr(exc, "retryable", False):
            return StorageError(f"{uri}: Google credentials were refused ({exc}); {_CREDENTIAL_HINT}")
        if isinstance(exc, rqe.SSLError):
            return StorageError(f"{uri}: TLS error talking to GCS: {exc}")
        if isinstance(exc, rqe.Timeout | ue.TimeoutError | TimeoutError):
            return retry.TransientError(f"{type(exc).__name__}: {str(exc)[:300]}", timed_out=True)
        transient = (
            rqe.ConnectionError,
            rqe.Timeout,
            rqe.ChunkedEncodingError,
            rqe.ContentDecodingError,
            ue.HTTPError,
            http.client.HTTPException,
            DataCorruption,
            gae.TransportError,
            gae.RefreshError,
            ConnectionError,
            TimeoutError,
        )
        if isinstance(exc, transient):
            return retry.TransientError(f"{type(exc).__name__}: {str(exc)[:300]}")
        return exc

    def _missing(self, bucket: str, uri: str) -> BaseException:
        """A 404 on an object: FileNotFoundError, or StorageError if the bucket itself is missing."""
        if bucket not in self._buckets_seen:
            # objects.list, not buckets.get: object-level roles (objectViewer) may not read bucket metadata.
            try:
                self._call(f"gs://{bucket}", "LIST", lambda: self._page(bucket, "", 1, None))
            except _NotFound:
                return StorageError(f"gs://{bucket}: no such bucket")
            self._buckets_seen.add(bucket)
        return FileNotFoundError(2, "no such object", uri)

    # ----------------------------------------------------------------- operations

    def read(self, bucket: str, key: str) -> bytes:
        """The object's bytes."""
        uri = f"gs://{bucket}/{key}"
        blob = self.client.bucket(bucket).blob(key)
        try:
            return bytes(
                self._call(uri, "GET", lambda: blob.download_as_bytes(retry=None, timeout=_timeout()))
            )
        except _NotFound:
            raise self._missing(bucket, uri) from None

    def download(self, bucket: str, key: str, fh: BinaryIO) -> None:
        """Stream the object into ``fh``."""
        uri = f"gs://{bucket}/{key}"
        blob = self.client.bucket(bucket).blob(key)

        def get() -> None:
            fh.seek(0)
            fh.truncate()
            blob.download_to_file(fh, retry=None, timeout=_timeout())
            fh.flush()

        try:
            self._call(uri, "GET", get)
        except _NotFound:
            raise self._missing(bucket, uri) from None

    def exists(self, bucket: str, key: str) -> bool:
        """GET the object's metadata (False for 404; the bucket is checked by :meth:`any_under`)."""
        uri = f"gs://{bucket}/{key}"
        blob = self.client.bucket(bucket).blob(key)

        def head() -> bool:
            blob.reload(retry=None, timeout=_timeout(), projection="noAcl")
            return True

        try:
            return self._call(uri, "HEAD", head)
        except _NotFound:
            return False

    def delete(self, bucket: str, key: str) -> None:
        """Delete the object (absent already: nothing to do)."""
        uri = f"gs://{bucket}/{key}"
        blob = self.client.bucket(bucket).blob(key)
        try:
            self._call(uri, "DELETE", lambda: blob.delete(retry=None, timeout=_timeout()))
        except _NotFound:
            pass

    def _page(
        self, bucket: str, prefix: str, page_size: int, token: str | None
    ) -> tuple[list[str], str | None]:
        it = self.client.list_blobs(
            bucket,
            prefix=prefix or None,
            page_size=int(page_size),
            page_token=token,
            retry=None,
            timeout=_timeout(),
            fields="items(name),nextPageToken",
        )
        page = next(it.pages, None)
        names = [b.name for b in page] if page is not None else []
        return names, it.next_page_token

    def any_under(self, bucket: str, prefix: str) -> bool:
        """One-name listing (404 → no such bucket)."""
        uri = f"gs://{bucket}/{prefix}"
        try:
            names, _ = self._call(uri, "LIST", lambda: self._page(bucket, prefix, 1, None))
        except _NotFound:
            raise StorageError(f"gs://{bucket}: no such bucket") from None
        self._buckets_seen.add(bucket)
        return bool(names)

    def list_keys(self, bucket: str, prefix: str, page_size: int) -> Iterator[str]:
        """objects.list page by page (each page retried on its own), yielding names as they arrive."""
        uri = f"gs://{bucket}/{prefix}"
        token: str | None = None
        pages = 0
        while True:
            try:
                names, token = self._call(
                    uri, f"LIST (page {pages + 1})", partial(self._page, bucket, prefix, page_size, token)
                )
            except _NotFound:
                raise StorageError(f"gs://{bucket}: no such bucket") from None
            pages += 1
            yield from names
            if not token:
                break
        log.debug("listed %s in %d page(s)", uri, pages)

    def write(self, bucket: str, key: str, fh: BinaryIO, size: int, *, if_absent: bool) -> bool:
        """One upload (the library picks multipart or resumable; either appears only when complete).

        ``if_absent`` sets ``ifGenerationMatch=0``. As on S3, a 412 after an attempt that failed in
        transit is checked against the stored bytes (it may be our own first attempt).
        """
        uri = f"gs://{bucket}/{key}"
        blob = self.client.bucket(bucket).blob(key)
        content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
        tried = [0]

        def put() -> None:
            tried[0] += 1
            fh.seek(0)
            blob.upload_from_file(
                fh,
                size=size,
                content_type=content_type,
                if_generation_match=0 if if_absent else None,
                retry=None,
                timeout=_timeout(),
            )

        try:
            self._call(uri, "PUT", put)
            return True
        except _PreconditionFailed:
            return tried[0] > 1 and self._same_content(bucket, key, fh)
        except _NotFound:
            raise StorageError(f"gs://{bucket}: no such bucket") from None
