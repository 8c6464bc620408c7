"""Shared plumbing of the phase entry points, and how a phase's error crosses the process boundary.

``python -m kurate.phases.<phase>`` (what a plain Argo step runs) parses its arguments with
:func:`parse` and runs the phase through :func:`run_main`. Every phase function is also wrapped in
:func:`reported`, so its error reaches whoever started the process — kfp.local's task under the
``kurate`` command, a KFP/Vertex pod, an Argo step — the same way:

- one plain line ``kurate: error: <message>`` and the exit code of the error's class
  (:func:`kurate.errors.describe`: config 2, datapool conflict 3, other 1), never a traceback unless
  ``KURATE_DEBUG=1``;
- with ``KURATE_ERROR_FILE`` set (the ``kurate`` command sets it for its tasks), an error record
  there: ``{"format", "phase", "class", "exit_code", "message", "traceback"}``; the command reads it
  (:func:`read_error_record`), exits with that code, prints that line and keeps the traceback in
  the run's log file.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from kurate.errors import ConfigError, debug_enabled, describe

#: Where a failing phase leaves its error record (set by the ``kurate`` command for its tasks).
ERROR_FILE_ENV = "KURATE_ERROR_FILE"
ERROR_FORMAT = "kurate.error/1"
#: Set by KFP's lightweight-component command in every task process (kfp.local, KFP, Vertex).
_KFP_RUNTIME_ENV = "_KFP_RUNTIME"

F = TypeVar("F", bound=Callable[..., Any])


def parse(
    argv: Sequence[str],
    description: str,
    inputs: Sequence[str],
    outputs: Sequence[str],
    optional_inputs: dict[str, str] | None = None,
    options: dict[str, tuple[type, Any, str]] | None = None,
) -> argparse.Namespace:
    """Parse ``--<input> PATH ... --<output> PATH ... --config JSON``.

    ``optional_inputs`` adds input artifacts that may be left out (``{name: help}``, default ''),
    ``options`` typed flags (``{name: (type, default, help)}``).
    """
    p = argparse.ArgumentParser(description=description)
    for name in inputs:
        p.add_argument(
            f"--{name.replace('_', '-')}", dest=name, required=True, help=f"input artifact: {name}"
        )
    for name, text in (optional_inputs or {}).items():
        p.add_argument(
            f"--{name.replace('_', '-')}", dest=name, default="", help=f"optional input artifact: {text}"
        )
    for name in outputs:
        p.add_argument(
            f"--{name.replace('_', '-')}", dest=name, required=True, help=f"output artifact: {name}"
        )
    for name, (typ, default, text) in (options or {}).items():
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, type=typ, default=default, help=text)
    p.add_argument("--config", default="{}", help="this phase's config keys as JSON (or @file.json)")
    return p.parse_args(list(argv))


def load_json_arg(value: str) -> dict[str, Any]:
    """A JSON object given inline or as ``@path``."""
    if value.startswith("@"):
        with open(value[1:], encoding="utf-8") as fh:
            value = fh.read()
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ConfigError("--config", f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError("--config", "must be a JSON object")
    return data


def error_record(exc: BaseException, phase: str, tb: str) -> dict[str, Any]:
    """What a failed phase tells the process that started it."""
    message, code = describe(exc)
    return {
        "format": ERROR_FORMAT,
        "phase": phase,
        "class": type(exc).__name__,
        "exit_code": code,
        "message": message,
        "traceback": tb,
    }


def write_error_record(exc: BaseException, phase: str, tb: str) -> bool:
    """Leave the error record where ``KURATE_ERROR_FILE`` says (False: not asked for, or not writable).

    Written directly (temp file + rename), not through kurate.io.storage: it is the failure report of
    a process that is about to exit, not a result, and must not itself be a crash point.
    """
    path = os.environ.get(ERROR_FILE_ENV, "")
    if not path:
        return False
    try:
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(error_record(exc, phase, tb), fh)
        os.replace(tmp, path)
    except OSError:
        return False
    return True


def read_error_record(path: str) -> dict[str, Any] | None:
    """The error record a failed task left at ``path`` (None if there is none)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == ERROR_FORMAT else None


def _fail(exc: BaseException, phase: str, tb: str, *, quiet_if_recorded: bool) -> int:
    """Report a phase's failure (one line; the record; the traceback only when asked) and give its code.

    ``quiet_if_recorded``: a kfp task under the ``kurate`` command prints nothing once the record is
    written (the command prints the line, once; its log keeps the traceback).
    """
    message, code = describe(exc)
    recorded = write_error_record(exc, phase, tb)
    if debug_enabled():
        sys.stderr.write(tb)
    if not (recorded and quiet_if_recorded) or debug_enabled():
        print(f"kurate: error: {message}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def reported(phase: str) -> Callable[[F], F]:
    """Wrap a phase function so that, in a KFP task process, its error ends the task as :func:`_fail` says.

    Outside a task (a test, ``python -m``, a notebook) the error propagates unchanged, marked with
    the phase's name for :func:`run_main`.
    """

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def phase_fn(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if os.environ.get(_KFP_RUNTIME_ENV) != "true":
                    if getattr(exc, "kurate_phase", None) is None:
                        try:
                            exc.kurate_phase = phase  # type: ignore[attr-defined]
                        except AttributeError:
                            pass
                    raise
                # the KFP executor would print a traceback and exit 1: exit with the class's code instead
                os._exit(_fail(exc, phase, traceback.format_exc(), quiet_if_recorded=True))

        return phase_fn  # type: ignore[return-value]

    return wrap


def run_main(fn: Callable[[], Any]) -> int:
    """Run a phase for ``python -m``: any error becomes one line and its class's exit code (no traceback)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        fn()
    except Exception as exc:
        phase = str(getattr(exc, "kurate_phase", "") or "")
        return _fail(exc, phase, traceback.format_exc(), quiet_if_recorded=False)
    return 0
