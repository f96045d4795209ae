"""YAML reading and writing with the semantics of Ruby's Psych (the original tool's YAML library).

* ``load`` reads YAML 1.1 as Psych does: ``yes``/``no``/``on``/``off`` (any case) are booleans,
  ``null``/``~``/empty are nil, ``1,000`` and ``0x1f``/``017``/``0b11`` are integers, ``1:20`` is
  sexagesimal; plain scalars ``:name`` (longer than the colon) become ``Symbol(":name")`` while
  the quoted ``":name"`` stays a string; aliases are allowed (each alias gets its own copy of the
  anchored value, so the result is always a tree).  Dates and times stay strings: Psych's safe
  loader would refuse them, and JSON-like data is what the rest of the project handles.
* ``dump`` writes block-style YAML (starting with ``---``, keys in insertion order, no aliases,
  symbols plain, strings that would read back as something else quoted, multi-line strings as
  ``|`` blocks) such that ``load(dump(x))`` equals ``x`` (``strict_equal``).
* ``compose`` gives the node tree with character offsets, used by the YAML config format to edit
  files surgically.  It is built from libyaml's event stream in one pass and constructs the data
  at the same time, so a file is parsed only once.

Facts learned the hard way:

* libyaml's marks are character offsets (not UTF-8 byte offsets) when the input is a ``str``.
* The end mark of a *block* collection is the start of the next token, i.e. after any trailing
  comments and blank lines; block scalars (``|``/``>``) also end after their trailing blank lines.
  ``Node.content_end`` gives the end of the real content.
* libyaml refuses a plain scalar starting with ``:`` inside flow collections (``[a, :b]`` is a
  syntax error), so symbols are never emitted in flow context.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable
from typing import Any, Final

import yaml

from onetools.config.ops import Symbol
from onetools.errors import FileParseError

try:  # The C (libyaml) parser and emitter are several times faster than the Python ones.
    from yaml import CSafeDumper as _BaseDumper
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - PyYAML without libyaml
    from yaml import SafeDumper as _BaseDumper  # type: ignore[assignment]
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

STR: Final = "tag:yaml.org,2002:str"
INT: Final = "tag:yaml.org,2002:int"
FLOAT: Final = "tag:yaml.org,2002:float"
BOOL: Final = "tag:yaml.org,2002:bool"
NULL: Final = "tag:yaml.org,2002:null"
MAP: Final = "tag:yaml.org,2002:map"
SEQ: Final = "tag:yaml.org,2002:seq"
MERGE: Final = "tag:yaml.org,2002:merge"
#: Dates/times: read as strings, but the emitter quotes them (Psych would not read them back).
TIMESTAMP: Final = "tag:yaml.org,2002:timestamp"
#: The tag the emitter uses for a symbol that cannot be written plain (Psych's spelling).
SYMBOL_TAG: Final = "!ruby/symbol"
SYMBOL_TAG_EXPLICIT: Final = "!ruby/sym"

# ---------------------------------------------------------------------------------------------
# Plain scalar resolution (Psych's ScalarScanner rules, restated)

# A plain scalar that starts like a word is a string, unless it is one of the short keywords.
_WORDISH = re.compile(r"[^\d.:-]?[^\W\d]|[^\d.:-]?[_\s!@#$%^&*(){}<>|/\\~;=]")
_NULL = re.compile(r"~|null", re.IGNORECASE)
_TRUE = re.compile(r"yes|true|on", re.IGNORECASE)
_FALSE = re.compile(r"no|false|off", re.IGNORECASE)
_TIME = re.compile(
    r"-?\d{4}-\d{1,2}-\d{1,2}(?:[Tt]|\s+)\d{1,2}:\d\d:\d\d(?:\.\d*)?"
    r"(?:\s*(?:Z|[-+]\d{1,2}:?(?:\d\d)?))?"
)
_DATE = re.compile(r"\d{4}-(?:1[012]|0\d|\d)-(?:[12]\d|3[01]|0\d|\d)")
_INF = re.compile(r"\+?\.inf", re.IGNORECASE)
_NINF = re.compile(r"-\.inf", re.IGNORECASE)
_NAN = re.compile(r"\.nan", re.IGNORECASE)
_SEXA_INT = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9]){1,2}")
_SEXA_FLOAT = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9]){1,2}\.[0-9_]*")
_FLOAT = re.compile(r"[-+]?(?:[0-9][0-9_,]*)?\.[0-9]*(?:[eE][-+][0-9]+)?")
_INT = re.compile(
    r"[-+]?0b[01_,]+|[-+]?0[0-7_,]+|[-+]?(?:0|[1-9](?:[0-9]|,[0-9]|_[0-9])*)|[-+]?0x[0-9a-fA-F_,]+"
)


def resolve_plain(text: str) -> tuple[str, Any]:
    """The tag and value of a plain (unquoted) scalar, as Psych reads it."""
    if not text:
        return NULL, None
    if "\n" in text or _WORDISH.match(text):
        # Psych's shortcut: word-like text is a string unless it is a short keyword.
        if len(text) > 5 or text[0] not in "ytonfYTONF~":
            return STR, text
        if _NULL.fullmatch(text):
            return NULL, None
        if _TRUE.fullmatch(text):
            return BOOL, True
        if _FALSE.fullmatch(text):
            return BOOL, False
        return STR, text
    first = text[0]
    if text == "<<":
        # A merge key when it is a plain mapping key (handled by the composer), else a string;
        # the emitter must quote a "<<" string key.
        return MERGE, text
    if first == "~" and text == "~":
        return NULL, None
    if _TIME.fullmatch(text) or _DATE.fullmatch(text):
        return TIMESTAMP, text
    if first in "+.-":
        if _INF.fullmatch(text):
            return FLOAT, math.inf
        if _NINF.fullmatch(text):
            return FLOAT, -math.inf
        if _NAN.fullmatch(text):
            return FLOAT, math.nan
    if first == ":":
        return (SYMBOL_TAG, Symbol(text)) if len(text) > 1 else (STR, text)
    if _SEXA_INT.fullmatch(text):
        return INT, _sexagesimal(text, int)
    if _SEXA_FLOAT.fullmatch(text):
        return FLOAT, _sexagesimal(text, float)
    if _FLOAT.fullmatch(text):
        if text in (".", "+.", "-."):
            return STR, text
        digits = text.replace(",", "").replace("_", "")
        if digits.endswith("."):
            digits += "0"
        try:
            return FLOAT, float(digits.replace(".e", ".0e").replace(".E", ".0E"))
        except ValueError:
            return STR, text
    if _INT.fullmatch(text):
        value = _parse_int(text.replace(",", "").replace("_", ""))
        if value is not None:
            return INT, value
    return STR, text


def _sexagesimal(text: str, kind: type[int] | type[float]) -> Any:
    sign = -1 if text.startswith("-") else 1
    total: Any = kind(0)
    for part in text.lstrip("+-").replace("_", "").split(":"):
        total = total * 60 + kind(part)
    return sign * total


def _parse_int(text: str) -> int | None:
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    try:
        if body[:2] in ("0b", "0x"):
            return sign * int(body, 0)
        if len(body) > 1 and body.startswith("0"):
            return sign * int(body, 8)
        return sign * int(body)
    except ValueError:
        # Ruby's Integer() also refuses digit-less text such as "0b" or "0x_".
        return None


# ---------------------------------------------------------------------------------------------
# Composing: libyaml events -> nodes with offsets and constructed data

SCALAR: Final = 0
SEQUENCE: Final = 1
MAPPING: Final = 2


class Node:
    """One node of a composed document.

    ``start``/``end`` are character offsets of the node's text (``end`` of a block collection
    lies after trailing comments, see ``content_end``).  ``items`` holds the children: nodes of
    a sequence, ``(key, value)`` pairs of a mapping.  ``data`` is the constructed value.  An
    alias occurrence is its own node (``alias`` is True) whose ``data`` copies the anchored one.
    """

    __slots__ = (
        "alias",
        "anchor",
        "data",
        "end",
        "flow",
        "items",
        "kind",
        "merge",
        "start",
        "style",
    )

    def __init__(self, kind: int, start: int, end: int, data: Any) -> None:
        self.kind = kind
        self.start = start
        self.end = end
        self.data = data
        self.items: list[Any] = []
        self.style: str | None = None
        self.flow = False
        self.anchor: str | None = None
        self.alias = False
        self.merge = False

    @property
    def content_end(self) -> int:
        """Offset just after the last character that belongs to this node's content."""
        node = self
        while not node.flow and not node.alias and node.kind != SCALAR and node.items:
            last = node.items[-1]
            node = last[1] if node.kind == MAPPING else last
        return node.end

    def __repr__(self) -> str:
        return f"Node(kind={self.kind}, {self.start}:{self.end}, {self.data!r})"


