"""``onedb``: the OpenNebula database — versions, upgrades, backups, fsck, purges, body edits.

Thin layer: parse options, resolve the connection, guard, call ``onetools.db``, print, return
the exit code.  Heavy modules (drivers, lxml, the migrations) are imported inside commands so
that ``onedb version`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from onetools import __version__
from onetools.cli._options import (
    ToolParser,
    add_command,
    common_parent,
    emit,
    make_parser,
    output_parent,
    run,
)
from onetools.errors import EXIT_OK, UsageError

TYPE_CHECKING = False  # typing costs ~20 ms of start-up: annotations only
if TYPE_CHECKING:
    from typing import Any

    from onetools.db.backends.base import Backend, ConnectionSettings


DESCRIPTION = """\
Maintain the OpenNebula database (SQLite, MariaDB/MySQL, PostgreSQL): version status with
exit codes for scripts, upgrades with backup and restore, backups, fsck, purges and body edits.

Connection: -s FILE (SQLite), or -t/-S/-P/-u/-p/-d (password also from ONE_DB_PASSWORD, else a
prompt on a terminal); without them, the DB section of oned.conf ($ONE_LOCATION/etc or
/etc/one). Commands that change the database refuse to run while oned is running.
"""

VERSION_HELP = """\
Print the shared and local database versions and the versions this onedb supports.
With -v, timestamps, comments and the steps an upgrade would run.

exit codes: 0 current; 1 not bootstrapped; 2 upgrade needed (either table behind);
3 newer than supported; 255 anything else (connection, unknown version rows)
"""

UPGRADE_HELP = """\
Upgrade the database to the newest version onedb supports: the shared tables' steps, then the
local tables'. A backup is taken first (--backup FILE, default name in /var/lib/one) unless
--no-backup. On SQLite and PostgreSQL the whole upgrade is one transaction: a failure leaves
the database as it was. On MySQL, where schema changes commit implicitly, a failure restores
the backup automatically.

exit codes: 0 upgraded or already current; 255 failure (database as before)
"""

FSCK_HELP = """\
Check the database for inconsistencies (counters, cluster/host/datastore/network relations,
host capacities, image usage, leases, quotas, marketplace apps), print one line each, and fix
them unless --dry (after a backup).

