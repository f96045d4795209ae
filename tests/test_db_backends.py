"""The database engines behind ``Backend``: SQLite, MariaDB and PostgreSQL (real servers)."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest

from onetools.db.backends import open_backend
from onetools.db.backends.base import Backend, ConnectionSettings
from onetools.db.backends.mysql import translate_placeholders
from onetools.db.errors import DatabaseError

TEXT = "MEDIUMTEXT"


def body_type(backend: Backend) -> str:
    return "MEDIUMTEXT" if backend.kind == "mysql" else "TEXT"


def make_pool(backend: Backend, name: str = "pool") -> None:
    backend.execute(
        f"CREATE TABLE {name} (oid INTEGER PRIMARY KEY, name VARCHAR(128), "
        f"body {body_type(backend)}, uid INTEGER)"
    )


def test_translate_placeholders() -> None:
    assert translate_placeholders("SELECT ? FROM t WHERE a = ?") == "SELECT %s FROM t WHERE a = %s"
    assert translate_placeholders("SELECT '?', \"?\", `?`, ?") == "SELECT '?', \"?\", `?`, %s"
    assert translate_placeholders("SELECT 'it''s ?', ?") == "SELECT 'it''s ?', %s"
    assert translate_placeholders(r"SELECT 'a\'?', ?") == r"SELECT 'a\'?', %s"
    # PostgreSQL standard strings: a backslash is an ordinary character
    assert translate_placeholders(r"SELECT 'a\', ?", mysql=False) == r"SELECT 'a\', %s"
    assert translate_placeholders("SELECT 'x%' LIKE ?") == "SELECT 'x%%' LIKE %s"
    assert translate_placeholders("SELECT 1 -- why?\n, ?") == "SELECT 1 -- why?\n, %s"
    assert translate_placeholders("SELECT /* ? */ ?") == "SELECT /* ? */ %s"


def test_basics(any_backend_settings: ConnectionSettings) -> None:
    with open_backend(any_backend_settings) as db:
        assert db.kind == any_backend_settings.backend
        assert db.tables() == []
        make_pool(db)
        db.execute("CREATE TABLE other (a INTEGER)")
        assert db.tables() == ["other", "pool"]
        assert db.columns("pool") == ["oid", "name", "body", "uid"]
        assert db.table_exists("pool") and not db.table_exists("nope")
        assert db.execute("INSERT INTO pool VALUES (?, ?, ?, ?)", (0, "a", "<X/>", 0)) == 1
        with db.transaction():
            db.executemany(
                "INSERT INTO pool (oid, name, body, uid) VALUES (?, ?, ?, ?)",
                ((i, f"n{i}", f"<B>{i}</B>", i % 3) for i in range(1, 2501)),
            )
        assert db.scalar("SELECT COUNT(*) FROM pool") == 2501
        # ? inside string literals is not a placeholder; % survives with and without params
        rows = db.query("SELECT name, '?', 'x%' FROM pool WHERE oid = ?", (0,))
        assert rows == [("a", "?", "x%")]
        assert db.query("SELECT COUNT(*) FROM pool WHERE name LIKE 'n1%'")[0][0] == 1111
        assert db.query("SELECT COUNT(*) FROM pool WHERE name LIKE ?", ("n1%",))[0][0] == 1111
        assert db.execute("UPDATE pool SET uid = ? WHERE uid = ?", (9, 2)) == 833
        assert db.scalar("SELECT MAX(oid) FROM pool WHERE 1 = 0") is None
        assert db.scalar("SELECT oid FROM pool WHERE oid = -1") is None
        text = "quote ' dq \" back \\ nl \n tab \t utf8 ñ € 😀 ?"
        db.execute("UPDATE pool SET body = ? WHERE oid = ?", (text, 0))
        assert db.scalar("SELECT body FROM pool WHERE oid = 0") == text
        db.execute("UPDATE pool SET body = ? WHERE oid = ?", (None, 1))
        assert db.scalar("SELECT body FROM pool WHERE oid = 1") is None


def test_stream(any_backend_settings: ConnectionSettings) -> None:
    with open_backend(any_backend_settings) as db:
        make_pool(db)
        with db.transaction():
            db.executemany(
                "INSERT INTO pool VALUES (?, ?, ?, ?)",
                ((i, "n", "b" * 100, 0) for i in range(3000)),
            )
        oids = [row[0] for row in db.stream("SELECT oid FROM pool ORDER BY oid", batch=100)]
        assert oids == list(range(3000))
        assert list(db.stream("SELECT oid FROM pool WHERE oid < ?", (3,))) == [(0,), (1,), (2,)]
        # other statements while a stream is open (and inside a transaction)
        seen = 0
        with db.transaction():
            for (oid,) in db.stream("SELECT oid FROM pool ORDER BY oid", batch=64):
                if oid % 2 == 0:
                    db.execute("UPDATE pool SET uid = ? WHERE oid = ?", (1, oid))
                seen += 1
        assert seen == 3000
        assert db.scalar("SELECT COUNT(*) FROM pool WHERE uid = 1") == 1500
        seen = 0
        for (_oid,) in db.stream("SELECT oid FROM pool ORDER BY oid", batch=64):
            seen += 1
            assert db.scalar("SELECT COUNT(*) FROM pool") == 3000
        assert seen == 3000
        # a stream abandoned half-way does not block the connection
        stream = db.stream("SELECT oid FROM pool ORDER BY oid", batch=10)
        assert next(stream) == (0,)
        stream.close()
        assert db.scalar("SELECT COUNT(*) FROM pool") == 3000


def test_transactions(any_backend_settings: ConnectionSettings) -> None:
    with open_backend(any_backend_settings) as db:
        make_pool(db)
        with db.transaction():
            db.execute("INSERT INTO pool VALUES (1, 'a', 'b', 0)")
            with db.transaction():  # nested: joins the outer one
                db.execute("INSERT INTO pool VALUES (2, 'a', 'b', 0)")
        assert db.scalar("SELECT COUNT(*) FROM pool") == 2
        with pytest.raises(RuntimeError), db.transaction():
            db.execute("INSERT INTO pool VALUES (3, 'a', 'b', 0)")
            db.execute("DELETE FROM pool WHERE oid = 1")
            raise RuntimeError("boom")
        assert db.scalar("SELECT COUNT(*) FROM pool") == 2
        # a failing statement rolls the whole transaction back
        with pytest.raises(DatabaseError), db.transaction():
            db.execute("INSERT INTO pool VALUES (4, 'a', 'b', 0)")
            db.execute("INSERT INTO pool VALUES (1, 'dup', 'b', 0)")
        assert db.scalar("SELECT COUNT(*) FROM pool") == 2
        # DDL inside a transaction: rolled back where the engine can
        with pytest.raises(RuntimeError), db.transaction():
            db.execute("CREATE TABLE ddl_test (a INTEGER)")
            raise RuntimeError("boom")
        assert db.table_exists("ddl_test") is not db.transactional_ddl
        assert db.transactional_ddl is (db.kind != "mysql")


def check_bulk_writer(settings: ConnectionSettings) -> None:
    insert = "INSERT INTO pool (oid, name, body, uid) VALUES (?, ?, ?, ?)"
    text = "quote ' back \\ pct %s utf8 ñ € 😀"
    with open_backend(settings) as db:
        make_pool(db)
        with db.bulk_writer(insert) as write:
            for start in range(0, 5000, 500):
                write([(i, f"n{i}", f"{text} {i}", i % 7) for i in range(start, start + 500)])
            # Several statements per batch on MySQL (1 MiB each), and a row bigger than that.
            write([(i, None, text * 400, None) for i in range(5000, 5500)])
            write([(5500, "big", "x" * 1_500_000, -1)])
        assert db.scalar("SELECT COUNT(*) FROM pool") == 5501
        assert db.scalar("SELECT body FROM pool WHERE oid = 4321") == f"{text} 4321"
        assert db.scalar("SELECT SUM(uid) FROM pool WHERE oid < 5000") == sum(
            i % 7 for i in range(5000)
        )
        assert db.query("SELECT name, body, uid FROM pool WHERE oid = 5499") == [
            (None, text * 400, None)
        ]
        assert db.scalar("SELECT LENGTH(body) FROM pool WHERE oid = 5500") == 1_500_000

        duplicate = pytest.raises(DatabaseError, match=r"(?i)duplicate|unique")
        with duplicate, db.bulk_writer(insert) as write:
            write([(6000, "new", "x", 0)])
            write([(1, "again", "x", 0)])  # primary key taken
            for start in range(7000, 27000, 500):  # far more than the writer queues
                write([(i, "n", "x", 0) for i in range(start, start + 500)])
        # Caller-side errors leave the writer too; the connection stays usable.
        with pytest.raises(RuntimeError, match="caller"), db.bulk_writer(insert) as write:
            write([(90000, "n", "x", 0)])
            raise RuntimeError("caller")
        assert db.scalar("SELECT 1") == 1


def test_bulk_writer(any_backend_settings: ConnectionSettings) -> None:
    """Batches arrive in order, text intact (MySQL writes them on a second connection with
    the same charset); a failing batch raises, by the last batch or on exit, and never
    leaves the caller blocked however many batches follow it."""
    check_bulk_writer(any_backend_settings)


def test_bulk_writer_pymysql(
    mysql_settings: ConnectionSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same with PyMySQL, the fallback driver (its batches go through executemany)."""
    import pymysql
    import pymysql.cursors

    from onetools.db.backends import mysql

    monkeypatch.setattr(
        mysql,
        "_driver",
        lambda: (pymysql, pymysql.err.MySQLError, pymysql.err.Error, pymysql.cursors.SSCursor),
    )
    check_bulk_writer(mysql_settings)


