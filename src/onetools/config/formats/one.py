"""``Augeas::ONE``: oned.conf-like files (oned.conf, monitord.conf, sched.conf, vmm_exec...).

The grammar (reference §6.1) has top-level ``KEY = VALUE`` lines and one-level sections
``KEY = [ K = V, ... ]``.  Values are kept as raw text, quotes included.  The semantic model
(reference §3.5) is a dictionary keyed by upper-cased names:

* a top-level key maps to the list of its values (keys may repeat);
* a section maps to its instances: ``{None: {...}}`` for a unique section, or, for the
  multi-instance sections of ``SECTIONS``, one instance per raw ``NAME`` value (quotes included);
  an instance maps each key to the list of its values.

Design (why it is not "parse with Augeas, read the tree back"): Augeas' ``text_store`` alone
takes ~12 ms and ``text_retrieve`` ~40 ms on a stock oned.conf, whatever the lens.  So parsing
uses a small scanner of the same grammar (``_scan``, checked against the lens ``Onetools_oned``
by the test-suite) and the Augeas tree is only created on the first change.  Rendering an
unchanged document returns the parsed text; a changed one is rendered by the lens with
``text_retrieve``, so untouched lines keep their bytes and new nodes get the lens' default layout.
Node names are compared case-insensitively but never rewritten (unlike onecfg, §8.1 #8).
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Self, TypeAlias

from onetools.config.formats._augeas import AugeasTree
from onetools.config.formats.base import ConfigDocument
from onetools.config.ops import NOTHING, ChangeOp, PatchResult
from onetools.errors import (
    FatalError,
    FileParseError,
    PatchInvalidMultiple,
    PatchPathNotFound,
    PatchUnexpectedData,
    StructureError,
)

LENS: Final = "Onetools_oned.lns"

#: Multi-instance sections and the inner key that identifies an instance.
SECTIONS: Final[dict[str, str]] = {
    name: "NAME"
    for name in (
        "IM_MAD", "VM_MAD", "VM_HOOK", "VNET_HOOK", "USER_HOOK", "GROUP_HOOK", "IMAGE_HOOK",
        "HOST_HOOK", "TM_MAD_CONF", "DS_MAD_CONF", "MARKET_MAD_CONF", "AUTH_MAD_CONF",
        "VN_MAD_CONF",
    )
}  # fmt: skip

#: Top-level keys expected to repeat; their values form an unordered set.
MULTIPLE: Final[frozenset[str]] = frozenset(
    {
        "VM_RESTRICTED_ATTR", "IMAGE_RESTRICTED_ATTR", "VNET_RESTRICTED_ATTR",
        "USER_RESTRICTED_ATTR", "GROUP_RESTRICTED_ATTR", "DOCUMENT_ENCRYPTED_ATTR",
        "HOST_ENCRYPTED_ATTR", "IMAGE_ENCRYPTED_ATTR", "VM_ENCRYPTED_ATTR",
        "VNET_ENCRYPTED_ATTR", "DATASTORE_ENCRYPTED_ATTR", "CLUSTER_ENCRYPTED_ATTR",
        "INHERIT_DATASTORE_ATTR", "INHERIT_IMAGE_ATTR", "INHERIT_VNET_ATTR",
    }
)  # fmt: skip

#: Unique sections of the stock files.  Only used to read ``rm NAME`` lines: a bare name that is
#: known to be a section means "remove the section" (path ``[NAME]``, no key); any other section
#: is written ``rm NAME null`` by ``line_annotations``.
UNIQUE_SECTIONS: Final[frozenset[str]] = frozenset(
    {
        "LOG", "DB", "FEDERATION", "RAFT", "TM_MAD", "AUTH_MAD", "DATASTORE_MAD", "MARKET_MAD",
        "IPAM_MAD", "HM_MAD", "SCHED_MAD", "VNC_PORTS", "VLAN_IDS", "VXLAN_IDS", "DEFAULT_COST",
        "DEFAULT_SCHED", "DEFAULT_DS_SCHED", "DEFAULT_NIC_SCHED", "HOOK_LOG_CONF",
        "PROBES_PERIOD", "OS", "FEATURES", "DISK", "NIC", "NETWORK", "GRAPHICS", "CPU_MODEL",
        "VIDEO", "RAFT_LEADER_HOOK", "RAFT_FOLLOWER_HOOK", "EXTERNAL_SCHEDULER",
        "SPICE_OPTIONS", "HYPERV_OPTIONS",
    }
)  # fmt: skip

Instance: TypeAlias = dict[str, list[str]]
Instances: TypeAlias = dict[str | None, Instance]
Tree: TypeAlias = dict[str, list[str] | Instances]


# --------------------------------------------------------------------------------------------
# Scanner: the grammar of the lens, in Python regular expressions.  Keep in sync with
# lenses/onetools_oned.aug (tests compare both on the stock files and on random input).
# --------------------------------------------------------------------------------------------

_NAME = r"[A-Za-z0-9_]+"
# Inside quotes only \\ and \" are escapes; one character per step keeps backtracking linear.
_QUOTED = r'"(?:[^"\\]|\\[\\"])*"'
_VALUE = rf'(?:{_QUOTED}|[^ \t\n"\[#]+)'
_SVALUE = rf'(?:{_QUOTED}|[^ \t\n"#,]+)'
_COMMENT = r"#(?:[^\n]*[^ \t\n])?"

# A run of blank and comment lines at once: most of a stock file, so one match saves time.
_FILLER_RE = re.compile(rf"(?:[ \t]*+(?:{_COMMENT}[ \t]*+)?\n)++")
_SECTION_RE = re.compile(rf"[ \t]*({_NAME})[ \t]*=[ \t]*\[[ \t\n]*")
_TOP_RE = re.compile(rf"[ \t]*({_NAME})[ \t]*=[ \t]*({_VALUE})[ \t]*+(?:{_COMMENT}[ \t]*+)?\n")
_ENTRY_COMMA_RE = re.compile(rf"({_NAME})[ \t]*=[ \t]*({_SVALUE})[ \t]*,[ \t\n]*")
_INNER_COMMENT_RE = re.compile(rf"{_COMMENT}[ \t]*\n[ \t\n]*")
_ENTRY_LAST_RE = re.compile(
    rf"({_NAME})[ \t]*=[ \t]*({_SVALUE})[ \t\n]*(?:{_COMMENT}[ \t]*\n[ \t\n]*)*\][ \t]*\n"
)


@dataclass(slots=True)
class _Entry:
    """A ``KEY = VALUE`` node (top level or inside a section); ``label`` keeps the file's case."""

    label: str
    value: str
    line: int = 0


