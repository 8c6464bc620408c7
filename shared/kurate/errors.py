"""The small exception hierarchy every phase raises, and how any error reads on its way out.

Every entry point (the ``kurate`` command, each ``python -m kurate.phases.<phase>``, a kfp task)
ends a failure with one plain line, ``kurate: error: <message>``, and the exit code of its class:

=========================================================  ====  =========================================
class                                                      exit  meaning
=========================================================  ====  =========================================
``ConfigError``                                            2     a key or value is wrong (the key is named)
``OutputExistsError``                                      2     the run folder holds a complete run
``RunFolderBusyError`` (a ``ConfigError``)                 2     another live run holds the run folder
``SettingsChangedError`` (a ``ConfigError``)               2     a run folder resumed with other settings
``DatapoolConflictError``                                  3     another run updated the datapool meanwhile
``KurateError``, ``StorageError``, ``DatapoolError``, ...  1     the run cannot go on (named cause)
any other exception (disk full, a bug)                     1     one line too (:func:`describe`)
=========================================================  ====  =========================================

The traceback is never on the console unless ``KURATE_DEBUG=1``; the ``kurate`` command always
writes it to the run's log file (``<run>/kurate.log``).
"""

from __future__ import annotations

import errno
import os

#: Set to 1 to see full tracebacks on the console.
DEBUG_ENV = "KURATE_DEBUG"


class KurateError(Exception):
    """Base of every error kurate raises on purpose (never a bug)."""

    exit_code = 1


class ConfigError(KurateError):
    """A configuration key or value is wrong; the message names the key and what is allowed."""

    exit_code = 2

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}" if key else message)

    def __reduce__(self) -> tuple:
        return (type(self), (self.key, self.message))


class CorruptFileError(KurateError):
    """A single input file cannot be used; reported and skipped, never fatal for the run."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"{name}: {reason}")

    def __reduce__(self) -> tuple:
        return (type(self), (self.name, self.reason))


class StorageError(KurateError):
    """A systemic storage problem (missing credentials, access denied, no such bucket): fatal at once."""


class OutputExistsError(KurateError):
    """The run directory already holds a complete run; kurate never overwrites finished outputs."""

    exit_code = 2


class SelectionError(KurateError):
    """Selection cannot proceed (e.g. no valid sample left)."""


class DatapoolError(KurateError):
    """The datapool cannot be used with this run (model or dimension mismatch, unreadable state)."""


class DatapoolConflictError(DatapoolError):
    """Another run updated the datapool after this run read it; nothing of this run was committed."""

    exit_code = 3


class PhaseFailedError(KurateError):
    """A pipeline task failed: its phase's one-line message and exit code, across the process boundary.

    See :mod:`kurate.phases._entry`; ``detail`` holds the task's traceback for the run's log.
    """

    def __init__(
        self, message: str, exit_code: int = 1, phase: str = "", error_class: str = "", detail: str = ""
    ) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.phase = phase
        self.error_class = error_class
        self.detail = detail

    def __reduce__(self) -> tuple:
        return (type(self), (str(self), self.exit_code, self.phase, self.error_class, self.detail))


class RunFolderBusyError(ConfigError):
    """Another live ``kurate`` run holds the run folder (see :mod:`kurate.io.runfolder`)."""

    def __init__(self, message: str) -> None:
        super().__init__("run_directory", message)

    def __reduce__(self) -> tuple:
        return (type(self), (self.message,))


class SettingsChangedError(ConfigError):
    """A run folder is resumed with settings other than those it was started with."""

    def __init__(self, message: str) -> None:
        super().__init__("run_directory", message)

    def __reduce__(self) -> tuple:
        return (type(self), (self.message,))


def debug_enabled() -> bool:
    """Whether ``KURATE_DEBUG`` asks for tracebacks on the console."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def one_line(text: str) -> str:
    """``text`` on one line: line breaks become spaces, other control characters are shown escaped."""
    joined = " ".join(part.strip() for part in str(text).splitlines() if part.strip())
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in joined)


_OS_WORDS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOENT: "no such file or folder",
    errno.ENOTDIR: "not a folder",
    errno.EISDIR: "is a folder",
    errno.EMFILE: "too many open files",
    errno.ENOMEM: "out of memory",
    errno.EIO: "input/output error",
}


def describe(exc: BaseException) -> tuple[str, int]:
    """One plain line and the exit code for any exception (kurate's own, the system's, or a bug)."""
    if isinstance(exc, KurateError):
        return one_line(str(exc)), int(exc.exit_code)
    if isinstance(exc, OSError):
        words = _OS_WORDS.get(exc.errno or 0) or str(exc.strerror or exc or type(exc).__name__).lower()
        where = f": {exc.filename}" if exc.filename is not None else ""
        if getattr(exc, "filename2", None) is not None:
            where += f" -> {exc.filename2}"
        return one_line(words + where), 1
    if isinstance(exc, MemoryError):
        return "out of memory", 1
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", 130
    lines = str(exc).splitlines()
    first = f": {lines[0]}" if lines else ""
    return one_line(f"internal error: {type(exc).__name__}{first} (set {DEBUG_ENV}=1 to see where)"), 1
