"""Reading and comparing database versions; ``onedb version``/``history`` text."""

from __future__ import annotations

from pathlib import Path

import pytest

from onetools.db.backends import open_backend
from onetools.db.backends.base import Backend, ConnectionSettings
from onetools.db.errors import DatabaseError
from onetools.db.schema import LATEST, SUPPORTED_VERSIONS, bootstrap
from onetools.db.versioning import (
    LOCAL_TABLE,
    SHARED_TABLE,
    append_version_row,
    check_version,
    history,
    history_text,
    read_versions,
    version_key,
    version_text,
)


def sqlite_backend(path: Path) -> Backend:
    return open_backend(ConnectionSettings("sqlite", sqlite_file=str(path)), create=True)


def test_version_key() -> None:
    assert version_key("5.10.0") > version_key("5.9.0")
    assert version_key("6.10.0") == version_key("6.10")
    assert version_key("6.8.0") < version_key("6.10.0")


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_check_version_codes(tmp_path: Path, version: str) -> None:
    with sqlite_backend(tmp_path / "one.db") as backend:
        bootstrap(backend, version)
        status = check_version(backend, with_pending=True)
        if version == LATEST:
            assert status.code == 0
            assert status.pending_local == []
        else:
            assert status.code == 2
            assert status.pending_local[0].source == version
            assert status.pending_local[-1].target == LATEST


def test_newer_and_only_one_table_behind(tmp_path: Path) -> None:
    with sqlite_backend(tmp_path / "one.db") as backend:
        bootstrap(backend, "6.8.0")
        append_version_row(backend, LOCAL_TABLE, "6.8.0", LATEST)
        # Shared behind, local current: the fixed comparison says "upgrade needed".
        assert check_version(backend).code == 2
        append_version_row(backend, SHARED_TABLE, "6.8.0", LATEST)
        assert check_version(backend).code == 0
        append_version_row(backend, LOCAL_TABLE, LATEST, "7.0.0")
        assert check_version(backend).code == 3


def test_not_bootstrapped(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.write_bytes(b"")
    with sqlite_backend(path) as backend:
        status = check_version(backend)
        assert status.code == 1
        assert version_text(status) == "Database is not correctly bootstraped.\n"


def test_pre_versioning_database(tmp_path: Path) -> None:
    with sqlite_backend(tmp_path / "one.db") as backend:
        bootstrap(backend, "5.10.0")
        backend.execute("DELETE FROM db_versioning")
        backend.execute("DELETE FROM local_db_versioning")
        versions = read_versions(backend)
        assert versions.shared.version == "2.0"
        # No step starts from 2.0: a clear error (255) rather than "upgrade needed" (2)
        # followed by an upgrade that cannot run.
        with pytest.raises(DatabaseError, match=r"Unsupported database version 2\.0"):
            check_version(backend)


def test_append_row_and_history(tmp_path: Path) -> None:
    with sqlite_backend(tmp_path / "one.db") as backend:
        bootstrap(backend, "6.0.0", is_slave=True, now=1_600_000_000)
        row = append_version_row(backend, LOCAL_TABLE, "6.0.0", "6.2.0", now=1_700_000_000)
        assert row.oid == 1 and row.is_slave
        assert row.comment == (
            "Database migrated from 6.0.0 to 6.2.0 (OpenNebula 6.2.0) by onedb command."
        )
        append_version_row(backend, SHARED_TABLE, "6.0.0", "6.2.0", now=1_700_000_000)
        rows = history(backend)
        assert [r.version for r in rows] == ["6.0.0", "6.2.0"]
        text = history_text(rows)
        assert "Timestamp: 2020-09-1" in text and "Timestamp: 2023-11-1" in text
        versions = read_versions(backend)
        assert versions.is_slave and versions.local.version == "6.2.0"


def test_version_text(tmp_path: Path) -> None:
    with sqlite_backend(tmp_path / "one.db") as backend:
        bootstrap(backend, "6.6.0", is_slave=True)
        status = check_version(backend, with_pending=True)
        assert version_text(status) == (
            "Shared: 6.6.0\nLocal:  6.6.0\n"
            f"Required shared version: {LATEST}\nRequired local version:  {LATEST}\n"
        )
        verbose = version_text(status, verbose=True)
        assert "Shared tables version: 6.6.0" in verbose
        assert "Comment:   OpenNebula 6.6.0 (onetools) daemon bootstrap" in verbose
        assert "This database is a federation slave" in verbose
        # A slave's shared tables are upgraded on the master: only local steps pend.
        assert "Pending shared steps" not in verbose
        assert "Pending local steps:" in verbose and "6.8.0 -> 6.10.0" in verbose
