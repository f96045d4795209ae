"""The database's version: what the versioning tables say, and how it compares to ours.

oned keeps two histories: ``db_versioning`` for the shared (federated) tables and
``local_db_versioning`` for the local ones; the row with the highest ``oid`` is current.
``check_version`` gives ``onedb version``'s exit code: 0 current, 1 not bootstrapped,
2 upgrade needed (either table behind, the comparison fixed in 6.6), 3 newer than supported.
"""

from __future__ import annotations

import time

from onetools.db.backends.base import Backend
from onetools.db.errors import DatabaseError, NotBootstrapped
from onetools.db.support import LATEST, latest_for

TYPE_CHECKING = False  # no typing/dataclasses at run time: `onedb version` starts fast
if TYPE_CHECKING:
    from typing import Any

    from onetools.db.migrations import MigrationStep

SHARED_TABLE = "db_versioning"
LOCAL_TABLE = "local_db_versioning"

VERSION_CURRENT = 0
VERSION_NOT_BOOTSTRAPPED = 1
VERSION_UPGRADE_NEEDED = 2
VERSION_NEWER = 3

#: Version assumed for a database with a oneadmin user but no versioning rows (as onedb).
PRE_VERSIONING = "2.0"

HISTORY_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def version_key(version: str) -> tuple[int, ...]:
    """A version string as comparable numbers ("5.10.0" > "5.9.0")."""
    parts = []
    for piece in version.strip().split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


class VersionRow:
    """One row of a versioning table."""

    __slots__ = ("comment", "is_slave", "oid", "timestamp", "version")

    def __init__(
        self, oid: int, version: str, timestamp: int, comment: str, is_slave: bool = False
    ) -> None:
        self.oid = oid
        self.version = version
        self.timestamp = timestamp
        self.comment = comment
        self.is_slave = is_slave

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VersionRow) and all(
            getattr(self, name) == getattr(other, name) for name in self.__slots__
        )

    def __hash__(self) -> int:
        return hash((self.oid, self.version, self.timestamp, self.comment, self.is_slave))

    def __repr__(self) -> str:
        return f"VersionRow({self.oid}, {self.version!r}, {self.timestamp}, {self.comment!r})"

    def time_text(self, fmt: str = HISTORY_TIME_FORMAT) -> str:
        return time.strftime(fmt, time.localtime(self.timestamp))

    def to_dict(self) -> dict[str, Any]:
        return {
            "oid": self.oid,
            "version": self.version,
            "timestamp": self.timestamp,
            "time": self.time_text(),
            "comment": self.comment,
            "is_slave": self.is_slave,
        }

    def render(self) -> str:
        """This row as ``onedb history`` prints it (a block ending with a blank line)."""
        return (
            f"Version:   {self.version}\nTimestamp: {self.time_text()}\nComment:   {self.comment}\n"
        )


class DbVersions:
    """The current (max-oid) rows of both versioning tables."""

    __slots__ = ("local", "shared")

    def __init__(self, shared: VersionRow, local: VersionRow) -> None:
        self.shared = shared
        self.local = local

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DbVersions) and (self.shared, self.local) == (
            other.shared,
            other.local,
        )

    def __hash__(self) -> int:
        return hash((self.shared, self.local))

    def __repr__(self) -> str:
        return f"DbVersions(shared={self.shared!r}, local={self.local!r})"

    @property
    def is_slave(self) -> bool:
        return self.local.is_slave


class VersionStatus:
    """The outcome of ``check_version``: exit code, versions and what would run."""

    def __init__(
        self,
        code: int,
        message: str,
        versions: DbVersions | None = None,
        required_shared: str = LATEST,
        required_local: str = LATEST,
        pending_shared: list[MigrationStep] | None = None,
        pending_local: list[MigrationStep] | None = None,
    ) -> None:
        self.code = code
        self.message = message
        self.versions = versions
        self.required_shared = required_shared
        self.required_local = required_local
        self.pending_shared: list[MigrationStep] = pending_shared or []
        self.pending_local: list[MigrationStep] = pending_local or []

    @property
    def exit_code(self) -> int:
        return self.code

    @property
    def shared(self) -> str | None:
        return self.versions.shared.version if self.versions else None

    def render(self, verbose: bool = False) -> str:
        """The text of ``onedb version`` (``-v``: timestamps, comments, pending steps)."""
        return version_text(self, verbose)

    def to_dict(self) -> dict[str, Any]:
        versions = self.versions
        return {
            "exit_code": self.code,
            "message": self.message,
            "shared": versions.shared.to_dict() if versions else None,
            "local": versions.local.to_dict() if versions else None,
            "is_slave": versions.is_slave if versions else None,
            "required_shared": self.required_shared,
            "required_local": self.required_local,
            "pending_shared": [step.label for step in self.pending_shared],
            "pending_local": [step.label for step in self.pending_local],
        }

    @property
    def local(self) -> str | None:
        return self.versions.local.version if self.versions else None


