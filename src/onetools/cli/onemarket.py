"""``onemarket``: marketplaces (catalogs and private markets) and catalog refresh.

Thin layer over ``onetools.market.markets`` and ``onetools.market.monitor``: parse, resolve
names, call, print.  Commands, list columns and the show layout follow the original
(``reference/onemarketapp.md`` §2, with the 6.2+ enable/disable and STAT); ``refresh`` is
new: it monitors a catalog market now (embedded store only, oned monitors by itself).
Nothing heavy is imported at module level.
"""

from __future__ import annotations

import argparse
import sys

from onetools import __version__
from onetools.cli._one import (
    Column,
    command_of,
    connection_parent,
    edit_text,
    emit_object,
    emit_pool,
    format_parent,
    group_id,
    log_line,
    open_one,
    permissions_of,
    read_text_file,
    render_table,
    resolve_id,
    resolve_ids,
    table_parent,
    user_id,
)
from onetools.cli._options import ToolParser, add_command, make_parser, run
from onetools.errors import EXIT_FATAL, EXIT_OK

TYPE_CHECKING = False  # typing costs ~20 ms of start-up: annotations only
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from onetools.errors import OnetoolsError
    from onetools.one.api import OneApi
    from onetools.one.xml import OneObject

DESCRIPTION = """\
Manage marketplaces: catalogs whose apps are monitored (one, linuxcontainers, turnkeylinux,
dockerhub, docker_registry) and private markets that hold users' apps (http, s3). Markets
live on the front-end given by --endpoint (or $ONE_XMLRPC, ~/.one/one_endpoint), else in
the embedded store ($ONETOOLS_HOME), where 'refresh' fetches a catalog's apps.
exit codes: 0 success; 255 any error
"""

CREATE_HELP = """\
Create a market from a template file, e.g.

  NAME       = "web"
  MARKET_MAD = "http"
  BASE_URL   = "http://frontend/market"
  PUBLIC_DIR = "/var/local/market"

Required per MARKET_MAD: http BASE_URL, PUBLIC_DIR; s3 ACCESS_KEY_ID, SECRET_ACCESS_KEY,
REGION, BUCKET; docker_registry BASE_URL; one, linuxcontainers, turnkeylinux, dockerhub
none (ENDPOINT optional). Prints the new market's ID.
"""

REFRESH_HELP = """\
Fetch a catalog market's list now and make its apps match: new entries are added, changed
ones updated (same ID), vanished ones removed; other markets' apps are never touched.
Entries that are unsafe (names OpenNebula refuses, control characters, values that would add
template attributes) are skipped with one warning each. If the catalog cannot be fetched or
parsed, nothing changes and the command fails naming what failed.

Only on the embedded store: an OpenNebula front-end monitors its markets itself (every
MONITORING_INTERVAL_MARKET, 600 s by default) and this command refuses. Once refreshed, a
market is refreshed again when listed after its MONITORING_INTERVAL (default 600 s).
"""


def unit_to_str(megabytes: int) -> str:
    """``unit_to_str`` from M: 2048 → ``2G``, 1536 → ``1.5G``, 0 → ``0M``."""
    value = float(megabytes)
    units = ["M", "G", "T", "P"]
    index = 0
    while value > 1024 and index < len(units) - 1:
        value /= 1024
        index += 1
    text = f"{value:.1f}"
    if text.endswith(".0"):
        text = text[:-2]
    return text + units[index]


def _avail(market: OneObject) -> str:
    total = market.int("TOTAL_MB", 0)
    if total <= 0:
        return "-"
    return f"{round(market.int('FREE_MB', 0) / total * 100)}%"


def _state(market: OneObject) -> str:
    from onetools.market.markets import SHORT_STATES

    return SHORT_STATES.get(market.int("STATE", 0), "-")


