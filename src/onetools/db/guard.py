"""Guards for commands that change the database offline (reference onedb.md §1.4).

* oned must be stopped: its lock file must not exist, and nothing may answer OpenNebula's
  XML-RPC ``one.system.version`` at the configured endpoint (any answer, even an authentication
  fault, means an oned is listening).
* Only one onedb may change a database at a time: an exclusive lock held for the whole command
  (``flock`` on ``<file>.onedb-lock`` for SQLite, ``GET_LOCK`` on MySQL, an advisory lock on
  PostgreSQL).  The original has no such lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator

from onetools.db.backends.base import Backend
from onetools.db.errors import DatabaseError, OnedRunning

DEFAULT_ENDPOINT = "http://localhost:2633/RPC2"
LOCK_NAME = "onetools_onedb"
# A constant key for PostgreSQL's advisory locks (any 64-bit number unique to onedb).
PG_LOCK_KEY = 0x6F6E6564_62000001


def oned_lock_file() -> str:
    location = os.environ.get("ONE_LOCATION")
    return os.path.join(location, "var", "lock", ".lock") if location else "/var/lock/one/one"


def endpoint() -> str:
    """The XML-RPC endpoint as OpenNebula's clients find it."""
    if os.environ.get("ONE_XMLRPC"):
        return os.environ["ONE_XMLRPC"]
    for candidate in (
        os.path.expanduser("~/.one/one_endpoint"),
        "/var/lib/one/.one/one_endpoint",
    ):
        with contextlib.suppress(OSError):
            with open(candidate, encoding="utf-8") as handle:
                text = handle.read().strip()
            if text:
                return text
    return DEFAULT_ENDPOINT


def _session() -> str:
    for candidate in (
        os.environ.get("ONE_AUTH"),
        os.path.expanduser("~/.one/one_auth"),
        "/var/lib/one/.one/one_auth",
    ):
        if not candidate:
            continue
        with contextlib.suppress(OSError):
            with open(candidate, encoding="utf-8") as handle:
                text = handle.read().strip()
            if text:
                return text
    return "oneadmin:onedb-probe"


def endpoint_answers(url: str, timeout: float = 2.0) -> bool:
    """Whether an OpenNebula XML-RPC server answers at ``url``."""
    import http.client
    import xmlrpc.client

    class _Transport(xmlrpc.client.Transport):
        def make_connection(self, host: object) -> http.client.HTTPConnection:
            connection = super().make_connection(host)  # type: ignore[arg-type]
            connection.timeout = timeout
            return connection

    transport: xmlrpc.client.Transport
    transport = xmlrpc.client.SafeTransport() if url.startswith("https") else _Transport()
    proxy = xmlrpc.client.ServerProxy(url, transport=transport)
    try:
        proxy.one.system.version(_session())
    except xmlrpc.client.Fault:
        return True  # it answered (authentication or other fault)
    except (TimeoutError, OSError, xmlrpc.client.ProtocolError, http.client.HTTPException):
        return False
    except Exception:  # anything else that speaks back is not an OpenNebula endpoint
        return False
    return True


def ensure_oned_stopped() -> None:
    """Raise ``OnedRunning`` when oned looks alive (lock file or answering endpoint)."""
    lock = oned_lock_file()
    if os.path.exists(lock):
        raise OnedRunning(f"First stop OpenNebula. Lock file found: {lock}")
    url = endpoint()
    if endpoint_answers(url):
        raise OnedRunning(f"OpenNebula found listening on '{url}'. First stop OpenNebula.")


@contextlib.contextmanager
def exclusive(backend: Backend) -> Iterator[None]:
    """Hold the onedb lock of this database for the duration of the block."""
    if backend.kind == "sqlite":
        path = f"{backend.settings.sqlite_file}.onedb-lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EACCES):
                    raise DatabaseError(
                        f"Another onedb is working on {backend.settings.describe()}"
                    ) from None
                raise
            yield
        finally:
            os.close(fd)
        return
    if backend.kind == "mysql":
        got = backend.scalar("SELECT GET_LOCK(?, 0)", (LOCK_NAME,))
        if got != 1:
            raise DatabaseError(f"Another onedb is working on {backend.settings.describe()}")
        try:
            yield
        finally:
            backend.scalar("SELECT RELEASE_LOCK(?)", (LOCK_NAME,))
        return
    if backend.kind == "postgresql":
        got = backend.scalar("SELECT pg_try_advisory_lock(?)", (PG_LOCK_KEY,))
        if not got:
            raise DatabaseError(f"Another onedb is working on {backend.settings.describe()}")
        try:
            yield
        finally:
            backend.scalar("SELECT pg_advisory_unlock(?)", (PG_LOCK_KEY,))
        return
    yield
