"""Pytest plugin: real MariaDB and PostgreSQL servers for the database tests.

Each server is initialised once per test session in its own temporary directory (data,
socket and log), listens on 127.0.0.1 on a free port, is started without systemd and is
stopped by PID at the end of the session (``atexit`` too, and the kernel sends it a signal
if the test process dies: ``PR_SET_PDEATHSIG``).  Both take well under two seconds to start.

Fixtures:

* ``mysql_server`` / ``postgresql_server`` (session): ``DBServer`` objects with ``host``,
  ``port``, ``admin_user``/``admin_password`` and ``new_database()``, which creates an empty
  database owned by a new user with a password and returns its ``ConnectionSettings``;
* ``any_backend_settings``: parametrized over sqlite/mysql/postgresql, the settings of a fresh
  empty database (sqlite: an empty file in ``tmp_path``).

The servers come from the Debian packages ``mariadb-server`` and ``postgresql`` (``make
system-deps`` installs them).  When their binaries are missing the fixtures fail with a clear
message instead of skipping: the database layer must be tested on every engine.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import glob
import itertools
import os
import pwd
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from onetools.db.backends.base import ConnectionSettings

ADMIN_PASSWORD = "admin-secret"
STARTUP_TIMEOUT = 30.0
_PR_SET_PDEATHSIG = 1


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _child_setup(death_signal: int, uid: int | None, gid: int | None) -> Callable[[], None]:
    """preexec_fn: drop to ``uid``/``gid`` (when root) then ask for ``death_signal`` when we die.

    The death signal is set after the credentials change, which would clear it.
    """

    def setup() -> None:
        os.setpgrp()  # Ctrl-C at the terminal must not reach the server before we stop it
        if gid is not None:
            os.setgroups([gid])
            os.setgid(gid)
        if uid is not None:
            os.setuid(uid)
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, death_signal, 0, 0, 0)

    return setup


class DBServer:
    """A database server process started for the test session."""

    backend = ""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.host = "127.0.0.1"
        self.port = _free_port()
        self.admin_user = ""
        self.admin_password = ADMIN_PASSWORD
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds = 0.0
        self._counter = itertools.count(1)

    @property
    def log_file(self) -> Path:
        return self.base / "server.log"

    def log_tail(self) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return ""

    def _run(self, argv: list[str], setup: Callable[[], None] | None = None) -> None:
        result = subprocess.run(
            argv, capture_output=True, text=True, preexec_fn=setup, check=False, cwd=self.base
        )
        if result.returncode:
            pytest.fail(
                f"{self.backend} test server: {' '.join(argv[:1])} failed "
                f"({result.returncode}):\n{result.stdout}\n{result.stderr}",
                pytrace=False,
            )

    def _spawn(self, argv: list[str], setup: Callable[[], None]) -> None:
        log = open(self.log_file, "ab")  # noqa: SIM115 - the server owns it
        try:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=setup,
                cwd=self.base,
            )
        finally:
            log.close()
        atexit.register(self.stop)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(
                    f"{self.backend} test server exited with {self.process.returncode}:\n"
                    f"{self.log_tail()}",
                    pytrace=False,
                )
            try:
                self.admin_connect().close()
                return
            except Exception as exc:  # server still starting
                last = exc
                time.sleep(0.05)
        self.stop()
        pytest.fail(
            f"{self.backend} test server not ready after {STARTUP_TIMEOUT}s: {last}\n"
            f"{self.log_tail()}",
            pytrace=False,
        )

    def start(self) -> None:
        began = time.monotonic()
        self._start()
        self._wait_ready()
        self.startup_seconds = time.monotonic() - began

    def _start(self) -> None:
        raise NotImplementedError

    def admin_connect(self, db_name: str | None = None) -> Any:
        raise NotImplementedError

    def admin_execute(self, *statements: str) -> None:
        raise NotImplementedError

    def _stop_signal(self) -> int:
        return signal.SIGTERM

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            try:
                process.send_signal(self._stop_signal())
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            except ProcessLookupError:
                pass
        shutil.rmtree(self.base, ignore_errors=True)

    def new_database(self) -> ConnectionSettings:
        """An empty database owned by a new user (with a password); its settings."""
        number = next(self._counter)
        db_name, user, password = f"onedb_test_{number}", f"onedb_user_{number}", f"pw'{number}"
        self._create(db_name, user, password)
        return ConnectionSettings(
            backend=self.backend,
            server=self.host,
            port=self.port,
            user=user,
            password=password,
            db_name=db_name,
        )

    def _create(self, db_name: str, user: str, password: str) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{self.backend} test server {self.host}:{self.port}>"


class MariaDBServer(DBServer):
    backend = "mysql"

    # The test suite's servers are many and short-lived: small buffers, no durability.
    # Benchmarks pass ``tuning=()`` to measure against MariaDB's own defaults (what
    # `apt-get install mariadb-server` gives an administrator).
    TEST_TUNING = (
        "--innodb-buffer-pool-size=32M",
        "--innodb-log-file-size=16M",
        "--innodb-flush-log-at-trx-commit=0",
        "--innodb-doublewrite=0",
    )

    def __init__(self, base: Path, tuning: tuple[str, ...] = TEST_TUNING) -> None:
        super().__init__(base)
        self.tuning = tuning

    def _find(self) -> tuple[str, str]:
        search = "/usr/sbin:/usr/bin:/sbin:/bin"
        server = shutil.which("mariadbd", path=search) or shutil.which("mysqld", path=search)
        install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
        if not server or not install:
            pytest.fail(
                "MariaDB server binaries (mariadbd/mysqld, mariadb-install-db) not found: "
                "install the Debian package mariadb-server (`make system-deps`)",
                pytrace=False,
            )
        return server, install

    def _start(self) -> None:
        server, install = self._find()
        data = self.base / "data"
        root = os.geteuid() == 0
        user_args = ["--user=root"] if root else []
        self._run(
            [
                install,
                "--no-defaults",
                f"--datadir={data}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
                *user_args,
            ]
        )
        self.socket = str(self.base / "mysqld.sock")
        self._spawn(
            [
                server,
                "--no-defaults",
                f"--datadir={data}",
                f"--socket={self.socket}",
                f"--pid-file={self.base / 'mysqld.pid'}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--skip-log-bin",
                *self.tuning,
                "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_general_ci",
                "--max-connections=200",
                *user_args,
            ],
            _child_setup(signal.SIGKILL, None, None),
        )
        self.admin_user = "root"

    def admin_connect(self, db_name: str | None = None) -> Any:
        import pymysql

        if self.admin_user == "root":
            # First connection: over our socket as root (no password), create a TCP admin.
            conn = pymysql.connect(unix_socket=self.socket, user="root", autocommit=True)
            with conn.cursor() as cursor:
                cursor.execute(
                    "CREATE USER IF NOT EXISTS 'admin'@'%%' IDENTIFIED BY %s", (ADMIN_PASSWORD,)
                )
                cursor.execute("GRANT ALL ON *.* TO 'admin'@'%' WITH GRANT OPTION")
            conn.close()
            self.admin_user = "admin"
        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.admin_user,
            password=self.admin_password,
            database=db_name,
            autocommit=True,
            charset="utf8mb4",
        )

    def admin_execute(self, *statements: str) -> None:
        conn = self.admin_connect()
        try:
            with conn.cursor() as cursor:
                for statement in statements:
                    cursor.execute(statement)
        finally:
            conn.close()

    def _create(self, db_name: str, user: str, password: str) -> None:
        quoted = password.replace("\\", "\\\\").replace("'", "\\'")
        self.admin_execute(
            f"CREATE DATABASE `{db_name}` CHARACTER SET utf8mb4",
            f"CREATE USER '{user}'@'%' IDENTIFIED BY '{quoted}'",
            f"GRANT ALL ON `{db_name}`.* TO '{user}'@'%'",
        )


class PostgreSQLServer(DBServer):
    backend = "postgresql"

    def _find(self) -> str:
        candidates = sorted(
            glob.glob("/usr/lib/postgresql/*/bin"),
            key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0,
        )
        for directory in reversed(candidates):
            if os.access(os.path.join(directory, "postgres"), os.X_OK):
                return directory
        found = shutil.which("postgres")
        if found and shutil.which("initdb"):
            return os.path.dirname(found)
        pytest.fail(
            "PostgreSQL server binaries (postgres, initdb in /usr/lib/postgresql/<ver>/bin) not "
            "found: install the Debian package postgresql (`make system-deps`)",
            pytrace=False,
        )

    def _start(self) -> None:
        bindir = self._find()
        uid = gid = None
        if os.geteuid() == 0:  # postgres refuses to run as root
            try:
                entry = pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail("no 'postgres' system user to run the PostgreSQL test server as")
            uid, gid = entry.pw_uid, entry.pw_gid
            os.chown(self.base, uid, gid)
        data = self.base / "data"
        pwfile = self.base / "pwfile"
        pwfile.write_text(ADMIN_PASSWORD + "\n")
        if uid is not None:
            os.chown(pwfile, uid, -1)
        as_user = _child_setup(signal.SIGQUIT, uid, gid)
        self._run(
            [
                os.path.join(bindir, "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            as_user,
        )
        self._spawn(
            [
                os.path.join(bindir, "postgres"),
                "-D",
                str(data),
                "-k",
                str(self.base),
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "shared_buffers=32MB",
                "-c",
                "max_connections=200",
                "-c",
                "dynamic_shared_memory_type=mmap",
            ],
            as_user,
        )
        self.admin_user = "postgres"

    def _stop_signal(self) -> int:
        return signal.SIGINT  # fast shutdown: ends the client sessions

    def admin_connect(self, db_name: str | None = None) -> Any:
        import psycopg

        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.admin_user,
            password=self.admin_password,
            dbname=db_name or "postgres",
            autocommit=True,
            connect_timeout=5,
        )

    def admin_execute(self, *statements: str) -> None:
        with self.admin_connect() as conn:
            for statement in statements:
                conn.execute(statement)  # type: ignore[arg-type]

    def _create(self, db_name: str, user: str, password: str) -> None:
        quoted = password.replace("'", "''")
        self.admin_execute(
            f"CREATE ROLE {user} LOGIN PASSWORD '{quoted}'",
            f"CREATE DATABASE \"{db_name}\" OWNER {user} ENCODING 'UTF8' TEMPLATE template0",
        )


def _start_server(cls: type[DBServer]) -> Iterator[DBServer]:
    base = Path(tempfile.mkdtemp(prefix=f"onetools-{cls.backend}-"))
    os.chmod(base, 0o755)
    server = cls(base)
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mysql_server() -> Iterator[DBServer]:
    """A MariaDB server for the session (see the module docstring)."""
    yield from _start_server(MariaDBServer)


@pytest.fixture(scope="session")
def postgresql_server() -> Iterator[DBServer]:
    """A PostgreSQL server for the session (see the module docstring)."""
    yield from _start_server(PostgreSQLServer)


def sqlite_settings_for(path: Path) -> ConnectionSettings:
    """Settings of a new empty SQLite database file at ``path``."""
    sqlite3.connect(path).close()
    return ConnectionSettings(backend="sqlite", sqlite_file=str(path))


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> ConnectionSettings:
    return sqlite_settings_for(tmp_path / "one.db")


@pytest.fixture
def mysql_settings(mysql_server: DBServer) -> ConnectionSettings:
    return mysql_server.new_database()


@pytest.fixture
def postgresql_settings(postgresql_server: DBServer) -> ConnectionSettings:
    return postgresql_server.new_database()


@pytest.fixture(params=["sqlite", "mysql", "postgresql"])
def any_backend_settings(request: pytest.FixtureRequest, tmp_path: Path) -> ConnectionSettings:
    """Settings of a fresh empty database on each engine in turn."""
    if request.param == "sqlite":
        return sqlite_settings_for(tmp_path / "one.db")
    server: DBServer = request.getfixturevalue(f"{request.param}_server")
    return server.new_database()
