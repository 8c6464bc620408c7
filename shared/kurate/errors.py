"""The small exception hierarchy every phase raises, so entry points can map errors to exit codes."""


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
