"""Choosing and opening the implementation of ``OneApi``.

* The real front-end when an endpoint is given: ``--endpoint``, then ``$ONE_XMLRPC``, then the
  contents of ``~/.one/one_endpoint``, then ``/var/lib/one/.one/one_endpoint``
  (xmlrpc.md §1.2, the Ruby client's order).  Unlike the Ruby client there is no implicit
  ``http://localhost:2633/RPC2``: with no endpoint anywhere the embedded store is used.
* Credentials for it: ``--user``/``--password``, then the file named by ``$ONE_AUTH``, then
  ``~/.one/one_auth``, then ``/var/lib/one/.one/one_auth`` (one ``user:password`` line).
* The embedded store lives in ``--home``, else ``$ONETOOLS_HOME``, else ``~/.onetools``.

Implementations are dotted names imported on first use, so naming them costs nothing.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from onetools.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from onetools.one.api import OneApi

REGISTRY: dict[str, str] = {
    "embedded": "onetools.one.local.LocalOne",
    "xmlrpc": "onetools.one.xmlrpc.XmlRpcOne",
}
INSTALL_HINT: dict[str, str] = {"xmlrpc": "pip install pyone"}

DEFAULT_HOME = "~/.onetools"
SYSTEM_ONE_DIR = "/var/lib/one/.one"


def implementation(name: str) -> type[OneApi]:
    """The class registered as ``name``, imported now."""
    dotted = REGISTRY[name]
    module_name, _, class_name = dotted.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = INSTALL_HINT.get(name)
        raise UsageError(
            f"The {name} backend needs a missing module ({exc.name})"
            + (f": {hint}" if hint else "")
        ) from exc
    cls: type[OneApi] = getattr(module, class_name)
    return cls


def _read_first_line(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None
    return text or None


def _home_dir(env: Mapping[str, str]) -> Path:
    return Path(env.get("HOME") or os.path.expanduser("~"))


def resolve_endpoint(
    endpoint: str | None = None, env: Mapping[str, str] | None = None
) -> str | None:
    """The XML-RPC endpoint to use, or None for the embedded store."""
    env = os.environ if env is None else env
    if endpoint:
        return endpoint.strip()
    if env.get("ONE_XMLRPC", "").strip():
        return env["ONE_XMLRPC"].strip()
    for path in (_home_dir(env) / ".one" / "one_endpoint", Path(SYSTEM_ONE_DIR) / "one_endpoint"):
        value = _read_first_line(path)
        if value:
            return value
    return None


def resolve_secret(
    user: str | None = None, password: str | None = None, env: Mapping[str, str] | None = None
) -> str:
    """The session string ``user:password`` (or ``user:token``) for the front-end."""
    env = os.environ if env is None else env
    if user is not None or password is not None:
        if not user or password is None:
            raise UsageError("--user and --password go together")
        return f"{user}:{password}"
    candidates: list[Path] = []
    one_auth = env.get("ONE_AUTH", "").strip()
    if one_auth and Path(one_auth).is_file():
        candidates.append(Path(one_auth))
    candidates += [_home_dir(env) / ".one" / "one_auth", Path(SYSTEM_ONE_DIR) / "one_auth"]
    for path in candidates:
        value = _read_first_line(path)
        if value:
            return value.splitlines()[0].rstrip()
    raise UsageError("ONE_AUTH file not present (give --user and --password, or set ONE_AUTH)")


def resolve_home(home: str | None = None, env: Mapping[str, str] | None = None) -> Path:
    """The embedded store's directory."""
    env = os.environ if env is None else env
    value = home or env.get("ONETOOLS_HOME", "").strip() or DEFAULT_HOME
    return Path(os.path.expanduser(value))


def connect(
    endpoint: str | None = None,
    user: str | None = None,
    password: str | None = None,
    home: str | None = None,
    env: Mapping[str, str] | None = None,
) -> OneApi:
    """Open the implementation the options and environment select."""
    url = resolve_endpoint(endpoint, env)
    if url is None:
        cls = implementation("embedded")
        return cls(resolve_home(home, env))  # type: ignore[call-arg]
    cls = implementation("xmlrpc")
    return cls(url, resolve_secret(user, password, env))  # type: ignore[call-arg]
