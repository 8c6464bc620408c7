"""A dead endpoint fails the start checks well under a minute; a slow but alive object still completes.

A :class:`~tests.storage_servers.HungEndpoint` accepts connections and never answers: what a client
meets when a store or a proxy in front of it hangs. With the default settings the start checks
(``kurate.plan.make_plan``: the input prefix, the run folder, the output probe) give up after
``KURATE_STORAGE_START_TIMEOUT_S`` (20 s) with one line naming the endpoint. During the run reads
keep the long read timeout (``KURATE_STORAGE_READ_TIMEOUT_S``, 60 s), so an object that takes 20 s
to answer is read, not retried into a failure.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from kurate.errors import KurateError, StorageError
from kurate.io import storage
from tests.storage_servers import FaultProxy, HungEndpoint, reset_clients

ENDPOINT_ENV = {"s3": "AWS_ENDPOINT_URL", "gs": "STORAGE_EMULATOR_HOST"}
KNOBS = (
    "KURATE_STORAGE_START_TIMEOUT_S",
    "KURATE_STORAGE_READ_TIMEOUT_S",
    "KURATE_STORAGE_CONNECT_TIMEOUT_S",
    "KURATE_STORAGE_MAX_ATTEMPTS",
    "KURATE_STORAGE_BACKOFF_S",
    "KURATE_STORAGE_BACKOFF_MAX_S",
)


@pytest.fixture
def defaults(monkeypatch):
    """The storage settings a user gets (no KURATE_STORAGE_* in the environment)."""
    for k in KNOBS:
        monkeypatch.delenv(k, raising=False)
    reset_clients()
    yield
    reset_clients()


def _within(seconds: float, fn: Any) -> tuple[BaseException | None, float]:
    """Run ``fn`` in a thread; (what it raised, seconds taken); fails the test if it is still running."""
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out["exc"] = exc

    t0 = time.monotonic()
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    took = time.monotonic() - t0
    if thread.is_alive():
        pytest.fail(f"still waiting on the endpoint after {seconds:.0f} s")
    return out.get("exc"), took


@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_a_hung_endpoint_fails_the_start_checks_well_under_a_minute(scheme, defaults, monkeypatch, tmp_path):
    from kurate.config.load import compose_config
    from kurate.plan import make_plan

    with HungEndpoint() as hung:
        monkeypatch.setenv(ENDPOINT_ENV[scheme], hung.url)
        cfg = compose_config(
            [
                f"input_dir={scheme}://photos/data",
                f"output_dir={tmp_path / 'out'}",
                "stopping_condition.n_samples=2",
            ]
        )
        exc, took = _within(40, lambda: make_plan(cfg))
    assert isinstance(exc, StorageError), exc
    assert took < 30
    msg = str(exc)
    assert "\n" not in msg and f"{scheme}://photos/data" in msg
    assert hung.url.split("://")[1] in msg  # names the endpoint that did not answer
    assert "no answer within" in msg and "KURATE_STORAGE_START_TIMEOUT_S" in msg
    assert hung.connections >= 1


@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_the_start_budget_is_a_knob(scheme, defaults, monkeypatch):
    monkeypatch.setenv("KURATE_STORAGE_START_TIMEOUT_S", "3")
    with HungEndpoint() as hung:
        monkeypatch.setenv(ENDPOINT_ENV[scheme], hung.url)

        def check() -> None:
            with storage.start_checks():
                storage.exists(f"{scheme}://photos/data")

        exc, took = _within(20, check)
    assert isinstance(exc, StorageError) and "no answer within 3 s" in str(exc), exc
    assert 1.4 < took < 8


@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_reads_during_the_run_keep_the_long_read_timeout(scheme, defaults, monkeypatch, request):
    """A start budget of 2 s does not apply after the start: an object answering after 3 s is read."""
    helper = request.getfixturevalue("s3" if scheme == "s3" else "gcs")
    bucket = helper.bucket()
    helper.put(bucket, "data/slow.jpg", b"slow bytes")
    helper.put(bucket, "data/fast.jpg", b"fast bytes")
    for k in KNOBS:  # the helper fixtures set fast retries: back to the defaults
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("KURATE_STORAGE_START_TIMEOUT_S", "2")

    def slow_object(n: int, method: str, path: str) -> str | None:
        return "delay:3" if method == "GET" and "slow.jpg" in path else None

    with FaultProxy(helper.endpoint, slow_object, "s3" if scheme == "s3" else "gcs") as proxy:
        monkeypatch.setenv(ENDPOINT_ENV[scheme], proxy.url)
        with storage.start_checks():  # the start checks themselves are quick here
            assert storage.exists(f"{scheme}://{bucket}/data")
        t0 = time.monotonic()
        assert storage.read_bytes(f"{scheme}://{bucket}/data/slow.jpg") == b"slow bytes"
        assert time.monotonic() - t0 >= 3
        assert proxy.faults["delay"] == 1  # read once, not retried


@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_a_hung_read_during_the_run_is_bounded_by_its_knobs(scheme, defaults, monkeypatch, request):
    helper = request.getfixturevalue("s3" if scheme == "s3" else "gcs")
    bucket = helper.bucket()
    helper.put(bucket, "data/stuck.jpg", b"x")
    monkeypatch.setenv("KURATE_STORAGE_READ_TIMEOUT_S", "1")
    monkeypatch.setenv("KURATE_STORAGE_MAX_ATTEMPTS", "2")

    def hang_object(n: int, method: str, path: str) -> str | None:
        return "hang" if method == "GET" and "stuck.jpg" in path else None

    with FaultProxy(helper.endpoint, hang_object, "s3" if scheme == "s3" else "gcs") as proxy:
        monkeypatch.setenv(ENDPOINT_ENV[scheme], proxy.url)
        exc, took = _within(20, lambda: storage.read_bytes(f"{scheme}://{bucket}/data/stuck.jpg"))
    assert isinstance(exc, KurateError) and "stuck.jpg" in str(exc) and "2 attempt" in str(exc), exc
    assert took < 6 and proxy.faults["hang"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_an_object_answering_after_20_s_is_read_with_the_defaults(scheme, defaults, monkeypatch, request):
    helper = request.getfixturevalue("s3" if scheme == "s3" else "gcs")
    bucket = helper.bucket()
    helper.put(bucket, "data/slow.jpg", b"twenty seconds")
    for k in KNOBS:
        monkeypatch.delenv(k, raising=False)

    def slow_object(n: int, method: str, path: str) -> str | None:
        return "delay:20" if method == "GET" and "slow.jpg" in path else None

    with FaultProxy(helper.endpoint, slow_object, "s3" if scheme == "s3" else "gcs") as proxy:
        monkeypatch.setenv(ENDPOINT_ENV[scheme], proxy.url)
        assert storage.read_bytes(f"{scheme}://{bucket}/data/slow.jpg") == b"twenty seconds"
    assert proxy.faults["delay"] == 1
