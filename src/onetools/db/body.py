"""Object bodies: ``show-body``, ``update-body`` and ``change-body`` (onedb.md §6.4, §6.5).

Unlike the original's live versions (XML-RPC ``one.system.sql``), these work on the database
directly, with oned stopped.  Every write also keeps the columns derived from the body in
sync (the original only rewrote ``body``):

* ``name`` ← ``NAME``; ``uid`` ← ``UID``; ``gid`` ← ``GID``;
* ``owner_u``/``group_u``/``other_u`` ← ``PERMISSIONS/OWNER_U``, ``GROUP_U``, ``OTHER_U``;
* ``vm_pool.state``/``lcm_state`` ← ``STATE``/``LCM_STATE``; ``host_pool.state`` ← ``STATE``;
* ``host_pool.cid`` ← ``CLUSTER_ID``; ``network_pool.pid`` ← ``PARENT_NETWORK_ID`` (-1 empty);
* ``document_pool.type`` ← ``TYPE``; ``backupjob_pool.priority`` ← ``PRIORITY``.

A column is only written when the table has it and the body has the element (``USER`` has
no ``UID``, so ``user_pool.uid`` is left alone).  ``vm_pool.short_body`` and ``body_json``
are oned's caches of the body and are not regenerated; oned rewrites them the next time
it saves the VM.

The object's ``ID`` element is the row's key: ``update_body`` refuses a body whose ``ID``
differs from the row, and ``change_body`` refuses changes to it.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from lxml import etree

from onetools.db.backends.base import Backend, Row
from onetools.db.errors import DatabaseError

Element = etree._Element

_PARSER = etree.XMLParser(remove_blank_text=True, strip_cdata=False, huge_tree=True)


@dataclass(frozen=True)
class ObjectType:
    """One kind of pool object: its onedb keyword, table and body root element."""

    keyword: str
    table: str
    root: str


OBJECT_TYPES: dict[str, ObjectType] = {
    o.keyword: o
    for o in (
        ObjectType("vm", "vm_pool", "VM"),
        ObjectType("host", "host_pool", "HOST"),
        ObjectType("vnet", "network_pool", "VNET"),
        ObjectType("image", "image_pool", "IMAGE"),
        ObjectType("cluster", "cluster_pool", "CLUSTER"),
        ObjectType("document", "document_pool", "DOCUMENT"),
        ObjectType("group", "group_pool", "GROUP"),
        ObjectType("marketplace", "marketplace_pool", "MARKETPLACE"),
        ObjectType("marketplaceapp", "marketplaceapp_pool", "MARKETPLACEAPP"),
        ObjectType("secgroup", "secgroup_pool", "SECURITY_GROUP"),
        ObjectType("template", "template_pool", "VMTEMPLATE"),
        ObjectType("vrouter", "vrouter_pool", "VROUTER"),
        ObjectType("zone", "zone_pool", "ZONE"),
        ObjectType("datastore", "datastore_pool", "DATASTORE"),
        ObjectType("user", "user_pool", "USER"),
        ObjectType("vmgroup", "vmgroup_pool", "VM_GROUP"),
        ObjectType("vdc", "vdc_pool", "VDC"),
        ObjectType("vntemplate", "vn_template_pool", "VNTEMPLATE"),
        ObjectType("hook", "hook_pool", "HOOK"),
        ObjectType("backupjob", "backupjob_pool", "BACKUPJOB"),
    )
}
#: Other spellings accepted for the same objects (the CLI's and OpenNebula's short names).
ALIASES = {
    "market": "marketplace",
    "marketapp": "marketplaceapp",
    "app": "marketplaceapp",
    "network": "vnet",
    "securitygroup": "secgroup",
    "vm_group": "vmgroup",
    "vn_template": "vntemplate",
}

# column ← body element, for the columns oned derives from the body
_DERIVED: list[tuple[str, str]] = [
    ("name", "NAME"),
    ("uid", "UID"),
    ("gid", "GID"),
    ("owner_u", "PERMISSIONS/OWNER_U"),
    ("group_u", "PERMISSIONS/GROUP_U"),
    ("other_u", "PERMISSIONS/OTHER_U"),
]
_DERIVED_BY_TABLE: dict[str, list[tuple[str, str]]] = {
    "vm_pool": [("state", "STATE"), ("lcm_state", "LCM_STATE")],
    "host_pool": [("state", "STATE"), ("cid", "CLUSTER_ID")],
    "network_pool": [("pid", "PARENT_NETWORK_ID")],
    "document_pool": [("type", "TYPE")],
    "backupjob_pool": [("priority", "PRIORITY")],
}


# -- XML helpers shared with fsck and purge ---------------------------------------------------


def parse_xml(text: str | bytes) -> Element:
    """Parse a body (``lxml``; blank text dropped, CDATA kept); ``DatabaseError`` if malformed."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    try:
        return etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise DatabaseError(f"Malformed XML: {exc}") from None


