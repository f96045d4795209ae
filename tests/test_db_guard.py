"""The 'is oned running?' guard and the onedb lock."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from xmlrpc.server import SimpleXMLRPCServer

import pytest

from onetools.db import guard
from onetools.db.backends.base import ConnectionSettings
from onetools.db.backends.sqlite import SQLiteBackend
from onetools.db.errors import DatabaseError, OnedRunning


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def quiet_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ONE_LOCATION", str(tmp_path / "one"))
    monkeypatch.setenv("ONE_XMLRPC", f"http://127.0.0.1:{free_port()}/RPC2")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def serve(fault: bool) -> Iterator[str]:
    server = SimpleXMLRPCServer(("127.0.0.1", 0), logRequests=False, allow_none=True)

    def version(session: str) -> list[object]:
        if fault:
            raise ValueError("[one.system.version] User couldn't be authenticated")
        return [True, "6.10.0", 0]

    server.register_function(version, "one.system.version")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/RPC2"
    finally:
        server.shutdown()
        server.server_close()


def test_nothing_running_passes(quiet_env: Path) -> None:
    guard.ensure_oned_stopped()


def test_lock_file_blocks(quiet_env: Path) -> None:
    lock = quiet_env / "one/var/lock/.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text("")
    with pytest.raises(OnedRunning, match=r"First stop OpenNebula\. Lock file found"):
        guard.ensure_oned_stopped()


@pytest.mark.parametrize("fault", [False, True])
def test_answering_endpoint_blocks(
    quiet_env: Path, monkeypatch: pytest.MonkeyPatch, fault: bool
) -> None:
    for url in serve(fault):
        monkeypatch.setenv("ONE_XMLRPC", url)
        with pytest.raises(OnedRunning, match="OpenNebula found listening on"):
            guard.ensure_oned_stopped()


def test_endpoint_from_file(quiet_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ONE_XMLRPC")
    endpoint = quiet_env / "home/.one/one_endpoint"
    endpoint.parent.mkdir(parents=True)
    endpoint.write_text("http://127.0.0.1:1/RPC2\n")
    assert guard.endpoint() == "http://127.0.0.1:1/RPC2"
    guard.ensure_oned_stopped()


def test_only_one_onedb_per_database(tmp_path: Path) -> None:
    settings = ConnectionSettings("sqlite", sqlite_file=str(tmp_path / "one.db"))
    first, second = SQLiteBackend(settings, create=True), SQLiteBackend(settings)
    with (
        guard.exclusive(first),
        pytest.raises(DatabaseError, match="Another onedb is working on"),
        guard.exclusive(second),
    ):
        pass
    with guard.exclusive(second):
        pass
    first.close()
    second.close()
