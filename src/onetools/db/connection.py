"""Where the OpenNebula database is: connection settings from options, environment, oned.conf.

Resolution (reference §1.3, with the differences noted):

1. ``-s FILE`` selects SQLite; ``-t TYPE`` selects the engine.  Without either, and without
   any of ``-S/-P/-u/-d``, the ``DB`` section of ``oned.conf`` is read (BACKEND, SERVER, PORT,
   USER, PASSWD, DB_NAME; surrounding quotes stripped).  Options given on the command line
   (``-p``, ``--encoding``) still override what oned.conf says (the original let oned.conf
   overwrite ``-p``).  A missing DB section means oned's default, SQLite.
2. With connection options but no engine, the engine is ``mysql``.
3. SQLite: ``-s`` or the default file ``/var/lib/one/one.db`` (``$ONE_LOCATION/var/one.db``).
4. MySQL/PostgreSQL from options: USER and DBNAME are required; server ``localhost``, port
   0 (the engine's default).  From oned.conf: oned's own defaults apply when USER, PASSWD or
   DB_NAME are missing (oneadmin, oneadmin, opennebula), unlike the original onedb.
5. Password: ``-p``, else oned.conf PASSWD, else ``ONE_DB_PASSWORD``, else (oned.conf only)
   oned's default, else a no-echo prompt when standard input is a terminal; without one the
   error "password needed".

oned.conf is ``$ONE_LOCATION/etc/oned.conf`` or ``/etc/one/oned.conf``; the environment
variable ``ONEDB_ONED_CONF`` names another file (tests, unusual installs).  It is parsed with
onecfg's parser for oned.conf-like files.
"""

from __future__ import annotations

import getpass
import os
import sys

from onetools.db.backends import BACKENDS
from onetools.db.backends.base import ConnectionSettings
from onetools.db.errors import DatabaseError

TYPE_CHECKING = False  # typing costs ~20 ms of start-up: annotations only
if TYPE_CHECKING:
    from typing import Any

ONED_DEFAULTS = {"USER": "oneadmin", "PASSWD": "oneadmin", "DB_NAME": "opennebula"}
ENGINE_NAMES = {"mysql": "MySQL", "postgresql": "PostgreSQL"}


def var_location() -> str:
    """``VAR_LOCATION``: ``$ONE_LOCATION/var`` or ``/var/lib/one``."""
    location = os.environ.get("ONE_LOCATION")
    return os.path.join(location, "var") if location else "/var/lib/one"


def default_sqlite_path() -> str:
    """The SQLite database oned uses by default."""
    location = os.environ.get("ONE_LOCATION")
    return os.path.join(location, "var", "one.db") if location else "/var/lib/one/one.db"


default_sqlite_file = default_sqlite_path


def oned_conf_path() -> str:
    override = os.environ.get("ONEDB_ONED_CONF")
    if override:
        return override
    location = os.environ.get("ONE_LOCATION")
    return os.path.join(location, "etc", "oned.conf") if location else "/etc/one/oned.conf"


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1].replace('\\"', '"')
    return value.replace("\\\\", "\\")


def read_oned_db_section(path: str | None = None) -> dict[str, str] | None:
    """The ``DB`` section of oned.conf as ``{KEY: value}`` (unquoted); None without the file."""
    from onetools.config.formats.one import OneDocument
    from onetools.errors import FileParseError

    path = path or oned_conf_path()
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DatabaseError(f"Unable to parse oned.conf: cannot read {path}: {exc}") from None
    try:
        tree: dict[Any, Any] = OneDocument.parse(text, path).tree()
    except FileParseError as exc:
        raise DatabaseError(f"Unable to parse oned.conf: {exc.message}") from None
    section = tree.get("DB")
    if not isinstance(section, dict) or None not in section:
        return {}
    values: dict[str, list[str]] = section[None]
    return {key.upper(): _unquote(raw[-1]) for key, raw in values.items() if raw}


def _port(value: object, origin: str) -> int:
    if value is None or value == "":
        return 0
    try:
        port = int(str(value).strip().strip('"'))
    except ValueError:
        raise DatabaseError(f"Invalid port '{value}' ({origin})") from None
    if not 0 <= port <= 65535:
        raise DatabaseError(f"Invalid port '{value}' ({origin})")
    return port


def _ask_password(engine: str, prompt: bool) -> str:
    name = ENGINE_NAMES.get(engine, engine)
    if prompt and sys.stdin is not None and sys.stdin.isatty():
        try:
            return getpass.getpass(f"{name} Password: ")
        except (EOFError, KeyboardInterrupt):
            raise DatabaseError(f"{name} password needed") from None
    raise DatabaseError(
        f"{name} password needed: give -p/--password or set ONE_DB_PASSWORD (no terminal to ask on)"
    )


def resolve_settings(
    sqlite: str | None = None,
    backend_type: str | None = None,
    server: str | None = None,
    port: int | str | None = None,
    user: str | None = None,
    password: str | None = None,
    db_name: str | None = None,
    encoding: str | None = None,
    prompt: bool = True,
) -> ConnectionSettings:
    """Connection settings from the global onedb options (see the module docstring)."""
    backend = backend_type.strip().lower() if backend_type else None
    if sqlite is not None and backend is None:
        backend = "sqlite"
    from_conf: dict[str, str] | None = None
    if backend is None and all(v is None for v in (server, port, user, db_name)):
        from_conf = read_oned_db_section() or {}
        backend = from_conf.get("BACKEND", "sqlite").strip().lower() or "sqlite"
    elif backend is None:
        backend = "mysql"
    if backend not in BACKENDS:
        raise DatabaseError(f"DB BACKEND must be one of {', '.join(BACKENDS)}, not '{backend}'")

    if backend == "sqlite":
        return ConnectionSettings(
            backend="sqlite", sqlite_file=sqlite or default_sqlite_path(), encoding=encoding
        )

    name = ENGINE_NAMES[backend]
    if from_conf is not None:
        conf = {**ONED_DEFAULTS, **{k: v for k, v in from_conf.items() if v != ""}}
        server = conf.get("SERVER") or "localhost"
        port_number = _port(conf.get("PORT"), "oned.conf DB/PORT")
        user = conf["USER"]
        db_name = conf["DB_NAME"]
        if password is None:
            password = from_conf.get("PASSWD") or os.environ.get("ONE_DB_PASSWORD")
            if password is None:
                password = ONED_DEFAULTS["PASSWD"]
    else:
        port_number = _port(port, "--port")
        if not user:
            raise DatabaseError(f"{name} option USER is needed")
        if not db_name:
            raise DatabaseError(f"{name} option DBNAME is needed")
        server = _unquote(server) if server else "localhost"
        user, db_name = _unquote(user), _unquote(db_name)
        if password is None:
            password = os.environ.get("ONE_DB_PASSWORD")
        if password is None:
            password = _ask_password(backend, prompt)
    return ConnectionSettings(
        backend=backend,
        server=server,
        port=port_number,
        user=user,
        password=password,
        db_name=db_name,
        encoding=encoding,
    )
