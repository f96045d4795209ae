"""PostgreSQL through psycopg 3 (imported only when this backend is chosen).

OpenNebula supported PostgreSQL from 5.12 to 6.8 (reference §4.4).  The connection runs in
autocommit mode and transactions are explicit ``BEGIN``/``COMMIT``; DDL is transactional.
``stream`` uses a named (server-side) cursor: inside a transaction a plain one, outside a
``WITH HOLD`` one (which survives the implicit commit).  Other statements may run on the
connection while a stream is open.
"""

from __future__ import annotations

import contextlib
import itertools
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from onetools.db.backends.base import Backend, ConnectionSettings, Row
from onetools.db.backends.mysql import translate_placeholders
from onetools.db.errors import DatabaseError

DEFAULT_PORT = 5432
BATCH = 1000
_cursor_ids = itertools.count(1)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


class PostgreSQLBackend(Backend):
    kind = "postgresql"
    transactional_ddl = True

    def __init__(self, settings: ConnectionSettings) -> None:
        super().__init__(settings)
        import psycopg

        self._psycopg = psycopg
        self.port = settings.port or DEFAULT_PORT
        self.where = f"{settings.server}:{self.port}"
        if not settings.user:
            raise DatabaseError("PostgreSQL option USER is needed")
        if not settings.db_name:
            raise DatabaseError("PostgreSQL option DBNAME is needed")
        params: dict[str, Any] = {
            "host": settings.server,
            "port": self.port,
            "user": settings.user,
            "password": settings.password or "",
            "dbname": settings.db_name,
            "autocommit": True,
            "connect_timeout": 10,
        }
        if settings.encoding:
            params["client_encoding"] = settings.encoding
        try:
            self.connection: Any = psycopg.connect(**params)
        except psycopg.Error as exc:
            raise self._connect_error(exc) from None
        self.charset = str(self.connection.info.encoding)

    def _connect_error(self, exc: Exception) -> DatabaseError:
        text = str(exc)
        # libpq: 'connection failed: connection to server at "h" (ip), port p failed: FATAL: …'
        reason = re.split(r"\bfailed:\s*", text)[-1]
        reason = _one_line(re.sub(r"^(FATAL|ERROR):\s*", "", reason.strip()))
        if "password authentication failed" in reason or (
            "database" in reason and "does not exist" in reason
        ):
            return DatabaseError(f"{reason} (PostgreSQL server at {self.where})")
        return DatabaseError(f"Cannot connect to PostgreSQL server at {self.where}: {reason}")

    def close(self) -> None:
        with contextlib.suppress(self._psycopg.Error):
            self.connection.close()

    # -- statements --------------------------------------------------------------------------
    def _error(self, exc: Exception, sql: str) -> DatabaseError:
        return DatabaseError(f"PostgreSQL error: {_one_line(exc)} (in: {_one_line(sql)[:120]})")

    def _cursor_execute(self, cursor: Any, sql: str, params: Sequence[Any]) -> None:
        try:
            if params:
                cursor.execute(translate_placeholders(sql, mysql=False), tuple(params))
            else:
                cursor.execute(sql)
        except self._psycopg.Error as exc:
            raise self._error(exc, sql) from exc

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self.connection.cursor() as cursor:
            self._cursor_execute(cursor, sql, params)
            return int(cursor.rowcount)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        translated = translate_placeholders(sql, mysql=False)
        with self.connection.cursor() as cursor:
            try:
                iterator = iter(rows)
                while batch := [tuple(row) for row in itertools.islice(iterator, BATCH)]:
                    cursor.executemany(translated, batch)
            except self._psycopg.Error as exc:
                raise self._error(exc, sql) from exc

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self.connection.cursor() as cursor:
            self._cursor_execute(cursor, sql, params)
            if cursor.description is None:
                return []
            return list(cursor.fetchall())

    def stream(self, sql: str, params: Sequence[Any] = (), batch: int = 1000) -> Iterator[Row]:
        in_transaction = (
            self.connection.info.transaction_status != self._psycopg.pq.TransactionStatus.IDLE
        )
        cursor = self.connection.cursor(
            name=f"onetools_stream_{next(_cursor_ids)}", withhold=not in_transaction
        )
        cursor.itersize = batch
        try:
            self._cursor_execute(cursor, sql, params)
            while True:
                try:
                    rows = cursor.fetchmany(batch)
                except self._psycopg.Error as exc:
                    raise self._error(exc, sql) from exc
                if not rows:
                    return
                yield from rows
        finally:
            with contextlib.suppress(self._psycopg.Error):
                cursor.close()

    # -- transactions ------------------------------------------------------------------------
    def begin(self) -> None:
        self.execute("BEGIN")

    def commit(self) -> None:
        self.execute("COMMIT")

    def rollback(self) -> None:
        status = self.connection.info.transaction_status
        if status != self._psycopg.pq.TransactionStatus.IDLE:
            self.execute("ROLLBACK")

    # -- schema ------------------------------------------------------------------------------
    def tables(self) -> list[str]:
        rows = self.query(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' "
            "ORDER BY table_name"
        )
        return sorted(str(row[0]) for row in rows)

    def columns(self, table: str) -> list[str]:
        rows = self.query(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
            (table,),
        )
        return [str(row[0]) for row in rows]

    def quote(self, identifier: str) -> str:
        return '"' + identifier.replace('"', '""') + '"'