def _current_row(backend: Backend, table: str) -> VersionRow | None:
    """The max-oid row of a versioning table, None when the table is missing or empty."""
    if not backend.table_exists(table):
        return None
    slave = ", is_slave" if table == LOCAL_TABLE else ""
    rows = backend.query(
        f"SELECT oid, version, timestamp, comment{slave} FROM {table} "
        f"WHERE oid = (SELECT MAX(oid) FROM {table})"
    )
    if not rows:
        return None
    return _row(rows[0])


def _flag(value: object) -> bool:
    """A BOOLEAN as each engine returns it (0/1, '0'/'1', True/False)."""
    if value is None:
        return False
    if isinstance(value, bool | int):
        return bool(value)
    return str(value).strip().lower() in ("1", "true", "t", "yes")


def _row(row: tuple[object, ...]) -> VersionRow:
    slave = _flag(row[4]) if len(row) > 4 else False
    return VersionRow(
        oid=int(str(row[0])),
        version=str(row[1]),
        timestamp=int(str(row[2] or 0)),
        comment=str(row[3] or ""),
        is_slave=slave,
    )


def has_oneadmin(backend: Backend) -> bool:
    """Whether ``user_pool`` has the oneadmin row (oid 0)."""
    if not backend.table_exists("user_pool"):
        return False
    return backend.scalar("SELECT COUNT(*) FROM user_pool WHERE oid = 0") not in (0, None)


def read_versions(backend: Backend) -> DbVersions:
    """The database's current shared and local versions.

    Raises ``NotBootstrapped`` (exit 1) when neither versioning rows nor the oneadmin user
    exist.  A database with oneadmin but no versioning rows predates versioning: "2.0".
    """
    shared = _current_row(backend, SHARED_TABLE)
    local = _current_row(backend, LOCAL_TABLE)
    if shared is None or local is None:
        if shared is None and local is None and not has_oneadmin(backend):
            raise NotBootstrapped("Database is not correctly bootstraped.")
        fallback = shared or local or VersionRow(-1, PRE_VERSIONING, 0, "")
        shared = shared or fallback
        local = local or VersionRow(-1, fallback.version, 0, "")
    return DbVersions(shared, local)


def compare(versions: DbVersions, required: str = LATEST) -> int:
    """0 both current, 3 either newer than ``required``, 2 either behind."""
    want = version_key(required)
    keys = (version_key(versions.shared.version), version_key(versions.local.version))
    if any(key > want for key in keys):
        return VERSION_NEWER
    if any(key < want for key in keys):
        return VERSION_UPGRADE_NEEDED
    return VERSION_CURRENT


def check_version(backend: Backend, *, with_pending: bool = True) -> VersionStatus:
    """Compare the database's versions with ``LATEST``; the result carries the exit code.

    With ``with_pending`` the steps an upgrade would run are listed too.
    """
    try:
        versions = read_versions(backend)
    except NotBootstrapped as exc:
        return VersionStatus(VERSION_NOT_BOOTSTRAPPED, exc.message)
    required = latest_for(backend.kind)
    _check_known(versions, required)
    code = compare(versions, required)
    messages = {
        VERSION_CURRENT: "Database schema is up to date.",
        VERSION_UPGRADE_NEEDED: "Update required. Expected DB version is:",
        VERSION_NEWER: "WARNING: Source version is lower than DB version",
    }
    status = VersionStatus(code, messages[code], versions, required, required)
    if with_pending and code == VERSION_UPGRADE_NEEDED:
        from onetools.db.migrations import pending_steps

        status.pending_shared = (
            [] if versions.is_slave else pending_steps("shared", versions.shared.version, required)
        )
        status.pending_local = pending_steps("local", versions.local.version, required)
    return status