class _Composer:
    """Builds ``Node`` trees from libyaml events (one document), constructing data on the way.

    The loop is iterative with a stack of open collections: it is the hot path of loading
    every YAML file, and function calls per event dominate its cost.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.loader = _Loader(text)

    def close(self) -> None:
        self.loader.dispose()

    def document(self) -> Node | None:
        get: Callable[[], Any] = self.loader.get_event
        get()  # stream start
        if type(get()) is yaml.StreamEndEvent:
            return None
        text = self.text
        anchors: dict[str, Node] = {}
        cache = _RESOLVED
        scalar_event = yaml.ScalarEvent
        seq_start = yaml.SequenceStartEvent
        map_start = yaml.MappingStartEvent
        alias_event = yaml.AliasEvent
        # Open collections: [node, pending key node (mappings only), merge sources or None]
        stack: list[list[Any]] = []
        root: Node | None = None
        while True:
            event = get()
            kind = type(event)
            node: Node
            if kind is scalar_event:
                value = event.value
                style = event.style or ""
                tag = event.tag
                if tag is None or tag == "!":
                    if style == "" and event.implicit[0]:
                        found = cache.get(value)
                        if found is None:
                            found = resolve_plain(value)
                            if len(value) < 80 and len(cache) < 100_000:
                                cache[value] = found
                        data: Any = found[1]
                    else:
                        data = value
                else:
                    data = _construct_tagged(tag, value, event)
                start = event.start_mark.index
                end = event.end_mark.index
                if style == "|" or style == ">":
                    # libyaml counts the trailing blank lines as part of a block scalar.
                    while end > start and text[end - 1] in " \t\r\n":
                        end -= 1
                node = Node(SCALAR, start, end, data)
                node.style = style
                if event.anchor is not None:
                    node.anchor = event.anchor
                    anchors[event.anchor] = node
            elif kind is map_start or kind is seq_start:
                is_map = kind is map_start
                node = Node(
                    MAPPING if is_map else SEQUENCE, event.start_mark.index, 0, {} if is_map else []
                )
                node.flow = bool(event.flow_style)
                if event.anchor is not None:
                    node.anchor = event.anchor
                    anchors[event.anchor] = node  # Registered early: detects recursion.
                stack.append([node, None, None])
                continue
            elif kind is alias_event:
                target = anchors.get(event.anchor)
                if target is None:
                    raise _error(f"found undefined alias {event.anchor!r}", event)
                if target.kind != SCALAR and target.end == 0:
                    raise _error(f"found recursive alias {event.anchor!r}", event)
                data = target.data
                if isinstance(data, (dict, list)):
                    # Keep the model a tree: an edit below one alias never leaks elsewhere.
                    data = copy.deepcopy(data)
                node = Node(target.kind, event.start_mark.index, event.end_mark.index, data)
                node.alias = True
                node.anchor = event.anchor
            else:  # collection end
                frame = stack.pop()
                node = frame[0]
                node.end = event.end_mark.index
                if frame[2] is not None:
                    _merge(node, frame[2], event)
            # Attach the finished node to its parent.
            if not stack:
                root = node
                break
            frame = stack[-1]
            parent = frame[0]
            if parent.kind == SEQUENCE:
                parent.items.append(node)
                parent.data.append(node.data)
            elif frame[1] is None:
                frame[1] = node
            else:
                key = frame[1]
                frame[1] = None
                parent.items.append((key, node))
                if key.kind == SCALAR and key.style == "" and key.data == "<<":
                    parent.merge = True
                    if frame[2] is None:
                        frame[2] = []
                    frame[2].append(node)
                    continue
                try:
                    parent.data[key.data] = node.data
                except TypeError:
                    raise _error("found an unhashable key", event) from None
        return root


# Plain scalar text -> (tag, value); configuration files repeat the same scalars a lot.
_RESOLVED: dict[str, tuple[str, Any]] = {}


def _error(problem: str, event: Any) -> yaml.MarkedYAMLError:
    return yaml.MarkedYAMLError(problem=problem, problem_mark=event.start_mark)


def _merge(node: Node, sources: list[Node], event: Any) -> None:
    """Apply ``<<`` merge keys: explicit keys win, then earlier merged mappings."""
    merged: dict[Any, Any] = {}
    for source in sources:
        for item in [source] if source.kind == MAPPING else source.items:
            if item.kind != MAPPING:
                raise _error("expected a mapping for merging", event)
            for key, value in item.data.items():
                merged.setdefault(key, copy.deepcopy(value))
    for key, value in node.data.items():
        merged[key] = value
    node.data = merged


def _construct_tagged(tag: str, value: str, event: Any) -> Any:
    """A scalar with an explicit tag (``!!str 1``, ``!ruby/symbol x``...)."""
    if tag == STR:
        return value
    if tag in (SYMBOL_TAG, SYMBOL_TAG_EXPLICIT):
        return Symbol(value if value.startswith(":") else ":" + value)
    if tag in (INT, FLOAT, BOOL, NULL):
        resolved, data = resolve_plain(value)
        if resolved == tag or (tag == FLOAT and resolved == INT):
            return float(data) if tag == FLOAT else data
        raise _error(f"invalid value {value!r} for tag {tag}", event)
    # Any other tag: keep the text (tolerant; Psych would refuse most of them).
    return value


def compose(text: str, name: str = "<string>") -> Node | None:
    """The first document of ``text`` as a ``Node`` tree with data (``None`` when empty).

    Later documents are ignored, as Psych's ``load`` does.  Raises ``FileParseError``.
    """
    composer: _Composer | None = None
    try:
        composer = _Composer(text)
        return composer.document()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        message = str(exc.problem or exc.context or "invalid YAML")
        raise FileParseError(f"Failed to parse file ({message})", name, line) from None
    except yaml.YAMLError as exc:
        raise FileParseError(f"Failed to parse file ({exc})", name) from None
    except RecursionError:
        raise FileParseError("Failed to parse file (too deeply nested)", name) from None
    except (UnicodeError, ValueError, TypeError, OverflowError) as exc:
        raise FileParseError(f"Failed to parse file ({exc})", name) from None
    finally:
        if composer is not None:
            composer.close()


def load(text: str, name: str = "<string>") -> Any:
    """The data of the first YAML document in ``text`` (``None`` for an empty document)."""
    node = compose(text, name)
    return None if node is None else node.data


# ---------------------------------------------------------------------------------------------
# Emitting


def _resolve_for_emitter(kind: Any, value: Any, implicit: tuple[bool, bool]) -> str:
    """Which tag the loader would give ``value``: the emitter quotes a string when plain text
    would read back as something else.  Using our resolver keeps ``load(dump(x)) == x``."""
    if kind is yaml.ScalarNode:
        if implicit[0]:
            return resolve_plain(value)[0]
        return STR
    if kind is yaml.SequenceNode:
        return SEQ
    return MAP


class _Dumper(_BaseDumper):
    """PyYAML's (C) emitter with Psych-compatible scalar resolution and symbols."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        return _resolve_for_emitter(kind, value, implicit)

    def ignore_aliases(self, data: Any) -> bool:
        return True


