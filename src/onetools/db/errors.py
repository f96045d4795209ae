"""Errors of the database layer, each with the exit code onedb ends with."""

from __future__ import annotations

from onetools.errors import OnetoolsError


class DatabaseError(OnetoolsError):
    """A database could not be reached, read or written (exit 255)."""


class NotBootstrapped(DatabaseError):
    """The database has no version rows and no oneadmin user (``onedb version`` exit 1)."""

    exit_code = 1


class OnedRunning(DatabaseError):
    """oned is running (lock file or reachable XML-RPC endpoint): offline commands refuse."""