def to_xml(root: Element) -> str:
    """A body as stored: one line, no XML declaration."""
    return etree.tostring(root, encoding="unicode")


def text_of(root: Element, path: str, default: str = "") -> str:
    """Stripped text of the first element at ``path`` (``default`` when absent)."""
    value = root.findtext(path)
    return default if value is None else value.strip()


def int_of(root: Element, path: str, default: int = -1) -> int:
    """Integer at ``path``; ``default`` when absent or not a number."""
    value = root.findtext(path)
    if value is None:
        return default
    try:
        return int(value.strip())
    except ValueError:
        try:
            return int(float(value.strip()))
        except ValueError:
            return default


def set_text(root: Element, path: str, value: str) -> bool:
    """Set the text at ``path`` (creating the last element under its parent); True if changed."""
    node = root.find(path)
    if node is None:
        parent_path, _, tag = path.rpartition("/")
        parent = root.find(parent_path) if parent_path else root
        if parent is None:
            return False
        node = etree.SubElement(parent, tag)
        node.text = value
        return True
    if (node.text or "").strip() == value and len(node) == 0:
        return False
    for child in list(node):
        node.remove(child)
    node.text = value
    return True


def _resolve(object_type: str) -> ObjectType:
    key = object_type.strip().lower()
    key = ALIASES.get(key, key)
    found = OBJECT_TYPES.get(key)
    if found is None:
        raise DatabaseError(
            f"Unknown object type '{object_type}' (one of {', '.join(sorted(OBJECT_TYPES))})"
        )
    return found


def object_table(object_type: str) -> str:
    """The table holding objects of ``object_type`` (onedb's keywords, e.g. ``vnet``)."""
    return _resolve(object_type).table


def _fetch(backend: Backend, otype: ObjectType, oid: int) -> str:
    body = backend.scalar(f"SELECT body FROM {otype.table} WHERE oid = ?", (oid,))
    if body is None:
        raise DatabaseError(f"{otype.keyword} {oid} not found (no row in {otype.table})")
    return str(body)


def derived_columns(
    backend: Backend, table: str, root: Element, columns: set[str] | None = None
) -> dict[str, Any]:
    """Values of the columns of ``table`` that mirror elements of ``root`` (present ones only).

    ``columns``: the table's columns when already known (saves a catalogue query per row).
    """
    if columns is None:
        columns = set(backend.columns(table))
    out: dict[str, Any] = {}
    for column, path in _DERIVED + _DERIVED_BY_TABLE.get(table, []):
        if column not in columns:
            continue
        node = root.find(path)
        if node is None:
            continue
        value = (node.text or "").strip()
        if column == "name":
            out[column] = value
        elif column == "pid" and value == "":
            out[column] = -1
        else:
            try:
                out[column] = int(value)
            except ValueError:
                continue
    return out


def _write(backend: Backend, table: str, oid: int, root: Element, columns: dict[str, Any]) -> None:
    assignments = ", ".join(f"{c} = ?" for c in ["body", *columns])
    backend.execute(
        f"UPDATE {table} SET {assignments} WHERE oid = ?", [to_xml(root), *columns.values(), oid]
    )


# -- show / update ----------------------------------------------------------------------------


def show_body(backend: Backend, object_type: str, oid: int) -> str:
    """The stored body of one object, pretty-printed.  Unknown type or id → ``DatabaseError``."""
    otype = _resolve(object_type)
    root = parse_xml(_fetch(backend, otype, oid))
    etree.indent(root, space="  ")
    return etree.tostring(root, encoding="unicode", pretty_print=True)