COLUMNS: tuple[Column, ...] = (
    Column("ID", 4, lambda m: m.id, align="right"),
    Column("NAME", 30, lambda m: m.name, expand=True),
    Column("SIZE", 6, lambda m: unit_to_str(m.int("TOTAL_MB", 0)), align="right"),
    Column("AVAIL", 6, _avail, align="right"),
    Column("APPS", 6, lambda m: len(m.ids("MARKETPLACEAPPS")), align="right"),
    Column("MAD", 15, lambda m: m.text("MARKET_MAD")),
    Column("ZONE", 4, lambda m: m.text("ZONE_ID"), align="right"),
    Column("STAT", 4, _state),
)
EXTRA_COLUMNS: tuple[Column, ...] = (
    Column("USER", 10, lambda m: m.uname),
    Column("GROUP", 10, lambda m: m.gname),
)


# -- helpers ------------------------------------------------------------------------------------
def _names(one: OneApi) -> Callable[[], Sequence[OneObject]]:
    from onetools.one.api import MARKET

    return lambda: one.pool(MARKET)


def _market_ids(one: OneApi, spec: str) -> list[int]:
    return resolve_ids(spec, _names(one), "marketplace")


def _market_id(one: OneApi, text: str) -> int:
    return resolve_id(text, _names(one), "marketplace")


def _report(
    ids: Sequence[int], failures: dict[int, OnetoolsError], verb: str, verbose: bool
) -> int:
    for oid in ids:
        if oid in failures:
            error = failures[oid]
            message = error.log_line()
            if len(ids) > 1:
                message = f"Marketplace {oid}: {message}"
            log_line(error.level, message)
        elif verbose:
            sys.stdout.write(f"MARKETPLACE {oid}: {verb}\n")
    return EXIT_FATAL if failures else EXIT_OK


def _read_file(path: str) -> str:
    return read_text_file(path)


def _verbose(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "verbose", False))


# -- commands -----------------------------------------------------------------------------------
def cmd_create(args: argparse.Namespace) -> int:
    from onetools.market.markets import create_market

    text = _read_file(args.file)
    with open_one(args) as one:
        oid = create_market(one, text)
    sys.stdout.write(f"ID: {oid}\n")
    return EXIT_OK


def cmd_delete(args: argparse.Namespace) -> int:
    from onetools.market.markets import delete_markets

    with open_one(args) as one:
        ids = _market_ids(one, args.range)
        return _report(ids, delete_markets(one, ids), "Deleting", _verbose(args))


def cmd_list(args: argparse.Namespace) -> int:
    from onetools.market.markets import list_markets
    from onetools.market.monitor import refresh_stale

    with open_one(args) as one:
        refresh_stale(one, lambda line: log_line("WARN", line))
        markets = list_markets(one)
    if args.output:
        emit_pool(
            "MARKETPLACE",
            [m.xml for m in markets],
            [m.to_dict() for m in markets],
            args.output,
        )
    else:
        sys.stdout.write(render_table((*COLUMNS, *EXTRA_COLUMNS), markets, _default_cols(args)))
    return EXIT_OK


def _default_cols(args: argparse.Namespace) -> argparse.Namespace:
    if not args.list_columns:
        args.list_columns = ",".join(column.name for column in COLUMNS)
    return args


def _permission_mask(market: OneObject, who: str) -> str:
    return "".join(
        letter if market.text(f"PERMISSIONS/{who}_{bit}") == "1" else "-"
        for bit, letter in (("U", "u"), ("M", "m"), ("A", "a"))
    )


