"""``OneObject``: an OpenNebula object as its XML, with the accessors the tools need.

Both implementations hand out the XML oned writes (the embedded store builds the same bodies),
so everything derived here (``to_dict`` for ``--json``/``--yaml``) has one shape for both.
Parsing uses the standard library's ElementTree, not lxml: listing commands stay light.
"""

from __future__ import annotations

import builtins
import xml.etree.ElementTree as ET
from collections.abc import Iterator

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from onetools.one.api import Permissions

_PERMISSION_FIELDS = (
    "OWNER_U",
    "OWNER_M",
    "OWNER_A",
    "GROUP_U",
    "GROUP_M",
    "GROUP_A",
    "OTHER_U",
    "OTHER_M",
    "OTHER_A",
)


class OneObject:
    """One object's XML (``kind`` is an ``onetools.one.api`` kind name)."""

    __slots__ = ("_root", "_xml", "kind")

    def __init__(self, kind: str, xml: str | ET.Element) -> None:
        self.kind = kind
        self._xml: str | None
        self._root: ET.Element | None
        if isinstance(xml, str):
            self._xml, self._root = xml, None
        else:  # an element of a parsed pool: serialised only if asked for
            self._xml, self._root = None, xml

    @property
    def xml(self) -> str:
        """The object's XML text (``-x/--xml``)."""
        if self._xml is None:
            self._xml = ET.tostring(self.root, encoding="unicode")
        return self._xml

    @property
    def root(self) -> ET.Element:
        if self._root is None:
            self._root = ET.fromstring(self._xml or "")
        return self._root

    # -- scalar fields -----------------------------------------------------------------------
    def text(self, path: str, default: str = "") -> str:
        """Text of the first element at ``path`` (ElementTree path, relative to the root)."""
        element = self.root.find(path)
        if element is None or element.text is None:
            return default
        return element.text

    def int(self, path: str, default: builtins.int = -1) -> builtins.int:
        value = self.text(path)
        try:
            return int(value)
        except ValueError:
            return default

    def has(self, path: str) -> bool:
        return self.root.find(path) is not None

    @property
    def id(self) -> builtins.int:
        return self.int("ID")

    @property
    def name(self) -> str:
        return self.text("NAME")

    @property
    def uid(self) -> builtins.int:
        return self.int("UID")

    @property
    def gid(self) -> builtins.int:
        return self.int("GID")

    @property
    def uname(self) -> str:
        return self.text("UNAME")

    @property
    def gname(self) -> str:
        return self.text("GNAME")

    @property
    def permissions(self) -> Permissions | None:
        from onetools.one.api import Permissions

        element = self.root.find("PERMISSIONS")
        if element is None:
            return None
        return Permissions([int(element.findtext(f) or 0) for f in _PERMISSION_FIELDS])

    @property
    def lock(self) -> dict[str, builtins.int] | None:
        """``{"LOCKED": level, "OWNER": uid, "TIME": epoch, "REQ_ID": n}`` while locked."""
        element = self.root.find("LOCK")
        if element is None:
            return None
        return {child.tag: builtins.int(child.text or 0) for child in element}

    def ids(self, path: str) -> list[builtins.int]:
        """The ``<ID>`` children of a collection such as ``HOSTS`` or ``CLUSTERS``."""
        element = self.root.find(path)
        if element is None:
            return []
        return [int(child.text or -1) for child in element.findall("ID")]

    # -- templates ---------------------------------------------------------------------------
    def template(self, path: str = "TEMPLATE") -> dict[str, Any]:
        """The template as a mapping: scalars are strings, vector attributes dicts, repeated
        attributes lists (in document order)."""
        element = self.root.find(path)
        return {} if element is None else _element_mapping(element)

    def to_dict(self) -> dict[str, Any]:
        """``{ROOT: {...}}`` as OpenNebula's ``to_hash``: leaves are strings, repeated elements
        lists, empty elements ``None``... except that ``TEMPLATE`` is always a mapping."""
        return {self.root.tag: _element_value(self.root) or {}}

    def __repr__(self) -> str:
        return f"OneObject({self.kind}, id={self.id}, name={self.name!r})"


def _element_value(element: ET.Element) -> Any:
    if len(element) == 0:
        if element.tag == "TEMPLATE":
            return {}
        return element.text
    return _element_mapping(element)


def _element_mapping(element: ET.Element) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for child in element:
        value = _element_value(child)
        if child.tag in result:
            existing = result[child.tag]
            if isinstance(existing, list) and getattr(existing, "_repeated", False):
                existing.append(value)
            else:
                repeated = _Repeated([existing, value])
                result[child.tag] = repeated
        else:
            result[child.tag] = value
    # plain lists out: the marker class only told repeated elements from list values
    return {
        key: list(value) if isinstance(value, _Repeated) else value for key, value in result.items()
    }


class _Repeated(list):  # type: ignore[type-arg]
    _repeated = True


def parse_pool(kind: str, xml: str) -> list[OneObject]:
    """The objects of a ``<X_POOL>`` document, in document order."""
    root = ET.fromstring(xml)
    return [OneObject(kind, child) for child in root]


def iter_text(objects: list[OneObject], path: str) -> Iterator[str]:
    for obj in objects:
        yield obj.text(path)