def update_body(backend: Backend, object_type: str, oid: int, xml_text: str) -> None:
    """Replace the body of one object by ``xml_text``, and the columns derived from it.

    The text must be well-formed, its root element must be the object type's (``<VM>`` for
    ``vm``) and its ``ID`` must be ``oid``.  Any failure raises ``DatabaseError`` and changes
    nothing.  Pretty-printing whitespace is dropped.
    """
    otype = _resolve(object_type)
    _fetch(backend, otype, oid)
    root = parse_xml(xml_text.strip())
    if root.tag != otype.root:
        raise DatabaseError(
            f"The body of a {otype.keyword} must be <{otype.root}>, not <{root.tag}>"
        )
    body_id = root.findtext("ID")
    if body_id is None or body_id.strip() != str(oid):
        raise DatabaseError(
            f"The body's ID ({'missing' if body_id is None else body_id.strip()}) must be {oid}: "
            "an object's id cannot change"
        )
    with backend.transaction():
        _write(backend, otype.table, oid, root, derived_columns(backend, otype.table, root))


# -- change-body ------------------------------------------------------------------------------

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
    "<=": operator.le,
    ">=": operator.ge,
}
_EXPR = re.compile(r"^\s*([^<>=!]+?)\s*(<=|>=|!=|=|<|>)\s*(.*?)\s*$")


@dataclass(frozen=True)
class Expression:
    """A parsed ``--expr`` filter ``XPATH<op>VALUE``."""

    xpath: str
    op: str
    value: str

    @classmethod
    def parse(cls, text: str) -> Expression:
        match = _EXPR.match(text)
        if not match or not match.group(1).strip():
            raise DatabaseError(
                f"Invalid expression '{text}': use XPATH<op>VALUE with op one of = != < > <= >="
            )
        expr = cls(match.group(1).strip(), match.group(2), match.group(3))
        if expr.op not in ("=", "!=") and _as_int(expr.value) is None:
            raise DatabaseError(f"Invalid expression '{text}': {expr.op} compares integers")
        _compile(expr.xpath)
        return expr

    def matches(self, root: Element) -> bool:
        """Whether the first node at the xpath compares true (``=``/``!=`` as trimmed strings,
        the others as integers; a missing node or a non-integer never matches)."""
        values = _values(root, self.xpath)
        if not values:
            return self.op == "!="
        left = values[0].strip()
        if self.op in ("=", "!="):
            return _OPS[self.op](left, self.value.strip())
        number = _as_int(left)
        right = _as_int(self.value)
        return number is not None and right is not None and _OPS[self.op](number, right)