def test_errors_are_database_errors(any_backend_settings: ConnectionSettings) -> None:
    with open_backend(any_backend_settings) as db:
        with pytest.raises(DatabaseError, match=r"(?i)nope"):
            db.query("SELECT * FROM nope")
        with pytest.raises(DatabaseError):
            db.execute("THIS IS NOT SQL")
        # the connection is still usable afterwards
        assert db.scalar("SELECT 1") == 1


def test_quote(any_backend_settings: ConnectionSettings) -> None:
    with open_backend(any_backend_settings) as db:
        db.execute(f"CREATE TABLE {db.quote('we ird')} ({db.quote('col')} INTEGER)")
        assert db.tables() == ["we ird"]
        assert db.columns("we ird") == ["col"]


# -- connection failures: one clear line ------------------------------------------------------


def test_mysql_wrong_password(mysql_settings: ConnectionSettings) -> None:
    bad = mysql_settings.replace(password="wrong")
    with pytest.raises(DatabaseError) as info:
        open_backend(bad)
    assert info.value.message.startswith(f"Access denied for user '{bad.user}'")
    assert "\n" not in info.value.message


def test_mysql_unknown_database(mysql_settings: ConnectionSettings, mysql_server: object) -> None:
    bad = mysql_settings.replace(db_name="missing_db")
    with pytest.raises(DatabaseError, match="missing_db") as info:
        open_backend(bad)
    assert "\n" not in info.value.message


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_mysql_unreachable() -> None:
    port = free_port()
    settings = ConnectionSettings("mysql", server="127.0.0.1", port=port, user="u", db_name="d")
    with pytest.raises(DatabaseError) as info:
        open_backend(settings)
    assert info.value.message.startswith(f"Cannot connect to MySQL server at 127.0.0.1:{port}: ")
    assert "\n" not in info.value.message


