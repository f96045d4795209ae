"""Database engines behind one interface; ``open_backend`` picks one from the settings."""

from __future__ import annotations

from onetools.db.backends.base import Backend, ConnectionSettings
from onetools.db.errors import DatabaseError

BACKENDS = ("sqlite", "mysql", "postgresql")


def open_backend(settings: ConnectionSettings, create: bool = False) -> Backend:
    """Connect to the database the settings describe (imports the driver it needs only)."""
    if settings.backend == "sqlite":
        from onetools.db.backends.sqlite import SQLiteBackend

        return SQLiteBackend(settings, create=create)
    if settings.backend == "mysql":
        from onetools.db.backends.mysql import MySQLBackend

        return MySQLBackend(settings)
    if settings.backend == "postgresql":
        from onetools.db.backends.postgresql import PostgreSQLBackend

        return PostgreSQLBackend(settings)
    raise DatabaseError(
        f"DB BACKEND must be one of {', '.join(BACKENDS)}, not '{settings.backend}'"
    )
