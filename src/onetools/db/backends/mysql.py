"""MariaDB/MySQL through PyMySQL (pure Python, imported only when this backend is chosen).

* ``?`` placeholders become ``%s`` (outside quoted strings, identifiers and comments), and
  literal ``%`` signs are doubled when parameters are given (PyMySQL formats with ``%``).
* ``stream`` reads with an unbuffered server-side cursor (``SSCursor``).  MySQL cannot run
  another statement on the connection while such a result is open, so any statement issued
  during a stream first buffers the rest of that stream (correct, just no longer bounded).
* DDL commits implicitly on MySQL: ``transactional_ddl = False``.
* Character set (reference §4.2): with ``--encoding`` the connection uses it as given;
  without, the charset of the schema and of table ``system_attributes`` are read, a mismatch
  is an error ("Table and database charset (…) differs") and the connection uses the table's
  charset (utf8mb4 when there is no such table).  ``charset`` holds the one in use.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence

from onetools.db.backends.base import Backend, ConnectionSettings, Row
from onetools.db.errors import DatabaseError

TYPE_CHECKING = False  # typing costs ~3 ms of `onedb version`: annotations only
if TYPE_CHECKING:
    from typing import Any

DEFAULT_PORT = 3306
DEFAULT_CHARSET = "utf8mb4"
DEFAULT_SOCKETS = ("/run/mysqld/mysqld.sock", "/var/run/mysqld/mysqld.sock")
BATCH = 1000
MAX_STATEMENT = 1 << 20  # bytes; MariaDB's max_allowed_packet is 16 MiB, MySQL's 4-64 MiB
_INSERT_VALUES = re.compile(r"(?is)^\s*(INSERT\s.*\bVALUES)\s*\(\s*\?(?:\s*,\s*\?)*\s*\)\s*$")


@functools.lru_cache(maxsize=512)
def translate_placeholders(sql: str, mysql: bool = True) -> str:
    """``?`` → ``%s`` and ``%`` → ``%%`` for ``%``-style drivers (PyMySQL, psycopg).

    Question marks inside '…', "…" and `…` quotes and inside comments stay as they are;
    ``mysql`` says whether a backslash escapes the next character in a quoted
    string and ``#`` starts a comment (``mysql``: MySQL yes, PostgreSQL no).
    """
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        char = sql[i]
        if char in "'\"`":
            j = i + 1
            while j < n:
                if mysql and sql[j] == "\\" and char != "`":
                    j += 2
                    continue
                if sql[j] == char:
                    if j + 1 < n and sql[j + 1] == char:  # doubled quote
                        j += 2
                        continue
                    break
                j += 1
            out.append(sql[i : j + 1].replace("%", "%%"))
            i = j + 1
        elif (char == "-" and sql.startswith("--", i)) or (char == "#" and mysql):
            j = sql.find("\n", i)
            j = n if j < 0 else j
            out.append(sql[i:j].replace("%", "%%"))
            i = j
        elif char == "/" and sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(sql[i:j].replace("%", "%%"))
            i = j
        elif char == "?":
            out.append("%s")
            i += 1
        elif char == "%":
            out.append("%%")
            i += 1
        else:
            out.append(char)
            i += 1
    return "".join(out)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _driver() -> tuple[Any, Any, Any, Any]:
    """The DB-API driver: mysqlclient (C; 2.5x faster batched inserts, measured) when it is
    installed, else PyMySQL (pure Python).  Returns (module, MySQLError, Error, SSCursor)."""
    try:
        import MySQLdb
        import MySQLdb.cursors
    except ImportError:
        import pymysql
        import pymysql.cursors

        return pymysql, pymysql.err.MySQLError, pymysql.err.Error, pymysql.cursors.SSCursor
    return MySQLdb, MySQLdb.MySQLError, MySQLdb.Error, MySQLdb.cursors.SSCursor


class MySQLBackend(Backend):
    kind = "mysql"
    transactional_ddl = False

    def __init__(self, settings: ConnectionSettings) -> None:
        super().__init__(settings)
        driver, self._MySQLError, self._Error, self._SSCursor = _driver()
        self._stream_cursor: Any = None
        self._stream_rests: dict[int, list[Row]] = {}
        self.port = settings.port or DEFAULT_PORT
        self.where = f"{settings.server}:{self.port}"
        if not settings.user:
            raise DatabaseError("MySQL option USER is needed")
        if not settings.db_name:
            raise DatabaseError("MySQL option DBNAME is needed")
        params: dict[str, Any] = {
            "user": settings.user,
            "password": settings.password or "",
            "database": settings.db_name,
            "charset": settings.encoding or DEFAULT_CHARSET,
            "autocommit": True,
            "connect_timeout": 10,
        }
        socket_path = next(
            (p for p in DEFAULT_SOCKETS if os.path.exists(p)),
            None,
        )
        if settings.server == "localhost" and not settings.port and socket_path:
            # Like the C client library: "localhost" without a port means the local socket.
            params["unix_socket"] = socket_path
            self.where = f"localhost ({socket_path})"
        else:
            params["host"] = settings.server
            params["port"] = self.port
        try:
            self.connection: Any = driver.connect(**params)
        except self._MySQLError as exc:
            raise self._connect_error(exc) from None
        except (LookupError, KeyError) as exc:
            raise DatabaseError(f"Unknown MySQL encoding '{settings.encoding}': {exc}") from None
        self.charset = settings.encoding or self._detect_charset()

    # -- connection --------------------------------------------------------------------------
    def _connect_error(self, exc: Exception) -> DatabaseError:
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
        message = _one_line(exc.args[1] if len(exc.args) > 1 else exc)
        if code == 1045:  # ER_ACCESS_DENIED_ERROR
            return DatabaseError(f"{message} (MySQL server at {self.where})")
        if code == 1049:  # ER_BAD_DB_ERROR
            return DatabaseError(f"{message} (MySQL server at {self.where})")
        return DatabaseError(f"Cannot connect to MySQL server at {self.where}: {message}")

    def _detect_charset(self) -> str:
        db_name = self.settings.db_name
        db_charset = self.scalar(
            "SELECT DEFAULT_CHARACTER_SET_NAME FROM information_schema.SCHEMATA "
            "WHERE SCHEMA_NAME = ?",
            (db_name,),
        )
        table = self.query(
            "SELECT t.TABLE_COLLATION, c.CHARACTER_SET_NAME FROM information_schema.TABLES t "
            "LEFT JOIN information_schema.COLLATION_CHARACTER_SET_APPLICABILITY c "
            "ON c.COLLATION_NAME = t.TABLE_COLLATION "
            "WHERE t.TABLE_SCHEMA = ? AND t.TABLE_NAME = 'system_attributes'",
            (db_name,),
        )
        table_charset = None
        if table and table[0][0]:
            table_charset = table[0][1] or str(table[0][0]).split("_", 1)[0]
        if table_charset and db_charset and table_charset != db_charset:
            raise DatabaseError(
                f"Table and database charset ({table_charset}, {db_charset}) differs"
            )
        charset = str(table_charset or DEFAULT_CHARSET)
        if charset != DEFAULT_CHARSET:
            try:
                self.connection.set_character_set(charset)
            except (LookupError, KeyError, AttributeError):
                raise DatabaseError(f"Unsupported MySQL charset '{charset}'") from None
            except self._MySQLError as exc:
                raise DatabaseError(f"MySQL error: {_one_line(exc)}") from None
        return charset

    def close(self) -> None:
        self._detach_stream()
        with contextlib.suppress(self._Error):
            self.connection.close()

    # -- statements --------------------------------------------------------------------------
    def _detach_stream(self) -> None:
        """Buffer what is left of an open stream: the connection is needed for something else."""
        cursor, self._stream_cursor = self._stream_cursor, None
        if cursor is not None:
            try:
                self._stream_rests[id(cursor)] = list(cursor.fetchall())
            finally:
                cursor.close()

    def _error(self, exc: Exception, sql: str) -> DatabaseError:
        return DatabaseError(f"MySQL error: {_one_line(exc)} (in: {_one_line(sql)[:120]})")

    def _cursor_execute(self, cursor: Any, sql: str, params: Sequence[Any]) -> None:
        try:
            if params:
                cursor.execute(translate_placeholders(sql), tuple(params))
            else:
                cursor.execute(sql)
        except self._Error as exc:
            raise self._error(exc, sql) from exc

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        self._detach_stream()
        with self.connection.cursor() as cursor:
            self._cursor_execute(cursor, sql, params)
            return int(cursor.rowcount)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._detach_stream()
        translated = translate_placeholders(sql)
        batch: list[tuple[Any, ...]] = []
        with self.connection.cursor() as cursor:
            try:
                for row in rows:
                    batch.append(tuple(row))
                    if len(batch) >= BATCH:
                        cursor.executemany(translated, batch)
                        batch = []
                if batch:
                    cursor.executemany(translated, batch)
            except self._Error as exc:
                raise self._error(exc, sql) from exc

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        self._detach_stream()
        with self.connection.cursor() as cursor:
            self._cursor_execute(cursor, sql, params)
            return list(cursor.fetchall())

    def stream(self, sql: str, params: Sequence[Any] = (), batch: int = 1000) -> Iterator[Row]:
        self._detach_stream()
        cursor = self.connection.cursor(self._SSCursor)
        try:
            self._cursor_execute(cursor, sql, params)
        except BaseException:
            cursor.close()
            raise
        self._stream_cursor = cursor
        try:
            while True:
                if self._stream_cursor is not cursor:
                    # Another statement took the connection: go on with the buffered rest.
                    yield from self._stream_rests.pop(id(cursor), [])
                    return
                try:
                    rows = cursor.fetchmany(batch)
                except self._Error as exc:
                    raise self._error(exc, sql) from exc
                if not rows:
                    return
                yield from rows
        finally:
            self._stream_rests.pop(id(cursor), None)
            if self._stream_cursor is cursor:
                self._stream_cursor = None
                cursor.close()

    @contextlib.contextmanager
    def bulk_writer(self, sql: str) -> Iterator[Callable[[list[Sequence[Any]]], None]]:
        """Batches are written by a thread on a second connection while the caller prepares
        the next ones: the driver waits for the server without holding the GIL, so the
        server's work overlaps ours (a 100k-VM upgrade spent a third of its time waiting).

        With mysqlclient the caller's thread also turns each batch into multi-row INSERT
        statements of up to 1 MiB (the driver's own executemany makes 64 KiB ones, through
        a slower per-value path), so that the writer thread holds the GIL only briefly.

        The second connection commits on its own: on MySQL an upgrade relies on its backup,
        not on a transaction, so nothing is lost by that.
        """
        match = _INSERT_VALUES.match(sql)
        prepare: Callable[[list[Sequence[Any]]], list[bytes]] | None = None
        if match and hasattr(self.connection, "string_literal"):
            prefix = match.group(1).encode() + b" "
            prepare = functools.partial(self._insert_statements, prefix)
        writer = _BackgroundWriter(
            MySQLBackend(self.settings.replace(encoding=self.charset)), sql, prepare
        )
        try:
            yield writer.put
        except BaseException:
            writer.close(raise_error=False)
            raise
        writer.close()

    def _insert_statements(self, prefix: bytes, rows: list[Sequence[Any]]) -> list[bytes]:
        """``prefix`` (``INSERT ... VALUES``) with ``rows`` as literal value lists, in
        statements of at most ``MAX_STATEMENT`` bytes (one row may exceed it alone)."""
        quote = self.connection.string_literal
        literal = self.connection.literal
        encoding = self.connection.encoding
        statements: list[bytes] = []
        chunk: list[bytes] = []
        size = len(prefix)
        for row in rows:
            parts = []
            for value in row:
                kind = type(value)
                if value is None:
                    parts.append(b"NULL")
                elif kind is str:
                    parts.append(quote(value.encode(encoding)))
                elif kind is int:
                    parts.append(b"%d" % value)
                else:
                    parts.append(literal(value))
            item = b"(" + b",".join(parts) + b")"
            if chunk and size + len(item) > MAX_STATEMENT:
                statements.append(prefix + b",".join(chunk))
                chunk, size = [], len(prefix)
            chunk.append(item)
            size += len(item) + 1
        if chunk:
            statements.append(prefix + b",".join(chunk))
        return statements

    def _execute_statement(self, statement: bytes) -> None:
        """Run one statement already in the connection's encoding, without parameters."""
        self._detach_stream()
        with self.connection.cursor() as cursor:
            try:
                cursor.execute(statement)
            except self._Error as exc:
                raise self._error(exc, statement[:200].decode(errors="replace")) from exc

    # -- transactions ------------------------------------------------------------------------
    def begin(self) -> None:
        self._detach_stream()
        self.execute("START TRANSACTION")

    def commit(self) -> None:
        self.execute("COMMIT")

    def rollback(self) -> None:
        self._detach_stream()
        try:
            self.connection.rollback()
        except self._Error as exc:
            raise DatabaseError(f"MySQL error on rollback: {_one_line(exc)}") from exc

    # -- schema ------------------------------------------------------------------------------
    def tables(self) -> list[str]:
        rows = self.query(
            "SELECT TABLE_NAME FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME"
        )
        return sorted(str(row[0]) for row in rows)

    def columns(self, table: str) -> list[str]:
        rows = self.query(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (table,),
        )
        return [str(row[0]) for row in rows]

    def quote(self, identifier: str) -> str:
        return "`" + identifier.replace("`", "``") + "`"


