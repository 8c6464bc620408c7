"""The S3 back-end of :mod:`kurate.io.storage` (boto3), for AWS and S3-compatible stores.

Credentials, profile, region and endpoint come from boto3's standard chain: environment
(``AWS_ACCESS_KEY_ID``..., ``AWS_PROFILE``, ``AWS_REGION``/``AWS_DEFAULT_REGION``,
``AWS_ENDPOINT_URL``/``AWS_ENDPOINT_URL_S3``), ``~/.aws/config`` and ``credentials``, web identity
(IRSA on EKS), container and instance roles. kurate never takes credentials as parameters.

boto3's own retries are switched off: :mod:`kurate.io.retry` retries whole operations (including a
body that drops mid-read, which botocore does not retry), so attempts don't multiply.
"""

from __future__ import annotations

import http.client
import logging
import mimetypes
from collections.abc import Iterator
from functools import partial
from typing import Any, BinaryIO, TypeVar

from kurate.errors import StorageError
from kurate.io import remote, retry

log = logging.getLogger("kurate.io.storage")

T = TypeVar("T")

#: Objects up to this size are one PUT; larger ones a multipart upload (visible only once completed).
MULTIPART_THRESHOLD = 64 * 1024 * 1024
#: Part size of multipart uploads (S3: 5 MiB minimum except the last part, 10,000 parts maximum).
PART_SIZE = 16 * 1024 * 1024

#: Environment that changes which client we need (a new one is made when any of these changes).
_ENV_KEYS = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
)
_ACCESS_CODES = {
    "AccessDenied",
    "AllAccessDisabled",
    "AccountProblem",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "InvalidSecurity",
    "UnauthorizedAccess",
    "403",
}
_TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequests",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
    "ConditionalRequestConflict",  # a concurrent conditional write: retry decides who won
    "OperationAborted",
}
#: 403 codes that say what is wrong with the credentials themselves (not with their permissions).
_CREDENTIAL_CAUSES = {
    "InvalidAccessKeyId": "the access key id in use is not known to this store ({code}: {msg}); check "
    "AWS_ACCESS_KEY_ID or the profile in use (AWS_PROFILE) and AWS_ENDPOINT_URL",
    "SignatureDoesNotMatch": "the secret access key does not match the access key id ({code}); check "
    "AWS_SECRET_ACCESS_KEY or the profile in use (AWS_PROFILE)",
    "ExpiredToken": "the session token has expired ({code}: {msg}); refresh the credentials",
    "TokenRefreshRequired": "the session token has expired ({code}: {msg}); refresh the credentials",
    "InvalidToken": "the session token is not valid ({code}: {msg}); check AWS_SESSION_TOKEN",
    "RequestTimeTooSkewed": "this machine's clock is too far from the store's ({code}: {msg}); fix the clock",
}
_CREDENTIAL_HINT = (
    "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE, or give the pod an IAM role "
    "(IRSA / instance profile)"
)


def backend() -> S3Backend:
    """The back-end for this process and credential environment (created on first use)."""
    return remote.cached(S3Backend, _ENV_KEYS)


def _content_type(key: str) -> str:
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


class _PreconditionFailed(Exception):
    """412 on a conditional write: the object already exists."""


class _BodylessDenial(Exception):
    """403 without an error code (a HEAD answer has no body): the cause needs asking again."""


