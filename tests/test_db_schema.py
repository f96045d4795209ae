"""Schema data, per-engine DDL and bootstrap (SQLite here; other engines via db_servers)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from onetools.db.backends import open_backend
from onetools.db.backends.base import Backend, ConnectionSettings
from onetools.db.errors import DatabaseError
from onetools.db.schema import (
    LATEST,
    SCHEMAS,
    SUPPORTED_VERSIONS,
    bootstrap,
    check_supported,
    create_table_sql,
    list_indexes,
)


def sqlite_backend(path: Path) -> Backend:
    return open_backend(ConnectionSettings("sqlite", sqlite_file=str(path)), create=True)


def test_versions() -> None:
    assert LATEST == "6.10.0"
    assert SUPPORTED_VERSIONS[0] == "5.10.0" and SUPPORTED_VERSIONS[-1] == LATEST
    assert set(SCHEMAS) == set(SUPPORTED_VERSIONS)


@pytest.mark.parametrize(
    ("version", "tables"),
    [("5.10.0", 37), ("5.12.0", 37), ("6.0.0", 37), ("6.6.0", 37), ("6.8.0", 39), ("6.10.0", 39)],
)
def test_table_counts(version: str, tables: int) -> None:
    assert len(SCHEMAS[version].tables) == tables


def test_column_differences() -> None:
    vm = {v: SCHEMAS[v].table("vm_pool").column_names for v in SUPPORTED_VERSIONS}
    assert vm["5.10.0"][5] == "last_poll"
    assert "last_poll" not in vm["5.12.0"]
    assert vm["6.8.0"][-1] == "search_token"
    assert vm["6.10.0"][-1] == "body_json"
    assert SCHEMAS["5.10.0"].table("host_pool").column_names[4] == "last_mon_time"
    assert "last_mon_time" not in SCHEMAS["5.12.0"].table("host_pool").column_names
    assert SCHEMAS["5.10.0"].table("acl").column_names[1] == "user"
    assert SCHEMAS["5.12.0"].table("acl").column_names[1] == "userset"
    assert not SCHEMAS["6.6.0"].has_table("schedaction_pool")
    assert SCHEMAS["6.8.0"].table("schedaction_pool").column_names == (
        "oid", "parent_id", "type", "body", "time", "done",
    )  # fmt: skip


def test_ddl_per_engine() -> None:
    vm = SCHEMAS["6.0.0"].table("vm_pool")
    assert create_table_sql(vm, "sqlite").endswith("search_token MEDIUMTEXT)")
    assert create_table_sql(vm, "mysql").endswith(
        "search_token MEDIUMTEXT, FULLTEXT ftidx(search_token))"
    )
    pg = create_table_sql(vm, "postgresql")
    assert "MEDIUMTEXT" not in pg and "body TEXT" in pg
    pool_control = create_table_sql(SCHEMAS["6.0.0"].table("pool_control"), "postgresql")
    assert "last_oid NUMERIC(20)" in pool_control
    history = create_table_sql(SCHEMAS["6.0.0"].table("history"), "sqlite")
    assert history.endswith("PRIMARY KEY(vid, seq))")
    assert "FULLTEXT" not in create_table_sql(SCHEMAS["6.10.0"].table("vm_pool"), "mysql")


def test_postgresql_refused_outside_its_versions() -> None:
    check_supported("postgresql", "6.8.0")
    for version in ("5.10.0", "6.10.0"):
        with pytest.raises(DatabaseError, match="does not support PostgreSQL"):
            check_supported("postgresql", version)
    with pytest.raises(DatabaseError, match="not supported"):
        check_supported("sqlite", "4.0.0")


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_bootstrap_sqlite(tmp_path: Path, version: str) -> None:
    path = tmp_path / "one.db"
    with sqlite_backend(path) as backend:
        bootstrap(backend, version, now=1_700_000_000)
        schema = SCHEMAS[version]
        assert backend.tables() == sorted(schema.table_names)
        for table in schema.tables:
            assert tuple(backend.columns(table.name)) == table.column_names
        assert list_indexes(backend, "vm_pool") == ["state_oid_idx"]
        assert list_indexes(backend, "logdb") == ["applied_idx", "fed_index_idx"]
        comment = f"OpenNebula {version} (onetools) daemon bootstrap"
        assert backend.query("SELECT * FROM db_versioning") == [
            (0, version, 1_700_000_000, comment)
        ]
        assert backend.query("SELECT * FROM local_db_versioning") == [
            (0, version, 1_700_000_000, comment, 0)
        ]
        quotas = dict(backend.query("SELECT name, body FROM system_attributes"))
        assert quotas["DEFAULT_USER_QUOTAS"] == (
            "<DEFAULT_USER_QUOTAS><DATASTORE_QUOTA></DATASTORE_QUOTA><NETWORK_QUOTA>"
            "</NETWORK_QUOTA><VM_QUOTA></VM_QUOTA><IMAGE_QUOTA></IMAGE_QUOTA>"
            "</DEFAULT_USER_QUOTAS>"
        )
        assert quotas["DEFAULT_GROUP_QUOTAS"].startswith("<DEFAULT_GROUP_QUOTAS>")
        assert backend.query("SELECT oid, name FROM user_pool") == [(0, "oneadmin")]
        assert backend.query("SELECT oid, name FROM group_pool ORDER BY oid") == [
            (0, "oneadmin"),
            (1, "users"),
        ]
        body = backend.scalar("SELECT body FROM user_pool WHERE oid = 0")
        assert "<GNAME>oneadmin</GNAME>" in body and "<AUTH_DRIVER>core</AUTH_DRIVER>" in body
        assert backend.scalar("SELECT body FROM group_pool WHERE oid = 0").count("<ID>0</ID>") == 2
        assert dict(backend.query("SELECT tablename, last_oid FROM pool_control")) == {
            "user_pool": 0,
            "group_pool": 99,
        }
        log = backend.query("SELECT log_index, fed_index, applied FROM logdb")
        assert log == [(0, 1.8446744073709552e19, 1)]
    # Plain sqlite3 sees the same indexes oned makes: 3 named plus 23 automatic ones.
    with sqlite3.connect(path) as raw:
        count = raw.execute("SELECT COUNT(*) FROM sqlite_master WHERE type='index'").fetchone()
    assert count == (26,)


def test_bootstrap_oned_only(tmp_path: Path) -> None:
    with sqlite_backend(tmp_path / "one.db") as backend:
        bootstrap(backend, LATEST, default_objects=False, is_slave=True)
        assert backend.query("SELECT COUNT(*) FROM user_pool") == [(0,)]
        assert backend.scalar("SELECT is_slave FROM local_db_versioning") == 1


def test_bootstrap_refuses_existing_database(tmp_path: Path) -> None:
    with sqlite_backend(tmp_path / "one.db") as backend:
        bootstrap(backend, "6.0.0")
        with pytest.raises(DatabaseError, match="already has OpenNebula tables"):
            bootstrap(backend, "6.0.0")


def test_bootstrap_every_engine(any_backend_settings: ConnectionSettings) -> None:
    version = "6.8.0"  # the newest version all three engines had
    with open_backend(any_backend_settings) as backend:
        bootstrap(backend, version, now=1_700_000_000)
        schema = SCHEMAS[version]
        assert backend.tables() == sorted(schema.table_names)
        for table in schema.tables:
            assert tuple(backend.columns(table.name)) == table.column_names
        expected = ["ftidx", "state_oid_idx"] if backend.kind == "mysql" else ["state_oid_idx"]
        assert list_indexes(backend, "vm_pool") == expected
        assert backend.query("SELECT oid, version FROM db_versioning") == [(0, version)]
        assert bool(backend.scalar("SELECT is_slave FROM local_db_versioning")) is False
        assert int(backend.scalar("SELECT fed_index FROM logdb")) in (
            18446744073709551615,
            18446744073709551616,  # SQLite's REAL rounds up, as with oned
        )
        assert backend.scalar("SELECT name FROM user_pool WHERE oid = 0") == "oneadmin"


def test_bootstrap_latest_mysql_and_refusal_on_postgresql(
    any_backend_settings: ConnectionSettings,
) -> None:
    with open_backend(any_backend_settings) as backend:
        if backend.kind == "postgresql":
            with pytest.raises(DatabaseError, match="does not support PostgreSQL"):
                bootstrap(backend, LATEST)
            assert backend.tables() == []
            return
        bootstrap(backend, LATEST)
        assert backend.columns("vm_pool")[-1] == "body_json"
        assert list_indexes(backend, "vm_pool") == ["state_oid_idx"]