def _check_known(versions: DbVersions, required: str) -> None:
    """Refuse version rows onedb cannot reason about: not a dotted number, or older than the
    newest version but not one the upgrade steps start from (e.g. 6.3.0, 5.8.0)."""
    from onetools.db.support import SUPPORTED_VERSIONS, version_key

    for table, row in (("db_versioning", versions.shared), ("local_db_versioning", versions.local)):
        text = row.version.strip()
        parts = text.split(".")
        if not text or not all(part.isdigit() for part in parts):
            raise DatabaseError(f"Unknown database version '{row.version}' in {table}")
        if version_key(text) < version_key(required) and text not in SUPPORTED_VERSIONS:
            raise DatabaseError(
                f"Unsupported database version {text} in {table} (onedb upgrades "
                f"{SUPPORTED_VERSIONS[0]} and later)"
            )


def version_text(status: VersionStatus, verbose: bool = False) -> str:
    """The text ``onedb version`` prints (``-v``: rows' timestamps, comments, pending steps)."""
    if status.versions is None:
        return status.message + "\n"
    versions = status.versions
    if not verbose:
        return (
            f"Shared: {versions.shared.version}\n"
            f"Local:  {versions.local.version}\n"
            f"Required shared version: {status.required_shared}\n"
            f"Required local version:  {status.required_local}\n"
        )
    lines: list[str] = []
    for label, row, required in (
        ("Shared tables version:", versions.shared, status.required_shared),
        ("Local tables version: ", versions.local, status.required_local),
    ):
        lines += [
            f"{label} {row.version}",
            f"Required version:      {required}",
            f"Timestamp: {row.time_text()}",
            f"Comment:   {row.comment}",
            "",
        ]
    if versions.is_slave:
        lines.append("This database is a federation slave")
        lines.append("")
    for chain, steps in (("shared", status.pending_shared), ("local", status.pending_local)):
        if steps:
            lines.append(f"Pending {chain} steps:")
            lines += [
                f"  {step.name:<20} {step.source} -> {step.target}  pending" for step in steps
            ]
            lines.append("")
    return "\n".join(lines) + "\n"


def history(backend: Backend, table: str = SHARED_TABLE) -> list[VersionRow]:
    """Every row of a versioning table, oldest first (``onedb history``)."""
    if not backend.table_exists(table):
        raise DatabaseError(f"No version records found. Error message: no table {table}")
    slave = ", is_slave" if table == LOCAL_TABLE else ""
    rows = backend.query(
        f"SELECT oid, version, timestamp, comment{slave} FROM {table} ORDER BY oid"
    )
    return [_row(row) for row in rows]


def history_text(rows: list[VersionRow]) -> str:
    """``onedb history``'s text: version, timestamp (with the year), comment, blank line."""
    return "\n".join(row.render() for row in rows)


def migrated_comment(source: str, target: str) -> str:
    """The comment onedb writes after a chain of steps."""
    return f"Database migrated from {source} to {target} (OpenNebula {target}) by onedb command."


def append_version_row(
    backend: Backend,
    table: str,
    source: str,
    target: str,
    *,
    now: int | None = None,
) -> VersionRow:
    """Record that a chain took ``table``'s tables from ``source`` to ``target``.

    ``oid`` = MAX(oid)+1; the local table's row copies ``is_slave`` from the current row.
    """
    stamp = int(time.time()) if now is None else now
    comment = migrated_comment(source, target)
    oid = int(str(backend.scalar(f"SELECT COALESCE(MAX(oid), -1) FROM {table}"))) + 1
    if table == LOCAL_TABLE:
        current = _current_row(backend, LOCAL_TABLE)
        is_slave = current.is_slave if current else False
        backend.execute(
            f"INSERT INTO {table} (oid, version, timestamp, comment, is_slave) "
            "VALUES (?, ?, ?, ?, ?)",
            (oid, target, stamp, comment, is_slave),
        )
        return VersionRow(oid, target, stamp, comment, is_slave)
    backend.execute(
        f"INSERT INTO {table} (oid, version, timestamp, comment) VALUES (?, ?, ?, ?)",
        (oid, target, stamp, comment),
    )
    return VersionRow(oid, target, stamp, comment)
