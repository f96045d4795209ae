"""SQLite, OpenNebula's embedded default (``/var/lib/one/one.db``), via the stdlib module."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence

from onetools.db.backends.base import Backend, ConnectionSettings, Row
from onetools.db.errors import DatabaseError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class SQLiteBackend(Backend):
    kind = "sqlite"
    transactional_ddl = True

    def __init__(self, settings: ConnectionSettings, create: bool = False) -> None:
        super().__init__(settings)
        path = settings.sqlite_file
        if not path:
            raise DatabaseError("No SQLite database file given")
        if not create and not os.path.isfile(path):
            raise DatabaseError(f"File {path} doesn't exist")
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so DDL joins transactions.
            self.connection = sqlite3.connect(path, isolation_level=None, timeout=30)
            self.connection.execute("PRAGMA foreign_keys = OFF")
            if not create:
                self.connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:
            raise DatabaseError(f"Cannot open SQLite database '{path}': {exc}") from None

    def close(self) -> None:
        self.connection.close()

    def _run(self, sql: str, params: Sequence[Any]) -> sqlite3.Cursor:
        try:
            return self.connection.execute(sql, tuple(params))
        except sqlite3.Error as exc:
            raise DatabaseError(f"SQLite error: {exc} (in: {sql[:120]})") from exc

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._run(sql, params).rowcount

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            self.connection.executemany(sql, (tuple(row) for row in rows))
        except sqlite3.Error as exc:
            raise DatabaseError(f"SQLite error: {exc} (in: {sql[:120]})") from exc

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return list(self._run(sql, params).fetchall())

    def stream(self, sql: str, params: Sequence[Any] = (), batch: int = 1000) -> Iterator[Row]:
        cursor = self._run(sql, params)
        while True:
            rows = cursor.fetchmany(batch)
            if not rows:
                return
            yield from rows

    def begin(self) -> None:
        self._run("BEGIN IMMEDIATE", ())

    def commit(self) -> None:
        self._run("COMMIT", ())

    def rollback(self) -> None:
        if self.connection.in_transaction:
            self._run("ROLLBACK", ())

    def tables(self) -> list[str]:
        rows = self.query(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name"
        )
        return [str(row[0]) for row in rows]

    def columns(self, table: str) -> list[str]:
        return [str(row[1]) for row in self.query(f"PRAGMA table_info({self.quote(table)})")]

    def quote(self, identifier: str) -> str:
        return '"' + identifier.replace('"', '""') + '"'
