"""The interface every configuration-file format implements.

A format class parses text into a document (``parse``), renders it back (``render``), compares two
documents (``same``, ``similar``, ``diff``) and applies changes (``patch``).  Parsing then rendering
an unmodified document gives back the exact input text.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, Self

from onetools.config.ops import NOTHING, ChangeOp, PatchResult


class ConfigDocument(ABC):
    """A parsed configuration file of one format."""

    #: The class name used in files.yaml, change documents and descriptors (``Augeas::ONE``...).
    format_name: ClassVar[str]
    #: Modes an upgrade adds for this format unless ``--patch-strict`` (reference §2.1).
    safe_modes: ClassVar[frozenset[str]] = frozenset()
    #: Whether line-format strings starting with ``:`` become symbols for this format.
    symbols: ClassVar[bool] = False

    def __init__(self, name: str = "<string>") -> None:
        self.name = name
        self.warnings: list[str] = []

    @classmethod
    @abstractmethod
    def parse(cls, text: str, name: str = "<string>") -> Self:
        """Parse ``text``; raise ``FileParseError`` (with the line when known) if it is invalid."""

    @abstractmethod
    def render(self) -> str:
        """The file's text; byte-identical to the parsed text while nothing was changed."""

    @abstractmethod
    def diff(self, other: Self) -> list[ChangeOp]:
        """The changes that turn this document into ``other`` (empty when similar)."""

    @abstractmethod
    def apply(self, op: ChangeOp, modes: frozenset[str]) -> PatchResult:
        """Apply one change in place; raise a ``PatchError`` when it cannot and no mode helps."""

    def same(self, other: ConfigDocument) -> bool:
        """Identical rendered text."""
        return self.render() == other.render()

    def similar(self, other: Self) -> bool:
        """Same meaning: identical text or no semantic difference."""
        return self.same(other) or not self.diff(other)

    def snapshot(self) -> Any:
        """Opaque state for ``restore`` (used to undo a failed multi-op patch)."""
        return copy.deepcopy(self.__dict__)

    def restore(self, state: Any) -> None:
        self.__dict__.update(state)

    def patch(self, ops: Iterable[ChangeOp], modes: Iterable[str] = ()) -> list[PatchResult]:
        """Apply ``ops`` in order; all or nothing: any error restores the document and re-raises."""
        mode_set = frozenset(modes)
        saved = self.snapshot()
        results: list[PatchResult] = []
        try:
            for op in ops:
                results.append(self.apply(op, mode_set))
        except BaseException:
            self.restore(saved)
            raise
        return results

    @classmethod
    def op_from_line(
        cls,
        state: str,
        components: Sequence[str],
        value: Any = NOTHING,
        annotations: dict[str, Any] | None = None,
    ) -> ChangeOp:
        """Build an op from a parsed line (reference §4.2); formats refine this.

        ``components`` is the path split on ``/``; ``value`` is the decoded JSON value or
        ``NOTHING``; ``annotations`` are the onetools extensions (``old``, ``index``, ``export``,
        ``multiple``) that make rendered lines lossless.
        """
        notes = dict(annotations or {})
        path = list(components)
        key = path.pop() if path else None
        extra: dict[str, Any] = {}
        for name in ("index", "export", "multiple"):
            if name in notes:
                extra[name] = notes[name]
        if state == "rm":
            if value is NOTHING:
                return ChangeOp(
                    "rm", path, key, old=notes.get("old", NOTHING), extra=extra, from_line=True
                )
            if key is not None:
                path.append(key)
            return ChangeOp("rm", path, None, old=value, extra=extra, from_line=True)
        if state == "set":
            old = notes.get("old", value)
            return ChangeOp("set", path, key, value=value, old=old, extra=extra, from_line=True)
        return ChangeOp(
            "ins",
            path,
            key,
            value=value,
            old=notes.get("old", NOTHING),
            extra=extra,
            from_line=True,
        )

    @classmethod
    def line_annotations(cls, op: ChangeOp) -> tuple[list[Any], Any, dict[str, Any]]:
        """How ``op`` renders as a line: (components, value or NOTHING, annotations).

        The inverse of ``op_from_line``; formats override it where their ops need more.
        """
        notes: dict[str, Any] = {
            k: op.extra[k] for k in ("index", "export", "multiple") if k in op.extra
        }
        if op.state == "rm":
            if op.key is None and op.has_old:
                return list(op.path), op.old, notes
            if op.has_old:
                notes["old"] = op.old
            return op.full_path(), NOTHING, notes
        if op.state == "set":
            if op.has_old and not _equal(op.old, op.value):
                notes["old"] = op.old
            return op.full_path(), op.value, notes
        if op.has_old:
            notes["old"] = op.old
        return op.full_path(), op.value, notes


def _equal(left: Any, right: Any) -> bool:
    from onetools.config.ops import strict_equal

    return strict_equal(left, right)
