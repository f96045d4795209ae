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
Manage OpenNebula configuration files: validate them, show their customizations, apply
changes written in the one-line or YAML change formats, and upgrade them from one
OpenNebula version to another keeping the customizations.

The OpenNebula version comes from --one-version, the ONECFG_ONE_VERSION environment
variable, or 'oned --version'; the configuration version from the settings file
(ONECFG_ETC_DIR/onecfg.conf, default /etc/onecfg.conf).

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


STATUS_HELP = """\
Show the OpenNebula and configuration versions, a pending one-shot backup and the upgrade
steps available.

exit codes: 0 nothing to do; 1 updates available (or a backup to clear);
255 unknown or unsupported versions, outdated or corrupt settings
"""

INIT_HELP = """\
Create the settings file with the configuration version: --to VERSION, or the installed
OpenNebula version. The version must be one onecfg supports. An existing settings file is kept
unless --force.

exit codes: 0 done (or already initialized), 255 error
"""

DIFF_HELP = """\
Show the customizations of the configuration files under --prefix: the changes from the
stock files of the configuration version (the settings file's, or --from) to the files.
The line form fed to 'onecfg patch' on a stock tree of that version reproduces them.

exit codes: 0 done, 255 error
"""

UPGRADE_HELP = """\
Upgrade the configuration files from the configuration version (--from, default: the
settings file's) to the OpenNebula version (--to, default: the installed one), step by step,
keeping customizations. Runs in memory first; the files and the settings file are then
written together, after an emergency backup. Nothing is written if a step fails.

Patch modes decide what happens when a file differs from what a step expects:
  skip     skip a change whose place is missing (a section you removed)
  force    (ordered YAML lists) place items by searching for their neighbours
  replace  overwrite your value with the new default
Defaults per class unless --patch-strict: skip for oned.conf-like files, force for ordered
YAML. Conflicts (a value you changed that the step changes too) keep your value and are
reported; with --patch-strict and no modes for the file, they fail the upgrade.

  --patch-modes replace                          everywhere
  --patch-modes skip,replace:/etc/one/oned.conf  one file
  --patch-modes 'skip:/etc/one/oned.conf:6.10.0;force:/etc/one/cli/onevm.yaml'
  --patch-modes replace::7.0.0                   every file, in the step to 7.0.0

exit codes: 0 upgraded, nothing to do, or --noop; 255 error (nothing changed)
"""

GENERATE_HELP = """\
Compare two stock trees (directories with etc/one and var/lib/one/remotes/etc, or versions
shipped with onetools) and print the step descriptor (YAML) between them.

exit codes: 0 done, 255 error
"""


def cmd_status(args: argparse.Namespace) -> int:
    from onetools.config.status import status

    result = status(args.one_version)
    if args.output:
        emit(result.to_dict(), args.output)
    else:
        sys.stdout.write(result.render())
    return result.exit_code


def cmd_init(args: argparse.Namespace) -> int:
    from onetools.config.status import init

    settings = init(force=args.force, to=args.to, one_version=args.one_version)
    emit(settings.to_dict(), args.output)
    return EXIT_OK


def cmd_diff(args: argparse.Namespace) -> int:
    from onetools.config.diff import diff_against_stock
    from onetools.config.lineformat import render_lines, render_text, render_yaml
    from onetools.config.settings import load_settings

    if args.format not in ("text", "line", "yaml"):
        raise UsageError(
            f"Unsupported format '{args.format}'. Available formats - text, line, yaml"
        )
    if not os.path.isdir(args.prefix):
        raise UsageError(f"Prefix directory '{args.prefix}' does not exist")
    version = args.source or load_settings().version
    if not version:
        raise UsageError("Unknown config version: run 'onecfg init' or give --from VERSION")
    changes = diff_against_stock(args.prefix, version)
    renderers = {"text": render_text, "line": render_lines, "yaml": render_yaml}
    sys.stdout.write(renderers[args.format](changes))
    return EXIT_OK