@dataclass(slots=True)
class _Section:
    """A ``KEY = [ ... ]`` node and its entries (comments are left to the text/Augeas side)."""

    label: str
    entries: list[_Entry] = field(default_factory=list)
    line: int = 0


_Node: TypeAlias = _Entry | _Section


def _scan(text: str, name: str) -> list[_Node]:
    """The nodes of ``text`` (which must end with a newline), or FileParseError at the line."""
    nodes: list[_Node] = []
    pos, line, size = 0, 1, len(text)

    def fail(at: int, what: str) -> FileParseError:
        where = line + text.count("\n", pos, at)
        snippet = text[at : at + 30].split("\n", 1)[0]
        return FileParseError(f"Failed to parse file ({what} near {snippet!r})", name, where)

    while pos < size:
        if match := _FILLER_RE.match(text, pos):
            end = match.end()
        elif match := _SECTION_RE.match(text, pos):
            section = _Section(match.group(1), [], line)
            cursor = match.end()
            while True:
                start = line + text.count("\n", pos, cursor)
                if item := _ENTRY_COMMA_RE.match(text, cursor):
                    section.entries.append(_Entry(item.group(1), item.group(2), start))
                elif item := _INNER_COMMENT_RE.match(text, cursor):
                    pass
                elif item := _ENTRY_LAST_RE.match(text, cursor):
                    section.entries.append(_Entry(item.group(1), item.group(2), start))
                    break
                else:
                    raise fail(cursor, "invalid section entry")
                cursor = item.end()
            nodes.append(section)
            end = item.end()
        elif match := _TOP_RE.match(text, pos):
            nodes.append(_Entry(match.group(1), match.group(2), line))
            end = match.end()
        else:
            raise fail(pos, "invalid line")
        line += text.count("\n", pos, end)
        pos = end
    return nodes


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def to_s(value: Any) -> str:
    """A value as the config text it is written as (Ruby ``to_s``: true, 5, "" for nil)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


def _keys(left: dict[Any, Any], right: dict[Any, Any]) -> list[Any]:
    """Keys of ``left`` in order, then the new keys of ``right`` (Ruby ``(a.keys+b.keys).uniq``)."""
    return list(dict.fromkeys([*left, *right]))


def _is_container_line(components: Sequence[str]) -> bool:
    """Whether a value-less ``rm`` line names a whole section/instance rather than a key."""
    if len(components) == 1:
        upper = components[0].upper()
        return upper in SECTIONS or upper in UNIQUE_SECTIONS
    return (
        len(components) == 2 and components[0].upper() in SECTIONS and components[1].startswith('"')
    )


class _NewContainer:
    """A section that does not exist yet: created when the first key is written into it."""

    def __init__(self, label: str) -> None:
        self.label = label


_TOP: Final = object()  # the document itself as a container


class OneDocument(ConfigDocument):
    """An oned.conf-like file (see the module docstring)."""

    format_name = "Augeas::ONE"
    safe_modes = frozenset({"skip"})

    def __init__(self, name: str = "<string>") -> None:
        super().__init__(name)
        self._text = ""
        self._newline_added = False
        self._nodes: list[_Node] = []
        self._aug: AugeasTree | None = None
        self._tree: Tree | None = None

    # ----------------------------------------------------------------------------- parse/render

    @classmethod
    def parse(cls, text: str, name: str = "<string>") -> Self:
        """Parse ``text``; FileParseError (with line) on syntax, StructureError on structure."""
        if "\0" in text:
            line = text.count("\n", 0, text.index("\0")) + 1
            raise FileParseError("Failed to parse file (NUL character)", name, line)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            line = text.count("\n", 0, exc.start) + 1
            raise FileParseError("Failed to parse file (invalid character)", name, line) from None
        doc = cls(name)
        doc._text = text
        # The lens needs a final newline (see the lens notes); add it, strip it when rendering.
        doc._newline_added = bool(text) and not text.endswith("\n")
        doc._nodes = _scan(doc._source(), name)
        doc._tree = doc._build_tree()
        return doc

    def _source(self) -> str:
        return self._text + "\n" if self._newline_added else self._text

    def render(self) -> str:
        """The file's text: the parsed text itself until a change was applied."""
        if self._aug is None:
            return self._text
        self._prune_empty_sections()
        text = self._aug.render()
        if self._newline_added and text.endswith("\n"):
            text = text[:-1]
        return text

    def _augeas(self) -> AugeasTree:
        """The Augeas tree of the document, created from the parsed text on first use."""
        if self._aug is None:
            self._aug = AugeasTree(LENS, self._source(), self.name)
        return self._aug

    def snapshot(self) -> Any:
        """Model and Augeas state; the Augeas tree is cloned (deepcopy cannot copy it)."""
        aug = self._aug.clone() if self._aug is not None else None
        return (copy.deepcopy(self._nodes), aug, self._tree)

    def restore(self, state: Any) -> None:
        nodes, aug, tree = state
        self._nodes = copy.deepcopy(nodes)
        self._aug = aug.clone() if aug is not None else None
        self._tree = tree

    # ------------------------------------------------------------------------------ the model

    def tree(self) -> Tree:
        """The semantic model (module docstring); raises StructureError when it is invalid."""
        if self._tree is None:
            self._tree = self._build_tree()
        return self._tree

    def _build_tree(self) -> Tree:
        tree: Tree = {}
        counts: Counter[str] = Counter()
        for node in self._nodes:
            name = node.label.upper()
            slot = tree.get(name)
            if isinstance(node, _Entry):
                if isinstance(slot, dict):
                    raise self._structure(f"Parameter {name} used as a value and a section", node)
                tree.setdefault(name, [])
                values = tree[name]
                assert isinstance(values, list)
                values.append(node.value)
                continue
            if not node.entries:  # an emptied section cannot be written: it does not exist
                continue
            if isinstance(slot, list):
                raise self._structure(f"Parameter {name} used as a value and a section", node)
            instances: Instances = slot if slot is not None else {}
            tree[name] = instances
            counts[name] += 1
            ident = self._identify(name, node, counts[name], instances)
            content: Instance = {}
            for entry in node.entries:
                content.setdefault(entry.label.upper(), []).append(entry.value)
            instances[ident] = content
        return tree

    def _identify(self, name: str, node: _Section, number: int, instances: Instances) -> str | None:
        """The instance key of a section: None when unique, else the raw NAME value."""
        id_key = SECTIONS.get(name)
        if id_key is None:
            if instances:
                raise self._structure(f"Invalid multiple sections of {name}", node)
            return None
        idents = [e.value for e in node.entries if e.label.upper() == id_key]
        if not idents:
            raise self._structure(f"Missing {id_key} identification for {name}[{number}]", node)
        if len(idents) > 1:
            raise self._structure(f"Multiple {id_key} identifications for {name}[{number}]", node)
        if idents[0] in instances:
            raise self._structure(f"Duplicate identification for {name}[{idents[0]}]", node)
        return idents[0]

    def _structure(self, message: str, node: _Node) -> StructureError:
        return StructureError(message, self.name, node.line or None)

    # ------------------------------------------------------------------------------ diff

    def diff(self, other: Self) -> list[ChangeOp]:
        """Ops turning this document into ``other`` (reference §3.5, same order and shapes)."""
        mine, theirs = self.tree(), other.tree()
        ops: list[ChangeOp] = []
        for key in _keys(mine, theirs):
            left, right = mine.get(key), theirs.get(key)
            if isinstance(left, dict) and isinstance(right, dict):
                self._diff_sections(key, left, right, ops)
            elif isinstance(left, list) and isinstance(right, list):
                self._diff_values([], key, left, right, ops)
            else:
                if left is not None:
                    self._removal(key, left, ops)
                if right is not None:
                    self._insertion(key, right, ops)
        return ops

    def _diff_sections(
        self, name: str, left: Instances, right: Instances, ops: list[ChangeOp]
    ) -> None:
        for ident in _keys(left, right):
            path = [name] if ident is None else [name, ident]
            if ident in left and ident in right:
                mine, theirs = left[ident], right[ident]
                for key in _keys(mine, theirs):
                    if key in mine and key in theirs:
                        self._diff_values(path, key, mine[key], theirs[key], ops)
                    elif key in mine:
                        self._remove_values(path, key, mine[key], ops)
                    else:
                        self._insert_values(path, key, theirs[key], ops)
            elif ident in left:
                ops.append(ChangeOp("rm", path, None))
            else:
                self._insert_instance(path, name, right[ident], ops)

    @staticmethod
    def _remove_values(path: list[str], key: str, values: list[str], ops: list[ChangeOp]) -> None:
        for value in values:
            ops.append(
                ChangeOp("rm", list(path), key, old=value, extra={"multiple": len(values) > 1})
            )

    @staticmethod
    def _insert_values(path: list[str], key: str, values: list[str], ops: list[ChangeOp]) -> None:
        for value in values:
            ops.append(
                ChangeOp("ins", list(path), key, value=value, extra={"multiple": len(values) > 1})
            )

    def _removal(self, key: str, value: list[str] | Instances, ops: list[ChangeOp]) -> None:
        if isinstance(value, dict):
            ops.append(ChangeOp("rm", [key], None))
        else:
            self._remove_values([], key, value, ops)

    def _insertion(self, key: str, value: list[str] | Instances, ops: list[ChangeOp]) -> None:
        if isinstance(value, dict):
            for ident, instance in value.items():
                self._insert_instance([key] if ident is None else [key, ident], key, instance, ops)
        else:
            self._insert_values([], key, value, ops)

    def _insert_instance(
        self, path: list[str], name: str, instance: Instance, ops: list[ChangeOp]
    ) -> None:
        # The identifying key goes first so that applying creates the instance before the rest.
        id_key = SECTIONS.get(name)
        order = sorted(instance, key=lambda k: k != id_key)
        for key in order:
            self._insert_values(path, key, instance[key], ops)

    def _diff_values(
        self, path: list[str], key: str, left: list[str], right: list[str], ops: list[ChangeOp]
    ) -> None:
        if Counter(left) == Counter(right):
            return
        is_m = key in MULTIPLE
        if len(left) == 1 and len(right) == 1 and not is_m:
            ops.append(ChangeOp("set", list(path), key, value=right[0], old=left[0]))
            return
        found_m = len(left) > 1 or len(right) > 1
        if found_m and not is_m:
            self.warnings.append(f"File {self.name}: Parameter {key} specified multiple times.")
            if len(right) == 1:
                multi = {"multiple": True}
                if right[0] in left:
                    for value in dict.fromkeys(left):
                        if value != right[0]:
                            ops.append(
                                ChangeOp("rm", list(path), key, old=value, extra=dict(multi))
                            )
                else:
                    for value in left[1:]:
                        ops.append(ChangeOp("rm", list(path), key, old=value, extra=dict(multi)))
                    ops.append(ChangeOp("set", list(path), key, value=right[0], old=left[0]))
                return
        multiple = found_m or is_m
        for value in dict.fromkeys(left):
            if value not in right:
                ops.append(ChangeOp("rm", list(path), key, old=value, extra={"multiple": multiple}))
        for value in dict.fromkeys(right):
            if value not in left:
                ops.append(
                    ChangeOp("ins", list(path), key, value=value, extra={"multiple": multiple})
                )

    # ------------------------------------------------------------------------------ apply

    def apply(self, op: ChangeOp, modes: frozenset[str]) -> PatchResult:
        """Apply one op (reference §3.5 "apply"); modes ``skip`` and ``replace`` are honoured."""
        path = [to_s(part) for part in op.path]
        key = None if op.key is None else to_s(op.key)
        if len(path) > 2:
            raise FatalError("Diff path can not have more than 2 components")
        shown = "/".join(path)
        if len(path) == 2:
            found = self._named_instances(path[0], path[1])
            if len(found) > 1:
                raise PatchPathNotFound(shown, op)
            if found:
                container: object = found[0]
            elif key is not None and key.upper() == SECTIONS[path[0].upper()]:
                container = _NewContainer(path[0])
            elif "skip" in modes:
                return PatchResult(False, "skip", reason=f"Patch path '{shown}' not found")
            else:
                raise PatchPathNotFound(shown, op)
            if key is None:
                return self._remove_container(op, found)
        elif len(path) == 1:
            nodes = [n for n in self._nodes if n.label.upper() == path[0].upper()]
            if key is None:
                return self._remove_container(op, nodes)
            sections = [n for n in nodes if isinstance(n, _Section)]
            if len(sections) != len(nodes):
                return self._unexpected("a section", "a value", shown, op, modes)
            if len(sections) > 1:
                if op.state == "rm":
                    applied = [self._apply_key(op, s, key, modes).applied for s in sections]
                    return PatchResult(any(applied))
                if "skip" in modes:
                    return PatchResult(False, "skip", reason=f"Multiple sections {shown}")
                raise PatchInvalidMultiple(shown, op)
            container = sections[0] if sections else _NewContainer(path[0])
        else:
            if key is None:
                raise PatchPathNotFound("", op)
            if op.state != "rm" and any(
                isinstance(n, _Section) and n.label.upper() == key.upper() for n in self._nodes
            ):
                return self._unexpected("a value", "a section", key, op, modes)
            container = _TOP
        return self._apply_key(op, container, key, modes)

    def _unexpected(
        self, expected: str, got: str, shown: str, op: ChangeOp, modes: frozenset[str]
    ) -> PatchResult:
        if "skip" in modes:
            return PatchResult(False, "skip", reason=f"{shown}: expected {expected} but got {got}")
        raise PatchUnexpectedData(expected, got, op)

    def _named_instances(self, name: str, ident: str) -> list[_Section]:
        """Instances of section ``name`` whose identifying value is ``ident`` (compared in
        Python, so any character in the NAME value is fine, unlike an Augeas predicate)."""
        upper = name.upper()
        if upper not in SECTIONS:
            raise FatalError(f"Unknown index key name for section {name}")
        id_key = SECTIONS[upper]
        return [
            node
            for node in self._nodes
            if isinstance(node, _Section)
            and node.label.upper() == upper
            and any(e.label.upper() == id_key and e.value == ident for e in node.entries)
        ]

    def _remove_container(self, op: ChangeOp, nodes: Sequence[_Node]) -> PatchResult:
        if op.state != "rm":
            raise PatchUnexpectedData("a parameter name", "none", op)
        for node in list(nodes):
            self._remove_node(_TOP, node)
        return PatchResult(bool(nodes))

    def _entries(self, container: object) -> list[_Entry]:
        if isinstance(container, _Section):
            return container.entries
        if container is _TOP:
            return [n for n in self._nodes if isinstance(n, _Entry)]
        return []

    def _apply_key(
        self, op: ChangeOp, container: object, key: str, modes: frozenset[str]
    ) -> PatchResult:
        upper = key.upper()
        current = [e for e in self._entries(container) if e.label.upper() == upper]
        values = [e.value for e in current]
        multiple = upper in MULTIPLE or bool(op.extra.get("multiple"))
        if op.state == "rm":
            if multiple and op.has_old:
                old = to_s(op.old)
                for entry in current:
                    if entry.value == old:
                        self._remove_node(container, entry)
                        return PatchResult(True)
                return PatchResult(False)
            # Without a value to pick, every node of that name goes (sections too at the top).
            doomed: list[_Node] = list(current)
            if container is _TOP:
                doomed = [n for n in self._nodes if n.label.upper() == upper]
            for node in doomed:
                self._remove_node(container, node)
            return PatchResult(bool(doomed))
        value = to_s(op.value)
        if op.state == "ins":
            if not current:
                self._add_entry(container, key, value)
                return PatchResult(True)
            if value in values:
                return PatchResult(False)
            if multiple:
                self._add_entry(container, key, value)
                return PatchResult(True)
            if len(current) == 1:
                if "replace" in modes:
                    self._set_value(container, current[0], value)
                    return PatchResult(True, "replace", old=values[0])
                return PatchResult(False)
            if "replace" in modes:
                self._replace_all(container, current, key, value)
                return PatchResult(True, "replace", old=values)
            if "skip" in modes:
                return PatchResult(False, "skip", reason=f"Wrong multiple use of parameter {key}")
            shown = "/".join([*(to_s(p) for p in op.path), key])
            raise PatchInvalidMultiple(shown, op)
        # set
        if current and op.has_old and values[0] == to_s(op.old):
            self._set_value(container, current[0], value)
            return PatchResult(True)
        if "replace" in modes:
            self._replace_all(container, current, key, value)
            return PatchResult(True, "replace", old=values)
        return PatchResult(False)

    def _replace_all(self, container: object, current: list[_Entry], key: str, value: str) -> None:
        """Keep the first occurrence with ``value`` (creating it if needed), drop the others."""
        for entry in current[1:]:
            self._remove_node(container, entry)
        if current:
            self._set_value(container, current[0], value)
        else:
            self._add_entry(container, key, value)

    # ----------------------------------------------------------------- edits (model + Augeas)

    @staticmethod
    def _position(siblings: Sequence[_Node], node: _Node) -> str:
        """The Augeas step for ``node`` among ``siblings``: ``LABEL[k]`` (labels are exact)."""
        index = 0
        for sibling in siblings:
            if sibling.label == node.label:
                index += 1
            if sibling is node:
                return f"{node.label}[{index}]"
        raise AssertionError("node not among its siblings")

    def _path(self, node: _Node, section: _Section | None = None) -> str:
        if section is None:
            return self._position(self._nodes, node)
        return f"{self._position(self._nodes, section)}/{self._position(section.entries, node)}"

    def _changed(self) -> None:
        self._tree = None

    def _set_value(self, container: object, entry: _Entry, value: str) -> None:
        aug = self._augeas()
        section = container if isinstance(container, _Section) else None
        aug.set(self._path(entry, section), value)
        entry.value = value
        self._changed()

    def _remove_node(self, container: object, node: _Node) -> None:
        aug = self._augeas()
        if isinstance(container, _Section):
            aug.remove(self._path(node, container))
            container.entries.remove(node)  # type: ignore[arg-type]
        else:
            aug.remove(self._path(node))
            self._nodes.remove(node)
        self._changed()

    def _add_entry(self, container: object, key: str, value: str) -> None:
        """Add ``key = value``: after the last same-named entry of the container if any (so
        repeated keys stay together), else at the end of the section or of the file."""
        aug = self._augeas()
        entry = _Entry(key, value)
        if isinstance(container, _NewContainer):
            container = self._add_section(container.label)
        if isinstance(container, _Section):
            entries = container.entries
            same = [e for e in entries if e.label.upper() == key.upper()]
            anchor = same[-1] if same else (entries[-1] if entries else None)
            if anchor is not None:
                aug.insert(self._path(anchor, container), key, before=False)
                entries.insert(entries.index(anchor) + 1, entry)
            else:
                entries.append(entry)
            aug.set(self._path(entry, container), value)
        else:
            same_top = [
                n for n in self._nodes if isinstance(n, _Entry) and n.label.upper() == key.upper()
            ]
            self._place_top(entry, same_top[-1] if same_top else None)
            aug.set(self._path(entry), value)
        self._changed()

    def _add_section(self, label: str) -> _Section:
        """A new empty section, after the last section with the same name or at the end."""
        section = _Section(label)
        same = [
            n for n in self._nodes if isinstance(n, _Section) and n.label.upper() == label.upper()
        ]
        self._place_top(section, same[-1] if same else None)
        self._augeas().set(self._path(section), None)
        return section

    def _place_top(self, node: _Node, anchor: _Node | None) -> None:
        """Put a new top-level node into the model and the Augeas tree (value set by caller)."""
        aug = self._augeas()
        if anchor is None:
            self._nodes.append(node)
            count = sum(1 for n in self._nodes if n.label == node.label)
            aug.set(f"{node.label}[{count}]", None)  # a new last child: the end of the file
        else:
            aug.insert(self._path(anchor), node.label, before=False)
            self._nodes.insert(self._nodes.index(anchor) + 1, node)

    def _prune_empty_sections(self) -> None:
        """Drop sections left without entries: the grammar cannot write ``KEY = [ ]``."""
        for node in [n for n in self._nodes if isinstance(n, _Section) and not n.entries]:
            self._remove_node(_TOP, node)

    # ------------------------------------------------------------------------------ line format

    @classmethod
    def op_from_line(
        cls,
        state: str,
        components: Sequence[str],
        value: Any = NOTHING,
        annotations: dict[str, Any] | None = None,
    ) -> ChangeOp:
        """An op from a line (reference §4.2, with the fixes of §8.1 #2/#3).

        * ``rm SEC/"name"`` and ``rm SEC`` (a known section) remove the whole instance/section;
          ``rm PATH null`` removes the container ``PATH`` whatever its name;
        * ``rm [SEC/["name"/]]KEY value`` removes that one value (``multiple: true``);
        * ``rm [SEC/["name"/]]KEY`` removes the key;
        * ``set`` without an ``old`` annotation uses the value as old; ``ins`` is ``multiple``
          for the keys of ``MULTIPLE`` unless annotated otherwise.
        """
        notes = dict(annotations or {})
        parts = [str(c) for c in components]
        if len(parts) > 3:
            raise FileParseError("Diff path can not have more than 2 components")
        extra: dict[str, Any] = {}
        if "multiple" in notes:
            extra["multiple"] = notes["multiple"]
        if state == "rm":
            if value is None or (value is NOTHING and _is_container_line(parts)):
                if not parts:
                    raise FileParseError("Missing path to remove")
                return ChangeOp("rm", parts, None, extra=extra, from_line=True)
            if not parts:
                raise FileParseError("Missing path to remove")
            if value is NOTHING:
                old = notes.get("old", NOTHING)
                return ChangeOp("rm", parts[:-1], parts[-1], old=old, extra=extra, from_line=True)
            extra.setdefault("multiple", True)
            return ChangeOp("rm", parts[:-1], parts[-1], old=value, extra=extra, from_line=True)
        if not parts:
            raise FileParseError("Missing parameter path")
        path, key = parts[:-1], parts[-1]
        if state == "set":
            old = notes.get("old", value)
            return ChangeOp("set", path, key, value=value, old=old, extra=extra, from_line=True)
        extra.setdefault("multiple", key.upper() in MULTIPLE)
        return ChangeOp(
            "ins", path, key, value=value, old=notes.get("old", NOTHING), extra=extra,
            from_line=True,
        )  # fmt: skip

    @classmethod
    def line_annotations(cls, op: ChangeOp) -> tuple[list[Any], Any, dict[str, Any]]:
        """The shortest line form of ``op`` that ``op_from_line`` reads back as the same op.

        Candidates go from the plain original-compatible form to more annotated ones; the
        first one that round-trips wins (the last one is returned if none does).
        """
        candidates = list(cls._line_candidates(op))
        for components, value, notes in candidates:
            try:
                if cls.op_from_line(op.state, components, value, notes) == op:
                    return components, value, notes
            except FileParseError:
                continue
        return candidates[-1]

    @staticmethod
    def _line_candidates(op: ChangeOp) -> list[tuple[list[Any], Any, dict[str, Any]]]:
        multiple = {"multiple": op.extra["multiple"]} if "multiple" in op.extra else {}
        full = op.full_path()
        out: list[tuple[list[Any], Any, dict[str, Any]]] = []
        if op.state == "rm":
            if op.key is None:
                out += [(full, NOTHING, {}), (full, None, {}), (full, None, dict(multiple))]
            elif op.has_old:
                out += [
                    (full, op.old, {}),
                    (full, op.old, dict(multiple)),
                    (full, NOTHING, {"old": op.old}),
                    (full, NOTHING, {"old": op.old, **multiple}),
                ]
            else:
                out += [(full, NOTHING, {}), (full, NOTHING, dict(multiple))]
            return out
        base: dict[str, Any] = {}
        if op.has_old and (op.state == "ins" or not _same(op.old, op.value)):
            base["old"] = op.old
        out += [(full, op.value, dict(base)), (full, op.value, {**base, **multiple})]
        return out


def _same(left: Any, right: Any) -> bool:
    from onetools.config.ops import strict_equal

    return strict_equal(left, right)
