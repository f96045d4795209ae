"""Command-line conventions shared by the tools that talk to OpenNebula.

``oneprovider`` uses it now; ``oneprovision``, ``onemarket`` and ``onemarketapp`` reuse it.
It follows the original CLIs (``reference/oneprovision.md`` §1.1):

* connection options ``--endpoint``/``--user``/``--password``/``--home`` → ``connect()``, and
  the logging flags ``-v/--verbose`` and ``-D/--debug`` (``connection_parent``);
* ``-x/--xml``, ``-j/--json``, ``-y/--yaml`` on show and list (``format_parent``), printed by
  ``emit_object``/``emit_pool`` in the shapes of ``xmlrpc.md`` §3.2;
* the list table options ``-l/--list``, ``--csv``, ``--csv-del``, ``--filter``, ``--operator``,
  ``--no-header``, ``--adjust`` (``table_parent``), over columns declared once per tool
  (``Column``) and rendered by ``render_table``;
* object arguments by ID or NAME and lists/ranges such as ``1,8..15`` (``resolve_ids``).

Nothing heavy is imported here: ``--help`` and listing must stay fast.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

from onetools.cli._options import terminal_width as terminal_width
from onetools.errors import UsageError

TYPE_CHECKING = False  # typing costs ~20 ms of start-up: annotations only
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from typing import Any

    from onetools.one.api import OneApi, Permissions
    from onetools.one.xml import OneObject


#: Options before the command that take a value (the value is not the command).
VALUE_OPTIONS = frozenset({"--endpoint", "--user", "--password", "--home"})


def command_of(tokens: Sequence[str], commands: Iterable[str]) -> str | None:
    """The command named in ``tokens``: the first word that is not an option or an option's
    value; None when there is none or it is not one of ``commands``.  The tools build only the
    chosen command's options (start-up time), so they must find it before argparse runs."""
    skip = False
    for token in tokens:
        if skip:
            skip = False
        elif token in VALUE_OPTIONS:
            skip = True
        elif not token.startswith("-"):
            return token if token in commands else None
    return None


def read_text_file(path: str, allow_stdin: bool = True) -> str:
    """A UTF-8 input file (``-`` is standard input when ``allow_stdin``); one clear
    ``UsageError`` when it is missing or unreadable."""
    try:
        if allow_stdin and path == "-":
            return sys.stdin.read()
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        raise UsageError(f"File {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise UsageError(f"Cannot read {path}: {reason}") from None


def edit_text(text: str, prefix: str, suffix: str) -> str:
    """``text`` edited in ``$EDITOR`` (default vi) through a 0600 temporary file that is
    removed afterwards (it may hold secrets in clear).  The editor failing changes nothing."""
    import shlex
    import subprocess
    import tempfile

    command = shlex.split(os.environ.get("EDITOR") or "vi")
    descriptor, path = tempfile.mkstemp(prefix=prefix, suffix=suffix)  # mkstemp: mode 0600
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        try:
            status = subprocess.call([*command, path])
        except OSError as exc:
            raise UsageError(f"Cannot run the editor {command[0]}: {exc.strerror}") from None
        if status != 0:
            raise UsageError(f"The editor exited with status {status}: nothing changed")
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    finally:
        os.unlink(path)


# -- connection and logging ---------------------------------------------------------------------
def connection_parent() -> argparse.ArgumentParser:
    """``--endpoint``, ``--user``, ``--password``, ``--home``, ``-v/--verbose``, ``-D/--debug``.

    Defaults are ``SUPPRESS`` so the options work before and after the subcommand (the parent
    is attached to both); read them with ``getattr(args, name, None)``.
    """
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection")
    suppress = argparse.SUPPRESS
    group.add_argument(
        "--endpoint",
        metavar="URL",
        default=suppress,
        help="XML-RPC endpoint of an OpenNebula front-end (else $ONE_XMLRPC, "
        "~/.one/one_endpoint; none: the embedded store)",
    )
    group.add_argument(
        "--user", metavar="NAME", default=suppress, help="user name (with --password)"
    )
    group.add_argument(
        "--password", metavar="PW", default=suppress, help="password (else $ONE_AUTH file)"
    )
    group.add_argument(
        "--home",
        metavar="DIR",
        default=suppress,
        help="embedded store directory (else $ONETOOLS_HOME, ~/.onetools)",
    )
    logging = parent.add_argument_group("logging")
    logging.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=suppress,
        help="show informational messages",
    )
    logging.add_argument(
        "-D",
        "--debug",
        action="store_true",
        default=suppress,
        help="show debug messages and tracebacks",
    )
    return parent


