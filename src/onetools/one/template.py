"""OpenNebula template text: ``NAME = "x"``, vector attributes ``DISK = [ IMAGE_ID = "3" ]``.

``render`` builds the text every ``allocate``/``update`` call accepts from a mapping; values
are quoted and escaped as oned's template parser expects (``"`` and ``\\`` backslashed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def quote(value: Any) -> str:
    """A template value in double quotes, with ``\\`` and ``"`` escaped."""
    text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _vector(values: Mapping[str, Any]) -> str:
    inner = ",\n  ".join(f"{key.upper()} = {quote(value)}" for key, value in values.items())
    return f"[\n  {inner} ]"


def render(attributes: Mapping[str, Any]) -> str:
    """Template text for ``attributes``: a mapping value is a vector attribute, a list value
    repeats the attribute once per element (scalars or mappings), ``None`` is skipped."""
    lines: list[str] = []
    for key, value in attributes.items():
        name = key.upper()
        items: Sequence[Any] = (
            value if isinstance(value, Sequence) and not isinstance(value, str) else [value]
        )
        for item in items:
            if item is None:
                continue
            if isinstance(item, Mapping):
                lines.append(f"{name} = {_vector(item)}")
            else:
                lines.append(f"{name} = {quote(item)}")
    return "\n".join(lines) + ("\n" if lines else "")
