"""``Augeas::Shell`` files: shell variable assignments (defaultrc, *rc, driver *.conf files).

Parsed with Augeas' stock ``Shellvars.lns`` (reference §3.6).  Only top-level variables count;
their values are the raw shell text including quotes (``"a b"`` stays ``"\\"a b\\""``).  A
variable assigned several times is allowed, but only its last value is significant, as in the
shell.  A variable is exported when one of its assignments is written ``export VAR=...`` (a
``VAR/export`` child in the tree) or when ``export VAR`` names it (an ``@export`` node).

Augeas facts learned the hard way (Augeas 1.14, Debian):

* ``Shellvars.lns`` rejects a text whose last line has no newline (``A=1`` fails, ``A=1\\n``
  parses), yet stock files ship that way (6.6.0 ``guacd``).  We parse the text with a newline
  added and take it off again when rendering.
* Rendering (``text_retrieve``) of this recursive lens recompiles regular expressions on every
  call (~20-50 ms) and makes the next parse pay ~30 ms too, while parsing alone costs ~0.1 ms.
  So ``render`` returns the original text while the tree is unchanged and only asks Augeas to
  render a document that was modified.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Self

from onetools.config.formats._augeas import AugeasTree, handle
from onetools.config.formats.base import ConfigDocument
from onetools.config.ops import NOTHING, ChangeOp, PatchResult
from onetools.errors import FileParseError, PatchError

LENS: Final = "Shellvars.lns"
EXPORT_NODE: Final = "@export"

# What the lens' ``simple_value`` accepts as a value, restated as a Python regex, so a value that
# Augeas would refuse to render is rejected when it is applied instead of when the file is saved.
_CHAR = r"""(?:[^`;()'"&|\n\\# \t]#*|\\.)"""
_DQUOT = r"""(?:"(?:[^"\\]|\\.|\\\n)*")"""
_SQUOT = r"(?:'[^']*')"
_DOLLAR = r"(?:\$\(\([^)#\n]*\)\)|\$\([^()#\n]*\))"
_ANYQUOT = rf"(?:(?:{_CHAR}|{_DQUOT}|{_SQUOT}|{_DOLLAR})+|`[^`\n]+`|``[^` \t\n;]+``)"
_SIMPLE_VALUE = re.compile(rf"(?:{_ANYQUOT}|\([ \t]*\))?", re.DOTALL)
# A shell array ``(a b c)``: the lens keeps its items as numbered children of the variable.
_ARRAY_VALUE = re.compile(r"\(\s*(.*?)\s*\)", re.DOTALL)
_ARRAY_ITEM = re.compile(_ANYQUOT, re.DOTALL)
_LABEL_PLAIN = re.compile(r"[A-Za-z0-9_-]+")
# Children of an assignment that are array items (not the export flag nor a trailing comment).
_ITEMS: Final = "label() != 'export' and label() != '#comment'"


def _quote_label(label: str) -> str:
    """A label as one Augeas path step (keys like ``a[1]`` need their brackets escaped)."""
    if _LABEL_PLAIN.fullmatch(label):
        return label
    return "".join(c if _LABEL_PLAIN.fullmatch(c) else "\\" + c for c in label)


def _get(path: str) -> str | None:
    """A node's value; python-augeas hands back ``b""`` for an empty value (``VAR=``)."""
    value = handle().get(path)
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value  # type: ignore[no-any-return]


def _to_text(value: Any) -> str:
    """A line-format JSON value as shell text, the way the original writes it (Ruby ``to_s``)."""
    if isinstance(value, str):
        return value
    if value is None or value is NOTHING:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


@dataclass
class Variable:
    """What a document says about one variable: every assignment's value and the export flag."""

    nodes: list[str]  # absolute Augeas paths of the assignments, in document order
    values: list[str]
    exported: bool

    @property
    def value(self) -> str:
        """The significant (last) value."""
        return self.values[-1]


class ShellDocument(ConfigDocument):
    """A shell variables file."""

    format_name = "Augeas::Shell"
    safe_modes = frozenset()

    def __init__(self, tree: AugeasTree, text: str, added_newline: bool, name: str) -> None:
        super().__init__(name)
        self._tree = tree
        self._text = text
        self._added_newline = added_newline
        self._dirty = False
        self._cache: dict[str, Variable] | None = None

    # ----------------------------------------------------------------------------------------
    # Loading and rendering

    @classmethod
    def parse(cls, text: str, name: str = "<string>") -> Self:
        """Parse shell text; ``FileParseError`` with the line when the lens rejects it."""
        added = bool(text) and not text.endswith("\n")
        try:
            tree = AugeasTree(LENS, text + "\n" if added else text, name)
        except FileParseError:
            raise
        except Exception as exc:  # Augeas refuses some input outright (e.g. NUL characters)
            raise FileParseError(f"Failed to parse file ({exc})", name) from exc
        document = cls(tree, text, added, name)
        for key, variable in document.variables().items():
            if len(variable.values) > 1:
                document.warnings.append(
                    f"Variable {key} specified multiple times. Only last value will be respected."
                )
        return document

    def render(self) -> str:
        """The original text while unchanged (rendering is slow, see module docstring)."""
        if not self._dirty:
            return self._text
        text = self._tree.render()
        if self._added_newline and text.endswith("\n"):
            text = text[:-1]
        return text

    def snapshot(self) -> Any:
        return (_clone(self._tree), self._dirty)

    def restore(self, state: Any) -> None:
        tree, dirty = state
        # Clone again so the same snapshot could be restored twice.
        self._tree = _clone(tree)
        self._dirty = dirty
        self._cache = None

    # ----------------------------------------------------------------------------------------
    # Reading the tree

    def variables(self) -> dict[str, Variable]:
        """Top-level variables by name, in order of first assignment."""
        if self._cache is not None:
            return self._cache
        aug = handle()
        found: dict[str, Variable] = {}
        exported_names: set[str] = set()
        for node in aug.match(f"{self._tree.root}/*"):
            label: str = aug.label(node)
            if label == EXPORT_NODE:
                exported_names.update(v for v in (_get(c) for c in aug.match(f"{node}/*")) if v)
                continue
            # Comments, conditionals, unset, source, commands: no variable at this level.
            if label.startswith(("#", "@", ".")):
                continue
            value = _get(node)
            # An array has no value of its own (None when parsed, "" once set via the API).
            if not value:
                items = [_get(c) or "" for c in aug.match(f"{node}/*[{_ITEMS}]")]
                # Items of an array (seq children); without any it is the empty ``VAR=``.
                value = f"({' '.join(items)})" if items else ""
            exported = bool(aug.match(f"{node}/export"))
            variable = found.get(label)
            if variable is None:
                found[label] = Variable([node], [value], exported)
            else:
                variable.nodes.append(node)
                variable.values.append(value)
                variable.exported = variable.exported or exported
        for label in exported_names:
            if label in found:
                found[label].exported = True
        self._cache = found
        return found

    # ----------------------------------------------------------------------------------------
    # Comparing

    def diff(self, other: Self) -> list[ChangeOp]:
        """Ops over the sorted union of names, comparing last values and export flags."""
        mine, theirs = self.variables(), other.variables()
        ops: list[ChangeOp] = []
        for key in sorted(set(mine) | set(theirs)):
            a, b = mine.get(key), theirs.get(key)
            if a is not None and b is not None:
                if a.value == b.value and a.exported == b.exported:
                    continue
                op = ChangeOp("set", [], key)
                if a.value != b.value:
                    op.value, op.old = b.value, a.value
                if a.exported != b.exported:
                    op.extra["export"] = b.exported
                ops.append(op)
            elif a is not None:
                ops.append(ChangeOp("rm", [], key, old=a.value))
            elif b is not None:
                ops.append(ChangeOp("ins", [], key, value=b.value, extra={"export": b.exported}))
        return ops

    def similar(self, other: Self) -> bool:
        """Same names, last values and export flags (comments, order, duplicates ignored)."""
        mine, theirs = self.variables(), other.variables()
        return mine.keys() == theirs.keys() and all(
            mine[k].value == theirs[k].value and mine[k].exported == theirs[k].exported
            for k in mine
        )

    # ----------------------------------------------------------------------------------------
    # Changing

    def apply(self, op: ChangeOp, modes: frozenset[str]) -> PatchResult:
        """Apply one op; shell changes never raise for a mismatch, they just don't apply."""
        if op.path or op.key is None:
            # Variables are flat; there is nothing at a nested path (the original's lookup
            # finds nothing either).
            return PatchResult(False, reason="no such variable path")
        key = str(op.key)
        variable = self.variables().get(key)
        if op.state == "rm":
            return self._apply_rm(key, variable)
        if op.state == "ins":
            return self._apply_ins(key, variable, op, modes)
        return self._apply_set(key, variable, op, modes)

    def _apply_rm(self, key: str, variable: Variable | None) -> PatchResult:
        if variable is None:
            return PatchResult(False)
        old = variable.value
        self._tree.remove(_quote_label(key))
        self._unexport_names(key)
        self._touch()
        return PatchResult(True, old=old)

    def _apply_ins(
        self, key: str, variable: Variable | None, op: ChangeOp, modes: frozenset[str]
    ) -> PatchResult:
        value = self._checked(key, op.value, op)
        export = op.extra.get("export")
        if variable is None:
            self._create(key, value, bool(export))
            return PatchResult(True)
        if variable.value == value:
            # Already there: only a differing export flag is left to do.
            if export is not None and self._set_export(key, bool(export)):
                return PatchResult(True)
            return PatchResult(False)
        if "replace" not in modes:
            return PatchResult(False)
        old = variable.value
        self._replace(key, variable, value)
        if export is not None:
            self._set_export(key, bool(export))
        return PatchResult(True, "replace", old=old)

    def _apply_set(
        self, key: str, variable: Variable | None, op: ChangeOp, modes: frozenset[str]
    ) -> PatchResult:
        export = op.extra.get("export")
        if not op.has_value:
            # Export-only change (the value did not change between the versions).
            if variable is None or export is None:
                return PatchResult(False)
            return PatchResult(self._set_export(key, bool(export)))
        value = self._checked(key, op.value, op)
        replace = "replace" in modes
        if variable is None:
            # The user deleted the variable: only ``replace`` brings it back.
            if not replace:
                return PatchResult(False)
            self._create(key, value, bool(export))
            return PatchResult(True, "replace")
        old = variable.value
        matches = op.has_old and _to_text(op.old) == old
        if not matches and not replace:
            return PatchResult(False)
        self._replace(key, variable, value)
        if export is not None:
            self._set_export(key, bool(export))
        return PatchResult(True, None if matches else "replace", old=old)

    # ----------------------------------------------------------------------------------------
    # Tree edits

    def _touch(self) -> None:
        self._dirty = True
        self._cache = None

    @staticmethod
    def _checked(key: str, value: Any, op: ChangeOp) -> str:
        """The value as shell text; refuse text the lens could not write back (the file would
        then fail to save, far from the op that caused it)."""
        text = _to_text(value)
        array = _ARRAY_VALUE.fullmatch(text)
        if array and array.group(1):
            if _array_items(array.group(1)) is not None:
                return text
        elif _SIMPLE_VALUE.fullmatch(text):
            return text
        raise PatchError(f"Invalid shell value for variable '{key}': {text!r}", op)

    def _write(self, node: str, value: str) -> None:
        """Store ``value`` in the assignment at ``node`` (an absolute path)."""
        aug = handle()
        # Drop array items of a previous value; keep the export flag and comments.
        aug.remove(f"{node}/*[{_ITEMS}]")
        array = _ARRAY_VALUE.fullmatch(value)
        items = _array_items(array.group(1)) if array and array.group(1) else None
        if items:
            aug.set(node, None)
            for index, item in enumerate(items, start=1):
                aug.set(f"{node}/{index}", item)
        else:
            # An empty value is no value at all for the lens (``VAR=``); "" would not render.
            aug.set(node, value or None)

    def _create(self, key: str, value: str, export: bool) -> None:
        """Append a new assignment at the end of the file."""
        aug = handle()
        step = _quote_label(key)
        # Any existing node of that name is gone (``rm`` removes all), so ``last()`` is new.
        aug.set(f"{self._tree.root}/{step}[last()+1]", None)
        node = aug.match(f"{self._tree.root}/{step}[last()]")[0]
        self._write(node, value)
        if export:
            aug.set(f"{node}/export", None)
        self._touch()

    def _replace(self, key: str, variable: Variable, value: str) -> None:
        """Set the value, keeping only the last assignment (and the export flag)."""
        aug = handle()
        keep = variable.nodes[-1]
        if len(variable.nodes) > 1:
            exported_here = bool(aug.match(f"{keep}/export"))
            # Remove from the end so earlier paths (``VAR[1]``...) stay valid meanwhile.
            for node in reversed(variable.nodes[:-1]):
                aug.remove(node)
            keep = aug.match(f"{self._tree.root}/{_quote_label(key)}")[0]
            if variable.exported and not exported_here and not self._in_export_list(key):
                self._flag_export(keep)
        self._write(keep, value)
        self._touch()

    def _in_export_list(self, key: str) -> bool:
        root = self._tree.root
        return any(_get(c) == key for c in handle().match(f"{root}/{EXPORT_NODE}/*"))

    @staticmethod
    def _flag_export(node: str) -> None:
        aug = handle()
        children = aug.match(f"{node}/*")
        # The lens writes ``export`` before the name, so the flag must be the first child.
        if children:
            aug.insert(children[0], "export", True)
        else:
            aug.set(f"{node}/export", None)

    def _unexport_names(self, key: str) -> None:
        """Drop ``key`` from every ``export NAME...`` line; drop lines left without names."""
        aug = handle()
        for statement in reversed(aug.match(f"{self._tree.root}/{EXPORT_NODE}")):
            names = aug.match(f"{statement}/*")
            doomed = [n for n in names if _get(n) == key]
            if not doomed:
                continue
            if len(doomed) == len(names):
                aug.remove(statement)
            else:
                for name in reversed(doomed):
                    aug.remove(name)

    def _set_export(self, key: str, export: bool) -> bool:
        """Make ``key`` (un)exported; whether anything changed."""
        self._cache = None
        variable = self.variables().get(key)
        if variable is None or variable.exported == export:
            return False
        if export:
            self._flag_export(variable.nodes[-1])
        else:
            for node in variable.nodes:
                handle().remove(f"{node}/export")
            self._unexport_names(key)
        self._touch()
        return True

    # ----------------------------------------------------------------------------------------
    # Line format

    @classmethod
    def op_from_line(
        cls,
        state: str,
        components: Sequence[str],
        value: Any = NOTHING,
        annotations: dict[str, Any] | None = None,
    ) -> ChangeOp:
        """Like the generic parser, with shell text values (``5`` → ``"5"``) and ``rm K "v"``
        meaning "remove K" (a shell variable is no collection to remove a value from)."""
        notes = dict(annotations or {})
        if state == "rm" and value is not NOTHING and components:
            notes["old"] = value
            value = NOTHING
        if value is not NOTHING:
            value = _to_text(value)
        if "old" in notes:
            notes["old"] = _to_text(notes["old"])
        return super().op_from_line(state, components, value, notes)


def _clone(tree: AugeasTree) -> AugeasTree:
    """``tree.clone()``, also for an empty text.

    python-augeas returns ``b""`` (bytes) for a node whose value is the empty string, and
    ``AugeasTree.clone`` passes that back to ``set``, which refuses bytes.  An empty text parses
    in no time, so a fresh tree plus a copy of the (possibly edited) nodes does the same job.
    """
    if _get(tree.text_node):
        return tree.clone()
    twin = AugeasTree(tree.lens, "", tree.name)
    if tree.match(""):
        handle().copy(tree.root, twin.root)
    return twin


def _array_items(text: str) -> list[str] | None:
    """Split the inside of ``( ... )`` into items the lens accepts; ``None`` if it can't."""
    items: list[str] = []
    position = 0
    while position < len(text):
        match = _ARRAY_ITEM.match(text, position)
        if match is None:
            return None
        items.append(match.group(0))
        position = match.end()
        gap = re.match(r"[ \t\n]+", text[position:])
        if gap is None:
            return None if position < len(text) else items
        position += gap.end()
    return items
