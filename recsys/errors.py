"""Every error the engine raises on purpose, in one tree.

The command line prints ``str(error)`` as one line and exits non-zero; the HTTP API maps each
class to a status code in one place (``serving/errors.py``). Anything that is *not* a
``RecsysError`` is a bug.

::

    RecsysError
    ├── ConfigError               a settings value or a TOML/JSON config is invalid (names the key)
    ├── DataError                 input data is not what it claims to be
    │   ├── FileFormatError       a whole file is unusable: binary, empty, wrong columns, encoding
    │   └── RowError              one row is bad: names file, line, column and value
    ├── StoreError                the event store failed or refused
    │   └── MigrationError        the schema could not be brought up to date
    ├── NotFoundError             a named thing does not exist (item, model version, experiment)
    ├── ModelError                a model cannot do what was asked
    │   ├── NotFittedError        used before ``fit``
    │   └── ModelTooLargeError    refuses a data size it is not built for
    ├── ArtifactError             a model version on disk is corrupt, tampered with or incomplete
    ├── RegistryError             the registry refused an operation (lock held, no rollback)
    │   └── RegressionError       a new version evaluates worse than the current one
    ├── AuthError                 no API key, or a wrong one
    └── OverloadedError           too much work in flight; try again later
"""

from __future__ import annotations

from datetime import date
from pathlib import Path


class RecsysError(Exception):
    """Base class of every error raised on purpose by the engine."""


class ConfigError(RecsysError):
    """A configuration value is invalid; the message names the key."""


class DataError(RecsysError):
    """Input data is invalid."""


class FileFormatError(DataError):
    """A whole input file is unusable (binary, empty, wrong columns, wrong encoding)."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class RowError(DataError):
    """One row of an input file is invalid.

    Parameters
    ----------
    path
        The file the row came from.
    line
        1-based line number in the file (the header is line 1 for CSV).
    column
        The column (field) that is wrong.
    value
        The offending value, as read.
    reason
        What is wrong with it.
    """

    def __init__(
        self, path: str | Path, line: int, column: str, value: object, reason: str
    ) -> None:
        self.path = str(path)
        self.line = line
        self.column = column
        self.value = value
        self.reason = reason
        # a Parquet cell is a Python value: a time as its text, not "datetime.datetime(2011,
        # 12, 1, 10, 0)" or a repr naming its zoneinfo
        shown = repr(value.isoformat() if isinstance(value, date) else value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"{self.path}, line {line}, column '{column}': {shown} {reason}")


class StoreError(RecsysError):
    """The event store failed or refused an operation."""


class MigrationError(StoreError):
    """The store schema could not be migrated."""


class NotFoundError(RecsysError):
    """A named thing (item, user, model version, experiment) does not exist."""


class ModelError(RecsysError):
    """A model cannot do what was asked."""


class NotFittedError(ModelError):
    """A model was used before ``fit``."""


class ModelTooLargeError(ModelError):
    """A model refuses a data size it is not built for."""


class ArtifactError(RecsysError):
    """A model artifact is corrupt, tampered with, or incomplete."""


class RegistryError(RecsysError):
    """The model registry refused an operation."""


class RegressionError(RegistryError):
    """A new version evaluates worse than the current one by more than the allowed margin."""


class AuthError(RecsysError):
    """Missing or wrong API key."""

    def __init__(self, message: str, *, missing: bool) -> None:
        self.missing = missing
        super().__init__(message)


class OverloadedError(RecsysError):
    """Too many requests in flight."""
