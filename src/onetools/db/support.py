"""Which database versions onedb supports, per engine.

Kept apart from the schema package (which builds every version's tables as data on import) so
that ``onedb version`` imports only what it needs.
"""

from __future__ import annotations

SUPPORTED_VERSIONS: tuple[str, ...] = (
    "5.10.0",
    "5.12.0",
    "6.0.0",
    "6.2.0",
    "6.4.0",
    "6.6.0",
    "6.8.0",
    "6.10.0",
)
LATEST = "6.10.0"

#: Releases whose oned could run on PostgreSQL (added in 5.12, removed in 6.10).
POSTGRESQL_VERSIONS: frozenset[str] = frozenset(
    {"5.12.0", "6.0.0", "6.2.0", "6.4.0", "6.6.0", "6.8.0"}
)


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def latest_for(kind: str) -> str:
    """The newest version an engine can hold: PostgreSQL stops at 6.8.0, the others ``LATEST``."""
    return max(POSTGRESQL_VERSIONS, key=version_key) if kind == "postgresql" else LATEST
