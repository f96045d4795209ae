"""The one-line change format and the other textual forms of a set of changes.

A line is ``<FILENAME> <COMMAND> <PATH> [<JSON VALUE>] [# <JSON OBJECT>]``:

* ``FILENAME`` is the unprefixed absolute path of a classified file (no spaces);
* ``COMMAND`` is ``set``, ``ins`` or ``rm`` (any case);
* ``PATH`` is one token, components separated by ``/`` (empty components ignored); a token that
  starts with ``"`` is a double-quoted string where ``\\"`` and ``\\\\`` are escapes, otherwise the
  token runs to the next whitespace (``VM_MAD/"kvm"/ARGUMENTS`` needs no quoting);
* ``JSON VALUE`` is any JSON value (scalar, array, object, ``null``);
* the trailing ``# {…}`` annotation is a onetools extension that makes rendered changes lossless:
  ``old`` (the previous value), ``index`` (position in an ordered YAML list), ``export`` (shell
  export flag) and ``multiple`` (oned.conf multi-value key).  The original tool only reads lines
  without it.

Blank lines and lines starting with ``#`` are ignored.  See docs/onecfg.md for examples.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from onetools.config.formats import format_class
from onetools.config.formats.base import ConfigDocument
from onetools.config.ops import NOTHING, STATES, ChangeOp
from onetools.errors import FileParseError, OnetoolsError

ANNOTATION_KEYS = ("old", "index", "export", "multiple")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_DECODER = json.JSONDecoder()


@dataclass
class ParsedLine:
    """The tokens of one change line, before they are turned into an op of some format."""

    filename: str
    state: str
    components: list[str]
    value: Any = NOTHING
    annotations: dict[str, Any] = field(default_factory=dict)


@dataclass
class FileChanges:
    """The changes to one file and the format class they are meant for."""

    format_name: str
    ops: list[ChangeOp] = field(default_factory=list)


# file (unprefixed path) -> its changes, in first-seen order
ChangeSet = dict[str, FileChanges]


def parse_line(line: str, source: str = "<stdin>", lineno: int | None = None) -> ParsedLine | None:
    """Tokenize one line; ``None`` for blank and comment lines."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None

    def fail(message: str) -> FileParseError:
        return FileParseError(message, source, lineno)

    parts = text.split(None, 1)
    if len(parts) < 2:
        raise fail("Invalid format")
    filename, rest = parts
    command_parts = rest.split(None, 1)
    command = command_parts[0].lower()
    if command not in STATES:
        raise fail(f"Invalid patch action '{command_parts[0]}'")
    if len(command_parts) < 2:
        raise fail("Invalid format, missing path")
    rest = command_parts[1].lstrip()
    match = _QUOTED.match(rest)
    if match:
        raw_path = _unquote(match.group(0))
        rest = rest[match.end() :]
        if rest and not rest[0].isspace():
            raise fail("Invalid format, text right after the quoted path")
    elif rest.startswith('"'):
        raise fail("Invalid format, unterminated quoted path")
    else:
        token = rest.split(None, 1)
        raw_path = token[0]
        rest = token[1] if len(token) > 1 else ""
    components = [part for part in raw_path.split("/") if part]
    value, annotations = _parse_value(rest.strip(), fail)
    return ParsedLine(filename, command, components, value, annotations)


def _unquote(token: str) -> str:
    """Decode a quoted path token: JSON string escapes (what we render); for tokens that are not
    valid JSON (e.g. rendered by the original's Ruby ``inspect``), a backslash escapes the next
    character."""
    try:
        decoded = json.loads(token)
    except json.JSONDecodeError:
        return re.sub(r"\\(.)", r"\1", token[1:-1], flags=re.DOTALL)
    return decoded if isinstance(decoded, str) else token[1:-1]


def _parse_value(text: str, fail: Callable[[str], FileParseError]) -> tuple[Any, dict[str, Any]]:
    value: Any = NOTHING
    if text and not text.startswith("#"):
        try:
            value, end = _DECODER.raw_decode(text)
        except json.JSONDecodeError as exc:
            raise fail(f"Error reading line patch ({exc.msg} at column {exc.colno})") from None
        text = text[end:].strip()
    annotations: dict[str, Any] = {}
    if text:
        if not text.startswith("#"):
            raise fail("Error reading line patch (unexpected text after the JSON value)")
        note = text[1:].strip()
        try:
            annotations = json.loads(note)
        except json.JSONDecodeError as exc:
            raise fail(f"Error reading line patch annotation ({exc.msg})") from None
        if not isinstance(annotations, dict):
            raise fail("Error reading line patch annotation (expected a JSON object)")
        unknown = sorted(set(annotations) - set(ANNOTATION_KEYS))
        if unknown:
            raise fail(f"Unknown line patch annotation '{unknown[0]}'")
    return value, annotations


