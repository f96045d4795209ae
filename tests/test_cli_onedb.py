"""``onedb`` through the real command line: exit codes, messages, the database afterwards."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from helpers import Result, run_tool
from onetools.db.backends.base import ConnectionSettings
from onetools.db.backends.sqlite import SQLiteBackend
from onetools.db.schema import bootstrap


def onedb(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> Result:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ONE_", "ONEDB_"))}
    base.update(env or {})
    return run_tool("onedb", *args, env=base, stdin=stdin)


@pytest.fixture
def quiet(tmp_path: Path) -> dict[str, str]:
    """An environment where no oned runs: a private ONE_LOCATION and a dead endpoint."""
    return {
        "ONE_LOCATION": str(tmp_path / "one"),
        "ONE_XMLRPC": "http://127.0.0.1:9/RPC2",
        "HOME": str(tmp_path / "home"),
    }


def make_db(path: Path, version: str) -> Path:
    backend = SQLiteBackend(ConnectionSettings("sqlite", sqlite_file=str(path)), create=True)
    with backend.transaction():
        bootstrap(backend, version)
    backend.close()
    return path


def dump(path: Path) -> list[str]:
    connection = sqlite3.connect(path)
    try:
        return list(connection.iterdump())
    finally:
        connection.close()


def test_version_exit_codes(tmp_path: Path, quiet: dict[str, str]) -> None:
    current = make_db(tmp_path / "current.db", "6.10.0")
    result = onedb("version", "-s", str(current), env=quiet)
    assert result.code == 0, result.err
    assert "Shared: 6.10.0" in result.out and "Local:  6.10.0" in result.out

    old = make_db(tmp_path / "old.db", "6.0.0")
    assert onedb("-s", str(old), "version", env=quiet).code == 2
    verbose = onedb("version", "-v", "-s", str(old), env=quiet)
    assert verbose.code == 2 and "6.8.0" in verbose.out  # the pending steps are listed

    # Only the local table behind is still "upgrade needed" (the original said 0).
    half = make_db(tmp_path / "half.db", "6.10.0")
    connection = sqlite3.connect(half)
    connection.execute("INSERT INTO local_db_versioning VALUES (1, '6.8.0', 0, 'older local', 0)")
    connection.commit()
    connection.close()
    assert onedb("version", "-s", str(half), env=quiet).code == 2

    newer = make_db(tmp_path / "newer.db", "6.10.0")
    connection = sqlite3.connect(newer)
    connection.execute("INSERT INTO db_versioning VALUES (1, '7.0.0', 0, 'from the future')")
    connection.commit()
    connection.close()
    assert onedb("version", "-s", str(newer), env=quiet).code == 3

    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    assert onedb("version", "-s", str(empty), env=quiet).code == 1

    missing = onedb("version", "-s", str(tmp_path / "nope.db"), env=quiet)
    assert missing.code == 255 and missing.err.startswith("ERROR : ")
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not a database" * 100)
    bad = onedb("version", "-s", str(corrupt), env=quiet)
    assert bad.code == 255 and len(bad.err.strip().splitlines()) == 1


def test_version_json(tmp_path: Path, quiet: dict[str, str]) -> None:
    db = make_db(tmp_path / "one.db", "6.4.0")
    result = onedb("version", "--json", "-s", str(db), env=quiet)
    assert result.code == 2 and '"exit_code": 2' in result.out


def test_upgrade_backup_history(tmp_path: Path, quiet: dict[str, str]) -> None:
    db = make_db(tmp_path / "one.db", "6.0.0")
    backup = tmp_path / "pre.sql"
    result = onedb("upgrade", "-s", str(db), "--backup", str(backup), "-v", env=quiet)
    assert result.code == 0, result.err
    assert backup.exists()
    assert onedb("version", "-s", str(db), env=quiet).code == 0
    history = onedb("history", "-s", str(db), env=quiet)
    assert "Database migrated from 6.0.0 to 6.10.0" in history.out
    again = onedb("upgrade", "-s", str(db), "--no-backup", env=quiet)
    assert again.code == 0

    restored = tmp_path / "restored.db"
    assert onedb("restore", str(backup), "-s", str(restored), env=quiet).code == 0
    assert onedb("version", "-s", str(restored), env=quiet).code == 2
    refused = onedb("restore", str(backup), "-s", str(restored), env=quiet)
    assert refused.code == 255 and "-f" in refused.err


def test_upgrade_dry_and_no_backup(tmp_path: Path, quiet: dict[str, str]) -> None:
    db = make_db(tmp_path / "one.db", "6.4.0")
    before = dump(db)
    dry = onedb("upgrade", "--dry", "-s", str(db), env=quiet)
    assert dry.code == 0 and "6.8.0" in dry.out
    assert dump(db) == before
    no_backup = onedb("upgrade", "--no-backup", "-s", str(db), env=quiet)
    assert no_backup.code == 0, no_backup.err
    assert no_backup.err.count("WARN") == 1


def test_upgrade_refuses_while_oned_runs(tmp_path: Path, quiet: dict[str, str]) -> None:
    db = make_db(tmp_path / "one.db", "6.0.0")
    lock = Path(quiet["ONE_LOCATION"]) / "var/lock/.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text("")
    before = dump(db)
    result = onedb("upgrade", "-s", str(db), "--no-backup", env=quiet)
    assert result.code == 255 and "First stop OpenNebula" in result.err
    assert dump(db) == before


def test_fsck_on_a_fresh_database(tmp_path: Path, quiet: dict[str, str]) -> None:
    db = make_db(tmp_path / "one.db", "6.10.0")
    result = onedb("fsck", "--dry", "-s", str(db), env=quiet)
    assert result.code == 0, result.out + result.err


def test_bad_connection_options(tmp_path: Path, quiet: dict[str, str]) -> None:
    result = onedb("version", "-t", "oracle", env=quiet)
    assert result.code == 255 and "ERROR" in result.err
    unreachable = onedb(
        "version",
        "-t",
        "mysql",
        "-S",
        "127.0.0.1",
        "-P",
        "9",
        "-u",
        "x",
        "-p",
        "y",
        "-d",
        "z",
        env=quiet,
    )
    assert unreachable.code == 255 and len(unreachable.err.strip().splitlines()) == 1


def test_show_and_change_body(tmp_path: Path, quiet: dict[str, str]) -> None:
    db = make_db(tmp_path / "one.db", "6.10.0")
    shown = onedb("show-body", "user", "--id", "0", "-s", str(db), env=quiet)
    assert shown.code == 0 and "<USER>" in shown.out and "oneadmin" in shown.out
    dry = onedb(
        "change-body",
        "user",
        "/USER/NAME",
        "root",
        "--id",
        "0",
        "--dry",
        "--sqlite",
        str(db),
        env=quiet,
    )
    assert dry.code == 0 and "root" in dry.out
    assert "oneadmin" in onedb("show-body", "user", "--id", "0", "-s", str(db), env=quiet).out
    missing = onedb("show-body", "user", "--id", "99", "-s", str(db), env=quiet)
    assert missing.code == 255


@pytest.mark.parametrize(
    ("version", "message"),
    [("banana", "Unknown database version 'banana'"), ("5.8.0", "Unsupported database version")],
)
def test_unknown_version_rows(
    tmp_path: Path, quiet: dict[str, str], version: str, message: str
) -> None:
    db = make_db(tmp_path / "one.db", "6.10.0")
    connection = sqlite3.connect(db)
    connection.execute("INSERT INTO db_versioning VALUES (1, ?, 0, 'odd')", (version,))
    connection.commit()
    connection.close()
    before = dump(db)
    for command in (["version"], ["upgrade", "--no-backup"]):
        result = onedb(*command, "-s", str(db), env=quiet)
        assert result.code == 255, (command, result.out, result.err)
        assert len(result.err.strip().splitlines()) == 1
        assert message in result.err or "Cannot upgrade" in result.err
    assert dump(db) == before
