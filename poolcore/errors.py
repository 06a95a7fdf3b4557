"""The errors of reading and writing files, shared by ``io``, ``atomic`` and ``_wide16``.

They live here, not in ``io``, so that the modules ``io`` imports can raise them without an
import cycle; ``poolcore.io`` re-exports them and is where users find them::

    PoolIOError > ReadError(ValueError), WriteError(ValueError), OutputExistsError(FileExistsError)
"""

from __future__ import annotations

__all__ = ["OutputExistsError", "PoolIOError", "ReadError", "WriteError"]


class PoolIOError(Exception):
    """Base of the errors of reading and writing; ``path`` names the file, ``reason`` says why."""

    def __init__(self, path: str, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class ReadError(PoolIOError, ValueError):
    """A file could not be read: missing, corrupt, truncated, unsupported, too large."""


class WriteError(PoolIOError, ValueError):
    """An item cannot be written as asked (format cannot hold the mode, bad target...)."""


class OutputExistsError(PoolIOError, FileExistsError):
    """The target exists and ``overwrite`` was not given."""

    def __init__(self, path: str, reason: str = "already exists; pass --overwrite to replace it"):
        super().__init__(path, reason)
