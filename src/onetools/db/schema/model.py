"""The shape of a database schema as plain data: tables, columns, keys and indexes.

Types are written in the MySQL dialect oned uses in its DDL (``MEDIUMTEXT``, ``BIGINT
UNSIGNED``...); ``ddl.py`` renders them for each engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

LOCAL = "local"
SHARED = "shared"


@dataclass(frozen=True)
class Column:
    """One column: its name and its declared (MySQL-dialect) type."""

    name: str
    type: str


@dataclass(frozen=True)
class Index:
    """A named secondary index oned creates with ``CREATE INDEX``."""

    name: str
    table: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    """A table: columns in order, primary key, UNIQUE keys and which chain owns it.

    ``fulltext`` names a MySQL-only ``FULLTEXT`` index declared inside the CREATE (``ftidx``
    on ``vm_pool(search_token)`` up to 6.8.0).
    """

    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    scope: str = LOCAL
    unique: tuple[tuple[str, ...], ...] = ()
    fulltext: tuple[str, tuple[str, ...]] | None = None

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"{self.name} has no column {name}")


@dataclass(frozen=True)
class Schema:
    """Every table and index of one OpenNebula database version, in oned's creation order."""

    version: str
    tables: tuple[Table, ...]
    indexes: tuple[Index, ...] = field(default=())

    def table(self, name: str) -> Table:
        for table in self.tables:
            if table.name == name:
                return table
        raise KeyError(f"no table {name} in the {self.version} schema")

    def has_table(self, name: str) -> bool:
        return any(table.name == name for table in self.tables)

    @property
    def table_names(self) -> tuple[str, ...]:
        return tuple(table.name for table in self.tables)

    def indexes_of(self, table: str) -> tuple[Index, ...]:
        return tuple(index for index in self.indexes if index.table == table)

    def derive(
        self,
        version: str,
        *,
        replace_tables: dict[str, Table] | None = None,
        add_after: dict[str, Table] | None = None,
    ) -> Schema:
        """A new version's schema from this one: tables replaced, or inserted after another."""
        replaced = replace_tables or {}
        inserted = add_after or {}
        tables: list[Table] = []
        for table in self.tables:
            tables.append(replaced.get(table.name, table))
            if table.name in inserted:
                tables.append(inserted[table.name])
        return replace(self, version=version, tables=tuple(tables))
