"""Real S3 and GCS endpoints for the tests, all on 127.0.0.1, started and stopped by fixtures.

- ``s3_server``: moto in server mode (a real HTTP S3 API), session-scoped.
- ``gcs_server``: gcp-storage-emulator (a real HTTP GCS JSON API), session-scoped.
- ``s3`` / ``gcs``: per-test helpers that point kurate at those servers (``AWS_ENDPOINT_URL`` /
  ``STORAGE_EMULATOR_HOST`` set with monkeypatch, only in the tests that use them) and make fresh
  buckets.
- :class:`FaultProxy`: a small threaded HTTP proxy in front of either server that answers 500/503/403,
  drops the connection, truncates the body, hangs, delays or swaps single objects for a deterministic
  pattern of requests.
- :class:`HungEndpoint`: accepts connections and reads requests but never answers (a dead endpoint).
- ``moto_auth``: a separate moto process with IAM enforcement on, for access-denied tests (moto's
  auth switch is process-global, so it must not share a process with ``s3_server``).

Both servers keep object names exactly, as S3 and GCS do (``a//b``, ``/a``, ``a/../b`` and ``a/b`` are
four objects): gcp-storage-emulator's in-memory store would otherwise normalise names (see
:func:`_exact_names`).

Dummy credentials, ``AWS_EC2_METADATA_DISABLED`` and ``NO_GCE_CHECK`` come from ``tests/conftest.py``.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property, partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

#: Fast retries in tests (the fault tests trigger many).
FAST_RETRY = {"KURATE_STORAGE_BACKOFF_S": "0.01", "KURATE_STORAGE_BACKOFF_MAX_S": "0.2"}


def new_bucket_name(prefix: str = "kt") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- servers


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's S3 API over HTTP on 127.0.0.1 (a free port); yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


class _LockedHandler:
    """The emulator's handler behind one lock: its storage is not thread-safe, its server not threaded.

    Under that lock it also honours ``ifGenerationMatch=0`` on uploads (the emulator ignores it): an
    upload of a name that exists is answered 412, as GCS does, so conditional creates can be raced
    against it. Only the "does not exist yet" precondition kurate uses is implemented.
    """

    lock = threading.Lock()
    _handler: Any = None

    @classmethod
    def make(cls, storage: Any, *args: Any) -> None:
        with cls.lock:
            cls._handler_class()(storage, *args)

    @classmethod
    def _handler_class(cls) -> Any:
        if cls._handler is None:
            from gcp_storage_emulator.server import RequestHandler

            class Handler(RequestHandler):  # type: ignore[misc]
                def do_POST(self) -> None:  # noqa: N802 - http.server's name
                    if _upload_exists(self):
                        body = json.dumps(
                            {"error": {"code": 412, "message": "At least one of the pre-conditions "
                                       "you specified did not hold."}}
                        ).encode()  # fmt: skip
                        self.send_response(412)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(body)))
                        self.end_headers()
                        self.wfile.write(body)
                        return
                    super().do_POST()

            cls._handler = Handler
        return cls._handler


def _upload_exists(handler: Any) -> bool:
    """For an upload with ``ifGenerationMatch=0``: whether its object exists (the body is put back)."""
    import io
    import re
    from email.parser import BytesParser
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(handler.path)
    query = parse_qs(parts.query)
    bucket = re.search(r"/b/([^/]+)/o$", parts.path)
    if query.get("ifGenerationMatch") != ["0"] or bucket is None:
        return False
    body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
    handler.rfile = io.BytesIO(body)  # the emulator reads the request from here
    name = (query.get("name") or [""])[0]
    ctype = handler.headers.get("Content-Type", "")
    if not name and ctype.startswith("multipart/"):  # metadata part first, then the bytes
        message = BytesParser().parsebytes(f"Content-Type: {ctype}\r\n\r\n".encode() + body)
        first = message.get_payload()[0].get_payload(decode=True)
        name = json.loads(first).get("name", "")
    elif not name and body:  # resumable upload: the metadata is the body
        name = json.loads(body).get("name", "")
    return bool(name) and name in handler.storage.objects.get(bucket.group(1), {})


def _exact_names(storage: Any) -> None:
    """Make the emulator's in-memory store keep object names exactly, as GCS does.

    gcp-storage-emulator keeps each object's metadata under its exact name but its bytes under a
    normalised path (``//`` collapsed, a leading ``/`` dropped, ``..`` refused with a 500), so
    ``a//b`` and ``a/b`` would share bytes and ``a/../b`` could not be stored at all. On GCS they
    are distinct objects; the tests of hostile keys need the store to be as faithful as S3 (moto).
    """
    storage._object_path = lambda bucket_name, file_name: f"{bucket_name}/{file_name}"
    storage._store._norm = lambda path: path


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[str]:
    """gcp-storage-emulator (in memory) on 127.0.0.1 (a free port); yields its URL.

    Served by a ThreadingHTTPServer with one lock around the emulator's handler, so concurrent
    clients queue instead of overflowing the listen backlog of its single-threaded server.
    """
    from gcp_storage_emulator.server import create_server

    logging.getLogger("gcp_storage_emulator").setLevel(logging.ERROR)
    emu = create_server("127.0.0.1", 0, in_memory=True)
    _exact_names(emu._storage)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_LockedHandler.make, emu._storage))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


# --------------------------------------------------------------------------- per-test helpers


def reset_clients() -> None:
    """Forget kurate's cached clients (they are keyed on the environment anyway; this is hygiene)."""
    from kurate.io import remote

    remote._backends.clear()


@dataclass
class S3:
    """kurate pointed at an S3 endpoint, plus a raw boto3 client to set up and inspect buckets."""

    endpoint: str
    buckets: list[str] = field(default_factory=list)

    @cached_property
    def client(self) -> Any:
        import boto3

        session = boto3.session.Session(  # independent of the environment the test changes
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )
        return session.client("s3", endpoint_url=self.endpoint)

    def bucket(self) -> str:
        name = new_bucket_name()
        self.client.create_bucket(Bucket=name)
        self.buckets.append(name)
        return name

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=bucket, Key=key, Body=data)

    def get(self, bucket: str, key: str) -> bytes:
        return bytes(self.client.get_object(Bucket=bucket, Key=key)["Body"].read())

    def delete(self, bucket: str, key: str) -> None:
        self.client.delete_object(Bucket=bucket, Key=key)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        out: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            out += [o["Key"] for o in page.get("Contents", [])]
        return sorted(out)

    def upload_folder(self, root: Path, bucket: str, prefix: str) -> None:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                self.put(bucket, f"{prefix}/{p.relative_to(root).as_posix()}", p.read_bytes())