def _template_lines(market: OneObject) -> list[str]:
    element = market.root.find("TEMPLATE")
    lines: list[str] = []
    for child in list(element) if element is not None else []:
        if len(child):
            inner = ",\n".join(f"  {item.tag}={_quoted(item.text or '')}" for item in child)
            lines.append(f"{child.tag}=[\n{inner} ]")
        else:
            lines.append(f"{child.tag}={_quoted(child.text or '')}")
    return lines


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def show_text(market: OneObject) -> str:
    """The original's show layout (``%-15s: %-20s`` fields)."""
    from onetools.market.markets import STATES

    def field(name: str, value: object) -> str:
        return f"{name:<15}: {value}".rstrip()

    lines = [
        f"MARKETPLACE {market.id} INFORMATION",
        field("ID", market.id),
        field("NAME", market.name),
        field("USER", market.uname),
        field("GROUP", market.gname),
        field("STATE", STATES.get(market.int("STATE", 0), "-")),
        field("MARKET_MAD", market.text("MARKET_MAD")),
        "",
        "MARKETPLACE CAPACITY",
        field("TOTAL:", unit_to_str(market.int("TOTAL_MB", 0))),
        field("FREE:", unit_to_str(market.int("FREE_MB", 0))),
        field("USED: ", unit_to_str(market.int("USED_MB", 0))),
        "",
        "PERMISSIONS",
        field("OWNER", _permission_mask(market, "OWNER")),
        field("GROUP", _permission_mask(market, "GROUP")),
        field("OTHER", _permission_mask(market, "OTHER")),
        "",
        "MARKETPLACE TEMPLATE",
        *_template_lines(market),
        "",
        "MARKETAPPS",
        *(str(app) for app in market.ids("MARKETPLACEAPPS")),
    ]
    return "".join(line + "\n" for line in lines)


def cmd_show(args: argparse.Namespace) -> int:
    from onetools.market.markets import show_market

    with open_one(args) as one:
        market = show_market(one, _market_id(one, args.market))
    if args.output:
        emit_object(market.xml, market.to_dict(), args.output)
    else:
        sys.stdout.write(show_text(market))
    return EXIT_OK


def _edit(text: str) -> str:
    return edit_text(text, "onemarket-", ".tmpl")


def cmd_update(args: argparse.Namespace) -> int:
    from onetools.market.markets import show_market, update_market

    with open_one(args) as one:
        oid = _market_id(one, args.market)
        if args.file:
            text = _read_file(args.file)
        else:
            original = "\n".join(_template_lines(show_market(one, oid))) + "\n"
            text = _edit(original)
            if text == original:
                return EXIT_OK
        update_market(one, oid, text, append=args.append)
    return EXIT_OK


def cmd_rename(args: argparse.Namespace) -> int:
    from onetools.market.markets import rename_market

    with open_one(args) as one:
        rename_market(one, _market_id(one, args.market), args.name)
    return EXIT_OK


def cmd_chgrp(args: argparse.Namespace) -> int:
    from onetools.market.markets import chown_markets

    with open_one(args) as one:
        ids = _market_ids(one, args.range)
        failures = chown_markets(one, ids, -1, group_id(one, args.group))
        return _report(ids, failures, "Changing group", _verbose(args))


def cmd_chown(args: argparse.Namespace) -> int:
    from onetools.market.markets import chown_markets

    with open_one(args) as one:
        ids = _market_ids(one, args.range)
        uid = user_id(one, args.user)
        gid = group_id(one, args.group) if args.group is not None else -1
        return _report(ids, chown_markets(one, ids, uid, gid), "Changing owner", _verbose(args))


def cmd_chmod(args: argparse.Namespace) -> int:
    from onetools.market.markets import chmod_markets

    permissions = permissions_of(args.octet)
    with open_one(args) as one:
        ids = _market_ids(one, args.range)
        failures = chmod_markets(one, ids, permissions)
        return _report(ids, failures, "Changing permissions", _verbose(args))


def _enable(args: argparse.Namespace, enable: bool) -> int:
    from onetools.market.markets import enable_markets

    with open_one(args) as one:
        ids = _market_ids(one, args.range)
        verb = "Enabling" if enable else "Disabling"
        return _report(ids, enable_markets(one, ids, enable), verb, _verbose(args))


def cmd_enable(args: argparse.Namespace) -> int:
    return _enable(args, True)


def cmd_disable(args: argparse.Namespace) -> int:
    return _enable(args, False)


def cmd_refresh(args: argparse.Namespace) -> int:
    from onetools.market.monitor import refresh

    with open_one(args) as one:
        oid = _market_id(one, args.market)
        report = refresh(one, oid)
    for line in report.warnings:
        log_line("WARN", line)
    if _verbose(args):
        log_line("INFO", f"Market {oid} refreshed: {report.summary()}")
    return EXIT_OK


