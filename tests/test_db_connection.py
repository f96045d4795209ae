"""Connection settings from options, ONE_DB_PASSWORD and oned.conf (reference §1.3)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from onetools.db import connection
from onetools.db.backends import open_backend
from onetools.db.backends.base import ConnectionSettings
from onetools.db.connection import resolve_settings
from onetools.db.errors import DatabaseError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.delenv("ONE_LOCATION", raising=False)
    monkeypatch.delenv("ONE_DB_PASSWORD", raising=False)
    conf = tmp_path / "oned.conf"
    monkeypatch.setenv("ONEDB_ONED_CONF", str(conf))
    return conf


class FakeStdin(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__("")
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_sqlite_option() -> None:
    settings = resolve_settings(sqlite="/x/one.db")
    assert settings == ConnectionSettings(backend="sqlite", sqlite_file="/x/one.db")


def test_sqlite_default_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_settings(backend_type="sqlite").sqlite_file == "/var/lib/one/one.db"
    monkeypatch.setenv("ONE_LOCATION", "/opt/one")
    assert resolve_settings(backend_type="sqlite").sqlite_file == "/opt/one/var/one.db"


def test_mysql_options() -> None:
    settings = resolve_settings(
        server="db.example", port="3307", user="one", password="pw", db_name="opennebula"
    )
    assert (settings.backend, settings.server, settings.port) == ("mysql", "db.example", 3307)
    assert (settings.user, settings.password, settings.db_name) == ("one", "pw", "opennebula")
    pg = resolve_settings(backend_type="postgresql", user="u", password="p", db_name="d")
    assert (pg.backend, pg.server, pg.port) == ("postgresql", "localhost", 0)


def test_mysql_options_required() -> None:
    with pytest.raises(DatabaseError, match="MySQL option USER is needed"):
        resolve_settings(db_name="d", password="p")
    with pytest.raises(DatabaseError, match="PostgreSQL option DBNAME is needed"):
        resolve_settings(backend_type="postgresql", user="u", password="p")
    with pytest.raises(DatabaseError, match="Invalid port"):
        resolve_settings(user="u", db_name="d", password="p", port="http")
    with pytest.raises(DatabaseError, match="DB BACKEND must be one of"):
        resolve_settings(backend_type="oracle")


def test_password_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONE_DB_PASSWORD", "from-env")
    assert resolve_settings(user="u", db_name="d").password == "from-env"
    assert resolve_settings(user="u", db_name="d", password="opt").password == "opt"


def test_password_prompt_only_on_tty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", FakeStdin(tty=False))
    with pytest.raises(DatabaseError, match="MySQL password needed"):
        resolve_settings(user="u", db_name="d")
    with pytest.raises(DatabaseError, match="password needed"):
        resolve_settings(user="u", db_name="d", prompt=False)
    monkeypatch.setattr("sys.stdin", FakeStdin(tty=True))
    prompts: list[str] = []

    def fake_getpass(prompt: str) -> str:
        prompts.append(prompt)
        return "typed"

    monkeypatch.setattr(connection.getpass, "getpass", fake_getpass)
    assert resolve_settings(backend_type="postgresql", user="u", db_name="d").password == "typed"
    assert prompts == ["PostgreSQL Password: "]


def test_oned_conf_mysql(clean_env: Path) -> None:
    clean_env.write_text(
        'LOG = [ SYSTEM = "file", DEBUG_LEVEL = 3 ]\n'
        '# DB = [ BACKEND = "sqlite" ]\n'
        'DB = [ BACKEND = "mysql",\n'
        '       SERVER  = "db.example",\n'
        "       PORT    = 3307,\n"
        '       USER    = "one",\n'
        '       PASSWD  = "s3cr\\"et",\n'
        '       DB_NAME = "onedb",\n'
        "       CONNECTIONS = 25,\n"
        '       COMPARE_BINARY = "no" ]\n'
    )
    settings = resolve_settings()
    assert settings == ConnectionSettings(
        backend="mysql",
        server="db.example",
        port=3307,
        user="one",
        password='s3cr"et',
        db_name="onedb",
    )
    # -p and --encoding still apply on top of oned.conf
    settings = resolve_settings(password="given", encoding="utf8mb4")
    assert (settings.password, settings.encoding, settings.user) == ("given", "utf8mb4", "one")


def test_oned_conf_defaults(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clean_env.write_text('DB = [ BACKEND = "mysql" ]\n')
    settings = resolve_settings()
    assert (settings.server, settings.port, settings.user) == ("localhost", 0, "oneadmin")
    assert (settings.password, settings.db_name) == ("oneadmin", "opennebula")
    monkeypatch.setenv("ONE_DB_PASSWORD", "env-pw")
    assert resolve_settings().password == "env-pw"
    clean_env.write_text('DB = [ BACKEND = "postgresql", PASSWD = "conf-pw" ]\n')
    settings = resolve_settings()
    assert (settings.backend, settings.password) == ("postgresql", "conf-pw")


def test_oned_conf_sqlite_and_missing(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clean_env.write_text('DB = [ BACKEND = "sqlite", TIMEOUT = 2500 ]\n')
    assert resolve_settings() == ConnectionSettings("sqlite", sqlite_file="/var/lib/one/one.db")
    clean_env.write_text('LOG = [ SYSTEM = "file" ]\n')  # no DB section: oned's default
    assert resolve_settings().backend == "sqlite"
    clean_env.unlink()  # no oned.conf at all
    monkeypatch.setenv("ONE_LOCATION", "/opt/one")
    assert resolve_settings().sqlite_file == "/opt/one/var/one.db"


def test_oned_conf_location(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ONEDB_ONED_CONF")
    assert connection.oned_conf_path() == "/etc/one/oned.conf"
    monkeypatch.setenv("ONE_LOCATION", "/opt/one")
    assert connection.oned_conf_path() == "/opt/one/etc/oned.conf"


def test_oned_conf_not_read_with_options(clean_env: Path) -> None:
    clean_env.write_text('DB = [ BACKEND = "postgresql", USER = "x" ]\n')
    settings = resolve_settings(user="u", db_name="d", password="p")
    assert (settings.backend, settings.user) == ("mysql", "u")
    assert resolve_settings(sqlite="/a.db").backend == "sqlite"


def test_broken_oned_conf(clean_env: Path) -> None:
    clean_env.write_text('LOG = [ SYSTEM = "file" ]\n\nDB = [ BACKEND = "mysql",\n  = oops ]\n')
    with pytest.raises(DatabaseError) as info:
        resolve_settings()
    message = info.value.message
    assert message.startswith("Unable to parse oned.conf: ")
    assert str(clean_env) in message
    assert message.endswith(" at line 4")
    assert "\n" not in message


def test_bad_port_in_oned_conf(clean_env: Path) -> None:
    clean_env.write_text('DB = [ BACKEND = "mysql", PORT = "many" ]\n')
    with pytest.raises(DatabaseError, match=r"Invalid port 'many' \(oned.conf DB/PORT\)"):
        resolve_settings()


def test_resolved_settings_connect(mysql_settings: ConnectionSettings, clean_env: Path) -> None:
    s = mysql_settings
    clean_env.write_text(
        f'DB = [ BACKEND = "mysql", SERVER = "{s.server}", PORT = {s.port}, USER = "{s.user}",\n'
        f'       PASSWD = "{s.password}", DB_NAME = "{s.db_name}" ]\n'
    )
    with open_backend(resolve_settings()) as db:
        assert db.scalar("SELECT DATABASE()") == s.db_name
