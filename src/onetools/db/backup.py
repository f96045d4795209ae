"""``onedb backup`` / ``restore``: textual SQL dumps written by streaming rows ourselves.

No external program is used (no ``mysqldump``, ``sqlite3``, ``pg_dump``, ``mysql``, ``psql``):
the dump is produced from the open connection and restored statement by statement, so it
works wherever the Python drivers do, and passwords never appear on a command line.

A dump is plain SQL for the engine it comes from, in UTF-8, and can also be fed to that
engine's own client (``mysql db < file``, ``sqlite3 one.db < file``, ``psql -f file``):

* a header of ``-- `` comment lines (engine, scope: full or federated, tables);
* on MySQL, ``SET NAMES utf8mb4`` and a session ``sql_mode`` with ``NO_BACKSLASH_ESCAPES``,
  so string literals are standard SQL on every engine (only ``'`` is doubled);
* per table ``DROP TABLE IF EXISTS``, the table's DDL (SQLite: ``sqlite_master``; MySQL:
  ``SHOW CREATE TABLE``; PostgreSQL: rebuilt from the catalog — columns, types, defaults,
  NOT NULL, primary key/unique/check constraints and other indexes), then the rows as
  multi-row INSERTs of at most ``BATCH_ROWS`` rows / about ``BATCH_BYTES`` bytes;
* a last line ``-- end of onedb backup``: restore refuses a dump without it (truncated).

Files are written to a temporary file beside the target (mode 0600: bodies hold password
hashes), fsynced and renamed.  Restore streams the file (memory bounded by one statement) and
runs it in one transaction on SQLite and PostgreSQL; on MySQL DDL commits implicitly.

Federated backups (reference §4.1/§4.3) hold the federated tables and ``logdb`` restricted to
``fed_index != -1``; as with the original, restoring one replaces ``logdb`` by those rows.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import decimal
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO, Any

from onetools.db.backends import open_backend
from onetools.db.backends.base import Backend, ConnectionSettings
from onetools.db.errors import DatabaseError

#: Tables replicated across a federation (reference §2.1); ``logdb`` is added filtered.
FEDERATED_TABLES = (
    "group_pool",
    "user_pool",
    "acl",
    "zone_pool",
    "vdc_pool",
    "marketplace_pool",
    "marketplaceapp_pool",
    "db_versioning",
)
MAGIC = "-- onetools onedb backup"
END = "-- end of onedb backup"
BATCH_ROWS = 500
BATCH_BYTES = 1 << 20
MYSQL_SESSION = (
    "SET NAMES utf8mb4",
    "SET SESSION sql_mode = CONCAT_WS(',', NULLIF(@@sql_mode, ''), "
    "'NO_BACKSLASH_ESCAPES', 'NO_AUTO_VALUE_ON_ZERO')",
    "SET FOREIGN_KEY_CHECKS = 0",
)


# -- names ------------------------------------------------------------------------------------
def _var_location() -> str:
    location = os.environ.get("ONE_LOCATION")
    return os.path.join(location, "var") if location else "/var/lib/one"


def default_backup_name(
    settings: ConnectionSettings, federated: bool = False, now: _dt.datetime | None = None
) -> str:
    """The original's default backup path (reference §4.1): date parts are not zero-padded."""
    now = now or _dt.datetime.now()
    stamp = f"{now.year}-{now.month}-{now.day}_{now.hour}:{now.minute}:{now.second}"
    fed = "federated_" if federated else ""
    if settings.backend == "sqlite":
        name = f"one.db_{fed}{stamp}.bck"
    else:
        name = f"{settings.backend}_{settings.server}_{settings.db_name}_{fed}{stamp}.sql"
    return os.path.join(_var_location(), name)


