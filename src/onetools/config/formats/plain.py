"""``Simple`` files (XML, ERB templates, driver defaults...): opaque text changed by unified diffs.

The whole file is one value.  A difference is one ``set`` op at the root whose value is a unified
diff (reference §3.3); applying it replays the diff with offset and fuzz tolerance
(``onetools.config.unidiff``), so a user's unrelated edits elsewhere in the file survive.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

from onetools.config.formats.base import ConfigDocument
from onetools.config.ops import NOTHING, ChangeOp, PatchResult
from onetools.config.unidiff import DiffApplyError, apply_diff, make_diff
from onetools.errors import PatchError


class PlainDocument(ConfigDocument):
    """A file handled as plain text."""

    format_name = "Simple"
    safe_modes = frozenset()

    def __init__(self, text: str = "", name: str = "<string>") -> None:
        super().__init__(name)
        self.text = text

    @classmethod
    def parse(cls, text: str, name: str = "<string>") -> Self:
        """Any text is valid."""
        return cls(text, name)

    def render(self) -> str:
        return self.text

    def diff(self, other: Self) -> list[ChangeOp]:
        """One root ``set`` carrying the unified diff (no ``old``), or nothing when equal."""
        patch_text = make_diff(self.text, other.text)
        if not patch_text:
            return []
        return [ChangeOp("set", [], None, value=patch_text)]

    def similar(self, other: Self) -> bool:
        """Text has no structure to compare loosely: similar means identical."""
        return self.same(other)

    def apply(self, op: ChangeOp, modes: frozenset[str]) -> PatchResult:
        """Replay the op's diff; with ``skip`` a diff that does not apply is skipped."""
        if op.state != "set":
            # The original aborts on anything but a diff (FatalError there); a PatchError makes
            # the caller abandon the file the same way.
            raise PatchError(f"Unsupported operation '{op.state}' for Simple file", op)
        if not isinstance(op.value, str):
            raise PatchError("Simple file change must carry a unified diff text", op)
        try:
            self.text = apply_diff(self.text, op.value)
        except DiffApplyError as exc:
            if "skip" in modes:
                return PatchResult(False, "skip", reason=exc.message)
            exc.op = op
            raise
        return PatchResult(True)

    @classmethod
    def op_from_line(
        cls,
        state: str,
        components: Sequence[str],
        value: Any = NOTHING,
        annotations: dict[str, Any] | None = None,
    ) -> ChangeOp:
        """``set / "<diff>"`` is exactly the op ``diff`` makes: no ``old`` (the generic
        line parser would copy the value into ``old``)."""
        op = super().op_from_line(state, components, value, annotations)
        if state == "set" and not op.path and op.key is None:
            notes = annotations or {}
            op.old = notes.get("old", NOTHING)
        return op