exit codes: 0 none found; 1 found (fixed unless --dry); 255 error
"""


# -- options ------------------------------------------------------------------------------------
def connection_parent(skip: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The connection options; ``skip`` drops short flags a command uses for itself (as the
    original, where ``-s`` means --start in purge commands and ``-d`` --delete in change-body)."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection")

    def add(short: str, long: str, **kwargs: Any) -> None:
        flags = [long] if not short or short in skip else [short, long]
        group.add_argument(*flags, default=argparse.SUPPRESS, **kwargs)

    add("-s", "--sqlite", metavar="FILE", help="SQLite database file")
    add(
        "-t",
        "--type",
        dest="backend_type",
        metavar="TYPE",
        help="backend: sqlite, mysql or postgresql",
    )
    add("-S", "--server", metavar="HOST", help="database server (default localhost)")
    add("-P", "--port", type=int, metavar="PORT", help="database port")
    add("-u", "--username", metavar="USER", help="database user")
    add("-p", "--password", metavar="PASS", help="database password (or ONE_DB_PASSWORD)")
    add("-d", "--dbname", metavar="NAME", help="database name")
    add("", "--encoding", metavar="CHARSET", help="connection charset (MySQL)")
    return parent


def settings_from(args: argparse.Namespace) -> ConnectionSettings:
    from onetools.db.connection import resolve_settings

    return resolve_settings(
        sqlite=getattr(args, "sqlite", None),
        backend_type=getattr(args, "backend_type", None),
        server=getattr(args, "server", None),
        port=getattr(args, "port", None),
        user=getattr(args, "username", None),
        password=getattr(args, "password", None),
        db_name=getattr(args, "dbname", None),
        encoding=getattr(args, "encoding", None),
    )


@contextmanager
def opened(args: argparse.Namespace, offline: bool = False) -> Iterator[Backend]:
    """Connect; for commands that change the database, check oned is stopped and take the
    onedb lock first."""
    from onetools.db.backends import open_backend

    settings = settings_from(args)
    if offline:
        from onetools.db import guard  # not on the `onedb version` path

        guard.ensure_oned_stopped()
    backend = open_backend(settings)
    try:
        if offline:
            with guard.exclusive(backend):
                yield backend
        else:
            yield backend
    finally:
        backend.close()


def log_line(level: str, message: str) -> None:
    sys.stderr.write(f"{level:<5} : {message}\n")


def _log_message(message: str, verbose: bool) -> None:
    """Library messages: warnings always (WARN), the rest with --verbose (INFO)."""
    if message.startswith("WARNING: "):
        log_line("WARN", message[len("WARNING: ") :])
    elif verbose:
        log_line("INFO", message)


class Progress:
    """A one-line progress bar on stderr when it is a terminal; silent otherwise."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self.last = 0.0

    def __call__(self, label: str, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.last < 0.1 and (total is None or done < total):
            return
        self.last = now
        if total:
            width = 30
            filled = int(width * min(done, total) / total)
            bar = "#" * filled + "." * (width - filled)
            sys.stderr.write(f"\r{label:<40} [{bar}] {done}/{total}")
        else:
            sys.stderr.write(f"\r{label:<40} {done}")
        if total is not None and done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


# -- commands -----------------------------------------------------------------------------------
def cmd_version(args: argparse.Namespace) -> int:
    from onetools.db.versioning import check_version

    with opened(args) as backend:
        # The pending steps (which load the migrations) only when they are shown.
        status = check_version(backend, with_pending=bool(args.verbose or args.output))
    if args.output:
        emit(status.to_dict(), args.output)
    else:
        sys.stdout.write(status.render(verbose=args.verbose))
    return int(status.exit_code)


def cmd_history(args: argparse.Namespace) -> int:
    from onetools.db.versioning import history

    with opened(args) as backend:
        rows = history(backend)
    if args.output:
        emit([row.to_dict() for row in rows], args.output)
        return EXIT_OK
    for row in rows:
        sys.stdout.write(row.render() + "\n")
    return EXIT_OK


def cmd_upgrade(args: argparse.Namespace) -> int:
    from onetools.db.upgrade import upgrade

    if args.backup and args.no_backup:
        raise UsageError("--backup and --no-backup exclude each other")
    with opened(args, offline=not args.dry) as backend:
        result = upgrade(
            backend,
            backend.settings,
            backup_path=args.backup,
            no_backup=args.no_backup,
            force=args.force,
            dry=args.dry,
            progress=Progress(),
            log=lambda message: _log_message(message, args.verbose),
        )
    if args.output:
        emit(result.to_dict(), args.output)
    else:
        sys.stdout.write(result.render(verbose=args.verbose))
    return EXIT_OK


def cmd_backup(args: argparse.Namespace) -> int:
    from onetools.db.backup import backup, default_backup_name

    with opened(args) as backend:
        path = args.file or default_backup_name(backend.settings, federated=args.federated)
        written = backup(backend, path, force=args.force, federated=args.federated)
    sys.stdout.write(f"Database backed up in {written}\n")
    sys.stdout.write(f"Use 'onedb restore' to restore the DB from {written}\n")
    return EXIT_OK


def cmd_restore(args: argparse.Namespace) -> int:
    from onetools.db import guard
    from onetools.db.backup import restore

    if not os.path.isfile(args.file):
        raise UsageError(f"File {args.file} doesn't exist")
    settings = settings_from(args)
    guard.ensure_oned_stopped()
    restore(settings, args.file, force=args.force, federated=args.federated)
    sys.stdout.write(f"Database restored from {args.file}\n")
    return EXIT_OK


def cmd_fsck(args: argparse.Namespace) -> int:
    from onetools.db.backup import backup, default_backup_name
    from onetools.db.fsck import fsck

    with opened(args, offline=not args.dry) as backend:
        if not args.dry:
            path = args.backup or default_backup_name(backend.settings)
            backup(backend, path, force=args.force)
            log_line("INFO", f"Database backed up in {path}")
        report = fsck(backend, dry=args.dry, log=lambda line: sys.stdout.write(line + "\n"))
    if args.output:
        emit(report.to_dict(), args.output)
    else:
        sys.stdout.write(report.summary() + "\n")
    return int(report.exit_code)


def _time(text: str | None) -> int | None:
    """Seconds since the epoch from an epoch number, an ISO date/time or YYYY/MM/DD[ HH:MM]."""
    if text is None:
        return None
    from datetime import datetime

    stripped = text.strip()
    if stripped.isdigit():
        return int(stripped)
    for candidate in (stripped, stripped.replace("/", "-")):
        try:
            return int(datetime.fromisoformat(candidate).timestamp())
        except ValueError:
            continue
    raise UsageError(f"Invalid time '{text}' (use epoch seconds or YYYY-MM-DD[ HH:MM[:SS]])")


def cmd_purge_history(args: argparse.Namespace) -> int:
    from onetools.db.purge import purge_history

    start, end = _time(args.start), _time(args.end)
    if start is not None and end is not None and start > end:
        raise UsageError("The start time is after the end time")
    with opened(args, offline=True) as backend:
        count = purge_history(backend, start=start, end=end, vm_id=args.id)
    sys.stdout.write(f"Removed {count} history records\n")
    return EXIT_OK


def cmd_purge_done(args: argparse.Namespace) -> int:
    from onetools.db.purge import purge_done

    start, end = _time(args.start), _time(args.end)
    if start is not None and end is not None and start > end:
        raise UsageError("The start time is after the end time")
    with opened(args, offline=True) as backend:
        count = purge_done(backend, start=start, end=end)
    sys.stdout.write(f"Removed {count} DONE VMs\n")
    return EXIT_OK


def cmd_change_body(args: argparse.Namespace) -> int:
    from onetools.db.body import change_body

    if args.delete and args.append:
        raise UsageError("--delete and --append exclude each other")
    with opened(args, offline=not args.dry) as backend:
        changes = change_body(
            backend,
            args.object,
            args.xpath_to_change,
            args.value,
            oid=args.id,
            filter_xpath=args.xpath,
            expr=args.expr,
            delete=args.delete,
            append=args.append,
            dry=args.dry,
        )
    if args.output:
        emit([{"id": oid, "old": old, "new": new} for oid, old, new in changes], args.output)
        return EXIT_OK
    for oid, old, new in changes:
        sys.stdout.write(f"{args.object} {oid}: {old!r} -> {new!r}\n")
    verb = "Would change" if args.dry else "Changed"
    sys.stdout.write(f"{verb} {len(changes)} objects\n")
    return EXIT_OK


def cmd_show_body(args: argparse.Namespace) -> int:
    from onetools.db.body import show_body

    with opened(args) as backend:
        sys.stdout.write(show_body(backend, args.object, args.id).rstrip("\n") + "\n")
    return EXIT_OK


def cmd_update_body(args: argparse.Namespace) -> int:
    from onetools.db.body import update_body

    if args.file:
        try:
            with open(args.file, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise UsageError(f"Cannot read '{args.file}': {exc.strerror}") from None
    elif not sys.stdin.isatty():
        text = sys.stdin.read()
    else:
        raise UsageError("Give the new body with --file FILE or on standard input")
    with opened(args, offline=True) as backend:
        update_body(backend, args.object, args.id, text)
    sys.stdout.write(f"Updated {args.object} {args.id}\n")
    return EXIT_OK


def cmd_sqlite2mysql(args: argparse.Namespace) -> int:
    from onetools.db import guard
    from onetools.db.backends import open_backend
    from onetools.db.backends.base import ConnectionSettings
    from onetools.db.backup import backup, default_backup_name
    from onetools.db.connection import default_sqlite_path
    from onetools.db.sqlite2mysql import sqlite_to_mysql

    sqlite_file = getattr(args, "sqlite", None) or default_sqlite_path()
    target = settings_from(
        argparse.Namespace(
            **{k: v for k, v in vars(args).items() if k not in ("sqlite", "backend_type")},
            backend_type="mysql",
        )
    )
    guard.ensure_oned_stopped()
    source = open_backend(ConnectionSettings("sqlite", sqlite_file=sqlite_file))
    try:
        destination = open_backend(target)
        try:
            with guard.exclusive(destination):
                path = args.backup or default_backup_name(target)
                backup(destination, path, force=args.force)
                counts = sqlite_to_mysql(source, destination, progress=Progress())
        finally:
            destination.close()
    finally:
        source.close()
    for table, count in counts.items():
        sys.stdout.write(f"> {table} ({count} records)\n")
    sys.stdout.write("Migration successful.\n")
    return EXIT_OK


# -- parser -------------------------------------------------------------------------------------
COMMANDS = (
    "version", "history", "upgrade", "backup", "restore", "fsck", "purge-history",
    "purge-done", "change-body", "show-body", "update-body", "sqlite2mysql",
)  # fmt: skip


def build_parser(argv: Sequence[str] | None = None, *, every_command: bool = False) -> ToolParser:
    """The parser; only the command named in ``argv`` gets its options built (argparse copies
    every parent's options into every subcommand, which costs ~25 ms for all twelve — too
    slow for ``onedb version`` in a bootstrap script), unless ``every_command``."""
    tokens = list(sys.argv[1:] if argv is None else argv)
    selected = next((token for token in tokens if token in COMMANDS), None)
    connection = connection_parent()
    # Connection options are accepted before the subcommand too (onedb -s one.db version).
    parser, commands = make_parser("onedb", DESCRIPTION, __version__, [connection])
    # -d is --dbname in onedb, as in the original.
    common, output = common_parent(("-v", "--verbose")), output_parent()

    def command(
        name: str,
        func: Callable[[argparse.Namespace], int],
        summary: str,
        description: str,
        parents: Sequence[argparse.ArgumentParser],
    ) -> ToolParser:
        if name != selected and not every_command:
            commands.add_parser(name, help=summary)
            return ToolParser(add_help=False)  # options of a command not run: not needed
        return add_command(commands, name, func, summary, description, parents)

    command(
        "version",
        cmd_version,
        "show the database versions (exit codes for scripts)",
        VERSION_HELP,
        [connection, output, common],
    )
    command(
        "history",
        cmd_history,
        "show the version history",
        "Print the version rows of the database, oldest first.\n",
        [connection, output, common],
    )

    upgrade = command(
        "upgrade", cmd_upgrade, "upgrade the database", UPGRADE_HELP, [connection, output, common]
    )
    upgrade.add_argument("-b", "--backup", metavar="FILE", help="where to write the backup")
    upgrade.add_argument(
        "--no-backup",
        action="store_true",
        help="no backup (not recommended: a MySQL failure cannot be undone)",
    )
    upgrade.add_argument(
        "-f", "--force", action="store_true", help="overwrite an existing backup file"
    )
    upgrade.add_argument("--dry", action="store_true", help="list the steps; change nothing")

    backup = command(
        "backup",
        cmd_backup,
        "dump the database to a file",
        "Write a textual SQL dump of the database (no external tools needed).\n",
        [connection, common],
    )
    backup.add_argument(
        "file", nargs="?", metavar="FILE", help="dump file (default: in /var/lib/one)"
    )
    backup.add_argument("-f", "--force", action="store_true", help="overwrite an existing file")
    backup.add_argument("--federated", action="store_true", help="only the federated tables")

    restore = command(
        "restore",
        cmd_restore,
        "restore the database from a dump",
        "Load a dump written by 'onedb backup'.\n",
        [connection, common],
    )
    restore.add_argument("file", metavar="FILE")
    restore.add_argument(
        "-f", "--force", action="store_true", help="overwrite an existing database"
    )
    restore.add_argument("--federated", action="store_true", help="only the federated tables")

    fsck = command(
        "fsck", cmd_fsck, "check and fix the database", FSCK_HELP, [connection, output, common]
    )
    fsck.add_argument("--dry", action="store_true", help="report only; change nothing")
    fsck.add_argument("-b", "--backup", metavar="FILE", help="where to write the backup")
    fsck.add_argument("-f", "--force", action="store_true", help="overwrite the backup file")

    purge_connection = connection_parent(skip=("-s",))
    history_purge = command(
        "purge-history",
        cmd_purge_history,
        "remove history records of DONE VMs",
        "Remove the history records of VMs in DONE state, by end time or for one VM.\n",
        [purge_connection, common],
    )
    done_purge = command(
        "purge-done",
        cmd_purge_done,
        "remove DONE VMs",
        "Remove VMs in DONE state (and their history) by end time.\n",
        [purge_connection, common],
    )
    for purge in (history_purge, done_purge):
        purge.add_argument("-s", "--start", metavar="TIME", help="from this time")
        purge.add_argument("-e", "--end", metavar="TIME", help="up to this time")
    history_purge.add_argument("-i", "--id", type=int, metavar="VM", help="only this VM")

    body_connection = connection_parent(skip=("-d",))
    change = command(
        "change-body",
        cmd_change_body,
        "change an element in object bodies",
        "Set, delete or append XPATH in the bodies of OBJECT rows, chosen by --id, by an\n"
        "--xpath that exists, or by an --expr XPATH<op>VALUE (= != < > <= >=).\n",
        [body_connection, output, common],
    )
    change.add_argument("object", metavar="OBJECT", help="vm, host, vnet, image, user, ...")
    change.add_argument("xpath_to_change", metavar="XPATH")
    change.add_argument("value", nargs="?", metavar="VALUE")
    change.add_argument("-i", "--id", type=int, metavar="ID")
    change.add_argument("-x", "--xpath", metavar="XPATH", help="objects where XPATH exists")
    change.add_argument("-e", "--expr", metavar="EXPR", help="objects where EXPR holds")
    change.add_argument("-d", "--delete", action="store_true", help="delete the elements")
    change.add_argument("-a", "--append", action="store_true", help="append a new element")
    change.add_argument("--dry", action="store_true", help="show the changes; write nothing")

    show = command(
        "show-body",
        cmd_show_body,
        "print an object's body",
        "Print the XML body of one object.\n",
        [connection, common],
    )
    show.add_argument("object", metavar="OBJECT")
    show.add_argument("-i", "--id", type=int, required=True, metavar="ID")

    update = command(
        "update-body",
        cmd_update_body,
        "replace an object's body",
        "Replace the XML body of one object with --file FILE or standard input.\n",
        [connection, common],
    )
    update.add_argument("object", metavar="OBJECT")
    update.add_argument("-i", "--id", type=int, required=True, metavar="ID")
    update.add_argument("--file", metavar="FILE")

    to_mysql = command(
        "sqlite2mysql",
        cmd_sqlite2mysql,
        "copy a SQLite database into MySQL",
        "Copy every table of the SQLite database (-s or the default file) into a bootstrapped\n"
        "MySQL database at the same version (-S/-P/-u/-p/-d); row counts are verified.\n",
        [connection, common],
    )
    to_mysql.add_argument("-b", "--backup", metavar="FILE", help="MySQL backup file")
    to_mysql.add_argument("-f", "--force", action="store_true", help="overwrite the backup file")
    return parser


def build_full_parser() -> ToolParser:
    """The parser with every command's options (for shell completions and man pages)."""
    return build_parser((), every_command=True)


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run(build_parser(argv), argv))


if __name__ == "__main__":  # pragma: no cover
    main()