# -- literals ---------------------------------------------------------------------------------
def sql_literal(value: Any, kind: str) -> str:
    """``value`` as an SQL literal for engine ``kind`` (standard strings: ``'`` doubled)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        if kind == "postgresql":
            return "TRUE" if value else "FALSE"
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return "NULL" if kind != "postgresql" else f"'{value}'::float8"
        return repr(value)
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value).hex()
        return f"decode('{data}', 'hex')" if kind == "postgresql" else f"X'{data}'"
    if isinstance(value, _dt.datetime | _dt.date | _dt.time | _dt.timedelta):
        value = str(value)
    text = str(value)
    if "\r" in text or "\0" in text:
        # Command-line clients turn CR LF into LF: spell such strings without a raw CR.
        if kind == "postgresql":  # (PostgreSQL text cannot hold NUL)
            escaped = text.replace("\\", "\\\\").replace("'", "''").replace("\r", "\\r")
            return "E'" + escaped + "'"
        data = text.encode("utf-8").hex()
        return f"CAST(X'{data}' AS TEXT)" if kind == "sqlite" else f"_utf8mb4 X'{data}'"
    return "'" + text.replace("'", "''") + "'"


# -- DDL --------------------------------------------------------------------------------------
def table_ddl(backend: Backend, table: str) -> list[str]:
    """Statements that recreate ``table`` (empty) with its keys and indexes."""
    if backend.kind == "sqlite":
        rows = backend.query(
            "SELECT type, sql FROM sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL "
            "ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'index' THEN 1 ELSE 2 END, name",
            (table,),
        )
        return [str(sql) for _type, sql in rows]
    if backend.kind == "mysql":
        rows = backend.query(f"SHOW CREATE TABLE {backend.quote(table)}")
        return [str(rows[0][1])]
    if backend.kind == "postgresql":
        return _postgresql_ddl(backend, table)
    raise DatabaseError(f"Backups of {backend.kind} databases are not supported")


def _postgresql_ddl(backend: Backend, table: str) -> list[str]:
    relid = backend.scalar(
        "SELECT c.oid FROM pg_catalog.pg_class c "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = current_schema() AND c.relname = ? AND c.relkind = 'r'",
        (table,),
    )
    if relid is None:
        raise DatabaseError(f"No table {table}")
    columns = backend.query(
        "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull, "
        "pg_catalog.pg_get_expr(d.adbin, d.adrelid) FROM pg_catalog.pg_attribute a "
        "LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
        "WHERE a.attrelid = ? AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        (relid,),
    )
    parts = []
    for name, type_name, not_null, default in columns:
        column = f"    {backend.quote(name)} {type_name}"
        if default is not None:
            column += f" DEFAULT {default}"
        if not_null:
            column += " NOT NULL"
        parts.append(column)
    constraints = backend.query(
        "SELECT conname, pg_catalog.pg_get_constraintdef(oid) FROM pg_catalog.pg_constraint "
        "WHERE conrelid = ? AND contype IN ('p', 'u', 'c') "
        "ORDER BY CASE contype WHEN 'p' THEN 0 WHEN 'u' THEN 1 ELSE 2 END, conname",
        (relid,),
    )
    for name, definition in constraints:
        parts.append(f"    CONSTRAINT {backend.quote(name)} {definition}")
    statements = [f"CREATE TABLE {backend.quote(table)} (\n" + ",\n".join(parts) + "\n)"]
    indexes = backend.query(
        "SELECT pg_catalog.pg_get_indexdef(i.indexrelid) FROM pg_catalog.pg_index i "
        "JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = ? AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k "
        "WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid) ORDER BY c.relname",
        (relid,),
    )
    statements += [str(row[0]) for row in indexes]
    return statements


# -- backup -----------------------------------------------------------------------------------
def _tables_for(backend: Backend, federated: bool) -> list[tuple[str, str]]:
    """(table, WHERE clause) pairs to dump."""
    existing = backend.tables()
    if not federated:
        return [(table, "") for table in existing]
    chosen = [(table, "") for table in FEDERATED_TABLES if table in existing]
    if "logdb" in existing:
        chosen.append(("logdb", " WHERE fed_index != -1"))
    return chosen


def _write_table(out: IO[str], backend: Backend, table: str, where: str) -> int:
    quoted = backend.quote(table)
    out.write(f"\n-- table {table}\nDROP TABLE IF EXISTS {quoted};\n")
    for statement in table_ddl(backend, table):
        out.write(statement.rstrip().rstrip(";") + ";\n")
    columns = backend.columns(table)
    column_list = ", ".join(backend.quote(c) for c in columns)
    head = f"INSERT INTO {quoted} ({column_list}) VALUES\n"
    kind = backend.kind
    batch: list[str] = []
    size = count = 0
    for row in backend.stream(f"SELECT {column_list} FROM {quoted}{where}"):
        literal = "(" + ", ".join(sql_literal(value, kind) for value in row) + ")"
        batch.append(literal)
        size += len(literal)
        count += 1
        if len(batch) >= BATCH_ROWS or size >= BATCH_BYTES:
            out.write(head + ",\n".join(batch) + ";\n")
            batch, size = [], 0
    if batch:
        out.write(head + ",\n".join(batch) + ";\n")
    return count


def _atomic_writer(path: str) -> tuple[IO[str], str]:
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, temp = tempfile.mkstemp(
            dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp"
        )
    except OSError as exc:
        raise DatabaseError(f"Cannot write backup {path}: {exc.strerror or exc}") from None
    return os.fdopen(fd, "w", encoding="utf-8", newline="\n"), temp


def backup(backend: Backend, path: str, force: bool = False, federated: bool = False) -> str:
    """Dump the database (or its federated part) to ``path``; returns ``path``."""
    if os.path.exists(path) and not force:
        raise DatabaseError(f"File {path} exists, backup aborted. Use -f to overwrite.")
    tables = _tables_for(backend, federated)
    out, temp = _atomic_writer(path)
    try:
        with out:
            out.write(f"{MAGIC}\n-- engine: {backend.kind}\n")
            out.write(f"-- scope: {'federated' if federated else 'full'}\n")
            out.write(f"-- tables: {' '.join(table for table, _ in tables)}\n")
            if backend.kind == "mysql":  # for the restoring session, not this one
                out.write("".join(statement + ";\n" for statement in MYSQL_SESSION))
            for table, where in tables:
                _write_table(out, backend, table, where)
            out.write(f"\n{END}\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _fsync_dir(os.path.dirname(os.path.abspath(path)))
    return path


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- restore ----------------------------------------------------------------------------------
_SPECIAL = re.compile(r"['\"`;]|--|/\*")


def iter_statements(lines: Iterable[str]) -> Iterator[str]:
    """SQL statements of a dump, one at a time (``;`` outside quotes and comments ends one).

    String literals are standard (``''`` doubles a quote, backslashes are ordinary): the
    dumps this module writes use that form on every engine.  ``--`` comments are dropped.
    """
    current: list[str] = []
    state: str | None = None  # the open quote, or "*/" inside a block comment
    for line in lines:
        start = pos = 0
        n = len(line)
        while pos < n:
            if state is None:
                match = _SPECIAL.search(line, pos)
                if match is None:
                    break
                token = match.group()
                if token == ";":
                    current.append(line[start : match.start()])
                    statement = "".join(current).strip()
                    if statement:
                        yield statement
                    current = []
                    start = pos = match.end()
                elif token == "--":
                    current.append(line[start : match.start()])
                    start = pos = n
                    current.append("\n")
                elif token == "/*":
                    state, pos = "*/", match.end()
                else:
                    state, pos = token, match.end()
            elif state == "*/":
                end = line.find("*/", pos)
                if end < 0:
                    break
                state, pos = None, end + 2
            else:
                end = line.find(state, pos)
                if end < 0:
                    break
                if end + 1 < n and line[end + 1] == state:
                    pos = end + 2  # doubled quote
                else:
                    state, pos = None, end + 1
        if start < n:
            current.append(line[start:])
    statement = "".join(current).strip()
    if statement:
        yield statement


class _Dump:
    """A dump file being read: its header, then its lines."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self.handle = open(path, encoding="utf-8", newline="")  # noqa: SIM115
        except OSError as exc:
            raise DatabaseError(f"Cannot read backup {path}: {exc.strerror or exc}") from None
        self.header: dict[str, str] = {}
        first = self.handle.readline()
        if first.rstrip("\r\n") != MAGIC:
            self.handle.close()
            raise DatabaseError(f"{path} is not a onedb backup (first line is not '{MAGIC}')")
        self._pending: str | None = None
        while True:
            line = self.handle.readline()
            if line.startswith("-- ") and ":" in line:
                key, _, value = line[3:].partition(":")
                self.header[key.strip()] = value.strip()
                continue
            self._pending = line
            break

    def lines(self) -> Iterator[str]:
        if self._pending:
            yield self._pending
        yield from self.handle

    def close(self) -> None:
        self.handle.close()


