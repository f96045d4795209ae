"""The interface every database engine implements (SQLite, MariaDB/MySQL, PostgreSQL).

SQL given to these methods uses ``?`` placeholders; backends translate them.  Library code
above this layer never checks which engine it talks to except through the capability flags
(``transactional_ddl``) and ``kind`` for DDL type choices in the schema module.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence

TYPE_CHECKING = False  # no typing/dataclasses at run time: `onedb version` starts fast
if TYPE_CHECKING:
    from typing import Any

if TYPE_CHECKING:
    Row = tuple[Any, ...]
else:
    Row = tuple


class ConnectionSettings:
    """Where the database is: resolved from options, environment and oned.conf."""

    __slots__ = (
        "backend",
        "db_name",
        "encoding",
        "password",
        "port",
        "server",
        "sqlite_file",
        "user",
    )

    def __init__(
        self,
        backend: str,  # sqlite | mysql | postgresql
        sqlite_file: str | None = None,
        server: str = "localhost",
        port: int = 0,  # 0: the engine's default
        user: str | None = None,
        password: str | None = None,
        db_name: str | None = None,
        encoding: str | None = None,
    ) -> None:
        self.backend = backend
        self.sqlite_file = sqlite_file
        self.server = server
        self.port = port
        self.user = user
        self.password = password
        self.db_name = db_name
        self.encoding = encoding

    def replace(self, **changes: Any) -> ConnectionSettings:
        """A copy with some fields changed."""
        values = {name: getattr(self, name) for name in self.__slots__}
        values.update(changes)
        return ConnectionSettings(**values)

    def _fields(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConnectionSettings) and self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:  # the password is never shown
        shown = ", ".join(
            f"{name}={getattr(self, name)!r}" for name in self.__slots__ if name != "password"
        )
        return f"ConnectionSettings({shown})"

    def describe(self) -> str:
        if self.backend == "sqlite":
            return f"SQLite database '{self.sqlite_file}'"
        return f"{self.backend} database '{self.db_name}' at {self.server}:{self.port or 'default'}"


class Backend(ABC):
    """One open connection to an OpenNebula database."""

    kind: str
    #: Whether CREATE/DROP/ALTER take part in transactions (False on MySQL: implicit commit).
    transactional_ddl: bool = True

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings
        self._depth = 0

    # -- connection --------------------------------------------------------------------------
    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- statements --------------------------------------------------------------------------
    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; returns the affected row count (-1 when unknown)."""

    @abstractmethod
    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement for many parameter rows (batched inserts/updates)."""

    @abstractmethod
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """All rows of a query."""

    @abstractmethod
    def stream(self, sql: str, params: Sequence[Any] = (), batch: int = 1000) -> Iterator[Row]:
        """Rows of a query, fetched ``batch`` at a time (bounded memory on big tables)."""

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = self.query(sql, params)
        return rows[0][0] if rows else None

    @contextlib.contextmanager
    def bulk_writer(self, sql: str) -> Iterator[Callable[[list[Sequence[Any]]], None]]:
        """A function that writes batches of rows with ``sql`` (one INSERT statement).

        Engines may write in the background (MySQL: on a second connection, while the caller
        prepares the next batch), so the caller hands over each list and keeps no reference
        to it, and reads nothing of the target table before the context exits.  Any error is
        raised at the latest on exit.  By default each batch is written at once, here.

        The rows may be committed apart from the caller's transaction (MySQL): only for
        work that does not rely on a rollback there (upgrades: MySQL restores the backup;
        ``sqlite2mysql``, which does rely on one, uses ``executemany``).
        """
        yield lambda rows: self.executemany(sql, rows)

    # -- transactions ------------------------------------------------------------------------
    @abstractmethod
    def begin(self) -> None: ...

    @abstractmethod
    def commit(self) -> None: ...

    @abstractmethod
    def rollback(self) -> None: ...

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """A transaction; nested uses join the outermost one."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self.begin()
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            self.rollback()
            raise
        self._depth = 0
        self.commit()

    # -- schema ------------------------------------------------------------------------------
    @abstractmethod
    def tables(self) -> list[str]:
        """Names of the tables of the database, sorted."""

    @abstractmethod
    def columns(self, table: str) -> list[str]:
        """Column names of ``table`` in order."""

    def table_exists(self, table: str) -> bool:
        return table in self.tables()

    @abstractmethod
    def quote(self, identifier: str) -> str:
        """An identifier quoted for this engine (``"x"`` or ```x```)."""