def _as_int(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


def _compile(xpath: str) -> etree.XPath:
    try:
        return etree.XPath(xpath)
    except etree.XPathSyntaxError as exc:
        raise DatabaseError(f"Invalid xpath '{xpath}': {exc}") from None


def _values(root: Element, xpath: str) -> list[str]:
    result = _compile(xpath)(root)
    if not isinstance(result, list):
        return [] if result is None or result == "" else [str(result)]
    out: list[str] = []
    for item in result:
        if isinstance(item, etree._Element):
            out.append(item.text or "")
        else:
            out.append(str(item))
    return out


def _has_value(root: Element, xpath: str) -> bool:
    """Whether ``xpath`` selects something non-empty (text, or an element with children)."""
    result = _compile(xpath)(root)
    items = result if isinstance(result, list) else [result]
    for item in items:
        if isinstance(item, etree._Element):
            if (item.text or "").strip() or len(item):
                return True
        elif item is not None and item is not False and str(item).strip():
            return True
    return False


def _nodes(root: Element, xpath: str) -> list[Element]:
    result = _compile(xpath)(root)
    if not isinstance(result, list):
        return []
    return [n for n in result if isinstance(n, etree._Element)]


def _pages(backend: Backend, table: str, batch: int) -> Iterator[list[Row]]:
    """``(oid, body)`` of every row in oid order, ``batch`` rows per query (keyset paging, so
    writes may happen between pages on every engine)."""
    last = -(2**31)
    while True:
        rows = backend.query(
            f"SELECT oid, body FROM {table} WHERE oid > ? ORDER BY oid LIMIT {int(batch)}", (last,)
        )
        if not rows:
            return
        yield rows
        last = int(rows[-1][0])


def change_body(
    backend: Backend,
    object_type: str,
    xpath: str,
    value: str | None = None,
    *,
    oid: int | None = None,
    filter_xpath: str | None = None,
    expr: str | None = None,
    delete: bool = False,
    append: bool = False,
    dry: bool = False,
    batch: int = 500,
) -> list[tuple[int, str | None, str | None]]:
    """Set, delete or append the node at ``xpath`` in the bodies of the selected objects.

    Selection (first that applies): ``oid``; ``filter_xpath`` (objects where it selects a
    non-empty text or an element with children); ``expr`` (``XPATH<op>VALUE``); otherwise
    every object, DONE VMs included.  For each object, every node matching ``xpath`` gets
    ``value`` as text, or is removed with ``delete``; with ``append`` a child named after
    the upper-cased last path step holding ``value`` is added under each node matching the
    parent path.  Objects where nothing matches are left alone.  Derived columns follow the
    body (module docstring).

    Returns one ``(oid, old, new)`` per changed object: the first matched node's old text
    (None when appending or nothing was there) and the new text (None when deleting).  With
    ``dry`` nothing is written.  Rows are read ``batch`` at a time and each page is written in
    one transaction; ``oid`` not found → ``DatabaseError``.
    """
    otype = _resolve(object_type)
    if delete and append:
        raise DatabaseError("--delete and --append exclude each other")
    if not delete and value is None:
        raise DatabaseError("A value (or --delete) is required")
    _compile(xpath)
    if filter_xpath is not None:
        _compile(filter_xpath)
    expression = Expression.parse(expr) if expr is not None else None
    parent_path, tag = _split_append(xpath) if append else ("", "")

    def select(root: Element) -> bool:
        if oid is not None:
            return True
        if filter_xpath is not None:
            return _has_value(root, filter_xpath)
        if expression is not None:
            return expression.matches(root)
        return True

    def apply(object_id: int, root: Element) -> tuple[str | None, str | None] | None:
        before_id = root.findtext("ID")
        if append:
            parents = _nodes(root, parent_path) if parent_path else [root]
            if not parents:
                return None
            for parent in parents:
                child = etree.SubElement(parent, tag)
                child.text = etree.CDATA(value or "")
            change: tuple[str | None, str | None] = (None, value)
        else:
            nodes = _nodes(root, xpath)
            if not nodes:
                return None
            old = nodes[0].text
            for node in nodes:
                if delete:
                    holder = node.getparent()
                    if holder is None:
                        raise DatabaseError(f"{otype.keyword} {object_id}: cannot delete the root")
                    holder.remove(node)
                else:
                    for child in list(node):
                        node.remove(child)
                    node.text = value
            change = (old, None if delete else value)
        if root.findtext("ID") != before_id:
            raise DatabaseError(
                f"{otype.keyword} {object_id}: the change would alter the object's ID"
            )
        return change

    columns = set(backend.columns(otype.table))
    changes: list[tuple[int, str | None, str | None]] = []
    if oid is not None:
        pages: Iterator[list[Row]] = iter([[(oid, _fetch(backend, otype, oid))]])
    else:
        pages = _pages(backend, otype.table, batch)
    for rows in pages:
        writes: list[tuple[int, Element]] = []
        for row_oid, body in rows:
            root = parse_xml(str(body))
            if not select(root):
                continue
            result = apply(int(row_oid), root)
            if result is None:
                continue
            changes.append((int(row_oid), *result))
            writes.append((int(row_oid), root))
        if writes and not dry:
            with backend.transaction():
                for row_oid, root in writes:
                    derived = derived_columns(backend, otype.table, root, columns)
                    _write(backend, otype.table, row_oid, root, derived)
    return changes


def _split_append(xpath: str) -> tuple[str, str]:
    """Parent path and element name for ``--append`` (name: upper-cased last step)."""
    stripped = xpath.rstrip("/")
    parent, _, last = stripped.rpartition("/")
    name = last.strip().upper()
    if not re.fullmatch(r"[A-Z_][A-Z0-9_.-]*", name):
        raise DatabaseError(f"Cannot append '{last}': not an element name")
    if parent in ("", "/"):
        return "", name
    return parent, name