def _has_end_mark(path: str) -> bool:
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - 200))
        return handle.read().rstrip().endswith(END.encode())


def _bootstrapped(backend: Backend) -> bool:
    if not backend.table_exists("user_pool"):
        return False
    return bool(backend.scalar("SELECT COUNT(*) FROM user_pool WHERE oid = 0"))


def _describe(settings: ConnectionSettings) -> str:
    if settings.backend == "sqlite":
        return f"SQLite database {settings.sqlite_file}"
    name = "MySQL" if settings.backend == "mysql" else "PostgreSQL"
    return f"{name} database {settings.db_name} at {settings.server}"


def restore(
    settings: ConnectionSettings, path: str, force: bool = False, federated: bool = False
) -> dict[str, str]:
    """Load the dump ``path`` into the database of ``settings``; returns the dump's header.

    Refuses to overwrite a bootstrapped database (``user_pool`` has oid 0) without ``force``
    (federated restores replace only the federated tables and are always allowed).
    """
    dump = _Dump(path)
    try:
        engine = dump.header.get("engine")
        if engine != settings.backend:
            raise DatabaseError(
                f"{path} is a backup of a {engine} database, it cannot be restored into "
                f"{settings.backend}"
            )
        is_federated = dump.header.get("scope") == "federated"
        if is_federated and not federated:
            raise DatabaseError(f"{path} is a federated backup: restore it with --federated")
        if federated and not is_federated:
            raise DatabaseError(f"{path} is not a federated backup")
        if not _has_end_mark(path):
            raise DatabaseError(f"Backup {path} is incomplete (no end mark), not restored")
        backend = open_backend(settings, create=True)
        try:
            if not federated and not force and _bootstrapped(backend):
                raise DatabaseError(f"{_describe(settings)} exists, use -f to overwrite.")
            _load(backend, dump, path)
        finally:
            backend.close()
        return dump.header
    finally:
        dump.close()


def _load(backend: Backend, dump: _Dump, path: str) -> None:
    def statements() -> Iterator[str]:
        for statement in iter_statements(dump.lines()):
            if backend.kind == "mysql" and statement.upper().startswith("SET NAMES"):
                continue  # the connection already has the database's charset
            yield statement

    if backend.transactional_ddl:
        with backend.transaction():
            for statement in statements():
                backend.execute(statement)
    else:
        for statement in statements():
            backend.execute(statement)
