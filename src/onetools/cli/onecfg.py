"""``onecfg``: validate and patch OpenNebula configuration files.

Thin layer: parse options, call the library (``onetools.config``), print, return exit codes.
Library modules are imported inside the command functions to keep ``--help`` fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from onetools import __version__
from onetools.cli._options import (
    ToolParser,
    add_command,
    common_parent,
    emit,
    make_parser,
    output_parent,
    prefix_parent,
    run,
)
from onetools.errors import EXIT_OK, EXIT_PARTIAL, UsageError

DESCRIPTION = """\
Manage OpenNebula configuration files: validate them and apply changes written in the
one-line or YAML change formats.

exit codes: 0 success, 1 partial (some changes not applied / some files invalid), 255 error
"""

PATCH_HELP = """\
Apply changes from FILE (or standard input) to the configuration files under --prefix.

One change per line:  FILENAME set|ins|rm PATH [JSON_VALUE] [# {annotations}]

  /etc/one/oned.conf set PORT 2634
  /etc/one/oned.conf set DB/BACKEND "\\"mysql\\""
  /etc/one/oned.conf ins "VM_MAD/\\"kvm\\"/ARGUMENTS" "\\"-t 15 -r 0 kvm\\""
  /etc/one/oned.conf rm VM_RESTRICTED_ATTR "\\"NIC/MAC\\""
  /etc/one/sunstone-server.conf set :port 9869

or a YAML document (patches: {FILE: {class: CLASS, change: [...]}}), detected when the input
starts with '---'. Changes overwrite what is there (replace mode). All files are written
together or not at all, after an emergency backup into ONECFG_BACKUP_DIR
(default /var/lib/one/backups/config).

A change that finds its result already there (an 'ins' of a present value, an 'rm' of an
absent key) is not applied, as with the original tool; with --converge it counts as done, so
re-applying a patch (a container bootstrap at every start) exits 0. Files whose content does
not change are never rewritten.

exit codes: 0 all changes applied; 1 some not applied (the applied ones are saved);
255 error, nothing applied, or --all with unapplied changes (nothing saved)
"""

VALIDATE_HELP = """\
Check that every classified configuration file under --prefix parses and renders back
unchanged. Prints "File '...' - OK" per file with --verbose and one ERROR line per invalid file.

exit codes: 0 all valid, 1 some invalid, 255 error
"""


def cmd_patch(args: argparse.Namespace) -> int:
    from onetools.config.lineformat import detect_format, parse_lines, parse_yaml
    from onetools.config.patch import PatchFailed, apply_patch, classify_existing

    if args.format not in (None, "line", "yaml"):
        raise UsageError(f"Unsupported format '{args.format}'. Available formats - line, yaml")
    if not os.path.isdir(args.prefix):
        raise UsageError(f"Prefix directory '{args.prefix}' does not exist")
    text, source = _read_input(args.file)
    kind = args.format or detect_format(text)
    if kind == "yaml":
        changes = parse_yaml(text, source)
    else:
        changes = parse_lines(text, classify_existing(args.prefix).get, source)
    try:
        outcome = apply_patch(
            changes,
            prefix=args.prefix,
            noop=args.noop,
            require_all=args.all,
            unprivileged=args.unprivileged,
            converge=args.converge,
        )
    except PatchFailed as exc:
        if exc.outcome is not None:
            emit(exc.outcome.to_dict(), args.output)
        raise
    emit(outcome.to_dict(), args.output)
    return outcome.exit_code


def _read_input(file: str | None) -> tuple[str, str]:
    if file is not None and file != "-":
        try:
            with open(file, encoding="utf-8") as handle:
                return handle.read(), file
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"Cannot read patch file '{file}': {exc}") from None
    if file is None and (sys.stdin is None or sys.stdin.isatty()):
        raise UsageError("No patch file or data on standard input found.")
    return sys.stdin.read(), "<stdin>"


def cmd_validate(args: argparse.Namespace) -> int:
    from onetools.config.validate import validate_tree

    if not os.path.isdir(args.prefix):
        raise UsageError(f"Prefix directory '{args.prefix}' does not exist")
    results = validate_tree(args.prefix)
    emit([result.to_dict() for result in results], args.output)
    return EXIT_OK if all(result.ok for result in results) else EXIT_PARTIAL


def build_parser() -> ToolParser:
    parser, commands = make_parser("onecfg", DESCRIPTION, __version__)
    common, prefix, output = common_parent(), prefix_parent(), output_parent()

    patch = add_command(
        commands,
        "patch",
        cmd_patch,
        "apply changes to configuration files",
        PATCH_HELP,
        [prefix, output, common],
    )
    patch.add_argument(
        "file",
        nargs="?",
        metavar="FILE",
        help="file with the changes ('-' or none: standard input)",
    )
    patch.add_argument(
        "--format", metavar="line|yaml", help="format of the changes (default: detected)"
    )
    patch.add_argument(
        "-n", "--noop", action="store_true", help="apply in memory only; change nothing on disk"
    )
    patch.add_argument(
        "-a", "--all", action="store_true", help="save nothing unless every change applies"
    )
    patch.add_argument(
        "--converge",
        action="store_true",
        help="count changes already in place as applied (re-applying a patch exits 0)",
    )
    patch.add_argument(
        "--unprivileged",
        action="store_true",
        help="do not change file owners (modes are still set)",
    )

    add_command(
        commands,
        "validate",
        cmd_validate,
        "check every configuration file",
        VALIDATE_HELP,
        [prefix, output, common],
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run(build_parser(), argv))


if __name__ == "__main__":  # pragma: no cover
    main()
