"""Exception hierarchy of onetools; every exception carries the exit code it ends a command with.

The table of exit codes lives here and nowhere else: the CLI layer maps any ``OnetoolsError`` to
``exc.exit_code`` and prints ``exc.log_line()``; anything else is an internal error (255).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~20 ms of start-up: annotations only
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

# Exit codes shared by every tool (the originals use ``exit(-1)``, which the shell sees as 255).
EXIT_OK = 0
EXIT_PARTIAL = 1  # onecfg patch: some changes not applied; validate: some files failed
EXIT_FATAL = 255


class OnetoolsError(Exception):
    """Base of every error a command reports as one ``ERROR : …`` line."""

    exit_code = EXIT_FATAL
    level = "ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def log_line(self) -> str:
        return self.message


class UsageError(OnetoolsError):
    """Bad command-line usage (unknown format, missing input, ...)."""


class FileParseError(OnetoolsError):
    """A file (config file or patch input) could not be parsed.

    ``path`` is the file name shown to the user and ``line`` the 1-based line number, when known.
    """

    def __init__(self, message: str, path: str | None = None, line: int | None = None) -> None:
        self.reason = message
        self.path = path
        self.line = line
        super().__init__(self._compose())

    def _compose(self) -> str:
        text = self.reason
        if self.path is not None:
            text = f"{self.path}: {text}"
        if self.line is not None:
            text = f"{text} at line {self.line}"
        return text

    def detail(self) -> str:
        """The reason with the line, without the file name (for messages that name it)."""
        return self.reason if self.line is None else f"{self.reason} at line {self.line}"

    def located(self, path: str) -> FileParseError:
        """Return a copy of this error that names ``path`` as the file."""
        return type(self)(self.reason, path, self.line)


class StructureError(FileParseError):
    """The file parsed, but its structure is not what the format allows (duplicate sections...)."""


class FatalError(OnetoolsError):
    """An unrecoverable condition (bad classification, symlinks in the tree, ...)."""


class LockError(OnetoolsError):
    """Another run holds the lock on the same tree."""


class PatchError(OnetoolsError):
    """A change could not be applied to a file.  ``op`` is the failing change, when known."""

    def __init__(self, message: str, op: Any = None) -> None:
        super().__init__(message)
        self.op = op


class PatchPathNotFound(PatchError):
    def __init__(self, path: str, op: Any = None) -> None:
        super().__init__(f"Patch path '{path or '(top level)'}' not found", op)


class PatchInvalidMultiple(PatchError):
    def __init__(self, key: str, op: Any = None) -> None:
        super().__init__(f"Wrong multiple use of parameter '{key}'", op)


class PatchUnexpectedData(PatchError):
    def __init__(self, expected: str, got: str, op: Any = None) -> None:
        super().__init__(f"Expected {expected} but got {got}", op)


class PatchValueNotFound(PatchError):
    def __init__(self, value: Any, op: Any = None) -> None:
        super().__init__(f"Value '{value}' not found", op)


def failures_of(ids: Iterable[int], action: Callable[[int], object]) -> dict[int, OnetoolsError]:
    """Run ``action`` on every ID, going on after a failure (what a ranged command such as
    ``onemarket chmod 1..5`` needs); the failures by ID, the other IDs done."""
    failures: dict[int, OnetoolsError] = {}
    for oid in ids:
        try:
            action(oid)
        except OnetoolsError as exc:
            failures[oid] = exc
    return failures