_LINE_BREAKS = re.compile("[\r\x85\u2028\u2029]")


def _represent_str(dumper: _Dumper, data: str) -> yaml.ScalarNode:
    style: str | None = None
    if "\n" in data:
        # A literal block keeps the text readable; other line-break characters would be
        # normalized to "\n" inside a block, so such strings stay double-quoted.
        style = '"' if _LINE_BREAKS.search(data) else "|"
    return dumper.represent_scalar(STR, data, style=style)


def _plain_symbol(text: str) -> bool:
    """Whether libyaml will surely write this symbol text as a plain scalar (conservative)."""
    return (
        len(text) > 1
        and text.isprintable()
        and max(text) <= "\ufffd"  # libyaml escapes characters beyond the BMP
        and not text[1].isspace()
        and not text[-1].isspace()
        and not text.endswith(":")
        and ": " not in text
        and " #" not in text
    )


def _represent_symbol(dumper: _Dumper, data: Symbol) -> yaml.ScalarNode:
    text = str.__str__(data)
    if _plain_symbol(text):
        return dumper.represent_scalar(SYMBOL_TAG, text)
    # A symbol that cannot be plain is written with an explicit tag the resolver never gives
    # (with the resolved tag, libyaml would fall back to the non-specific "!", i.e. a string).
    return dumper.represent_scalar(SYMBOL_TAG_EXPLICIT, text, style='"')