def parse_lines(
    text: str,
    classify: Callable[[str], str | None],
    source: str = "<stdin>",
) -> ChangeSet:
    """Parse a whole line-format document into changes grouped per file.

    ``classify`` maps an unprefixed file name to its format name, or ``None`` when the file is
    unknown or missing (an error, naming the line).
    """
    changes: ChangeSet = {}
    # Split on newlines only: str.splitlines() would also break at \x1c, \x85, \u2028...
    for lineno, line in enumerate(text.split("\n"), start=1):
        parsed = parse_line(line, source, lineno)
        if parsed is None:
            continue
        entry = changes.get(parsed.filename)
        if entry is None:
            format_name = classify(parsed.filename)
            if format_name is None:
                raise FileParseError(
                    f"Unknown or missing file to patch '{parsed.filename}'", source, lineno
                )
            entry = changes[parsed.filename] = FileChanges(format_name)
        entry.ops.append(op_from_parsed(format_class(entry.format_name), parsed, source, lineno))
    return changes


def op_from_parsed(
    cls: type[ConfigDocument],
    parsed: ParsedLine,
    source: str = "<stdin>",
    lineno: int | None = None,
) -> ChangeOp:
    """Turn tokens into an op of the file's format, locating any error at the line."""
    try:
        return cls.op_from_line(parsed.state, parsed.components, parsed.value, parsed.annotations)
    except FileParseError as exc:
        raise FileParseError(exc.reason, source, lineno) from None
    except (OnetoolsError, ValueError, TypeError) as exc:
        raise FileParseError(str(exc), source, lineno) from None


# ---------------------------------------------------------------------------------------------
# Rendering


def _json(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    # Keep one change per line even for values holding Unicode line separators.
    return text.replace("\x85", "\\u0085").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def render_path(components: Iterable[Any]) -> str:
    """Join path components; quote the token when it holds a quote, a space or is empty."""
    joined = "/".join(str(part) for part in components) or "/"
    if re.search(r'["\s\\]', joined) or joined.startswith("#") or not joined.isprintable():
        return _json(joined)
    return joined


def render_op(op: ChangeOp, cls: type[ConfigDocument]) -> str:
    """One op as ``<COMMAND> <PATH> [<JSON>] [# {annotations}]`` (no file name)."""
    components, value, notes = cls.line_annotations(op)
    text = f"{op.state} {render_path(components)}"
    if value is not NOTHING:
        text += f" {_json(value)}"
    if notes:
        text += f" # {_json(notes)}"
    return text


def render_lines(changes: ChangeSet) -> str:
    """The line format of a change set (one ``<file> <op>`` per line)."""
    lines: list[str] = []
    for filename, entry in changes.items():
        cls = format_class(entry.format_name)
        lines.extend(f"{filename} {render_op(op, cls)}" for op in entry.ops)
    return "\n".join(lines) + ("\n" if lines else "")


def render_text(changes: ChangeSet) -> str:
    """The human text form: each file name followed by ``- <op>`` lines."""
    blocks: list[str] = []
    for filename, entry in changes.items():
        cls = format_class(entry.format_name)
        blocks.append("\n".join([filename, *(f"- {render_op(op, cls)}" for op in entry.ops)]))
    return "\n\n".join(blocks) + ("\n" if blocks else "")


def render_yaml(changes: ChangeSet) -> str:
    """The YAML change document: ``patches: {file: {class, change: [ops]}}``."""
    from onetools.config import yamlio

    document = {
        "patches": {
            filename: {"class": entry.format_name, "change": [op.to_dict() for op in entry.ops]}
            for filename, entry in changes.items()
        }
    }
    return yamlio.dump(document)


def parse_yaml(text: str, source: str = "<stdin>") -> ChangeSet:
    """Parse a YAML change document; the class of each file is taken from the document."""
    from onetools.config import yamlio

    document = yamlio.load(text, source)
    if not isinstance(document, dict) or not isinstance(document.get("patches"), dict):
        raise FileParseError("The patch does not contain expected YAML document", source)
    changes: ChangeSet = {}
    for filename, entry in document["patches"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("class"), str):
            raise FileParseError(f"Missing 'class' for file '{filename}'", source)
        format_class(entry["class"])  # unknown class -> clear error
        raw_ops = entry.get("change")
        if raw_ops is None:
            raw_ops = []
        if not isinstance(raw_ops, list):
            raise FileParseError(f"'change' of file '{filename}' must be a list", source)
        ops: list[ChangeOp] = []
        for index, raw in enumerate(raw_ops, start=1):
            try:
                ops.append(ChangeOp.from_dict(raw))
            except ValueError as exc:
                raise FileParseError(f"File '{filename}', change {index}: {exc}", source) from None
        changes[str(filename)] = FileChanges(entry["class"], ops)
    return changes


def detect_format(text: str) -> str:
    """``yaml`` when the first line is ``---`` (as the original decides) or the document starts
    with the ``patches:`` key (the original would misread that as lines), else ``line``."""
    first = text.lstrip("\ufeff").split("\n", 1)[0].strip()
    return "yaml" if first == "---" or first.startswith("patches:") else "line"
