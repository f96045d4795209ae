"""Options and plumbing shared by every onetools command line.

Built on ``argparse`` rather than click: click's import alone costs ~50 ms here (it pulls in
``inspect``), which breaks the 100 ms budget for ``--help`` and ``onedb version``.

* ``ToolParser``: usage errors exit 255 like the originals, as one ``ERROR : …`` line.
* ``common_parent``/``prefix_parent``/``output_parent``: shared options (``-v/-d/--verbose``,
  ``--debug``; ``--prefix DIR``; ``--json``/``--yaml``), attached to subcommands as parents.
* ``run``: parse, set up logging, call the command function, and turn ``OnetoolsError`` into its
  ``ERROR : …`` line and exit code (tracebacks only with ``--debug``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from onetools.errors import EXIT_FATAL, OnetoolsError

TYPE_CHECKING = False  # typing costs ~20 ms of start-up: annotations only
if TYPE_CHECKING:
    from typing import Any, NoReturn

Command = Callable[[argparse.Namespace], int]

# argparse looks up a translation for every string it formats (gettext: ~70 lookups and ~450
# stat() calls per parser build, ~7 ms).  Our messages are English only.
argparse._ = lambda message: message  # type: ignore[attr-defined]


def terminal_width() -> int:
    """What ``shutil.get_terminal_size`` gives, without importing shutil (~3 ms): argparse
    builds a formatter for every option it adds, not only for ``--help``."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32, width=terminal_width() - 2)


class ToolParser(argparse.ArgumentParser):
    """An argument parser whose usage errors exit 255 with an ``ERROR`` line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        sys.stderr.write(f"ERROR : {message}\n")
        sys.exit(EXIT_FATAL)


def make_parser(
    prog: str,
    description: str,
    version: str,
    parents: Sequence[argparse.ArgumentParser] = (),
) -> tuple[ToolParser, Any]:
    """The top-level parser of a tool and its subcommand registry; ``parents`` add options
    accepted before the subcommand too (their defaults should be ``argparse.SUPPRESS``)."""
    parser = ToolParser(
        prog=prog, description=description, formatter_class=_HelpFormatter, parents=list(parents)
    )
    parser.add_argument("-V", "--version", action="version", version=f"{prog} {version}")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>", parser_class=ToolParser)
    return parser, subparsers


def add_command(
    subparsers: Any,
    name: str,
    func: Command,
    summary: str,
    description: str,
    parents: Sequence[argparse.ArgumentParser] = (),
) -> ToolParser:
    parser: ToolParser = subparsers.add_parser(
        name,
        help=summary,
        description=description,
        parents=list(parents),
        formatter_class=_HelpFormatter,
    )
    parser.set_defaults(func=func)
    return parser


def common_parent(
    verbose_flags: Sequence[str] = ("-v", "-d", "--verbose"),
) -> argparse.ArgumentParser:
    """``-v``/``--verbose`` (and ``-d`` where the tool has no other use for it) and ``--debug``."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("logging")
    group.add_argument(
        *verbose_flags, dest="verbose", action="store_true", help="show informational messages"
    )
    group.add_argument("--debug", action="store_true", help="show debug messages and tracebacks")
    return parent


def prefix_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--prefix", default="/", metavar="DIR", help="root of the tree to work on (default: /)"
    )
    return parent


def output_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_mutually_exclusive_group()
    group.add_argument(
        "--json",
        dest="output",
        action="store_const",
        const="json",
        help="print the result as JSON on stdout",
    )
    group.add_argument(
        "--yaml",
        dest="output",
        action="store_const",
        const="yaml",
        help="print the result as YAML on stdout",
    )
    return parent


def emit(data: Any, output: str | None) -> None:
    """Print ``data`` as JSON or YAML on stdout (nothing when ``output`` is None)."""
    if output == "json":
        import json

        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
    elif output == "yaml":
        import yaml

        sys.stdout.write(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def run(parser: ToolParser, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run the chosen command and return its exit code."""
    args = parser.parse_args(argv)
    func: Command | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 0
    from onetools import log as logsetup

    debug = bool(getattr(args, "debug", False))
    logsetup.setup(verbose=bool(getattr(args, "verbose", False)), debug=debug)
    try:
        return func(args)
    except OnetoolsError as exc:
        if debug:
            import traceback  # only here: its import costs ~4 ms of every run

            traceback.print_exc()
        sys.stderr.write(f"{exc.level:<5} : {exc.log_line()}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("ERROR : Interrupted\n")
        return EXIT_FATAL
    except BrokenPipeError:
        return EXIT_FATAL
    except Exception as exc:
        if debug:
            import traceback  # only here: its import costs ~4 ms of every run

            traceback.print_exc()
        sys.stderr.write(
            f"FATAL : Internal error: {type(exc).__name__}: {exc} "
            "(run with --debug for the traceback)\n"
        )
        return EXIT_FATAL
