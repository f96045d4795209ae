"""local chain 6.6.0 -> 6.8.0: only the version changes."""

from __future__ import annotations

from onetools.db.backends.base import Backend
from onetools.db.migrations import Progress

SOURCE = "6.6.0"
TARGET = "6.8.0"


def upgrade(backend: Backend, progress: Progress) -> None:
    """Nothing to change in the local tables."""
