"""Retries with exponential backoff and jitter for transient storage errors.

Object stores fail transiently all the time at scale (5xx, throttling, dropped connections); one
such failure must never end a run that reads millions of objects, and a burst of them must not be
answered by a retry storm. Every bucket operation goes through :func:`call`, which retries only
what the back-end classified as :class:`TransientError` and turns "still failing after N attempts"
into a fatal :class:`~kurate.errors.StorageError` (a flaky file is never silently marked corrupt).

Settings come from the environment so they reach every pipeline pod the same way as credentials:
``KURATE_STORAGE_MAX_ATTEMPTS`` (default 8), ``KURATE_STORAGE_BACKOFF_S`` (first delay, default
0.2 s; doubles each attempt) and ``KURATE_STORAGE_BACKOFF_MAX_S`` (cap, default 20 s).
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from kurate.errors import StorageError

log = logging.getLogger("kurate.io.storage")

T = TypeVar("T")


class TransientError(Exception):
    """A failure worth retrying (5xx, throttling, dropped connection); never escapes :func:`call`."""


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
    caller's business).
    """
    pol = policy or policy_from_env()
    attempt = 1
    while True:
        try:
            return fn()
        except TransientError as exc:
            if attempt >= pol.max_attempts:
                raise StorageError(
                    f"{what}: still failing after {attempt} attempt(s), giving up: {exc} "
                    f"(retries: KURATE_STORAGE_MAX_ATTEMPTS)"
                ) from exc
            wait = pol.delay(attempt)
            level = logging.WARNING if attempt >= 3 else logging.DEBUG
            log.log(level, "%s: %s; retry %d/%d in %.2f s", what, exc, attempt, pol.max_attempts - 1, wait)
            sleep(wait)
            attempt += 1
