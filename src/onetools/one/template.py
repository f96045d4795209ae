"""OpenNebula template text: ``NAME = "x"``, vector attributes ``DISK = [ IMAGE_ID = "3" ]``.

``render`` builds the text every ``allocate``/``update`` call accepts from a mapping; values
are quoted and escaped as oned's template parser expects (``"`` and ``\\`` backslashed).
``parse`` reads either form oned accepts (text or ``<TEMPLATE>`` XML) into a ``Template``,
the ordered multimap the embedded store works on.
"""

from __future__ import annotations

import re
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


# ---- parsing -------------------------------------------------------------------------------
#: Attribute names oned accepts (letters, digits, ``_``, ``-``, ``.``; no leading digit so the
#: name is also a valid XML element name).
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.")


class Template:
    """An OpenNebula template as oned keeps it: an ordered multimap of attribute name to value.

    Names are upper-case.  A value is a string or, for a vector attribute, a list of
    ``(NAME, value)`` pairs.  Repeated names are kept in document order.
    """

    __slots__ = ("attributes",)

    def __init__(self, attributes: list[tuple[str, Any]] | None = None) -> None:
        self.attributes: list[tuple[str, Any]] = list(attributes or [])

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first scalar value of ``name`` (``default`` when absent or a vector)."""
        for key, value in self.attributes:
            if key == name and isinstance(value, str):
                return value
        return default

    def get_all(self, name: str) -> list[Any]:
        return [value for key, value in self.attributes if key == name]

    def vectors(self, name: str) -> list[list[tuple[str, str]]]:
        return [value for key, value in self.attributes if key == name and isinstance(value, list)]

    def has(self, name: str) -> bool:
        return any(key == name for key, _ in self.attributes)

    def remove(self, name: str) -> list[Any]:
        """Remove every attribute called ``name``; their values."""
        removed = [value for key, value in self.attributes if key == name]
        self.attributes = [(key, value) for key, value in self.attributes if key != name]
        return removed

    def pop(self, name: str, default: str | None = None) -> str | None:
        """Remove ``name``; its first scalar value (``default`` when absent)."""
        values = [v for v in self.remove(name) if isinstance(v, str)]
        return values[0] if values else default

    def set(self, name: str, value: Any) -> None:
        """Replace every ``name`` by one attribute with ``value``."""
        self.remove(name)
        self.attributes.append((name, value))

    def add(self, name: str, value: Any) -> None:
        self.attributes.append((name, value))

    def merge(self, other: Template) -> None:
        """oned's merge (update type 1): each name in ``other`` replaces all its old values."""
        names = {key for key, _ in other.attributes}
        self.attributes = [(k, v) for k, v in self.attributes if k not in names]
        self.attributes.extend(other.attributes)

    def sorted(self) -> list[tuple[str, Any]]:
        """The attributes as oned writes them: by name (stable for repeated names), vector
        members by name too."""
        result: list[tuple[str, Any]] = []
        for key, value in sorted(self.attributes, key=lambda item: item[0]):
            if isinstance(value, list):
                value = sorted(value, key=lambda item: item[0])
            result.append((key, value))
        return result

    def copy(self) -> Template:
        return Template([(k, list(v) if isinstance(v, list) else v) for k, v in self.attributes])

    def __repr__(self) -> str:
        return f"Template({self.attributes!r})"


#: Characters XML 1.0 cannot hold (object bodies are XML).
NOT_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def parse(text: str) -> Template:
    """Parse template text or ``<TEMPLATE>`` XML (a first non-blank ``<`` selects XML), as oned's
    ``Template::parse_str_or_xml``.  Errors raise ``InternalError`` (``Parse error: …``)."""
    if text.lstrip().startswith("<"):
        return parse_xml(text)
    bad = NOT_XML_CHARS.search(text)
    if bad is not None:
        from onetools.one.errors import InternalError

        # Values end up in XML bodies, which cannot hold control characters.
        line = text.count("\n", 0, bad.start()) + 1
        raise InternalError(
            f"Parse error: invalid character {bad.group()!r} at line {line} (not allowed in XML)"
        )
    return _TextParser(text).parse()


