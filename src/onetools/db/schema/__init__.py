"""OpenNebula's database schema per release, as data, rendered per engine, and bootstrap.

``SCHEMAS[version]`` describes every table and index oned creates at that release;
``bootstrap(backend, version)`` creates an empty database the way oned does.
"""

from __future__ import annotations

from onetools.db.schema.bootstrap import bootstrap, bootstrap_comment
from onetools.db.schema.ddl import (
    check_supported,
    create_index_sql,
    create_table_sql,
    drop_index,
    list_indexes,
    rename_table,
)
from onetools.db.schema.model import LOCAL, SHARED, Column, Index, Schema, Table
from onetools.db.schema.versions import (
    LATEST,
    POSTGRESQL_VERSIONS,
    SCHEMAS,
    SUPPORTED_VERSIONS,
    latest_for,
)

__all__ = [
    "LATEST",
    "LOCAL",
    "POSTGRESQL_VERSIONS",
    "SCHEMAS",
    "SHARED",
    "SUPPORTED_VERSIONS",
    "Column",
    "Index",
    "Schema",
    "Table",
    "bootstrap",
    "bootstrap_comment",
    "check_supported",
    "create_index_sql",
    "create_table_sql",
    "drop_index",
    "latest_for",
    "list_indexes",
    "rename_table",
    "schema_for",
]


def schema_for(version: str) -> Schema:
    """The schema of ``version`` (``KeyError`` if unsupported)."""
    return SCHEMAS[version]