@dataclass
class GCS:
    """kurate pointed at the GCS emulator, plus a raw client."""

    endpoint: str

    @cached_property
    def client(self) -> Any:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(
            project="kurate-test",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": self.endpoint},
        )

    def bucket(self) -> str:
        name = new_bucket_name()
        self.client.create_bucket(name)
        return name

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self.client.bucket(bucket).blob(key).upload_from_string(data)

    def get(self, bucket: str, key: str) -> bytes:
        return bytes(self.client.bucket(bucket).blob(key).download_as_bytes())

    def delete(self, bucket: str, key: str) -> None:
        self.client.bucket(bucket).blob(key).delete()

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        return sorted(b.name for b in self.client.list_blobs(bucket, prefix=prefix or None))

    def upload_folder(self, root: Path, bucket: str, prefix: str) -> None:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                self.put(bucket, f"{prefix}/{p.relative_to(root).as_posix()}", p.read_bytes())


@pytest.fixture
def s3(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3]:
    """S3 (moto) for this test: AWS_ENDPOINT_URL set here only; fast retries."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    for k, v in FAST_RETRY.items():
        monkeypatch.setenv(k, v)
    reset_clients()
    yield S3(s3_server)
    reset_clients()


@pytest.fixture
def gcs(gcs_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[GCS]:
    """GCS (emulator) for this test: STORAGE_EMULATOR_HOST set here only; fast retries."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server)
    for k, v in FAST_RETRY.items():
        monkeypatch.setenv(k, v)
    reset_clients()
    yield GCS(gcs_server)
    reset_clients()


# --------------------------------------------------------------------------- fault injection

#: Rule: (request number from 1, method, path) -> fault kind or None (forward normally).
Rule = Callable[[int, str, str], str | None]
FAULTS = ("500", "503", "drop", "truncate")