def test_mysql_needs_user_and_dbname() -> None:
    with pytest.raises(DatabaseError, match="USER is needed"):
        open_backend(ConnectionSettings("mysql", db_name="d"))
    with pytest.raises(DatabaseError, match="DBNAME is needed"):
        open_backend(ConnectionSettings("mysql", user="u"))


def test_postgresql_wrong_password(postgresql_settings: ConnectionSettings) -> None:
    bad = postgresql_settings.replace(password="wrong")
    with pytest.raises(DatabaseError, match="password authentication failed") as info:
        open_backend(bad)
    assert "\n" not in info.value.message


def test_postgresql_unknown_database(postgresql_settings: ConnectionSettings) -> None:
    bad = postgresql_settings.replace(db_name="missing_db")
    with pytest.raises(DatabaseError, match=r"missing_db.*does not exist"):
        open_backend(bad)


def test_postgresql_unreachable() -> None:
    port = free_port()
    settings = ConnectionSettings(
        "postgresql", server="127.0.0.1", port=port, user="u", db_name="d"
    )
    with pytest.raises(DatabaseError) as info:
        open_backend(settings)
    assert info.value.message.startswith(f"Cannot connect to PostgreSQL server at 127.0.0.1:{port}")
    assert "\n" not in info.value.message


def test_sqlite_missing_and_corrupt(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    with pytest.raises(DatabaseError, match="doesn't exist"):
        open_backend(ConnectionSettings("sqlite", sqlite_file=str(missing)))
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not a database at all" * 200)
    with pytest.raises(DatabaseError, match=r"corrupt\.db") as info:
        open_backend(ConnectionSettings("sqlite", sqlite_file=str(corrupt)))
    assert "\n" not in info.value.message


def test_unknown_backend() -> None:
    with pytest.raises(DatabaseError, match="must be one of"):
        open_backend(ConnectionSettings("oracle"))


# -- MySQL charset detection (reference §4.2) -------------------------------------------------


def test_mysql_charset_detection(mysql_server: object, mysql_settings: ConnectionSettings) -> None:
    with open_backend(mysql_settings) as db:
        assert getattr(db, "charset") == "utf8mb4"  # noqa: B009 - MySQL only attribute
        db.execute(
            "CREATE TABLE system_attributes (name VARCHAR(128) PRIMARY KEY, body MEDIUMTEXT) "
            "CHARACTER SET latin1"
        )
    with pytest.raises(DatabaseError, match=r"Table and database charset \(latin1, utf8mb4\)"):
        open_backend(mysql_settings)
    # an explicit --encoding skips the check
    explicit = mysql_settings.replace(encoding="latin1")
    with open_backend(explicit) as db:
        assert getattr(db, "charset") == "latin1"  # noqa: B009
        db.execute("ALTER TABLE system_attributes CONVERT TO CHARACTER SET utf8mb4")
    with open_backend(mysql_settings) as db:
        assert getattr(db, "charset") == "utf8mb4"  # noqa: B009


def test_drivers_imported_lazily() -> None:
    import subprocess

    code = (
        "import sys, onetools.db.backends, onetools.db.connection, onetools.db.backup;"
        "print(sorted(m for m in ('pymysql', 'psycopg') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_sqlite_fixture_is_empty_file(sqlite_settings: ConnectionSettings) -> None:
    assert sqlite_settings.sqlite_file is not None
    con = sqlite3.connect(sqlite_settings.sqlite_file)
    assert con.execute("SELECT COUNT(*) FROM sqlite_master").fetchone() == (0,)
    con.close()
