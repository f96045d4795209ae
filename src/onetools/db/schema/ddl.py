"""DDL per engine: the schema data rendered as SQL for SQLite, MySQL/MariaDB and PostgreSQL.

oned writes its DDL in the MySQL dialect and sends it unchanged to SQLite and MySQL; its
PostgreSQL backend (5.12 to 6.8) rewrote ``MEDIUMTEXT``/``LONGTEXT`` to ``TEXT`` and ``BIGINT
UNSIGNED`` to ``NUMERIC(20)``.  The few engine-specific operations migrations need (renaming
a table with its constraints, listing and dropping indexes) live here too, so steps and the
runner never look at ``backend.kind``.
"""

from __future__ import annotations

from onetools.db.backends.base import Backend
from onetools.db.errors import DatabaseError
from onetools.db.schema.model import Index, Table
from onetools.db.schema.versions import POSTGRESQL_VERSIONS, SUPPORTED_VERSIONS

ENGINES = ("sqlite", "mysql", "postgresql")

_POSTGRESQL_TYPES = {
    "MEDIUMTEXT": "TEXT",
    "LONGTEXT": "TEXT",
    "BIGINT UNSIGNED": "NUMERIC(20)",
}


def check_supported(kind: str, version: str) -> None:
    """Raise unless OpenNebula ``version`` ran on engine ``kind``."""
    if version not in SUPPORTED_VERSIONS:
        raise DatabaseError(
            f"OpenNebula database version {version} is not supported "
            f"(supported: {', '.join(SUPPORTED_VERSIONS)})"
        )
    if kind not in ENGINES:
        raise DatabaseError(f"Unknown database engine '{kind}'")
    if kind == "postgresql" and version not in POSTGRESQL_VERSIONS:
        raise DatabaseError(
            f"OpenNebula {version} does not support PostgreSQL "
            "(PostgreSQL was supported from 5.12.0 to 6.8.x)"
        )


def column_type(type_: str, kind: str) -> str:
    """A declared column type as ``kind`` spells it."""
    if kind == "postgresql":
        return _POSTGRESQL_TYPES.get(type_, type_)
    return type_


def create_table_sql(table: Table, kind: str, name: str | None = None) -> str:
    """``CREATE TABLE`` for ``table`` (optionally under another ``name``) on engine ``kind``."""
    single_key = table.primary_key[0] if len(table.primary_key) == 1 else None
    parts = []
    for column in table.columns:
        spec = f"{column.name} {column_type(column.type, kind)}"
        if column.name == single_key:
            spec += " PRIMARY KEY"
        parts.append(spec)
    if single_key is None:
        parts.append(f"PRIMARY KEY({', '.join(table.primary_key)})")
    parts.extend(f"UNIQUE({', '.join(columns)})" for columns in table.unique)
    if kind == "mysql" and table.fulltext is not None:
        index_name, columns = table.fulltext
        parts.append(f"FULLTEXT {index_name}({', '.join(columns)})")
    return f"CREATE TABLE {name or table.name} ({', '.join(parts)})"


def create_index_sql(index: Index, table: str | None = None) -> str:
    """``CREATE INDEX`` (same text on every engine)."""
    return f"CREATE INDEX {index.name} ON {table or index.table} ({', '.join(index.columns)})"


def drop_index(backend: Backend, index: Index, table: str | None = None) -> None:
    """Drop a named index if it exists (MySQL names indexes per table, the others globally)."""
    owner = table or index.table
    if index.name not in list_indexes(backend, owner):
        return
    if backend.kind == "mysql":
        backend.execute(f"DROP INDEX {index.name} ON {owner}")
    else:
        backend.execute(f"DROP INDEX {index.name}")


def list_indexes(backend: Backend, table: str) -> list[str]:
    """Names of the explicitly created (non-key) indexes of ``table``, sorted."""
    if backend.kind == "sqlite":
        rows = backend.query(
            "SELECT name FROM sqlite_master WHERE type='index' AND tbl_name=? AND sql IS NOT NULL",
            (table,),
        )
    elif backend.kind == "mysql":
        rows = backend.query(
            "SELECT DISTINCT index_name FROM information_schema.statistics "
            "WHERE table_schema = DATABASE() AND table_name = ? AND index_name <> 'PRIMARY' "
            "AND non_unique = 1",
            (table,),
        )
    else:
        rows = backend.query(
            "SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
            "JOIN pg_class t ON t.oid = x.indrelid "
            "WHERE t.relname = ? AND t.relnamespace = 'public'::regnamespace "
            "AND NOT x.indisprimary AND NOT x.indisunique",
            (table,),
        )
    return sorted(str(row[0]) for row in rows)


def rename_table(backend: Backend, old: str, new: str) -> None:
    """Rename a table; on PostgreSQL also its key constraints, which carry the table's name.

    Without that, a table created afterwards under the old name would get ``<t>_pkey1`` and
    oned's ``ON CONFLICT ON CONSTRAINT <t>_pkey`` would fail.
    """
    backend.execute(f"ALTER TABLE {old} RENAME TO {new}")
    if backend.kind != "postgresql":
        return
    rows = backend.query(
        "SELECT c.conname FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid "
        "WHERE t.relname = ? AND t.relnamespace = 'public'::regnamespace",
        (new,),
    )
    for (constraint,) in rows:
        name = str(constraint)
        if name.startswith(old + "_"):
            renamed = new + name[len(old) :]
            backend.execute(f"ALTER TABLE {new} RENAME CONSTRAINT {name} TO {renamed}")
