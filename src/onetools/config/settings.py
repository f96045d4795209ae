"""The settings file ``onecfg.conf``: the configuration version and pending work (reference §1.4).

Keys: ``version`` (the version the configuration files are at), ``backup`` (a one-shot snapshot
of the configuration to upgrade from, left by packaging before a package upgrade) and
``outdated`` (``true`` blocks status and upgrade).  The file lives in ``ONECFG_ETC_DIR`` when set,
``/tmp/onescape/etc`` with ``ONE_LOCATION``, else ``/etc``.  It is never prefixed.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from onetools.errors import FatalError

FILE_NAME = "onecfg.conf"
DEFAULT_ETC_DIR = "/etc"
LOCAL_ETC_DIR = "/tmp/onescape/etc"


def settings_path() -> str:
    if os.environ.get("ONECFG_ETC_DIR"):
        return os.path.join(os.environ["ONECFG_ETC_DIR"], FILE_NAME)
    if os.environ.get("ONE_LOCATION"):
        return os.path.join(LOCAL_ETC_DIR, FILE_NAME)
    return os.path.join(DEFAULT_ETC_DIR, FILE_NAME)


@dataclass
class Settings:
    path: str
    exists: bool = False
    version: str | None = None
    backup: str | None = None
    outdated: bool = False

    def to_text(self) -> str:
        """The file's YAML text (only the keys that are set)."""
        lines = ["---"]
        if self.version is not None:
            lines.append(f"version: {_scalar(self.version)}")
        if self.backup is not None:
            lines.append(f"backup: {_scalar(self.backup)}")
        if self.outdated:
            lines.append("outdated: true")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "exists": self.exists,
            "version": self.version,
            "backup": self.backup,
            "outdated": self.outdated,
        }


def _scalar(text: str) -> str:
    import json

    # A JSON string is a valid YAML double-quoted scalar; plain when it reads back unchanged.
    import yaml

    try:
        if yaml.safe_load(text) == text and "\n" not in text and text.strip() == text:
            return text
    except yaml.YAMLError:
        pass
    return json.dumps(text)


def load_settings(path: str | None = None) -> Settings:
    """Read the settings file; a missing file gives empty settings, a corrupt one an error."""
    path = path or settings_path()
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return Settings(path)
    except OSError as exc:
        raise FatalError(f"Cannot read settings file '{path}': {exc.strerror}") from None
    simple = _parse_simple(text)
    if simple is not None:
        data: Any = simple
    else:
        data = _parse_yaml(text, path)
    return _settings_from(data, path)


# "key: value" lines with plain or double-quoted scalars: what onecfg and packaging write.
_SIMPLE_LINE = re.compile(
    r'^([A-Za-z_]+):[ \t]*(?:"((?:[^"\\]|\\.)*)"|([^"\'#&*!|>{}\[\]%@`\s][^#]*?))?[ \t]*$'
)


def _parse_simple(text: str) -> dict[str, str | None] | None:
    """Read the usual two-line settings file without importing a YAML library (status must
    start fast); ``None`` when the text needs a real YAML parser."""
    data: dict[str, str | None] = {}
    for line in text.splitlines():
        if not line.strip() or line.strip() in ("---", "...") or line.lstrip().startswith("#"):
            continue
        match = _SIMPLE_LINE.match(line)
        if match is None or match.group(1) in data:
            return None
        key, quoted, plain = match.groups()
        if quoted is not None:
            if "\\" in quoted:
                return None
            data[key] = quoted
        else:
            data[key] = plain
    return data


def _parse_yaml(text: str, path: str) -> Any:
    import yaml

    try:
        # Every scalar as text: "version: 6.10" must not become the float 6.1.
        data = yaml.load(text, Loader=getattr(yaml, "CBaseLoader", yaml.BaseLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise FatalError(f"Corrupt settings file '{path}': not valid YAML{where}") from None
    return data


def _settings_from(data: Any, path: str) -> Settings:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise FatalError(f"Corrupt settings file '{path}': expected a mapping of settings")
    version = _text_or_none(data.get("version"))
    backup = _text_or_none(data.get("backup"))
    outdated = str(data.get("outdated", "false")).lower()
    if not isinstance(data.get("version", ""), str):
        raise FatalError(f"Corrupt settings file '{path}': 'version' must be a string")
    if not isinstance(data.get("backup", ""), str):
        raise FatalError(f"Corrupt settings file '{path}': 'backup' must be a path")
    if outdated not in ("true", "false", "yes", "no", "on", "off", "~", "null", ""):
        raise FatalError(f"Corrupt settings file '{path}': 'outdated' must be true or false")
    return Settings(
        path,
        exists=True,
        version=version,
        backup=backup,
        outdated=outdated in ("true", "yes", "on"),
    )


def _text_or_none(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and value.strip() in ("", "~", "null", "Null")):
        return None
    return str(value) if isinstance(value, str) else None
