"""``onedb sqlite2mysql``: copy an OpenNebula SQLite database into a MySQL one (reference §4.5).

The MySQL database must already be bootstrapped (start oned on it once) with the same shared
and local versions as the SQLite one, and hold every table and column of it.  Each table's
rows are replaced (``DELETE`` then batched INSERTs, streamed from SQLite) inside one MySQL
transaction; ``logdb.fed_index`` values of 2^64 and above are clamped to 2^64-1 (oned's
unsigned BIGINT, bug #5783).  The row count of every table is verified before the commit: a
mismatch rolls everything back.  Making a backup first is the caller's job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from onetools.db.backends.base import Backend, Row
from onetools.db.errors import DatabaseError

MAX_FED_INDEX = 2**64 - 1
VERSION_TABLES = ("db_versioning", "local_db_versioning")
PROGRESS_EVERY = 1000


def _version(backend: Backend, table: str, label: str) -> str:
    if not backend.table_exists(table):
        raise DatabaseError(f"{label} database has no {table} table: is it bootstrapped?")
    value = backend.scalar(
        f"SELECT version FROM {table} WHERE oid = (SELECT MAX(oid) FROM {table})"
    )
    if value is None:
        raise DatabaseError(f"{label} database has no version in {table}: is it bootstrapped?")
    return str(value)


def _clamp(value: Any) -> Any:
    if value is None:
        return None
    try:
        number = int(value) if not isinstance(value, str) else int(float(value))
    except (TypeError, ValueError):
        return value
    return MAX_FED_INDEX if number >= MAX_FED_INDEX else number


def _rows(
    source: Iterator[Row], clamp_at: int | None, report: Callable[[int], None]
) -> Iterator[Sequence[Any]]:
    for done, row in enumerate(source, 1):
        if clamp_at is None:
            yield row
        else:
            values = list(row)
            values[clamp_at] = _clamp(values[clamp_at])
            yield values
        if done % PROGRESS_EVERY == 0:
            report(done)


def sqlite_to_mysql(
    sqlite_backend: Backend,
    mysql_backend: Backend,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, int]:
    """Copy every table of ``sqlite_backend`` into ``mysql_backend``; rows copied per table.

    ``progress(table, rows done, rows in total)`` is called when a table starts, every
    ``PROGRESS_EVERY`` rows and when it is done.
    """
    if sqlite_backend.kind != "sqlite" or mysql_backend.kind != "mysql":
        raise DatabaseError("sqlite2mysql copies a SQLite database into a MySQL one")
    for table in VERSION_TABLES:
        source = _version(sqlite_backend, table, "SQLite")
        target = _version(mysql_backend, table, "MySQL")
        if source != target:
            raise DatabaseError(
                f"SQLite and MySQL databases must have the same version ({table}: SQLite "
                f"{source}, MySQL {target}). Bootstrap the MySQL database by starting "
                "OpenNebula on it once with the same version."
            )
    tables = sqlite_backend.tables()
    target_tables = set(mysql_backend.tables())
    missing = [table for table in tables if table not in target_tables]
    if missing:
        raise DatabaseError(f"MySQL database lacks the table(s): {', '.join(missing)}")
    plan: list[tuple[str, list[str]]] = []
    for table in tables:
        columns = sqlite_backend.columns(table)
        target_columns = set(mysql_backend.columns(table))
        lacking = [c for c in columns if c not in target_columns]
        if lacking:
            raise DatabaseError(f"MySQL table {table} lacks the column(s): {', '.join(lacking)}")
        plan.append((table, columns))

    counts: dict[str, int] = {}
    with mysql_backend.transaction():
        for table, columns in plan:
            expected = int(
                sqlite_backend.scalar(f"SELECT COUNT(*) FROM {sqlite_backend.quote(table)}")
            )

            def report(done: int, table: str = table, total: int = expected) -> None:
                if progress is not None:
                    progress(table, done, total)

            report(0)
            target = mysql_backend.quote(table)
            mysql_backend.execute(f"DELETE FROM {target}")
            source_list = ", ".join(sqlite_backend.quote(c) for c in columns)
            target_list = ", ".join(mysql_backend.quote(c) for c in columns)
            marks = ", ".join("?" for _ in columns)
            clamp_at = (
                columns.index("fed_index") if table == "logdb" and "fed_index" in columns else None
            )
            mysql_backend.executemany(
                f"INSERT INTO {target} ({target_list}) VALUES ({marks})",
                _rows(
                    sqlite_backend.stream(
                        f"SELECT {source_list} FROM {sqlite_backend.quote(table)}"
                    ),
                    clamp_at,
                    report,
                ),
            )
            copied = int(mysql_backend.scalar(f"SELECT COUNT(*) FROM {target}"))
            if copied != expected:
                raise DatabaseError(
                    f"Table {table}: {expected} rows in SQLite but {copied} in MySQL after the "
                    "copy; nothing was changed"
                )
            counts[table] = copied
            report(copied)
    return counts