# -- parser -------------------------------------------------------------------------------------
COMMANDS = (
    "create",
    "delete",
    "list",
    "show",
    "update",
    "rename",
    "chgrp",
    "chown",
    "chmod",
    "enable",
    "disable",
    "refresh",
)


def build_parser(selected: str | None = None) -> ToolParser:
    """The ``onemarket`` parser with every command's options (completions and man pages call
    it so); ``selected`` builds only that command's options (faster start)."""
    connection = connection_parent()
    parser, commands = make_parser("onemarket", DESCRIPTION, __version__, [connection])

    def command(
        name: str,
        func: Callable[[argparse.Namespace], int],
        summary: str,
        description: str,
        parents: Sequence[argparse.ArgumentParser] = (),
    ) -> ToolParser:
        if selected is not None and name != selected:
            commands.add_parser(name, help=summary)
            return ToolParser(add_help=False)
        return add_command(commands, name, func, summary, description, [connection, *parents])

    create = command("create", cmd_create, "create a marketplace", CREATE_HELP)
    create.add_argument("file", metavar="FILE", help="template file (- for stdin)")

    delete = command(
        "delete",
        cmd_delete,
        "delete marketplaces",
        "Delete marketplaces. A private (http, s3) market that holds apps is refused; a "
        "catalog market is deleted with its app records.\n",
    )
    delete.add_argument("range", metavar="RANGE|LIST", help="IDs, names, ranges: 1,8..15,web")

    command(
        "list",
        cmd_list,
        "list marketplaces",
        "List the marketplaces: ID NAME SIZE AVAIL APPS MAD ZONE STAT (also USER, GROUP "
        "with -l).\n",
        [format_parent(), table_parent()],
    )

    show = command(
        "show", cmd_show, "show a marketplace", "Show a marketplace.\n", [format_parent()]
    )
    show.add_argument("market", metavar="ID|NAME")

    update = command(
        "update",
        cmd_update,
        "update a marketplace's template",
        "Replace the template with FILE (or merge with -a), or edit it in $EDITOR when no FILE "
        "is given. The driver's required attributes are checked again.\n",
    )
    update.add_argument("market", metavar="ID|NAME")
    update.add_argument("file", nargs="?", metavar="FILE", help="template file")
    update.add_argument("-a", "--append", action="store_true", help="merge, do not replace")

    rename = command("rename", cmd_rename, "rename a marketplace", "Rename a marketplace.\n")
    rename.add_argument("market", metavar="ID|NAME")
    rename.add_argument("name", metavar="NAME")

    chgrp = command("chgrp", cmd_chgrp, "change the group of marketplaces", "Change the group.\n")
    chgrp.add_argument("range", metavar="RANGE|LIST")
    chgrp.add_argument("group", metavar="GROUP", help="group ID or name")

    chown = command(
        "chown", cmd_chown, "change the owner of marketplaces", "Change the owner (and group).\n"
    )
    chown.add_argument("range", metavar="RANGE|LIST")
    chown.add_argument("user", metavar="USER", help="user ID or name")
    chown.add_argument("group", nargs="?", metavar="GROUP", help="group ID or name")

    chmod = command(
        "chmod",
        cmd_chmod,
        "change the permissions of marketplaces",
        "Set the permissions from an octet such as 640 (owner, group, other; U=4 M=2 A=1).\n",
    )
    chmod.add_argument("range", metavar="RANGE|LIST")
    chmod.add_argument("octet", metavar="OCTET")

    for name, func, summary in (
        ("enable", cmd_enable, "enable marketplaces"),
        ("disable", cmd_disable, "disable marketplaces (their app records are dropped)"),
    ):
        parsed = command(name, func, summary, summary.capitalize() + ".\n")
        parsed.add_argument("range", metavar="RANGE|LIST")

    refresh = command("refresh", cmd_refresh, "fetch a catalog market's apps now", REFRESH_HELP)
    refresh.add_argument("market", metavar="ID|NAME")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    tokens = list(sys.argv[1:] if argv is None else argv)
    sys.exit(run(build_parser(command_of(tokens, COMMANDS)), argv))


if __name__ == "__main__":  # pragma: no cover
    main()