class _BackgroundWriter:
    """Writes each batch put, in order, on its own thread and connection: as statements
    that ``prepare`` makes of it in the caller's thread, else through ``executemany``.  At
    most two batches wait, so memory stays bounded."""

    def __init__(
        self,
        connection: MySQLBackend,
        sql: str,
        prepare: Callable[[list[Sequence[Any]]], list[bytes]] | None,
    ) -> None:
        import queue  # with threading, ~2.5 ms: not on the `onedb version` path
        import threading

        self.connection = connection
        self.sql = sql
        self.prepare = prepare
        self.error: BaseException | None = None
        self.batches: queue.Queue[list[Any] | None] = queue.Queue(maxsize=2)
        self.thread = threading.Thread(target=self._work, name="onedb-writer", daemon=True)
        self.thread.start()

    def _work(self) -> None:
        while (batch := self.batches.get()) is not None:
            if self.error is not None:
                continue  # keep draining: the producer must never block on a dead writer
            try:
                if self.prepare is None:
                    self.connection.executemany(self.sql, batch)
                else:
                    for statement in batch:
                        self.connection._execute_statement(statement)
            except BaseException as exc:  # handed to the producer thread
                self.error = exc

    def _raise(self) -> None:
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def put(self, batch: list[Sequence[Any]]) -> None:
        self._raise()
        self.batches.put(batch if self.prepare is None else self.prepare(batch))

    def close(self, raise_error: bool = True) -> None:
        """Wait for the batches put so far; raise the first error (``raise_error``)."""
        self.batches.put(None)
        self.thread.join()
        self.connection.close()
        if raise_error:
            self._raise()
