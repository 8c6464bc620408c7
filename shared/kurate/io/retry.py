"""Retries with exponential backoff and jitter for transient storage errors.

Object stores fail transiently all the time at scale (5xx, throttling, dropped connections); one
such failure must never end a run that reads millions of objects, and a burst of them must not be
answered by a retry storm. Every bucket operation goes through :func:`call`, which retries only
what the back-end classified as :class:`TransientError` and turns "still failing after N attempts"
into a fatal :class:`~kurate.errors.StorageError` (a flaky file is never silently marked corrupt).

A store that does not answer at all is bounded by timeouts: each attempt waits at most
``KURATE_STORAGE_CONNECT_TIMEOUT_S`` (default 5 s) for a connection and
``KURATE_STORAGE_READ_TIMEOUT_S`` (default 60 s) for the next bytes of an answer (long enough for an
object that takes 20 s to start), and gives up after the attempts. The requests made at start,
before anything runs (inside :func:`start_checks`: is the input there, is the output writable), are
small and answered at once by a live store, so there all attempts of one request together get
``KURATE_STORAGE_START_TIMEOUT_S`` (default 20 s), each attempt at most half of it: a dead or hung
endpoint stops the run at start in about 20 s, not after minutes of retries.

Settings come from the environment so they reach every pipeline pod the same way as credentials:
``KURATE_STORAGE_MAX_ATTEMPTS`` (default 8), ``KURATE_STORAGE_BACKOFF_S`` (first delay, default
0.2 s; doubles each attempt), ``KURATE_STORAGE_BACKOFF_MAX_S`` (cap, default 20 s) and the three
timeouts above.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

from kurate.errors import StorageError

log = logging.getLogger("kurate.io.storage")

T = TypeVar("T")

#: Seconds: the wait for a connection, for the next bytes of an answer, and for a start check in all.
DEFAULT_CONNECT_TIMEOUT_S = 5.0
DEFAULT_READ_TIMEOUT_S = 60.0
DEFAULT_START_TIMEOUT_S = 20.0

#: The start checks' budget (seconds) while inside :func:`start_checks`, else None.
_start_budget: ContextVar[float | None] = ContextVar("kurate_storage_start_budget", default=None)


class TransientError(Exception):
    """A failure worth retrying (5xx, throttling, dropped connection); never escapes :func:`call`.

    ``timed_out``: the store did not answer in time (no connection, or silence within the answer).
    """

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


@dataclass(frozen=True)
class Timeouts:
    """How long one attempt waits, in seconds: for a connection, and for the next bytes of an answer."""

    connect_s: float
    read_s: float

    def pair(self) -> tuple[float, float]:
        """``(connect, read)``, as requests and google-cloud-storage take them."""
        return (self.connect_s, self.read_s)


def _positive(name: str, default: float) -> float:
    value = _env_float(name, default)
    if value <= 0:
        raise StorageError(f"{name}={value:g}: must be a number of seconds above 0")
    return value


def timeouts() -> Timeouts:
    """The timeouts of an attempt made now: the run's, or within :func:`start_checks` shorter ones."""
    connect = _positive("KURATE_STORAGE_CONNECT_TIMEOUT_S", DEFAULT_CONNECT_TIMEOUT_S)
    read = _positive("KURATE_STORAGE_READ_TIMEOUT_S", DEFAULT_READ_TIMEOUT_S)
    budget = _start_budget.get()
    if budget is not None:
        return Timeouts(min(connect, budget / 2), min(read, budget / 2))
    return Timeouts(connect, read)


@contextmanager
def start_checks() -> Iterator[float]:
    """Requests made inside get the start budget (``KURATE_STORAGE_START_TIMEOUT_S``) each; yields it.

    For the few small requests made before anything runs, which a live store answers at once: a
    dead or hung endpoint then fails the run in that many seconds. Applies to this thread (and
    context) only; a pool's worker threads keep the run's timeouts.
    """
    budget = _positive("KURATE_STORAGE_START_TIMEOUT_S", DEFAULT_START_TIMEOUT_S)
    token = _start_budget.set(budget)
    try:
        yield budget
    finally:
        _start_budget.reset(token)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry."""

    max_attempts: int = 8
    base_s: float = 0.2
    cap_s: float = 20.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based): "equal jitter".

        Half of the exponential delay is fixed and half random, so clients that failed together
        spread out but none retries immediately.
        """
        d = min(self.cap_s, self.base_s * (2 ** (attempt - 1)))
        return d / 2 + (rng or random).uniform(0, d / 2)


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        return float(raw) if raw else default
    except ValueError:
        raise StorageError(f"{name}={raw!r} is not a number") from None


def policy_from_env() -> RetryPolicy:
    """The policy set by ``KURATE_STORAGE_*`` (read at each call: tests and pods may set them late)."""
    attempts = int(_env_float("KURATE_STORAGE_MAX_ATTEMPTS", 8))
    return RetryPolicy(
        max_attempts=max(1, attempts),
        base_s=max(0.0, _env_float("KURATE_STORAGE_BACKOFF_S", 0.2)),
        cap_s=max(0.0, _env_float("KURATE_STORAGE_BACKOFF_MAX_S", 20.0)),
    )


def call(
    what: str,
    fn: Callable[[], T],
    policy: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``fn``, retrying on :class:`TransientError`; ``what`` names the operation in messages.

    Any other exception propagates at once (systemic errors are fatal, a missing object is the
    caller's business). Within :func:`start_checks` the attempts also stop when the start budget is
    spent.
    """
    pol = policy or policy_from_env()
    budget = _start_budget.get()
    deadline = None if budget is None else time.monotonic() + budget
    attempt = 1
    while True:
        try:
            return fn()
        except TransientError as exc:
            wait = pol.delay(attempt)
            if deadline is not None and time.monotonic() + wait >= deadline:
                if exc.timed_out:
                    raise StorageError(
                        f"{what}: no answer within {budget:g} s ({attempt} attempt(s), the last: {exc}); "
                        f"check that the endpoint is up and reachable (start checks: "
                        f"KURATE_STORAGE_START_TIMEOUT_S)"
                    ) from exc
                raise StorageError(
                    f"{what}: still failing after {attempt} attempt(s) within {budget:g} s, giving up: "
                    f"{exc} (start checks: KURATE_STORAGE_START_TIMEOUT_S)"
                ) from exc
            if attempt >= pol.max_attempts:
                raise StorageError(
                    f"{what}: still failing after {attempt} attempt(s), giving up: {exc} "
                    f"(retries: KURATE_STORAGE_MAX_ATTEMPTS"
                    + (", timeouts: KURATE_STORAGE_READ_TIMEOUT_S" if exc.timed_out else "")
                    + ")"
                ) from exc
            level = logging.WARNING if attempt >= 3 else logging.DEBUG
            log.log(level, "%s: %s; retry %d/%d in %.2f s", what, exc, attempt, pol.max_attempts - 1, wait)
            sleep(wait)
            attempt += 1