class S3Backend(remote.Backend):
    """boto3 client plus the error mapping of :mod:`kurate.io.storage`'s contract."""

    LABEL = "S3"
    PASSTHROUGH = (
        FileNotFoundError,
        StorageError,
        _PreconditionFailed,
        _BodylessDenial,
        remote.UnreadableObjectError,
        retry.TransientError,
    )

    # ----------------------------------------------------------------- plumbing

    def _make_client(self) -> Any:
        import boto3
        from botocore.config import Config

        threads = max(remote.DEFAULT_READ_THREADS, remote.read_threads())
        timeouts = retry.timeouts()
        config = Config(
            retries={"mode": "standard", "total_max_attempts": 1},
            max_pool_connections=2 * threads,
            connect_timeout=timeouts.connect_s,
            read_timeout=timeouts.read_s,
        )
        try:
            return boto3.session.Session().client("s3", config=config)
        except Exception as exc:  # noqa: BLE001 - profile/region/config problems: all systemic
            raise self._systemic("s3://", exc) from exc

    def _client_key(self) -> Any:
        return retry.timeouts()  # botocore takes timeouts per client: one for the start checks

    @property
    def endpoint(self) -> str:
        """The API endpoint requests go to (the emulator's or a custom one when set)."""
        return str(self.client.meta.endpoint_url)

    def _systemic(self, uri: str, exc: BaseException) -> StorageError:
        from botocore import exceptions as be

        if isinstance(exc, be.NoCredentialsError | be.PartialCredentialsError):
            return StorageError(f"{uri}: no usable AWS credentials found; {_CREDENTIAL_HINT}")
        if isinstance(exc, be.ProfileNotFound):
            return StorageError(f"{uri}: AWS profile not found ({exc}); check AWS_PROFILE and ~/.aws/config")
        if isinstance(exc, be.CredentialRetrievalError):
            return StorageError(f"{uri}: could not obtain AWS credentials ({exc}); {_CREDENTIAL_HINT}")
        return StorageError(f"{uri}: {type(exc).__name__}: {exc}")

    def _classify(self, uri: str, exc: BaseException, op: str = "") -> BaseException:
        """Map a boto3/HTTP error to FileNotFoundError, _PreconditionFailed, TransientError, StorageError."""
        from botocore import exceptions as be
        from urllib3 import exceptions as ue

        if isinstance(exc, be.ClientError):
            err = exc.response.get("Error", {}) or {}
            code = str(err.get("Code", ""))
            msg = str(err.get("Message", "")) or code
            status = int((exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
            if code == "NoSuchBucket":
                bucket = uri.split("://", 1)[-1].split("/", 1)[0]
                return StorageError(f"s3://{bucket}: no such bucket ({msg})")
            if code in ("NoSuchKey", "404", "NotFound") or status == 404:
                return FileNotFoundError(2, "no such object", uri)
            if code == "InvalidObjectState":  # archived (Glacier): this object's matter, not the store's
                return remote.UnreadableObjectError(
                    uri, f"object is archived ({code}: {msg}); restore it (S3 RestoreObject) to read it"
                )
            if code in _CREDENTIAL_CAUSES:
                return StorageError(f"{uri}: " + _CREDENTIAL_CAUSES[code].format(code=code, msg=msg))
            if status == 403 and code in ("403", "Forbidden") and op.startswith("HEAD"):
                return _BodylessDenial(uri)
            if code in _ACCESS_CODES or status in (401, 403):
                return StorageError(
                    f"{uri}: access denied ({code}: {msg}): the credentials in use may not "
                    f"{remote.verb(op)} here, or the bucket does not exist; check the bucket name, its "
                    f"policy and the IAM permissions"
                )
            if code == "PreconditionFailed" or status == 412:
                return _PreconditionFailed(uri)
            if code in _TRANSIENT_CODES or status == 429 or status >= 500:
                return retry.TransientError(f"{code or status}: {msg}")
            return StorageError(f"{uri}: S3 error {code} (HTTP {status}): {msg}")
        if isinstance(exc, be.SSLError):
            return StorageError(f"{uri}: TLS error talking to S3: {exc}")
        if isinstance(
            exc,
            be.NoCredentialsError
            | be.PartialCredentialsError
            | be.ProfileNotFound
            | be.CredentialRetrievalError,
        ):
            return self._systemic(uri, exc)
        if isinstance(exc, be.ConnectTimeoutError | be.ReadTimeoutError | ue.TimeoutError | TimeoutError):
            return retry.TransientError(f"{type(exc).__name__}: {exc}", timed_out=True)
        transient = (
            be.ConnectionError,
            be.HTTPClientError,
            be.IncompleteReadError,
            ue.HTTPError,
            http.client.HTTPException,
            ConnectionError,
            TimeoutError,
        )
        if isinstance(exc, transient):
            return retry.TransientError(f"{type(exc).__name__}: {exc}")
        if isinstance(exc, be.BotoCoreError):
            return StorageError(f"{uri}: {type(exc).__name__}: {exc}")
        return exc

    # ----------------------------------------------------------------- operations

    def read(self, bucket: str, key: str) -> bytes:
        """The object's bytes (the body read is retried too: a dropped stream starts over)."""
        uri = f"s3://{bucket}/{key}"

        def get() -> bytes:
            body = self.client.get_object(Bucket=bucket, Key=key)["Body"]
            try:
                return bytes(body.read())
            finally:
                body.close()

        return self._call(uri, "GET", get)

    def download(self, bucket: str, key: str, fh: BinaryIO) -> None:
        """Stream the object into ``fh`` in 1 MiB chunks."""
        uri = f"s3://{bucket}/{key}"

        def get() -> None:
            fh.seek(0)
            fh.truncate()
            body = self.client.get_object(Bucket=bucket, Key=key)["Body"]
            try:
                for chunk in body.iter_chunks(1024 * 1024):
                    fh.write(chunk)
            finally:
                body.close()
            fh.flush()

        self._call(uri, "GET", get)

    def exists(self, bucket: str, key: str) -> bool:
        """HEAD the object."""
        uri = f"s3://{bucket}/{key}"

        def head() -> bool:
            self.client.head_object(Bucket=bucket, Key=key)
            return True

        try:
            return self._call(uri, "HEAD", head)
        except FileNotFoundError:
            return False
        except _BodylessDenial:  # an unknown key, a wrong secret, a bucket we may not see: ask again
            return self._first_byte(bucket, key)

    def _first_byte(self, bucket: str, key: str) -> bool:
        """GET the object's first byte: True if it exists; its error (with a code) says why not."""
        from botocore.exceptions import ClientError

        uri = f"s3://{bucket}/{key}"

        def get() -> bool:
            try:
                self.client.get_object(Bucket=bucket, Key=key, Range="bytes=0-0")["Body"].close()
            except ClientError as exc:
                if (exc.response.get("Error") or {}).get("Code") != "InvalidRange":  # empty: it exists
                    raise
            return True

        try:
            return self._call(uri, "GET", get)
        except FileNotFoundError:
            return False

    def delete(self, bucket: str, key: str) -> None:
        """DELETE the object (absent already: nothing to do; S3 answers 204 either way)."""
        uri = f"s3://{bucket}/{key}"
        self._call(uri, "DELETE", lambda: self.client.delete_object(Bucket=bucket, Key=key))

    def any_under(self, bucket: str, prefix: str) -> bool:
        """One-key listing (NoSuchBucket → StorageError)."""
        uri = f"s3://{bucket}/{prefix}"
        resp = self._call(
            uri, "LIST", lambda: self.client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
        )
        return bool(resp.get("KeyCount") or resp.get("Contents"))

    def list_keys(self, bucket: str, prefix: str, page_size: int) -> Iterator[str]:
        """ListObjectsV2 page by page (each page retried on its own), yielding names as they arrive."""
        uri = f"s3://{bucket}/{prefix}"
        token: str | None = None
        pages = 0
        while True:
            kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": int(page_size)}
            if token:
                kwargs["ContinuationToken"] = token
            resp = self._call(uri, f"LIST (page {pages + 1})", partial(self.client.list_objects_v2, **kwargs))
            pages += 1
            for obj in resp.get("Contents") or ():
                yield str(obj["Key"])
            token = resp.get("NextContinuationToken")
            if not resp.get("IsTruncated") or not token:
                break
        log.debug("listed %s in %d page(s)", uri, pages)

    def write(self, bucket: str, key: str, fh: BinaryIO, size: int, *, if_absent: bool) -> bool:
        """One PUT (≤ :data:`MULTIPART_THRESHOLD`) or a multipart upload; ``if_absent`` adds If-None-Match: *.

        A retried conditional write that meets "412 already exists" after an earlier attempt failed
        in transit may be seeing its own first attempt; it compares the stored bytes with its own
        (MD5) and reports success if they are the same.
        """
        uri = f"s3://{bucket}/{key}"
        extra: dict[str, Any] = {"ContentType": _content_type(key)}
        if if_absent:
            extra["IfNoneMatch"] = "*"
        tried = [0]
        try:
            if size <= MULTIPART_THRESHOLD:
                data = fh.read()

                def put() -> None:
                    tried[0] += 1
                    self.client.put_object(Bucket=bucket, Key=key, Body=data, **extra)

                self._call(uri, "PUT", put)
            else:
                self._multipart(uri, bucket, key, fh, size, extra, tried)
            return True
        except _PreconditionFailed:
            if tried[0] > 1 and self._same_content(bucket, key, fh):
                return True
            return False

    def _multipart(
        self,
        uri: str,
        bucket: str,
        key: str,
        fh: BinaryIO,
        size: int,
        extra: dict[str, Any],
        tried: list[int],
    ) -> None:
        cond = {"IfNoneMatch": extra.pop("IfNoneMatch")} if "IfNoneMatch" in extra else {}
        upload_id = self._call(
            uri,
            "CREATE-MULTIPART",
            lambda: self.client.create_multipart_upload(Bucket=bucket, Key=key, **extra),
        )["UploadId"]
        try:
            parts = []
            for number, offset in enumerate(range(0, size, PART_SIZE), start=1):
                fh.seek(offset)
                chunk = fh.read(min(PART_SIZE, size - offset))
                resp = self._call(
                    uri,
                    f"UPLOAD-PART {number}",
                    partial(
                        self.client.upload_part,
                        Bucket=bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=chunk,
                    ),
                )
                parts.append({"ETag": resp["ETag"], "PartNumber": number})

            def complete() -> None:
                tried[0] += 1
                self.client.complete_multipart_upload(
                    Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}, **cond
                )

            self._call(uri, "COMPLETE-MULTIPART", complete)
        except BaseException:
            try:  # best effort: S3 lifecycle rules clean up what this misses
                self.client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            except Exception:  # noqa: BLE001
                log.debug("could not abort multipart upload of %s", uri, exc_info=True)
            raise