def parse_xml(text: str) -> Template:
    """The XML form: the root's children are attributes; an element with children is a vector."""
    import xml.etree.ElementTree as ET

    from onetools.one.errors import InternalError

    try:
        root = ET.fromstring(text.strip())
    except ET.ParseError as exc:
        raise InternalError(f"Parse error: XML Template could not be parsed ({exc})") from None
    template = Template()
    for child in root:
        name = child.tag.upper()
        if len(child):
            template.add(name, [(sub.tag.upper(), sub.text or "") for sub in child])
        else:
            template.add(name, child.text or "")
    return template


class _TextParser:
    """A scanner of the template grammar: ``NAME = value`` lines, ``NAME = [ K = V, ... ]``
    vectors (which may span lines), ``"quoted"`` values with ``\\"``/``\\\\`` escapes, and
    ``#`` comments.  Unquoted values run to the end of the line (or to ``,``/``]`` in a vector)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.line_start = 0

    def error(self, unexpected: str, expecting: str) -> Exception:
        from onetools.one.errors import InternalError

        column = self.pos - self.line_start + 1
        return InternalError(
            f"Parse error: syntax error, unexpected {unexpected}, expecting {expecting} "
            f"at line {self.line}, columns {column}:{column + 1}"
        )

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def advance(self) -> str:
        char = self.text[self.pos]
        self.pos += 1
        if char == "\n":
            self.line += 1
            self.line_start = self.pos
        return char

    def skip_blanks(self, newlines: bool) -> None:
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "#":
                while self.pos < len(self.text) and self.text[self.pos] != "\n":
                    self.pos += 1
            elif char in " \t\r" or (newlines and char == "\n"):
                self.advance()
            else:
                return

    def token_name(self) -> str:
        char = self.peek()
        if not char:
            return "$end"
        if char == "\n":
            return "new line"
        return f"'{char}'"

    def name(self) -> str:
        start = self.pos
        while self.peek() and self.peek() in _NAME_CHARS:
            self.advance()
        name = self.text[start : self.pos]
        if not name or name[0].isdigit() or name[0] in "-.":
            self.pos = start
            raise self.error(self.token_name(), "VARIABLE")
        return name.upper()

    def expect_equal(self) -> None:
        self.skip_blanks(newlines=False)
        if self.peek() != "=":
            raise self.error(self.token_name(), "EQUAL")
        self.advance()
        self.skip_blanks(newlines=False)

    def quoted(self) -> str:
        self.advance()  # the opening quote
        parts: list[str] = []
        while True:
            char = self.peek()
            if not char:
                raise self.error("$end", "'\"' (unterminated string)")
            self.advance()
            if char == '"':
                return "".join(parts)
            if char == "\\" and self.peek() in ('"', "\\"):
                parts.append(self.advance())
            else:
                parts.append(char)

    def unquoted(self, stops: str) -> str:
        start = self.pos
        while self.peek() and self.peek() not in stops:
            self.advance()
        return self.text[start : self.pos].strip()

    def parse(self) -> Template:
        template = Template()
        while True:
            self.skip_blanks(newlines=True)
            if not self.peek():
                return template
            name = self.name()
            self.expect_equal()
            char = self.peek()
            if char == "[":
                self.advance()
                template.add(name, self.vector())
            elif char == '"':
                template.add(name, self.quoted())
            else:
                template.add(name, self.unquoted("\n#"))
            self.skip_blanks(newlines=False)
            if self.peek() not in ("", "\n"):
                raise self.error(self.token_name(), "new line")

    def vector(self) -> list[tuple[str, str]]:
        pairs: list[tuple[str, str]] = []
        while True:
            self.skip_blanks(newlines=True)
            if self.peek() == "]":
                self.advance()
                return pairs
            if pairs:
                if self.peek() != ",":
                    raise self.error(self.token_name(), "COMMA or CBRACKET")
                self.advance()
                self.skip_blanks(newlines=True)
            name = self.name()
            self.expect_equal()
            if self.peek() == '"':
                value = self.quoted()
            elif self.peek() == "[":
                raise self.error("'['", "STRING (vectors do not nest)")
            else:
                value = self.unquoted(",]\n#")
            pairs.append((name, value))