def cmd_upgrade(args: argparse.Namespace) -> int:
    from onetools.config.upgrade import PatchModes, UpgradeOptions, upgrade

    options = UpgradeOptions(
        prefix=args.prefix,
        source=args.source,
        target=args.target,
        one_version=args.one_version,
        noop=args.noop,
        unprivileged=args.unprivileged,
        modes=PatchModes.parse(args.patch_modes or []),
        strict=args.patch_strict,
        recreate=args.recreate,
        read_from=args.read_from,
    )
    if not os.path.isdir(args.prefix):
        raise UsageError(f"Prefix directory '{args.prefix}' does not exist")
    outcome = upgrade(options)
    if args.output:
        emit(outcome.to_dict(), args.output)
        return EXIT_OK
    summary = outcome.to_dict()["summary"]
    if outcome.steps:
        state = "would be upgraded" if outcome.noop else "upgraded"
        sys.stdout.write(
            f"Configuration {state} from {outcome.source} to {outcome.final} "
            f"({len(outcome.steps)} steps)\n"
            f"Files: {summary['updated']} updated, {summary['created']} created, "
            f"{summary['deleted']} deleted; {summary['conflicts']} conflicts, "
            f"{summary['forced']} forced\n"
        )
        for report in outcome.reports:
            sys.stdout.write(f"  {report.line()}\n")
    else:
        sys.stdout.write(f"No updates available (configuration at {outcome.final})\n")
    return EXIT_OK


def cmd_generate(args: argparse.Namespace) -> int:
    from onetools.config.generate import generate_descriptor

    descriptor = generate_descriptor(args.old, args.new)
    text = descriptor.to_yaml(with_content=not args.no_content)
    if args.output:
        from onetools.config.transaction import write_atomic

        write_atomic(args.output, text.encode("utf-8"))
    else:
        sys.stdout.write(text)
    return EXIT_OK


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

    version = argparse.ArgumentParser(add_help=False)
    version.add_argument(
        "--one-version",
        metavar="VERSION",
        help="the installed OpenNebula version (default: ONECFG_ONE_VERSION or 'oned --version')",
    )
    add_command(
        commands,
        "status",
        cmd_status,
        "show versions and available updates",
        STATUS_HELP,
        [version, output, common],
    )
    init = add_command(
        commands, "init", cmd_init, "create the settings file", INIT_HELP, [version, output, common]
    )
    init.add_argument("-f", "--force", action="store_true", help="overwrite the settings file")
    init.add_argument("--to", metavar="VERSION", help="configuration version to record")

    diff = add_command(
        commands,
        "diff",
        cmd_diff,
        "show customizations against stock files",
        DIFF_HELP,
        [prefix, common],
    )
    diff.add_argument(
        "--format", default="text", metavar="text|line|yaml", help="output format (default: text)"
    )
    diff.add_argument(
        "--from",
        dest="source",
        metavar="VERSION",
        help="configuration version (default: the settings file's)",
    )

    upgrade = add_command(
        commands,
        "upgrade",
        cmd_upgrade,
        "upgrade configuration files",
        UPGRADE_HELP,
        [prefix, version, output, common],
    )
    upgrade.add_argument(
        "--from",
        dest="source",
        metavar="VERSION",
        help="configuration version (default: the settings file's)",
    )
    upgrade.add_argument(
        "--to",
        dest="target",
        metavar="VERSION",
        help="target version (default: the installed OpenNebula version)",
    )
    upgrade.add_argument(
        "-n", "--noop", action="store_true", help="run and report everything, write nothing"
    )
    upgrade.add_argument(
        "--unprivileged",
        action="store_true",
        help="do not change file owners (modes are still set)",
    )
    upgrade.add_argument(
        "--patch-modes",
        action="append",
        metavar="MODES[:FILE[:VERSION]]",
        help="patch modes (repeatable; ';' separates items)",
    )
    upgrade.add_argument(
        "--patch-strict",
        action="store_true",
        help="no default safe modes: fail on any change that cannot apply",
    )
    upgrade.add_argument(
        "--recreate", action="store_true", help="re-create files a step changes that are missing"
    )
    upgrade.add_argument(
        "--read-from",
        metavar="DIR",
        help="take the configuration from this backup tree instead of --prefix",
    )

    generate = add_command(
        commands,
        "generate",
        cmd_generate,
        "make a step descriptor from two stock trees",
        GENERATE_HELP,
        [common],
    )
    generate.add_argument("old", metavar="OLD", help="old stock tree (directory) or version")
    generate.add_argument("new", metavar="NEW", help="new stock tree (directory) or version")
    generate.add_argument(
        "-o",
        "--output",
        "--descriptor-name",
        dest="output",
        metavar="FILE",
        help="write the descriptor to FILE instead of standard output",
    )
    generate.add_argument(
        "--no-content", action="store_true", help="leave the stock file contents out"
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