def log_line(level: str, message: str) -> None:
    """A ``LEVEL : message`` line on stderr, as the originals print them."""
    sys.stderr.write(f"{level:<5} : {message}\n")


def open_one(args: argparse.Namespace) -> OneApi:
    """Connect as the options and environment say; with ``-v`` say which backend is used."""
    from onetools.one.connect import connect

    one = connect(
        endpoint=getattr(args, "endpoint", None),
        user=getattr(args, "user", None),
        password=getattr(args, "password", None),
        home=getattr(args, "home", None),
    )
    if getattr(args, "verbose", False) or getattr(args, "debug", False):
        log_line("INFO", f"Using {one.describe()}")
    return one


# -- output formats -----------------------------------------------------------------------------
def format_parent() -> argparse.ArgumentParser:
    """``-x/--xml``, ``-j/--json``, ``-y/--yaml`` (dest ``output``; None: plain text)."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("output").add_mutually_exclusive_group()
    formats = (("-x", "--xml", "xml"), ("-j", "--json", "json"), ("-y", "--yaml", "yaml"))
    for short, long, name in formats:
        group.add_argument(
            short,
            long,
            dest="output",
            action="store_const",
            const=name,
            default=None,
            help=f"print as {name.upper()}",
        )
    return parent


def emit_data(data: Any, output: str) -> None:
    """Print a mapping as JSON (``json``) or YAML (``yaml``) on stdout."""
    if output == "json":
        import json

        sys.stdout.write(json.dumps(data, indent=4, ensure_ascii=False, default=str) + "\n")
    elif output == "yaml":
        import yaml

        sys.stdout.write(
            yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)
        )
    else:
        raise ValueError(f"not a data format: {output}")


def emit_object(xml: str, data: dict[str, Any], output: str) -> None:
    """One object: its XML for ``xml``, else ``data`` (the ``to_dict()`` shape)."""
    if output == "xml":
        sys.stdout.write(xml.rstrip("\n") + "\n")
    else:
        emit_data(data, output)


def pool_dict(root: str, objects: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``{"X_POOL": {"X": [...]}}`` from objects' ``to_dict()``; ``{"X_POOL": {}}`` when empty
    (xmlrpc.md §3.2: the element is always a list when present)."""
    pool_root = f"{root}_POOL"
    if not objects:
        return {pool_root: {}}
    return {pool_root: {root: [obj[root] for obj in objects]}}


def emit_pool(root: str, xmls: Sequence[str], dicts: Sequence[dict[str, Any]], output: str) -> None:
    """A pool: ``<X_POOL>…</X_POOL>`` for ``xml``, else ``pool_dict``."""
    if output == "xml":
        sys.stdout.write(f"<{root}_POOL>" + "".join(xmls) + f"</{root}_POOL>\n")
    else:
        emit_data(pool_dict(root, dicts), output)


# -- list tables --------------------------------------------------------------------------------
class Column:
    """One column of a list table, declared once per tool as in the originals' layout files.

    ``value`` maps a row to its value (``None`` shows ``-``); ``kind="date"`` formats epoch
    seconds as ``%m/%d %H:%M:%S`` in local time.  ``expand`` columns grow into free terminal
    width, up to their longest value.
    """

    __slots__ = ("align", "expand", "kind", "name", "value", "width")

    def __init__(
        self,
        name: str,
        width: int,
        value: Callable[[Any], Any],
        align: str = "left",
        kind: str = "text",
        expand: bool = False,
    ) -> None:
        if align not in ("left", "right"):
            raise ValueError(f"align must be left or right, not {align}")
        self.name = name
        self.width = width
        self.value = value
        self.align = align
        self.kind = kind
        self.expand = expand

    def raw(self, row: Any) -> Any:
        return self.value(row)

    def text(self, row: Any) -> str:
        """The cell's full text (before truncation)."""
        value = self.raw(row)
        if value is None or value == "":
            return "-"
        if self.kind == "date":
            try:
                epoch = int(value)
            except (TypeError, ValueError):
                return "-"
            import time

            return time.strftime("%m/%d %H:%M:%S", time.localtime(epoch))
        return str(value)


