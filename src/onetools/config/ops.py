"""The change model: one typed change operation (``ChangeOp``) and the values it carries.

A change says how to turn one version of a configuration file into another.  It addresses a
container by ``path`` (a list of components from the root) and an element inside it by ``key``
(``None`` for a list element, a whole section or the root).  ``state`` is ``set`` (change),
``ins`` (add) or ``rm`` (remove); ``value`` is the new value, ``old`` the previous one; ``extra``
carries format-specific facts: ``multiple`` (oned.conf multi-value keys), ``index`` (ordered YAML
lists) and ``export`` (shell variables).  The dictionary form (``to_dict``/``from_dict``) is the
one used in YAML change documents and upgrade descriptors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final

STATES: Final = ("set", "ins", "rm")
PATCH_MODES: Final = ("skip", "force", "replace")


class _Nothing:
    """Marks an absent ``value``/``old`` (distinct from ``None``, which is YAML's null)."""

    _instance: _Nothing | None = None

    def __new__(cls) -> _Nothing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NOTHING"

    def __bool__(self) -> bool:
        return False


NOTHING: Final = _Nothing()


class Symbol(str):
    """A Ruby symbol as found in OpenNebula's YAML files: the plain scalar ``:port``.

    The text includes the leading colon.  A symbol is never equal to the string with the same
    text (``Symbol(":a") != ":a"``), as in Ruby, so ``:port`` and ``":port"`` stay distinct keys.
    """

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Symbol) and str.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(("Symbol", str.__str__(self)))

    def __repr__(self) -> str:
        return f"Symbol({str.__repr__(self)})"


def is_symbol_text(text: str) -> bool:
    """Whether a line-format string stands for a symbol (``:x``, more than the colon)."""
    return len(text) > 1 and text.startswith(":")


def symbolize(value: Any) -> Any:
    """Turn every string starting with ``:`` inside ``value`` into a ``Symbol`` (keys too)."""
    if isinstance(value, Symbol):
        return value
    if isinstance(value, str):
        return Symbol(value) if is_symbol_text(value) else value
    if isinstance(value, list):
        return [symbolize(item) for item in value]
    if isinstance(value, dict):
        return {symbolize(k): symbolize(v) for k, v in value.items()}
    return value


def strict_equal(left: Any, right: Any, ordered: bool = True) -> bool:
    """Deep equality where types must match exactly (``1 != 1.0 != True != "1"``).

    Dicts compare as key sets with equal values; lists element-wise when ``ordered``, else as
    multisets (a one-to-one matching in any order).
    """
    if type(left) is not type(right):
        return False
    if isinstance(left, dict):
        if len(left) != len(right):
            return False
        for key, value in left.items():
            if key not in right or not strict_equal(value, right[key], ordered):
                return False
        return True
    if isinstance(left, list):
        if len(left) != len(right):
            return False
        if ordered:
            return all(strict_equal(a, b, ordered) for a, b in zip(left, right, strict=True))
        pending = list(right)
        for item in left:
            for index, candidate in enumerate(pending):
                if strict_equal(item, candidate, ordered):
                    del pending[index]
                    break
            else:
                return False
        return True
    if isinstance(left, float) and math.isnan(left):
        return math.isnan(right)
    return bool(left == right)


@dataclass(eq=False)
class ChangeOp:
    """One change to one configuration file (see the module docstring)."""

    state: str
    path: list[Any] = field(default_factory=list)
    key: Any = None
    value: Any = NOTHING
    old: Any = NOTHING
    extra: dict[str, Any] = field(default_factory=dict)
    # True when the op was parsed from the line format (the original's ``hintings`` flag); it
    # changes how a few YAML operations apply, but is not part of the op's identity.
    from_line: bool = False

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"invalid change state {self.state!r}")

    @property
    def has_value(self) -> bool:
        return self.value is not NOTHING

    @property
    def has_old(self) -> bool:
        return self.old is not NOTHING

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ChangeOp):
            return NotImplemented
        return (
            self.state == other.state
            and strict_equal(list(self.path), list(other.path))
            and strict_equal(self.key, other.key)
            and _same_slot(self.value, other.value)
            and _same_slot(self.old, other.old)
            and strict_equal(self.extra, other.extra)
        )

    __hash__ = None  # type: ignore[assignment]

    def full_path(self) -> list[Any]:
        """Path and key as one list (the key omitted when ``None``)."""
        return [*self.path, self.key] if self.key is not None else list(self.path)

    def to_dict(self) -> dict[str, Any]:
        """The dictionary form used by YAML change documents (keys in the original's order)."""
        out: dict[str, Any] = {"path": list(self.path), "key": self.key}
        if self.has_value:
            out["value"] = self.value
        if self.has_old:
            out["old"] = self.old
        out["state"] = self.state
        out["extra"] = dict(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChangeOp:
        """Build an op from its dictionary form; raises ``ValueError`` on a malformed one."""
        if not isinstance(data, dict):
            raise ValueError(f"a change must be a mapping, got {type(data).__name__}")
        state = data.get("state")
        if state not in STATES:
            raise ValueError(f"invalid change state {state!r}")
        path = data.get("path") or []
        if not isinstance(path, list):
            raise ValueError("change 'path' must be a list")
        extra = data.get("extra") or {}
        if not isinstance(extra, dict):
            raise ValueError("change 'extra' must be a mapping")
        extra = {str(k): v for k, v in extra.items() if str(k) != "hintings"}
        return cls(
            state=str(state),
            path=list(path),
            key=data.get("key"),
            value=data.get("value", NOTHING),
            old=data.get("old", NOTHING),
            extra=extra,
        )


def _same_slot(left: Any, right: Any) -> bool:
    if left is NOTHING or right is NOTHING:
        return left is right
    return strict_equal(left, right)


@dataclass
class PatchResult:
    """What applying one op did: ``applied`` (the original's status), the mode that made it
    apply or skip (``skip``/``force``/``replace``) and the value(s) it replaced."""

    applied: bool
    mode: str | None = None
    old: Any = NOTHING
    reason: str | None = None
