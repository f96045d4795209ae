"""Create an empty OpenNebula database at a given version, as oned does on first start.

``oned -i`` creates the tables and indexes (``logdb`` first, then the local pools, the local
system tables, the default quota rows, the shared pools and ``db_versioning``) and writes
one row in each versioning table, the default quotas and ``logdb`` row 0.  The first normal
start then creates the ``oneadmin`` user and the ``oneadmin``/``users`` groups; those are
written here too (``default_objects=True``) because tools look for ``user_pool`` oid 0.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import zlib
from typing import Any

from onetools.db.backends.base import Backend
from onetools.db.errors import DatabaseError
from onetools.db.schema.ddl import check_supported, create_index_sql, create_table_sql
from onetools.db.schema.model import SHARED
from onetools.db.schema.versions import SCHEMAS

#: Stands where oned puts its ``git describe`` output in the bootstrap comment.
BUILD = "onetools"
UINT64_MAX = 18446744073709551615

_QUOTA_SECTIONS = (
    "<DATASTORE_QUOTA></DATASTORE_QUOTA><NETWORK_QUOTA></NETWORK_QUOTA>"
    "<VM_QUOTA></VM_QUOTA><IMAGE_QUOTA></IMAGE_QUOTA>"
)


def bootstrap_comment(version: str, build: str = BUILD) -> str:
    """The comment oned writes in the first versioning rows."""
    return f"OpenNebula {version} ({build}) daemon bootstrap"


def default_quotas(root: str) -> str:
    """A ``DEFAULT_USER_QUOTAS``/``DEFAULT_GROUP_QUOTAS`` body: every section empty."""
    return f"<{root}>{_QUOTA_SECTIONS}</{root}>"


def empty_quotas(oid: int) -> str:
    """The ``user_quotas``/``group_quotas`` body of an object without quotas."""
    return f"<QUOTAS><ID>{oid}</ID>{_QUOTA_SECTIONS}</QUOTAS>"


def user_body(oid: int, name: str, gid: int, gname: str, password_hash: str) -> str:
    """A ``<USER>`` body as oned stores it (quotas live in ``user_quotas``)."""
    return (
        f"<USER><ID>{oid}</ID><GID>{gid}</GID><GROUPS><ID>{gid}</ID></GROUPS>"
        f"<GNAME>{gname}</GNAME><NAME>{name}</NAME><PASSWORD>{password_hash}</PASSWORD>"
        "<AUTH_DRIVER>core</AUTH_DRIVER><ENABLED>1</ENABLED><LOGIN_TOKEN></LOGIN_TOKEN>"
        "<TEMPLATE></TEMPLATE></USER>"
    )


def group_body(oid: int, name: str, users: list[int]) -> str:
    """A ``<GROUP>`` body as oned stores it (quotas live in ``group_quotas``)."""
    ids = "".join(f"<ID>{uid}</ID>" for uid in users)
    return (
        f"<GROUP><ID>{oid}</ID><NAME>{name}</NAME><TEMPLATE></TEMPLATE>"
        f"<USERS>{ids}</USERS><ADMINS></ADMINS></GROUP>"
    )


def _logdb_sqlcmd(now: int) -> str:
    """Row 0 of ``logdb``: the epoch as text, zlib-deflated, base64-encoded."""
    return base64.b64encode(zlib.compress(str(now).encode())).decode()


def bootstrap(
    backend: Backend,
    version: str,
    *,
    is_slave: bool = False,
    now: int | None = None,
    default_objects: bool = True,
    oneadmin_password: str | None = None,
    build: str = BUILD,
) -> None:
    """Create every table of ``version`` in an empty database and write oned's first rows.

    Raises ``DatabaseError`` when the engine cannot hold that version (PostgreSQL outside
    5.12-6.8) or when the database already has OpenNebula tables.
    """
    check_supported(backend.kind, version)
    schema = SCHEMAS[version]
    existing = set(backend.tables()) & set(schema.table_names)
    if existing:
        raise DatabaseError(
            f"Cannot bootstrap {backend.settings.describe()}: it already has OpenNebula tables "
            f"({', '.join(sorted(existing))})"
        )
    stamp = int(time.time()) if now is None else now
    comment = bootstrap_comment(version, build)
    fed_index: Any = float(UINT64_MAX) if backend.kind == "sqlite" else UINT64_MAX

    with backend.transaction():
        for table in schema.tables:
            if table.scope == SHARED and table.name == "group_pool":
                # Stage 2 starts: oned writes the default quotas at the end of stage 1.
                _insert_default_quotas(backend)
            backend.execute(create_table_sql(table, backend.kind))
            for index in schema.indexes_of(table.name):
                backend.execute(create_index_sql(index))
            if table.name == "logdb":
                backend.execute(
                    "INSERT INTO logdb (log_index, term, sqlcmd, timestamp, fed_index, applied) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (0, 0, _logdb_sqlcmd(stamp), stamp, fed_index, True),
                )
            elif table.name == "local_db_versioning":
                backend.execute(
                    "INSERT INTO local_db_versioning (oid, version, timestamp, comment, is_slave) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (0, version, stamp, comment, is_slave),
                )
            elif table.name == "db_versioning":
                backend.execute(
                    "INSERT INTO db_versioning (oid, version, timestamp, comment) "
                    "VALUES (?, ?, ?, ?)",
                    (0, version, stamp, comment),
                )
        if default_objects:
            _insert_default_objects(backend, oneadmin_password)


def _insert_default_quotas(backend: Backend) -> None:
    backend.executemany(
        "INSERT INTO system_attributes (name, body) VALUES (?, ?)",
        [
            ("DEFAULT_USER_QUOTAS", default_quotas("DEFAULT_USER_QUOTAS")),
            ("DEFAULT_GROUP_QUOTAS", default_quotas("DEFAULT_GROUP_QUOTAS")),
        ],
    )


def _insert_default_objects(backend: Backend, password: str | None) -> None:
    """The ``oneadmin`` user (0) and the ``oneadmin`` (0) and ``users`` (1) groups."""
    secret = password if password is not None else secrets.token_hex(16)
    password_hash = hashlib.sha256(secret.encode()).hexdigest()
    backend.execute(
        "INSERT INTO user_pool (oid, name, body, uid, gid, owner_u, group_u, other_u) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (0, "oneadmin", user_body(0, "oneadmin", 0, "oneadmin", password_hash), 0, 0, 1, 0, 0),
    )
    backend.executemany(
        "INSERT INTO group_pool (oid, name, body, uid, gid, owner_u, group_u, other_u) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (0, "oneadmin", group_body(0, "oneadmin", [0]), 0, 0, 1, 0, 0),
            (1, "users", group_body(1, "users", []), 0, 0, 1, 0, 0),
        ],
    )
    backend.execute("INSERT INTO user_quotas (user_oid, body) VALUES (?, ?)", (0, empty_quotas(0)))
    backend.executemany(
        "INSERT INTO group_quotas (group_oid, body) VALUES (?, ?)",
        [(0, empty_quotas(0)), (1, empty_quotas(1))],
    )
    # Group ids below 100 are reserved for system groups: oned's next group is 100.
    backend.executemany(
        "INSERT INTO pool_control (tablename, last_oid) VALUES (?, ?)",
        [("user_pool", 0), ("group_pool", 99)],
    )