def table_parent() -> argparse.ArgumentParser:
    """The list table options of the originals' CLIHelper."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("table")
    group.add_argument(
        "-l", "--list", dest="list_columns", metavar="COL,COL", help="columns to show, in order"
    )
    group.add_argument("--csv", action="store_true", help="comma-separated values, no truncation")
    group.add_argument(
        "--csv-del", dest="csv_del", default=",", metavar="DEL", help="CSV delimiter (default ,)"
    )
    group.add_argument(
        "--filter",
        dest="filters",
        metavar="COL=VALUE,...",
        help="show rows where the conditions hold (operators = != < > <= >= ~ regex)",
    )
    group.add_argument(
        "--operator",
        type=str.upper,
        choices=("AND", "OR"),
        default="AND",
        help="how --filter conditions combine (default AND)",
    )
    group.add_argument("--no-header", dest="no_header", action="store_true", help="no header line")
    group.add_argument(
        "--adjust", metavar="COL,...", help="do not truncate these columns (size them to fit)"
    )
    return parent


_CONDITION = re.compile(r"^\s*([^=!<>~]+?)\s*(!=|<=|>=|=|<|>|~)(.*)$")


def _column_names(text: str | None) -> list[str]:
    return [name.strip().upper() for name in (text or "").split(",") if name.strip()]


def _pick(columns: Sequence[Column], names: Iterable[str]) -> list[Column]:
    by_name = {column.name.upper(): column for column in columns}
    picked = []
    for name in names:
        if name not in by_name:
            known = ", ".join(column.name for column in columns)
            raise UsageError(f"Unknown column '{name}' (columns: {known})")
        picked.append(by_name[name])
    return picked


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _holds(cell: str, operator: str, wanted: str) -> bool:
    if operator == "~":
        return re.search(wanted, cell) is not None
    left, right = _number(cell), _number(wanted)
    a: Any = cell
    b: Any = wanted
    if left is not None and right is not None:
        a, b = left, right
    if operator == "=":
        return bool(a == b)
    if operator == "!=":
        return bool(a != b)
    if operator == "<":
        return bool(a < b)
    if operator == ">":
        return bool(a > b)
    if operator == "<=":
        return bool(a <= b)
    return bool(a >= b)


def parse_filters(text: str | None, columns: Sequence[Column]) -> list[tuple[Column, str, str]]:
    """``COL=VALUE,COL2>3`` → (column, operator, value) triples; bad ones are usage errors."""
    conditions: list[tuple[Column, str, str]] = []
    for item in (text or "").split(","):
        if not item.strip():
            continue
        match = _CONDITION.match(item)
        if match is None:
            raise UsageError(
                f"Invalid filter '{item}': COL<op>VALUE expected (op: = != < > <= >= ~)"
            )
        name, operator, value = match.group(1).upper(), match.group(2), match.group(3)
        (column,) = _pick(columns, [name])
        if operator == "~":
            try:
                re.compile(value)
            except re.error as exc:
                raise UsageError(f"Invalid regular expression in filter '{item}': {exc}") from None
        conditions.append((column, operator, value))
    return conditions


def _csv_field(text: str, delimiter: str) -> str:
    if delimiter in text or '"' in text or "\n" in text:
        return '"' + text.replace('"', '""') + '"'
    return text


def render_table(columns: Sequence[Column], rows: Sequence[Any], args: argparse.Namespace) -> str:
    """The list table for ``rows`` as the table options in ``args`` ask (see ``table_parent``)."""
    shown = _pick(columns, _column_names(args.list_columns)) if args.list_columns else list(columns)
    conditions = parse_filters(getattr(args, "filters", None), columns)
    if conditions:
        combine = any if getattr(args, "operator", "AND") == "OR" else all
        rows = [
            row
            for row in rows
            if combine(_holds(column.text(row), op, value) for column, op, value in conditions)
        ]
    cells = [[column.text(row) for column in shown] for row in rows]
    header = not getattr(args, "no_header", False)
    if getattr(args, "csv", False):
        delimiter = getattr(args, "csv_del", ",") or ","
        lines = [delimiter.join(_csv_field(c.name, delimiter) for c in shown)] if header else []
        lines += [delimiter.join(_csv_field(cell, delimiter) for cell in line) for line in cells]
        return "".join(line + "\n" for line in lines)

    adjust = set(_column_names(getattr(args, "adjust", None)))
    _pick(columns, adjust)  # unknown names are errors here too
    widths = []
    for index, column in enumerate(shown):
        longest = max([len(line[index]) for line in cells] + [len(column.name)])
        widths.append(max(longest, column.width) if column.name.upper() in adjust else column.width)
    free = terminal_width() - (sum(widths) + len(widths) - 1)
    for index, column in enumerate(shown):
        if column.expand and free > 0:
            longest = max([len(line[index]) for line in cells] + [0])
            grow = min(free, max(0, longest - widths[index]))
            widths[index] += grow
            free -= grow

    def line_of(values: Sequence[str]) -> str:
        parts = []
        for column, width, value in zip(shown, widths, values, strict=True):
            text = value[:width]
            parts.append(text.rjust(width) if column.align == "right" else text.ljust(width))
        return " ".join(parts).rstrip()

    lines = [line_of([c.name for c in shown])] if header else []
    lines += [line_of(line) for line in cells]
    return "".join(line + "\n" for line in lines)


# -- object arguments ---------------------------------------------------------------------------
_RANGE = re.compile(r"^\s*(\d+)\s*\.\.\s*(\d+)\s*$")
#: A typo such as ``1..1000000000`` must not make a billion calls.
MAX_RANGE = 100_000


def parse_id_list(spec: str) -> list[int | str]:
    """``"1,8..15,web"`` → ``[1, 8, 9, …, 15, "web"]``: IDs, inclusive ranges and names."""
    items: list[int | str] = []
    for part in spec.split(","):
        text = part.strip()
        if not text:
            raise UsageError(f"Invalid object list '{spec}': empty item")
        match = _RANGE.match(text)
        if match:
            start, end = int(match.group(1)), int(match.group(2))
            if start > end:
                raise UsageError(f"Invalid range '{text}': {start} is greater than {end}")
            if end - start >= MAX_RANGE:
                raise UsageError(f"Invalid range '{text}': more than {MAX_RANGE} IDs")
            items.extend(range(start, end + 1))
        elif text.isdigit():
            items.append(int(text))
        else:
            items.append(text)
    return items


def id_by_name(name: str, objects: Sequence[OneObject], label: str) -> int:
    """The ID of the one object called ``name``; none or several are errors."""
    matches = [obj.id for obj in objects if obj.name == name]
    if not matches:
        raise UsageError(f"{label.capitalize()} named '{name}' not found")
    if len(matches) > 1:
        ids = ", ".join(str(i) for i in matches)
        raise UsageError(f"There are multiple {label}s with name '{name}' (IDs {ids}): use an ID")
    return matches[0]


def resolve_ids(spec: str, load: Callable[[], Sequence[OneObject]], label: str) -> list[int]:
    """IDs for an argument such as ``1,8..15`` or ``a,b,3``; ``load`` gives the pool whose
    names are looked up (called at most once, only when a name is present).  Duplicates are
    dropped, order is kept."""
    pool: Sequence[OneObject] | None = None
    ids: list[int] = []
    for item in parse_id_list(spec):
        if isinstance(item, str):
            if pool is None:
                pool = load()
            item = id_by_name(item, pool, label)
        if item not in ids:
            ids.append(item)
    return ids


def resolve_id(text: str, load: Callable[[], Sequence[OneObject]], label: str) -> int:
    """The ID for a single ``ID|NAME`` argument."""
    value = text.strip()
    if value.isdigit():
        return int(value)
    if not value:
        raise UsageError(f"Empty {label} name")
    return id_by_name(value, load(), label)


def user_id(one: OneApi, text: str) -> int:
    """The user of a ``chown USER`` argument (ID or name)."""
    from onetools.one.api import USER

    return resolve_id(text, lambda: one.pool(USER), "user")


def group_id(one: OneApi, text: str) -> int:
    """The group of a ``chgrp GROUP`` / ``chown USER GROUP`` argument (ID or name)."""
    from onetools.one.api import GROUP

    return resolve_id(text, lambda: one.pool(GROUP), "group")


def permissions_of(octet: str) -> Permissions:
    """The permissions of a ``chmod OCTET`` argument (``640``); a bad octet is a usage error."""
    from onetools.one.api import Permissions

    try:
        return Permissions.from_octet(octet)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