def every(n: int, kinds: tuple[str, ...] = FAULTS, methods: tuple[str, ...] = ()) -> Rule:
    """Fail every ``n``-th request (counting only ``methods`` if given), cycling through ``kinds``."""
    seen = [0]
    lock = threading.Lock()

    def rule(_: int, method: str, path: str) -> str | None:
        if methods and method not in methods:
            return None
        with lock:
            seen[0] += 1
            k = seen[0]
        if k % n:
            return None
        kind = kinds[(k // n - 1) % len(kinds)]
        if kind == "truncate" and method == "HEAD":
            return "503"
        return kind

    return rule


_S3_ERRORS = {
    "500": ("InternalError", "We encountered an internal error. Please try again."),
    "503": ("SlowDown", "Please reduce your request rate."),
    "403": ("AccessDenied", "Access Denied"),
}


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    proxy: FaultProxy

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        return

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _error(self, status: int) -> None:
        if self.proxy.flavor == "gcs":
            body = json.dumps({"error": {"code": status, "message": f"injected {status}"}}).encode()
            ctype = "application/json"
        else:
            code, msg = _S3_ERRORS.get(str(status), ("InternalError", "injected"))
            body = (
                f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                f"<Message>{msg}</Message></Error>"
            ).encode()
            ctype = "application/xml"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _gcs_list_page(self) -> bool:
        """GCS paging (maxResults/pageToken) over the emulator's one-page listing; True if answered."""
        from urllib.parse import parse_qs, urlencode, urlsplit

        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        if not (
            parts.path.startswith("/storage/v1/b/") and parts.path.endswith("/o") and "maxResults" in query
        ):
            return False
        size = int(query.pop("maxResults")[0])
        offset = int(query.pop("pageToken", ["0"])[0])
        query.pop("fields", None)
        host, port = self.proxy.upstream
        conn = http.client.HTTPConnection(host, port, timeout=60)
        conn.request("GET", f"{parts.path}?{urlencode(query, doseq=True)}")
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        if resp.status == 200:
            listing = json.loads(data or b"{}")
            items = listing.get("items", [])
            out: dict[str, Any] = {"kind": "storage#objects", "items": items[offset : offset + size]}
            if offset + size < len(items):
                out["nextPageToken"] = str(offset + size)
            self.proxy.pages += 1
            data = json.dumps(out).encode()
        self.send_response(resp.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        return True

    def _handle(self) -> None:
        body = self._body()
        n = self.proxy._next()
        kind = self.proxy.rule(n, self.command, self.path) if self.proxy.rule else None
        kind, _, arg = (kind or "").partition(":")
        if kind:
            self.proxy.faults[kind] += 1
        if kind == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if kind == "hang":  # the request was read; no answer ever comes (until the proxy stops)
            self.proxy._stopping.wait()
            self.close_connection = True
            return
        if kind in ("500", "503", "429", "403"):
            self._error(int(kind))
            return
        if kind == "delay" and self.proxy._stopping.wait(float(arg)):
            self.close_connection = True
            return
        if self.proxy.paginate and self.command == "GET" and self._gcs_list_page():
            return
        host, port = self.proxy.upstream
        conn = http.client.HTTPConnection(host, port, timeout=60)
        headers = {
            k: v for k, v in self.headers.items() if k.lower() not in ("transfer-encoding", "connection")
        }
        if body or self.command in ("PUT", "POST", "PATCH"):
            headers["Content-Length"] = str(len(body))
        path = arg if kind == "swap" else self.path  # another object's answer in this one's place
        conn.request(self.command, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        if kind == "lost":  # the upstream did the work; its answer never reaches the client
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length", "date", "server"):
                self.send_header(k, v)
        if self.command == "HEAD":
            self.send_header("Content-Length", resp.getheader("Content-Length") or "0")
            self.end_headers()
            return
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if kind == "truncate" and len(data) > 1:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _handle  # noqa: N815


class FaultProxy:
    """HTTP proxy on 127.0.0.1 in front of ``upstream`` that injects faults by :data:`Rule`.

    Kinds: ``"500"``/``"503"``/``"429"``/``"403"`` (an error response in the upstream's format,
    ``flavor`` "s3" XML or "gcs" JSON, without forwarding), ``"drop"`` (the connection is closed
    without any answer), ``"truncate"`` (the request is forwarded, the answer announces its full
    length and then stops halfway), ``"lost"`` (the request is forwarded and done upstream, then
    the connection is closed without an answer), ``"hang"`` (the request is read and never answered:
    a hung endpoint), ``"delay:<seconds>"`` (forwarded after that long: a slow but alive object) and
    ``"swap:<path>"`` (the upstream's answer for another request path is sent instead: an object
    changed under its name). ``faults`` counts what was injected (by kind, without its argument),
    ``requests`` everything.

    ``paginate`` (GCS only): gcp-storage-emulator ignores ``maxResults``/``pageToken`` and returns
    every name at once; with this the proxy serves the emulator's listing in pages of
    ``maxResults`` with ``nextPageToken`` as GCS does, so the client's paging loop is exercised.
    ``pages`` counts the pages served.
    """

    def __init__(
        self, upstream: str, rule: Rule | None = None, flavor: str = "s3", paginate: bool = False
    ) -> None:
        hostport = upstream.split("://", 1)[-1].rstrip("/")
        host, port = hostport.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.rule = rule
        self.flavor = flavor
        self.paginate = paginate
        self.pages = 0
        self.faults: Counter[str] = Counter()
        self.requests = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        handler = type("Handler", (_ProxyHandler,), {"proxy": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def _next(self) -> int:
        with self._lock:
            self.requests += 1
            return self.requests

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stopping.set()  # releases hung and delayed requests
        self._httpd.shutdown()
        self._httpd.server_close()


class HungEndpoint:
    """A TCP endpoint on 127.0.0.1 that accepts connections, reads what comes and never answers.

    What a client meets when a store (or a proxy in front of it) hangs: the connection succeeds,
    so only a read timeout can end the wait. ``connections`` counts the connections accepted.
    """

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self._stopping = threading.Event()
        self._open: list[socket.socket] = []
        self.connections = 0
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:  # timeout: look at the stop flag again
                continue
            self.connections += 1
            self._open.append(conn)

    def __enter__(self) -> HungEndpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stopping.set()
        self._thread.join()
        for conn in self._open:
            conn.close()
        self._sock.close()


# --------------------------------------------------------------------------- moto with IAM enforced


@dataclass
class MotoAuth:
    """A moto process that enforces IAM.

    ``reader`` may list, read, write and delete in ``allowed``, list and read (not write) ``readonly``, and
    nothing in ``denied``; all three buckets exist and hold ``data/a.png``.
    """

    endpoint: str
    allowed: str
    denied: str
    reader_key: tuple[str, str]
    readonly: str = ""


@pytest.fixture(scope="session")
def moto_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoAuth]:
    """``python -m moto.server`` on a free port with two buckets and a restricted user, then auth on."""
    import boto3
    import requests

    port = free_port()
    log = tmp_path_factory.mktemp("moto-auth") / "moto.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=dict(os.environ),
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                requests.get(f"{endpoint}/moto-api/", timeout=1)
                break
            except requests.ConnectionError:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"moto server did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.2)
        kw = {"endpoint_url": endpoint, "region_name": "us-east-1"}
        admin = boto3.client("s3", **kw)
        allowed, denied = new_bucket_name("allowed"), new_bucket_name("denied")
        readonly = new_bucket_name("readonly")
        for b in (allowed, denied, readonly):
            admin.create_bucket(Bucket=b)
            admin.put_object(Bucket=b, Key="data/a.png", Body=b"x")
        iam = boto3.client("iam", **kw)
        iam.create_user(UserName="reader")
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": ["s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                    "Resource": [f"arn:aws:s3:::{allowed}", f"arn:aws:s3:::{allowed}/*"],
                },
                {
                    "Effect": "Allow",
                    "Action": ["s3:ListBucket", "s3:GetObject"],
                    "Resource": [f"arn:aws:s3:::{readonly}", f"arn:aws:s3:::{readonly}/*"],
                },
            ],
        }
        iam.put_user_policy(UserName="reader", PolicyName="read-allowed", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="reader")["AccessKey"]
        requests.post(f"{endpoint}/moto-api/reset-auth", data=b"0", timeout=10).raise_for_status()
        yield MotoAuth(endpoint, allowed, denied, (key["AccessKeyId"], key["SecretAccessKey"]), readonly)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
