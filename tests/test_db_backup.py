"""onedb backup / restore (our own SQL dumps) and sqlite2mysql, on real servers."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import pytest

from onetools.db.backends import open_backend
from onetools.db.backends.base import Backend, ConnectionSettings
from onetools.db.backup import (
    END,
    backup,
    default_backup_name,
    iter_statements,
    restore,
    sql_literal,
)
from onetools.db.errors import DatabaseError
from onetools.db.sqlite2mysql import MAX_FED_INDEX, sqlite_to_mysql

TRICKY = [
    "plain",
    "it's a 'quoted' \"string\"",
    "back\\slash \\' \\\\ \\n end\\",
    "new\nline\r\nand\ttab",
    "utf-8: ñandú € 日本語 😀",
    "semi; -- not a comment; /* nor this */ ? %s %",
    "",
    "'",
    "''",
    "\\",
]


def ddl(kind: str) -> list[str]:
    text = "MEDIUMTEXT" if kind == "mysql" else "TEXT"
    ubig = "NUMERIC(20)" if kind == "postgresql" else "BIGINT UNSIGNED"
    return [
        f"CREATE TABLE pool (oid INTEGER PRIMARY KEY, name VARCHAR(128), body {text}, "
        "uid INTEGER NOT NULL, gid INTEGER DEFAULT 0, UNIQUE (name, uid))",
        "CREATE INDEX pool_uid_idx ON pool (uid)",
        f"CREATE TABLE user_pool (oid INTEGER PRIMARY KEY, name VARCHAR(128) UNIQUE, "
        f"body {text}, uid INTEGER, gid INTEGER)",
        f"CREATE TABLE group_pool (oid INTEGER PRIMARY KEY, name VARCHAR(128) UNIQUE, "
        f"body {text}, uid INTEGER, gid INTEGER)",
        f"CREATE TABLE vm_pool (oid INTEGER PRIMARY KEY, name VARCHAR(128), body {text}, "
        "uid INTEGER, gid INTEGER, state INTEGER)",
        f"CREATE TABLE logdb (log_index BIGINT PRIMARY KEY, term INTEGER, sqlcmd {text}, "
        f"timestamp BIGINT, fed_index {ubig}, applied BOOLEAN)",
        "CREATE TABLE db_versioning (oid INTEGER PRIMARY KEY, version VARCHAR(256), "
        "timestamp INTEGER, comment VARCHAR(256))",
        "CREATE TABLE local_db_versioning (oid INTEGER PRIMARY KEY, version VARCHAR(256), "
        "timestamp INTEGER, comment VARCHAR(256), is_slave BOOLEAN)",
        f"CREATE TABLE pool_control (tablename VARCHAR(32) PRIMARY KEY, last_oid {ubig})",
    ]


def populate(db: Backend, big: bool = True) -> None:
    for statement in ddl(db.kind):
        db.execute(statement)
    with db.transaction():
        rows: list[tuple[Any, ...]] = [
            (i, f"name-{i}", text, i % 3, None if i % 2 else 1) for i, text in enumerate(TRICKY)
        ]
        rows.append((100, None, None, 7, None))
        if big:
            rows.append((101, "big", "<VM>" + "x'\\\n" * 500_000 + "</VM>", 0, 0))
        rows += [(200 + i, f"bulk{i}", f"<B>{i}</B>", i % 5, 0) for i in range(1200)]
        db.executemany("INSERT INTO pool VALUES (?, ?, ?, ?, ?)", rows)
        db.executemany(
            "INSERT INTO user_pool VALUES (?, ?, ?, ?, ?)",
            [(0, "oneadmin", "<USER/>", 0, 0), (1, "serveradmin", "<USER>'x'</USER>", 1, 0)],
        )
        db.executemany(
            "INSERT INTO group_pool VALUES (?, ?, ?, ?, ?)", [(0, "oneadmin", "<G/>", 0, 0)]
        )
        db.executemany(
            "INSERT INTO vm_pool VALUES (?, ?, ?, ?, ?, ?)", [(0, "vm", "<VM/>", 0, 0, 3)]
        )
        db.executemany(
            "INSERT INTO logdb VALUES (?, ?, ?, ?, ?, ?)",
            [
                (0, 1, "INSERT INTO x VALUES ('a;b')", 1700000000, 5, True),
                (1, 1, "local only", 1700000001, None, False),
                (2, 2, "fed", 1700000002, 6, True),
            ],
        )
        db.execute("UPDATE logdb SET fed_index = NULL WHERE log_index = 1")
        db.executemany(
            "INSERT INTO db_versioning VALUES (?, ?, ?, ?)",
            [(0, "6.0.0", 1600000000, "OpenNebula 6.0.0 (abc) daemon bootstrap")],
        )
        db.executemany(
            "INSERT INTO local_db_versioning VALUES (?, ?, ?, ?, ?)",
            [(0, "6.0.0", 1600000000, "OpenNebula 6.0.0 (abc) daemon bootstrap", False)],
        )
        db.executemany("INSERT INTO pool_control VALUES (?, ?)", [("vm_pool", 0), ("user_pool", 1)])


def contents(db: Backend) -> dict[str, list[tuple[Any, ...]]]:
    result = {}
    for table in db.tables():
        columns = db.columns(table)
        rows = db.query(f"SELECT * FROM {db.quote(table)} ORDER BY {db.quote(columns[0])}")
        flags = [c in ("applied", "is_slave") for c in columns]
        result[table] = [
            tuple(
                bool(v) if flag and v is not None else v for flag, v in zip(flags, row, strict=True)
            )
            for row in rows
        ]
    return result


@pytest.fixture
def second_database(
    any_backend_settings: ConnectionSettings, request: pytest.FixtureRequest, tmp_path: Path
) -> ConnectionSettings:
    if any_backend_settings.backend == "sqlite":
        return ConnectionSettings("sqlite", sqlite_file=str(tmp_path / "second.db"))
    return request.getfixturevalue(f"{any_backend_settings.backend}_server").new_database()  # type: ignore[no-any-return]


def test_round_trip(
    any_backend_settings: ConnectionSettings, second_database: ConnectionSettings, tmp_path: Path
) -> None:
    first = tmp_path / "first.sql"
    with open_backend(any_backend_settings) as db:
        populate(db)
        assert backup(db, str(first)) == str(first)
        original = contents(db)
    assert oct(first.stat().st_mode & 0o777) == "0o600"
    text = first.read_text(encoding="utf-8")
    assert text.startswith("-- onetools onedb backup\n-- engine: ")
    assert text.rstrip().endswith(END)
    assert "DROP TABLE IF EXISTS" in text and "pool_uid_idx" in text

    restore(second_database, str(first))
    second = tmp_path / "second.sql"
    with open_backend(second_database) as db:
        assert contents(db) == original
        backup(db, str(second))
    assert second.read_text(encoding="utf-8") == text  # dump-for-dump identical

    # restoring over a bootstrapped database needs force
    with pytest.raises(DatabaseError, match=r"exists, use -f to overwrite\.$"):
        restore(second_database, str(first))
    with open_backend(second_database) as db:
        db.execute("DELETE FROM pool WHERE oid >= 200")
        db.execute("CREATE TABLE extra (a INTEGER)")
    restore(second_database, str(first), force=True)
    with open_backend(second_database) as db:
        assert contents(db) == {**original, "extra": []}  # tables not in the dump survive

    # an existing backup file is not overwritten without force
    with open_backend(any_backend_settings) as db:
        with pytest.raises(DatabaseError) as info:
            backup(db, str(first))
        assert info.value.message == f"File {first} exists, backup aborted. Use -f to overwrite."
        db.execute("DELETE FROM vm_pool")
        backup(db, str(first), force=True)
    assert first.read_text(encoding="utf-8") != text
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_federated(
    any_backend_settings: ConnectionSettings, second_database: ConnectionSettings, tmp_path: Path
) -> None:
    full, fed = tmp_path / "full.sql", tmp_path / "fed.sql"
    with open_backend(any_backend_settings) as db:
        populate(db, big=False)
        backup(db, str(full))
        backup(db, str(fed), federated=True)
    text = fed.read_text(encoding="utf-8")
    assert "-- scope: federated\n" in text
    assert "-- tables: group_pool user_pool db_versioning logdb\n" in text
    assert "vm_pool" not in text and "pool_control" not in text and "bulk1" not in text
    assert "'fed'" in text and "'local only'" not in text and "a;b" in text

    restore(second_database, str(full))
    with open_backend(second_database) as db:
        db.execute("UPDATE user_pool SET name = 'changed' WHERE oid = 1")
        db.execute("UPDATE vm_pool SET name = 'kept' WHERE oid = 0")
    with pytest.raises(DatabaseError, match="is a federated backup"):
        restore(second_database, str(fed), force=True)
    with pytest.raises(DatabaseError, match="is not a federated backup"):
        restore(second_database, str(full), federated=True)
    restore(second_database, str(fed), federated=True)  # no force needed
    with open_backend(second_database) as db:
        assert db.scalar("SELECT name FROM user_pool WHERE oid = 1") == "serveradmin"
        assert db.scalar("SELECT name FROM vm_pool WHERE oid = 0") == "kept"
        assert [r[0] for r in db.query("SELECT log_index FROM logdb ORDER BY log_index")] == [0, 2]


def test_restore_checks(sqlite_settings: ConnectionSettings, tmp_path: Path) -> None:
    dump = tmp_path / "dump.sql"
    with open_backend(sqlite_settings) as db:
        populate(db, big=False)
        backup(db, str(dump))
    text = dump.read_text(encoding="utf-8")
    target = ConnectionSettings("sqlite", sqlite_file=str(tmp_path / "new.db"))
    truncated = tmp_path / "truncated.sql"
    truncated.write_text(text[: len(text) // 2], encoding="utf-8")
    with pytest.raises(DatabaseError, match="incomplete"):
        restore(target, str(truncated))
    other = tmp_path / "other.sql"
    other.write_text("CREATE TABLE x (a INT);\n")
    with pytest.raises(DatabaseError, match="not a onedb backup"):
        restore(target, str(other))
    with pytest.raises(DatabaseError, match="Cannot read backup"):
        restore(target, str(tmp_path / "missing.sql"))
    mysql_like = tmp_path / "mysql.sql"
    mysql_like.write_text(text.replace("-- engine: sqlite", "-- engine: mysql"))
    with pytest.raises(DatabaseError, match="backup of a mysql database"):
        restore(target, str(mysql_like))
    with open_backend(sqlite_settings) as db, pytest.raises(DatabaseError, match="Cannot write"):
        backup(db, str(tmp_path / "no" / "such" / "dir.sql"))
    # a failing statement in the middle leaves the target untouched (one transaction)
    broken = tmp_path / "broken.sql"
    broken.write_text(text.replace('INSERT INTO "vm_pool"', 'INSERT INTO "nope"', 1))
    restore(target, str(dump))
    with pytest.raises(DatabaseError, match="nope"):
        restore(target, str(broken), force=True)
    with open_backend(target) as db:
        assert db.scalar("SELECT COUNT(*) FROM vm_pool") == 1


def test_iter_statements() -> None:
    lines = [
        "-- header\n",
        "CREATE TABLE t (a TEXT); INSERT INTO t VALUES ('x;y'),\n",
        "('multi\n",
        "line; -- still string\n",
        "'), ('it''s'); /* block; comment */ SELECT \"we;ird\";\n",
        "SELECT 1",
    ]
    assert list(iter_statements(lines)) == [
        "CREATE TABLE t (a TEXT)",
        "INSERT INTO t VALUES ('x;y'),\n('multi\nline; -- still string\n'), ('it''s')",
        '/* block; comment */ SELECT "we;ird"',
        "SELECT 1",
    ]


def test_sql_literal() -> None:
    assert sql_literal(None, "mysql") == "NULL"
    assert sql_literal(True, "postgresql") == "TRUE"
    assert sql_literal(True, "mysql") == "1"
    assert sql_literal("a'b\\c", "mysql") == "'a''b\\c'"
    assert sql_literal(b"\x00\xff", "sqlite") == "X'00ff'"
    assert sql_literal(b"\x00\xff", "postgresql") == "decode('00ff', 'hex')"
    assert sql_literal("a\0b", "sqlite") == "CAST(X'610062' AS TEXT)"
    assert sql_literal("a\r\n", "mysql") == "_utf8mb4 X'610d0a'"
    assert sql_literal("a\\\r'", "postgresql") == "E'a\\\\\\r'''"


def test_default_backup_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ONE_LOCATION", raising=False)
    now = dt.datetime(2025, 7, 7, 10, 50, 3)
    sqlite = ConnectionSettings("sqlite", sqlite_file="/var/lib/one/one.db")
    assert default_backup_name(sqlite, now=now) == "/var/lib/one/one.db_2025-7-7_10:50:3.bck"
    assert (
        default_backup_name(sqlite, federated=True, now=now)
        == "/var/lib/one/one.db_federated_2025-7-7_10:50:3.bck"
    )
    mysql = ConnectionSettings("mysql", server="localhost", db_name="opennebula")
    assert (
        default_backup_name(mysql, now=dt.datetime(2023, 4, 11, 16, 44, 45))
        == "/var/lib/one/mysql_localhost_opennebula_2023-4-11_16:44:45.sql"
    )
    monkeypatch.setenv("ONE_LOCATION", "/opt/one")
    pg = ConnectionSettings("postgresql", server="db", db_name="one")
    assert (
        default_backup_name(pg, federated=True, now=now)
        == "/opt/one/var/postgresql_db_one_federated_2025-7-7_10:50:3.sql"
    )


# -- sqlite2mysql -----------------------------------------------------------------------------


def test_sqlite2mysql(
    sqlite_settings: ConnectionSettings, mysql_settings: ConnectionSettings
) -> None:
    with open_backend(sqlite_settings) as source, open_backend(mysql_settings) as target:
        populate(source, big=False)
        source.execute(
            "INSERT INTO logdb VALUES (9, 1, 'huge', 1, 18446744073709551616, 1)"
        )  # stored as REAL by SQLite: clamped to 2^64-1
        populate(target, big=False)
        target.execute("DELETE FROM vm_pool")
        target.execute("INSERT INTO pool VALUES (99999, 'stale', 'x', 0, 0)")
        calls: list[tuple[str, int, int]] = []
        counts = sqlite_to_mysql(source, target, progress=lambda *call: calls.append(call))
        assert counts["pool"] == len(TRICKY) + 1 + 1200
        assert counts["vm_pool"] == 1 and counts["logdb"] == 4
        assert [(t, d) for t, d, _ in calls if d == 0] == [(t, 0) for t in source.tables()]
        assert ("pool", 1000, 1211) in calls and ("pool", 1211, 1211) in calls
        assert target.scalar("SELECT fed_index FROM logdb WHERE log_index = 9") == MAX_FED_INDEX
        source.execute("DELETE FROM logdb WHERE log_index = 9")
        target.execute("DELETE FROM logdb WHERE log_index = 9")
        assert contents(target) == contents(source)

        target.execute("UPDATE local_db_versioning SET version = '6.2.0'")
        with pytest.raises(DatabaseError, match=r"same version \(local_db_versioning"):
            sqlite_to_mysql(source, target)
        target.execute("UPDATE local_db_versioning SET version = '6.0.0'")
        source.execute("CREATE TABLE only_in_sqlite (a INTEGER)")
        with pytest.raises(DatabaseError, match=r"lacks the table.*only_in_sqlite"):
            sqlite_to_mysql(source, target)


def test_sqlite2mysql_count_mismatch_rolls_back(
    sqlite_settings: ConnectionSettings,
    mysql_settings: ConnectionSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with open_backend(sqlite_settings) as source, open_backend(mysql_settings) as target:
        populate(source, big=False)
        populate(target, big=False)
        target.execute("UPDATE vm_pool SET name = 'before'")
        original = target.executemany

        def lossy(sql: str, rows: Any) -> None:
            rows = list(rows)
            original(sql, rows[:-1] if "pool_control" in sql else rows)

        monkeypatch.setattr(target, "executemany", lossy)
        with pytest.raises(DatabaseError, match="pool_control: 2 rows in SQLite but 1"):
            sqlite_to_mysql(source, target)
        assert target.scalar("SELECT name FROM vm_pool") == "before"


@pytest.mark.parametrize("engine", ["mysql", "postgresql"])
def test_dump_loads_with_engine_clients(
    engine: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The dumps are plain SQL the engines' own clients (mariadb, psql) load identically."""
    import shutil
    import subprocess

    server = request.getfixturevalue(f"{engine}_server")
    source, target = server.new_database(), server.new_database()
    dump = tmp_path / "dump.sql"
    with open_backend(source) as db:
        populate(db)
        backup(db, str(dump))
        expected = contents(db)
    if engine == "mysql":
        client = shutil.which("mariadb") or shutil.which("mysql")
        command = [f"-h{target.server}", f"-P{target.port}", f"-u{target.user}", target.db_name]
        env = {"MYSQL_PWD": target.password}
    else:
        client = shutil.which("psql") or "/usr/bin/psql"
        command = [f"--host={target.server}", f"--port={target.port}", f"--username={target.user}"]
        command += [f"--dbname={target.db_name}", "--set=ON_ERROR_STOP=1", "-q", "-o/dev/null"]
        env = {"PGPASSWORD": target.password}
    assert client, f"no {engine} command-line client"
    with dump.open() as stdin:
        result = subprocess.run(
            [client, *command],
            stdin=stdin,
            capture_output=True,
            text=True,
            check=False,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        )
    assert result.returncode == 0, result.stderr
    with open_backend(target) as db:
        assert contents(db) == expected
