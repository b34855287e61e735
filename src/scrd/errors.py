"""The errors a user can act on. Every one derives from :class:`ScrdError`.

The command line catches ``ScrdError`` alone and prints its message on one line: the message
names the file or option and the problem, which is all a user needs. Any other exception is a
bug in scrd and keeps its traceback (``scrd --debug`` shows the traceback for every error).
Each class also derives from the built-in type its callers would expect (``ValueError`` for bad
input, ``RuntimeError`` for a job that cannot go on), so ``except ValueError`` keeps working.
"""

from __future__ import annotations


class ScrdError(Exception):
    """A problem with the user's input, files or environment; the message says what to fix."""


class ConfigError(ScrdError, ValueError):
    """A configuration value, key or command-line flag is invalid."""


class DatasetError(ScrdError, ValueError):
    """A dataset or input list is malformed; the message names the source and the entries."""


class ImageReadError(ScrdError, ValueError):
    """An image file could not be decoded; the message names the file and the problem.

    The constructor takes the message first (like ValueError), so DataLoader workers can
    re-raise it in the main process with its type intact.
    """

    def __init__(self, message: str, path: object = None) -> None:
        super().__init__(message)
        from pathlib import Path

        self.path = Path(path) if path is not None else None  # type: ignore[arg-type]


class CheckpointError(ScrdError, RuntimeError):
    """A checkpoint or model file is missing, unreadable, unsafe or does not fit the model."""


class WeightsError(ScrdError, RuntimeError):
    """A teacher weight file is missing, corrupt or not the expected one."""


class TrainingError(ScrdError, RuntimeError):
    """Training cannot start or cannot go on (bad data, non-finite loss, bad run directory)."""


class ResumeError(TrainingError):
    """A run cannot be resumed as asked (other data, changed options, nothing to resume)."""


class PrepareError(ScrdError, ValueError):
    """A raw download cannot be prepared (wrong folder, duplicate names, bad CSV ...)."""


class DeviceError(ScrdError, RuntimeError):
    """The requested device does not exist on this machine."""


class InputError(ScrdError, ValueError):
    """A job was given inputs it cannot use (e.g. abnormal images for a calibration)."""
