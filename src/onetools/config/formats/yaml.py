"""The ``Yaml`` and ``Yaml::Strict`` formats: YAML configuration files (reference §3.7).

The data model, ``diff`` and ``apply`` follow the original tool exactly (hash recursion, lists as
sets or, for ``Yaml::Strict``, as ordered lists with index/anchor ops, exact-class equality).

The big difference from the original: a patched file keeps its comments, key order, quoting and
indentation outside the changed nodes (the original re-dumps the whole file and loses them).
``apply`` only changes the data model; ``render`` turns the original text into text for the new
data with surgical edits (``_Reconciler``): a changed scalar is replaced in its span, a removed
key or list item loses its lines, a new key is added at the end of its block mapping with that
mapping's indentation, new list items go before the item they precede, flow collections are
re-rendered in place, and new or replaced collections are rendered in block style at the right
indentation.  The result is parsed again and must give exactly the data model; when it does not,
the edit is widened to the smallest enclosing node that works, and as a last resort the whole
document is dumped.  An unmodified document renders byte-identical to its input.

Line format (reference §4.2): components, keys and values are symbolized.  Our lossless
extension carries ``old``/``index`` annotations; an ``ins`` of a list element without an index
(non-strict lists) is marked with ``index: null`` so that the line gives back ``key: None``
instead of the original's "append to the list at key" rewrite.  Keys that are not strings or
symbols (integers...) cannot be written in the line format (they come back as strings); the
stock files have none.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from difflib import SequenceMatcher
from typing import Any, ClassVar, Self

from onetools.config import yamlio
from onetools.config.formats.base import ConfigDocument
from onetools.config.ops import NOTHING, ChangeOp, PatchResult, Symbol, strict_equal, symbolize
from onetools.config.yamlio import MAPPING, SCALAR, SEQUENCE, Node
from onetools.errors import (
    FileParseError,
    PatchError,
    PatchPathNotFound,
    PatchUnexpectedData,
    PatchValueNotFound,
)

# ---------------------------------------------------------------------------------------------
# Small helpers on JSON-like trees


def copy_tree(value: Any) -> Any:
    """A deep copy of a JSON-like tree (much faster than ``copy.deepcopy``)."""
    kind = type(value)
    if kind is dict:
        return {key: copy_tree(item) for key, item in value.items()}
    if kind is list:
        return [copy_tree(item) for item in value]
    return value


def canon(value: Any, ordered: bool = True) -> Any:
    """A hashable key such that ``canon(a) == canon(b)`` iff ``strict_equal(a, b, ordered)``."""
    kind = type(value)
    if kind is dict:
        return ("d", frozenset((canon(k, ordered), canon(v, ordered)) for k, v in value.items()))
    if kind is list:
        items = [canon(item, ordered) for item in value]
        if ordered:
            return ("l", tuple(items))
        return ("m", frozenset(Counter(items).items()))
    if kind is float and math.isnan(value):
        return ("nan",)
    if kind in (str, Symbol, int, float, bool) or value is None:
        return (kind.__name__, value)
    return ("o", kind.__name__, repr(value))


def ruby_class(value: Any) -> str:
    """The Ruby class name of a loaded value (used in the original's error messages)."""
    if isinstance(value, bool):
        return "TrueClass" if value else "FalseClass"
    if value is None:
        return "NilClass"
    if isinstance(value, Symbol):
        return "Symbol"
    return {dict: "Hash", list: "Array", str: "String", int: "Integer", float: "Float"}.get(
        type(value), type(value).__name__
    )


def ruby_to_s(value: Any) -> str:
    """Ruby's ``to_s`` of a value, as interpolated in the original's messages (a symbol loses
    its colon, nil is empty)."""
    if isinstance(value, Symbol):
        return str.__str__(value)[1:]
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return ruby_inspect(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def ruby_inspect(value: Any) -> str:
    """An approximation of Ruby's ``inspect`` (hashes as ``{"a"=>1}``)."""
    if isinstance(value, Symbol):
        return str.__str__(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, dict):
        return (
            "{" + ", ".join(f"{ruby_inspect(k)}=>{ruby_inspect(v)}" for k, v in value.items()) + "}"
        )
    if isinstance(value, list):
        return "[" + ", ".join(ruby_inspect(item) for item in value) + "]"
    if value is None:
        return "nil"
    return ruby_to_s(value)


def _first_difference(actual: Any, expected: Any, path: tuple[Any, ...] = ()) -> tuple[Any, ...]:
    """The path (in ``expected``'s keys/indexes) of the outermost node where the trees differ."""
    if type(actual) is dict and type(expected) is dict:
        if set(map(canon, actual)) != set(map(canon, expected)):
            return path
        for key, value in expected.items():
            if not strict_equal(actual[key], value):
                return _first_difference(actual[key], value, (*path, key))
        return path
    if type(actual) is list and type(expected) is list and len(actual) == len(expected):
        for index, (left, right) in enumerate(zip(actual, expected, strict=True)):
            if not strict_equal(left, right):
                return _first_difference(left, right, (*path, index))
    return path


# ---------------------------------------------------------------------------------------------
# Surgical text edits


class _Widen(Exception):
    """The reconciler cannot edit a node locally; its parent must replace it whole."""


class _Reconciler:
    """Computes the text edits that turn ``text`` (composed as ``root``) into text for ``new``.

    ``opaque`` holds data paths (in the new data) whose node must be replaced whole when it
    changed; ``max_depth`` limits how deep edits go (a changed node at that depth is replaced
    whole).  Both widen the edits when the verification of a previous attempt failed.
    """

    def __init__(
        self,
        text: str,
        root: Node,
        opaque: set[tuple[Any, ...]],
        max_depth: int | None,
        ordered: bool,
    ) -> None:
        self.text = text
        self.root = root
        self.opaque = opaque
        self.max_depth = max_depth
        # (start, end, replacement, sequence): applied from the end of the text backwards.
        self.edits: list[tuple[int, int, str, int]] = []
        self.deepest = 0
        self.changed_anchors: set[str] = set()
        self.has_alias = _has_alias(root)
        self.indent, self.seq_indent = _detect_indent(text, root)
        self.ordered = ordered

    # -- text geometry ------------------------------------------------------------------------

    def line_start(self, pos: int) -> int:
        return self.text.rfind("\n", 0, pos) + 1

    def line_end(self, pos: int) -> int:
        """Offset just after the newline of the line holding ``pos`` (or the text's end)."""
        found = self.text.find("\n", pos)
        return len(self.text) if found < 0 else found + 1

    def column(self, pos: int) -> int:
        return pos - self.line_start(pos)

    def first_on_line(self, pos: int) -> bool:
        return not self.text[self.line_start(pos) : pos].strip()

    def colon_after(self, key: Node) -> int:
        """Offset of the ``:`` indicator after a simple key."""
        pos = key.end
        text = self.text
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos >= len(text) or text[pos] != ":":
            raise _Widen
        return pos

    def dash_before(self, item: Node) -> int:
        """Offset of the ``-`` indicator before a block sequence item."""
        pos = item.start - 1
        text = self.text
        while pos >= 0 and text[pos] in " \t\r\n":
            pos -= 1
        if pos < 0 or text[pos] != "-":
            raise _Widen
        return pos

    def edit(self, start: int, end: int, replacement: str) -> None:
        self.edits.append((start, end, replacement, len(self.edits)))

    def result(self) -> str:
        text = self.text
        for start, end, replacement, _ in sorted(self.edits, reverse=True):
            text = text[:start] + replacement + text[end:]
        return text

    # -- rendering pieces -----------------------------------------------------------------------

    def fragment(self, value: Any) -> str:
        return yamlio.dump_fragment(value, self.indent)

    @staticmethod
    def shift(fragment: str, column: int, first: bool) -> str:
        """Indent the lines of ``fragment`` by ``column`` (the first one only if ``first``)."""
        pad = " " * column
        lines = fragment.split("\n")
        return "\n".join(
            (pad + line if line and (first or index) else line) for index, line in enumerate(lines)
        )

    def value_after_key(self, value: Any, key_column: int) -> str:
        """Text following ``key:`` for ``value``: inline, or a block on the next lines."""
        if _is_block(value):
            step = self.indent if isinstance(value, dict) else self.seq_indent
            return "\n" + self.shift(self.fragment(value), key_column + step, True)
        return " " + self.shift(self.fragment(value), key_column, False)

    def item_text(self, value: Any, dash_column: int) -> str:
        """A whole ``- value`` sequence item line(s) with its newline."""
        body = self.shift(self.fragment(value), dash_column + 2, False)
        return " " * dash_column + "- " + body + "\n"

    def entry_text(self, key: Any, value: Any, column: int) -> str:
        """A whole ``key: value`` mapping entry line(s) with its newline."""
        key_text = self.fragment(key)
        if "\n" in key_text or key_text.startswith(("{", "[")) or key_text.startswith("|"):
            raise _Widen
        return " " * column + key_text + ":" + self.value_after_key(value, column) + "\n"

    # -- the walk -------------------------------------------------------------------------------

    def run(self, new: Any) -> str:
        self.visit(self.root, new, (), ("root",))
        return self.result()

    def visit(self, node: Node, new: Any, path: tuple[Any, ...], slot: tuple[Any, ...]) -> None:
        same = strict_equal(node.data, new)
        if same and not (self.has_alias and self.changed_anchors):
            return
        if node.alias:
            if same and node.anchor not in self.changed_anchors:
                return
            self.replace(node, new, path, slot)
            return
        if same and node.kind == SCALAR:
            return
        if not same and node.anchor is not None:
            self.changed_anchors.add(node.anchor)
        mark = len(self.edits)
        try:
            if same:
                self.descend_same(node, path)
            elif (
                path in self.opaque
                or (self.max_depth is not None and len(path) >= self.max_depth)
                or not self.local(node, new, path)
            ):
                self.replace(node, new, path, slot)
        except _Widen:
            del self.edits[mark:]  # drop the partial edits inside the node
            self.replace(node, new, path, slot)

    def descend_same(self, node: Node, path: tuple[Any, ...]) -> None:
        """Visit an unchanged subtree: alias occurrences of changed anchors need expanding."""
        if node.flow:
            if _has_alias(node):
                self.replace_flow(node, path)
            return
        if node.kind == MAPPING:
            for key, value in node.items:
                self.visit(value, value.data, (*path, key.data), ("map", key))
        elif node.kind == SEQUENCE:
            for index, item in enumerate(node.items):
                self.visit(item, item.data, (*path, index), ("seq", self.dash_before(item)))

    def replace_flow(self, node: Node, path: tuple[Any, ...]) -> None:
        text = yamlio.dump_flow(node.data)
        if text is None:
            raise _Widen
        self.collect_anchors(node)
        self.deepest = max(self.deepest, len(path))
        self.edit(node.start, node.end, text)

    def local(self, node: Node, new: Any, path: tuple[Any, ...]) -> bool:
        """Edit inside ``node``; False when it must be replaced whole instead."""
        if node.kind == SCALAR or node.flow:
            return self.flow_or_scalar(node, new, path)
        if node.kind == MAPPING and type(new) is dict and new:
            return self.mapping(node, new, path)
        if node.kind == SEQUENCE and type(new) is list and new:
            return self.sequence(node, new, path)
        return False

    def flow_or_scalar(self, node: Node, new: Any, path: tuple[Any, ...]) -> bool:
        """In-place replacement of a scalar or a flow collection (keeps value alignment)."""
        if _is_block(new) and node.kind != SCALAR and node.flow and node.items:
            text = yamlio.dump_flow(new)
            if text is None:
                return False
        elif _is_block(new):
            return False
        else:
            text = self.fragment(new)
            if "\n" in text:
                return False
        start, end = node.start, node.end
        if start == end:  # an empty (null) scalar: `key:` -> `key: value`
            text = " " + text if self.text[start - 1 : start] == ":" else text
        self.collect_anchors(node)
        self.deepest = max(self.deepest, len(path))
        self.edit(start, end, text)
        return True

    def mapping(self, node: Node, new: dict[Any, Any], path: tuple[Any, ...]) -> bool:
        if node.merge or len(node.items) != len(node.data):
            return False  # merge keys or duplicate keys: no reliable local edit
        entries: list[tuple[Node, Node]] = node.items
        if any(key.kind != SCALAR or key.alias for key, _ in entries):
            return False
        kept = [(key, value) for key, value in entries if key.data in new]
        if not kept:
            return False
        first_key = entries[0][0]
        if entries[0] not in kept and not self.first_on_line(first_key.start):
            return False
        column = self.column(first_key.start)
        for key, value in entries:
            if key.data in new:
                self.visit(value, new[key.data], (*path, key.data), ("map", key))
            else:
                self.collect_anchors(value)
                self.deepest = max(self.deepest, len(path) + 1)
                end = self.line_end(value.content_end)
                self.edit(self.line_start(key.start), end, "")
        old_keys = node.data
        added = [key for key in new if key not in old_keys]
        if added:
            self.deepest = max(self.deepest, len(path) + 1)
            at = self.line_end(entries[-1][1].content_end)
            prefix = "" if self.text[at - 1 : at] == "\n" else "\n"
            body = "".join(self.entry_text(key, new[key], column) for key in added)
            self.edit(at, at, prefix + body)
        return True

    def sequence(self, node: Node, new: list[Any], path: tuple[Any, ...]) -> bool:
        items: list[Node] = node.items
        dashes = [self.dash_before(item) for item in items]
        column = self.column(dashes[0])
        nested_first = not self.first_on_line(dashes[0])
        old_keys = [canon(item.data) for item in items]
        new_keys = [canon(value) for value in new]
        matcher = SequenceMatcher(None, old_keys, new_keys, autojunk=False)
        edits = matcher.get_opcodes()
        if nested_first and any(tag != "equal" and i1 == 0 for tag, i1, _, _, _ in edits):
            return False  # `- - a`: the first item shares its line with the parent's dash
        for tag, i1, i2, j1, j2 in edits:
            if tag == "equal":
                if self.has_alias and self.changed_anchors:
                    for offset in range(i2 - i1):
                        self.visit(
                            items[i1 + offset],
                            new[j1 + offset],
                            (*path, j1 + offset),
                            ("seq", dashes[i1 + offset]),
                        )
                continue
            paired = min(i2 - i1, j2 - j1) if tag == "replace" else 0
            for offset in range(paired):
                self.visit(
                    items[i1 + offset],
                    new[j1 + offset],
                    (*path, j1 + offset),
                    ("seq", dashes[i1 + offset]),
                )
            for index in range(i1 + paired, i2):
                self.collect_anchors(items[index])
                self.deepest = max(self.deepest, len(path) + 1)
                self.edit(
                    self.line_start(dashes[index]), self.line_end(items[index].content_end), ""
                )
            if j1 + paired < j2:
                self.deepest = max(self.deepest, len(path) + 1)
                body = "".join(self.item_text(value, column) for value in new[j1 + paired : j2])
                if i2 < len(items):
                    at = self.line_start(dashes[i2])
                    self.edit(at, at, body)
                else:
                    at = self.line_end(items[-1].content_end)
                    prefix = "" if self.text[at - 1 : at] == "\n" else "\n"
                    self.edit(at, at, prefix + body)
        return True

    def replace(self, node: Node, new: Any, path: tuple[Any, ...], slot: tuple[Any, ...]) -> None:
        """Replace ``node`` whole, rendered for its place (after ``key:``, ``-`` or at the root)."""
        self.collect_anchors(node)
        self.deepest = max(self.deepest, len(path))
        end = node.content_end
        empty = node.kind == SCALAR and node.start == node.end
        if slot[0] == "map":
            key: Node = slot[1]
            start = node.start if empty else self.colon_after(key) + 1
            text = self.value_after_key(new, self.column(key.start))
        elif slot[0] == "seq":
            dash: int = slot[1]
            start = node.start if empty else dash + 1
            text = " " + self.shift(self.fragment(new), self.column(dash) + 2, False)
        else:
            start = node.start
            text = self.fragment(new)
            if _is_block(new) and not self.first_on_line(start):
                text = "\n" + text
        self.edit(start, max(start, end), text)

    def collect_anchors(self, node: Node) -> None:
        """Anchors defined inside a removed/replaced node: their aliases must be expanded."""
        stack = [node]
        while stack:
            current = stack.pop()
            if current.anchor is not None and not current.alias:
                self.changed_anchors.add(current.anchor)
            if current.kind == MAPPING:
                for key, value in current.items:
                    stack.extend((key, value))
            elif current.kind == SEQUENCE:
                stack.extend(current.items)


def _is_block(value: Any) -> bool:
    return type(value) in (dict, list) and bool(value)


def _has_alias(root: Node) -> bool:
    stack = [root]
    while stack:
        node = stack.pop()
        if node.alias:
            return True
        if node.kind == MAPPING:
            for key, value in node.items:
                stack.extend((key, value))
        elif node.kind == SEQUENCE:
            stack.extend(node.items)
    return False


def _detect_indent(text: str, root: Node) -> tuple[int, int]:
    """The file's indentation step for nested mappings and for lists under a key."""
    indent: int | None = None
    seq_indent: int | None = None
    stack = [root]
    while stack and (indent is None or seq_indent is None):
        node = stack.pop(0)
        if node.kind != MAPPING or node.flow:
            if node.kind == SEQUENCE and not node.flow:
                stack.extend(node.items)
            continue
        for key, value in node.items:
            if value.flow or value.alias or value.kind == SCALAR or not value.items:
                continue
            key_col = key.start - (text.rfind("\n", 0, key.start) + 1)
            first = value.items[0][0] if value.kind == MAPPING else value.items[0]
            if value.kind == SEQUENCE:
                dash = text.rfind("-", 0, first.start)
                col = dash - (text.rfind("\n", 0, dash) + 1)
                if seq_indent is None and col >= key_col:
                    seq_indent = col - key_col
            else:
                col = first.start - (text.rfind("\n", 0, first.start) + 1)
                if indent is None and col > key_col:
                    indent = col - key_col
            stack.append(value)
    return indent or 2, seq_indent if seq_indent is not None else 0


# ---------------------------------------------------------------------------------------------
# The document classes


class YamlDocument(ConfigDocument):
    """A YAML configuration file whose lists are sets (``class: Yaml``)."""

    format_name: ClassVar[str] = "Yaml"
    safe_modes: ClassVar[frozenset[str]] = frozenset()
    symbols: ClassVar[bool] = True
    #: Whether list order matters (``Yaml::Strict``).
    strict: ClassVar[bool] = False

    def __init__(self, name: str = "<string>") -> None:
        super().__init__(name)
        self._text = ""
        self._root: Node | None = None
        # The data the current text stands for (never mutated; replaced on render).
        self._text_data: Any = False
        # The data model, copied from ``_text_data`` on first access (``None`` = not yet):
        # documents that are only parsed, compared and rendered never pay for the copy.
        self._content: Any = None
        self._materialized = False

    @property
    def content(self) -> Any:
        """The data model (mutable in place, e.g. by migrators).  An empty file is ``False``,
        as in the original (Psych loads an empty stream as false); ``---`` alone is ``None``."""
        if not self._materialized:
            self._content = copy_tree(self._text_data)
            self._materialized = True
        return self._content

    @content.setter
    def content(self, value: Any) -> None:
        self._content = value
        self._materialized = True

    def _data(self) -> Any:
        """The data for read-only use (no copy when the model was never touched)."""
        return self._content if self._materialized else self._text_data

    # -- parse / render -------------------------------------------------------------------------

    @classmethod
    def parse(cls, text: str, name: str = "<string>") -> Self:
        doc = cls(name)
        doc._set_text(text, yamlio.compose(text, name))
        return doc

    def _set_text(self, text: str, root: Node | None) -> None:
        self._text = text
        self._root = root
        self._text_data = False if root is None else root.data

    def render(self) -> str:
        if self._materialized and not strict_equal(self._content, self._text_data):
            text = self._rerender()
            self._set_text(text, yamlio.compose(text, self.name))
        return self._text

    def _rerender(self) -> str:
        """Text for the changed data model, edited from the current text (see module doc)."""
        new = self.content
        text = self._text
        if self._root is None:
            # No document yet (empty or comment-only file): append one after the comments.
            if new is False and not text.strip():
                return text
            prefix = text if not text or text.endswith("\n") else text + "\n"
            return prefix + yamlio.dump(new, 2)
        opaque: set[tuple[Any, ...]] = set()
        max_depth: int | None = None
        for _attempt in range(64):
            reconciler = _Reconciler(text, self._root, opaque, max_depth, self.strict)
            try:
                candidate = reconciler.run(new)
                parsed = yamlio.compose(candidate, self.name)
            except (_Widen, FileParseError):
                parsed = None
                candidate = ""
            if parsed is not None and strict_equal(parsed.data, new):
                return candidate
            if parsed is not None:
                where = _first_difference(parsed.data, new)
                widened = where[:-1]
                if where and widened not in opaque:
                    opaque.add(widened)
                    continue
            limit = reconciler.deepest if max_depth is None else max_depth
            if limit <= 0:
                break
            max_depth = limit - 1
        return yamlio.dump(new, 2)

    def snapshot(self) -> Any:
        # The text, nodes and text data are never mutated in place: sharing them is safe.
        return (
            self._text,
            self._root,
            self._text_data,
            copy_tree(self.content),
            list(self.warnings),
        )

    def restore(self, state: Any) -> None:
        text, root, text_data, content, warnings = state
        self._text, self._root, self._text_data = text, root, text_data
        self.content = content
        self.warnings = warnings

    # -- comparison -----------------------------------------------------------------------------

    def diff(self, other: Self) -> list[ChangeOp]:
        out: list[ChangeOp] = []
        self._diff(self._data(), other._data(), [], out)
        return out

    def _equal(self, left: Any, right: Any) -> bool:
        return strict_equal(left, right, self.strict)

    def _diff(self, old: Any, new: Any, path: list[Any], out: list[ChangeOp]) -> None:
        if type(old) is dict and type(new) is dict:
            for key in old:
                if key in new:
                    self._diff(old[key], new[key], [*path, key], out)
                else:
                    out.append(ChangeOp("rm", list(path), key, old=copy_tree(old[key])))
            for key in new:
                if key not in old:
                    out.append(ChangeOp("ins", list(path), key, value=copy_tree(new[key])))
        elif type(old) is list and type(new) is list:
            if self.strict:
                self._diff_ordered(old, new, path, out)
            else:
                self._diff_set(old, new, path, out)
        elif old is None and new is None:
            return
        elif not self._equal(old, new):
            key = path[-1] if path else None
            out.append(
                ChangeOp("set", list(path[:-1]), key, value=copy_tree(new), old=copy_tree(old))
            )

    def _diff_set(
        self, old: list[Any], new: list[Any], path: list[Any], out: list[ChangeOp]
    ) -> None:
        old_keys = {canon(item, False) for item in old}
        new_keys = {canon(item, False) for item in new}
        seen: set[Any] = set()
        for item in [*old, *new]:
            key = canon(item, False)
            if key in seen:
                continue
            seen.add(key)
            if key not in new_keys:
                out.append(ChangeOp("rm", list(path), None, old=copy_tree(item)))
            elif key not in old_keys:
                out.append(ChangeOp("ins", list(path), None, value=copy_tree(item)))

    def _diff_ordered(
        self, old: list[Any], new: list[Any], path: list[Any], out: list[ChangeOp]
    ) -> None:
        old_keys = [canon(item) for item in old]
        new_keys = [canon(item) for item in new]
        i = j = index = 0
        while i < len(old) and j < len(new):
            if old_keys[i] == new_keys[j]:
                i += 1
                j += 1
                index += 1
            elif old_keys[i] in new_keys[j + 1 :]:
                out.append(
                    ChangeOp(
                        "ins",
                        list(path),
                        None,
                        value=copy_tree(new[j]),
                        old=copy_tree(old[i]),
                        extra={"index": index},
                    )
                )
                j += 1
                index += 1
            else:
                out.append(
                    ChangeOp("rm", list(path), None, old=copy_tree(old[i]), extra={"index": index})
                )
                i += 1
        for item in old[i:]:
            out.append(
                ChangeOp("rm", list(path), None, old=copy_tree(item), extra={"index": index})
            )
        for item in new[j:]:
            out.append(
                ChangeOp(
                    "ins", list(path), None, value=copy_tree(item), old=None, extra={"index": index}
                )
            )
            index += 1

    # -- patching -------------------------------------------------------------------------------

    @staticmethod
    def _skip_or_raise(modes: frozenset[str], error: PatchError) -> PatchResult:
        if "skip" in modes:
            return PatchResult(False, "skip", reason=error.message)
        raise error

    def apply(self, op: ChangeOp, modes: frozenset[str]) -> PatchResult:
        if op.state == "set" and op.key is None and op.path:
            # Not produced by diff: "set the node at path" is setting the last key.
            op = ChangeOp(
                "set",
                list(op.path[:-1]),
                op.path[-1],
                value=op.value,
                old=op.old,
                extra=dict(op.extra),
                from_line=op.from_line,
            )
        tree = self.content
        for component in op.path:
            try:
                found = type(tree) is dict and component in tree
            except TypeError:
                found = False
            if not found:
                # The original joins the path with Ruby's to_s (a symbol loses its colon).
                where = "/".join(ruby_to_s(part) for part in op.path)
                return self._skip_or_raise(modes, PatchPathNotFound(where, op))
            tree = tree[component]
        if op.state == "rm":
            return self._apply_rm(tree, op, modes)
        if op.state == "ins":
            return self._apply_ins(tree, op, modes)
        return self._apply_set(tree, op, modes)

    def _apply_rm(self, tree: Any, op: ChangeOp, modes: frozenset[str]) -> PatchResult:
        if op.key is not None:
            if type(tree) is not dict:
                return self._skip_or_raise(modes, PatchUnexpectedData("Hash", ruby_class(tree), op))
            if op.key in tree:
                return PatchResult(True, old=tree.pop(op.key))
            return PatchResult(False)
        if type(tree) is not list:
            return self._skip_or_raise(modes, PatchUnexpectedData("Array", ruby_class(tree), op))
        old = op.old if op.has_old else None
        if self.strict and "index" in op.extra:
            index = op.extra["index"]
            if isinstance(index, int) and 0 <= index < len(tree) and self._equal(tree[index], old):
                return PatchResult(True, old=tree.pop(index))
            if "force" in modes:
                found = self._find(tree, old)
                if found is not None:
                    return PatchResult(True, "force", old=tree.pop(found))
            return self._skip_or_raise(modes, PatchValueNotFound(ruby_to_s(old), op))
        found = self._find(tree, old)
        if found is None:
            return PatchResult(False)
        return PatchResult(True, old=tree.pop(found))

    def _find(self, items: list[Any], value: Any) -> int | None:
        for index, item in enumerate(items):
            if self._equal(item, value):
                return index
        return None

    def _apply_ins(self, tree: Any, op: ChangeOp, modes: frozenset[str]) -> PatchResult:
        value = copy_tree(op.value if op.has_value else None)
        if op.key is not None:
            if op.from_line and type(tree) is dict and type(tree.get(op.key)) is list:
                # A line `ins list value` means "append to the list" (the original retries the
                # op rewritten this way).
                return self._append(tree[op.key], value)
            if type(tree) is not dict:
                return self._skip_or_raise(modes, PatchUnexpectedData("Hash", ruby_class(tree), op))
            if op.key not in tree:
                tree[op.key] = value
                return PatchResult(True)
            if self._equal(tree[op.key], value):
                return PatchResult(False)
            if "replace" in modes:
                previous = tree[op.key]
                tree[op.key] = value
                return PatchResult(True, "replace", old=previous)
            return PatchResult(False)
        if type(tree) is not list:
            return self._skip_or_raise(modes, PatchUnexpectedData("Array", ruby_class(tree), op))
        if self.strict and "index" in op.extra:
            return self._insert_at(tree, value, op, modes)
        return self._append(tree, value)

    def _append(self, items: list[Any], value: Any) -> PatchResult:
        if self._find(items, value) is not None:
            return PatchResult(False)
        items.append(value)
        return PatchResult(True)

    def _insert_at(
        self, items: list[Any], value: Any, op: ChangeOp, modes: frozenset[str]
    ) -> PatchResult:
        if self._find(items, value) is not None:
            return PatchResult(False)
        index = op.extra["index"]
        old = op.old if op.has_old else None
        if not isinstance(index, int) or index < 0:
            index = len(items)
        current = items[index] if index < len(items) else None
        if self._equal(current, old):
            items.insert(min(index, len(items)), value)
            return PatchResult(True)
        if "force" in modes:
            # The original's guess: next to the anchor when it is within one of the index,
            # else at the index, else at the end (approximate by design, §8.1 #17).
            found = self._find(items, old)
            if found is not None and abs(found - index) <= 1:
                items.insert(found, value)
            elif index <= len(items):
                items.insert(index, value)
            else:
                items.append(value)
            return PatchResult(True, "force")
        # Deliberately not skippable (as in the original).
        raise PatchValueNotFound(ruby_to_s(old), op)

    def _apply_set(self, tree: Any, op: ChangeOp, modes: frozenset[str]) -> PatchResult:
        value = copy_tree(op.value if op.has_value else None)
        if op.key is None:  # path == []: the whole document
            previous = self.content
            self.content = value
            return PatchResult(True, old=previous)
        if type(tree) is not dict:
            return self._skip_or_raise(modes, PatchUnexpectedData("Hash", ruby_class(tree), op))
        if op.key in tree:
            previous = tree[op.key]
            if self._equal(previous, op.old if op.has_old else None):
                tree[op.key] = value
                return PatchResult(True, old=previous)
            if "replace" in modes:
                tree[op.key] = value
                return PatchResult(True, "replace", old=previous)
            return PatchResult(False)
        if "replace" in modes:
            tree[op.key] = value
            return PatchResult(True, "replace")
        return self._skip_or_raise(modes, PatchValueNotFound(ruby_to_s(op.key), op))

    # -- line format ----------------------------------------------------------------------------

    @classmethod
    def op_from_line(
        cls,
        state: str,
        components: Sequence[str],
        value: Any = NOTHING,
        annotations: dict[str, Any] | None = None,
    ) -> ChangeOp:
        notes = dict(annotations or {})
        if "old" in notes:
            notes["old"] = symbolize(notes["old"])
        path = [symbolize(component) for component in components]
        if value is not NOTHING:
            value = symbolize(value)
        if "index" in notes and (state == "ins" or notes["index"] is None):
            # Our annotation: a list element op (`index: null` when the list is unordered).
            extra = {} if notes["index"] is None else {"index": notes["index"]}
            if state == "ins":
                return ChangeOp(
                    "ins",
                    path,
                    None,
                    value=value,
                    old=notes.get("old", NOTHING),
                    extra=extra,
                    from_line=True,
                )
            del notes["index"]
        return super().op_from_line(state, path, value, notes)

    @classmethod
    def line_annotations(cls, op: ChangeOp) -> tuple[list[Any], Any, dict[str, Any]]:
        components, value, notes = super().line_annotations(op)
        if op.state == "ins" and op.key is None and "index" not in notes:
            notes["index"] = None
        return components, value, notes


class StrictYamlDocument(YamlDocument):
    """A YAML configuration file whose lists are ordered (``class: Yaml::Strict``)."""

    format_name: ClassVar[str] = "Yaml::Strict"
    safe_modes: ClassVar[frozenset[str]] = frozenset({"force"})
    strict: ClassVar[bool] = True