def _represent_float(dumper: _Dumper, data: float) -> yaml.ScalarNode:
    if math.isnan(data):
        text = ".nan"
    elif math.isinf(data):
        text = ".inf" if data > 0 else "-.inf"
    else:
        text = repr(data).lower()
        if "." not in text:
            mantissa, _, exponent = text.partition("e")
            text = f"{mantissa}.0" + (f"e{exponent}" if exponent else "")
        if "e" in text and text.split("e")[1][0] not in "+-":
            text = text.replace("e", "e+")
    return dumper.represent_scalar(FLOAT, text)


_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(Symbol, _represent_symbol)
_Dumper.add_representer(float, _represent_float)

# No line folding: long values stay on one line, as in the stock files.
_WIDTH: Final = 1 << 30


def dump(data: Any, indent: int = 2) -> str:
    """Block-style YAML for ``data``, starting with ``---`` (see the module docstring)."""
    text: str = yaml.dump(
        data,
        Dumper=_Dumper,
        explicit_start=True,
        default_flow_style=False,
        sort_keys=False,
        allow_unicode=True,
        width=_WIDTH,
        indent=indent,
    )
    return text


def dump_fragment(data: Any, indent: int = 2) -> str:
    """``data`` as a block at column 0 without document markers (no trailing newline).

    A scalar or an empty collection gives one line (or a ``|`` block header and its lines);
    callers shift continuation lines to the column they need.
    """
    text: str = yaml.dump(
        data,
        Dumper=_Dumper,
        explicit_start=False,
        default_flow_style=False,
        sort_keys=False,
        allow_unicode=True,
        width=_WIDTH,
        indent=indent,
    )
    if text.endswith("\n...\n"):
        text = text[: -len("...\n")]
    return text.rstrip("\n") if not text.endswith("\n\n") else text[:-1]


def dump_flow(data: Any) -> str | None:
    """``data`` in flow style on one line, or ``None`` when flow style cannot hold it
    (symbols, multi-line strings)."""
    if _has_symbol_or_break(data):
        return None
    text: str = yaml.dump(
        data,
        Dumper=_Dumper,
        explicit_start=False,
        default_flow_style=True,
        sort_keys=False,
        allow_unicode=True,
        width=_WIDTH,
    )
    if text.endswith("\n...\n"):
        text = text[: -len("...\n")]
    text = text.rstrip("\n")
    return None if "\n" in text else text


def _has_symbol_or_break(data: Any) -> bool:
    if isinstance(data, Symbol):
        return True
    if isinstance(data, str):
        return "\n" in data
    if isinstance(data, dict):
        return any(_has_symbol_or_break(k) or _has_symbol_or_break(v) for k, v in data.items())
    if isinstance(data, list):
        return any(_has_symbol_or_break(item) for item in data)
    return False
