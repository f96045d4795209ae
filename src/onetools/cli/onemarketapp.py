"""``onemarketapp``: marketplace apps (reference/onemarketapp.md §1).

Thin layer over ``onetools.market.apps``, ``.export`` and ``.download``: parse, resolve names,
call, print.  Commands, columns (§1.4, with ARCH and HYPERVISOR) and the show layout (§1.5)
follow the original; ``download`` fetches straight from the app's SOURCE (no Sunstone), honours
``--force`` and never leaves a partial file at PATH.  Nothing heavy is imported at module level.
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
from onetools.errors import EXIT_FATAL, EXIT_OK, OnetoolsError, UsageError

TYPE_CHECKING = False  # typing costs ~20 ms of start-up: annotations only
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from onetools.one.api import OneApi
    from onetools.one.xml import OneObject

DESCRIPTION = """\
Manage marketplace apps: list and show the apps of public and private marketplaces, create
apps in private ones (http, s3), export them into the cloud as images, VM templates and
service templates, and download their files. Apps live on the front-end given by --endpoint
(or $ONE_XMLRPC, ~/.one/one_endpoint), else in the embedded store ($ONETOOLS_HOME).

exit codes: 0 success; 255 any error
"""

CREATE_HELP = """\
Create an app in a private marketplace (-m) from a template FILE, or from the options:
--image (the image the app is made of), --name, --description. --dry prints the template.
A template FILE may define VMTEMPLATE apps (APPTEMPLATE64 and DISK = [ NAME, APP ] entries)
and SERVICE_TEMPLATE apps (APPTEMPLATE64 and ROLE = [ NAME, APP ] entries).
Prints the new app's ID.
"""

EXPORT_HELP = """\
Export the app into the cloud as NAME: an IMAGE app becomes an image (and the VM template of
its VMTEMPLATE64 unless --no), a VMTEMPLATE app its images and a VM template, a
SERVICE_TEMPLATE app its VM templates and a service template. KERNEL, RAMDISK and CONTEXT
images go to --file-datastore (else the first FILE datastore). Waits until the images are
READY. If any part fails, everything the export created is deleted again.
Prints IMAGE / VMTEMPLATE / SERVICE_TEMPLATE headings with '    ID: n' lines.
"""

DOWNLOAD_HELP = """\
Download the app's file to PATH, straight from its SOURCE, verified against the app's MD5 while
it streams. An interrupted download is resumed on the next run (PATH.part); PATH itself only
appears once the file is complete and verified. An existing PATH is refused without --force.
"""


def _arch(app: OneObject) -> str:
    return app.text("TEMPLATE/ARCHITECTURE")


def _size(app: OneObject) -> str:
    from onetools.market.apps import size_text

    return size_text(app.text("SIZE"))


def _regtime(app: OneObject) -> str:
    import time

    epoch = app.int("REGTIME", 0)
    return time.strftime("%m/%d/%y", time.localtime(epoch)) if epoch else "-"


def _short(table: dict[int, str], field: str) -> Callable[[OneObject], str]:
    return lambda app: table.get(app.int(field, 0), "-")


def _columns() -> tuple[Column, ...]:
    from onetools.market.apps import STATE_SHORT, TYPE_SHORT

    return (
        Column("ID", 4, lambda a: a.id, align="right"),
        Column("NAME", 20, lambda a: a.name, expand=True),
        Column("VERSION", 10, lambda a: a.text("VERSION")),
        Column("SIZE", 5, _size, align="right"),
        Column("ARCH", 7, _arch),
        Column("HYPERVISOR", 10, lambda a: a.text("TEMPLATE/HYPERVISOR")),
        Column("STAT", 4, _short(STATE_SHORT, "STATE")),
        Column("TYPE", 4, _short(TYPE_SHORT, "TYPE")),
        Column("REGTIME", 8, _regtime),
        Column("MARKET", 10, lambda a: a.text("MARKETPLACE")),
        Column("ZONE", 4, lambda a: a.text("ZONE_ID"), align="right"),
    )


# -- helpers ------------------------------------------------------------------------------------
def _app_loader(one: OneApi) -> Callable[[], Sequence[OneObject]]:
    from onetools.one.api import MARKETAPP

    return lambda: one.pool(MARKETAPP)


def _app_ids(one: OneApi, spec: str) -> list[int]:
    return resolve_ids(spec, _app_loader(one), "marketplace app")


def _app_id(one: OneApi, text: str) -> int:
    return resolve_id(text, _app_loader(one), "marketplace app")


def _each(args: argparse.Namespace, verb: str, action: Callable[[OneApi, int], None]) -> int:
    """Run ``action`` on every app of ``args.range``; keep going after a failure (as the
    original's perform_actions), one ERROR line per failure, 255 if any failed."""
    failed = False
    with open_one(args) as one:
        ids = _app_ids(one, args.range)
        for oid in ids:
            try:
                action(one, oid)
            except OnetoolsError as exc:
                failed = True
                message = exc.log_line()
                log_line(exc.level, f"MARKETPLACEAPP {oid}: {message}" if len(ids) > 1 else message)
            else:
                if getattr(args, "verbose", False):
                    log_line("INFO", f"MARKETPLACEAPP {oid}: {verb}")
    return EXIT_FATAL if failed else EXIT_OK


def _read_file(path: str) -> str:
    return read_text_file(path)


def _market_id(one: OneApi, text: str) -> int:
    from onetools.one.api import MARKET

    return resolve_id(text, lambda: one.pool(MARKET), "marketplace")


def _datastore_id(one: OneApi, text: str) -> int:
    from onetools.one.api import DATASTORE

    return resolve_id(text, lambda: one.pool(DATASTORE), "datastore")


def _filter_flag(one: OneApi, text: str | None) -> int:
    """``a|all`` -2, ``m|mine`` -3, ``g|group`` -1, ``G|primary`` -4, a uid or a user name."""
    flags = {"a": -2, "all": -2, "m": -3, "mine": -3, "g": -1, "group": -1, "G": -4}
    if text is None:
        return -2
    if text in flags or text.lower() in ("primary", "primary group"):
        return flags.get(text, -4)
    return user_id(one, text)


class _Bar:
    """A progress bar on stderr when it is a terminal; nothing when piped."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = -1

    def __call__(self, done: int, total: int | None) -> None:
        if not self.tty:
            return
        mb = done / (1024 * 1024)
        if total:
            percent = done * 100 // total
            if percent == self.last:
                return
            self.last = percent
            filled = percent * 30 // 100
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {percent:3d}% {mb:.1f} MB")
        else:
            sys.stderr.write(f"\r{mb:.1f} MB")
        sys.stderr.flush()

    def end(self) -> None:
        if self.tty and self.last != -1:
            sys.stderr.write("\n")


# -- commands -----------------------------------------------------------------------------------
def cmd_create(args: argparse.Namespace) -> int:
    from onetools.market import apps

    options = [
        flag
        for flag, value in (
            ("--name", args.name),
            ("--description", args.description),
            ("--image", args.image),
            ("--dry", args.dry or None),
        )
        if value is not None
    ]
    if args.file and options:
        raise UsageError(f"A template file cannot be mixed with {', '.join(options)}")
    if args.marketplace is None and not args.dry:
        raise UsageError("Marketplace to create the app in is mandatory: -m marketplace_id")
    with open_one(args) as one:
        if args.file:
            template = _read_file(args.file)
        elif args.image is not None:
            from onetools.one.api import IMAGE

            image_id = resolve_id(args.image, lambda: one.pool(IMAGE), "image")
            template = apps.image_app_template(one, image_id, args.name, args.description)
        else:
            template = apps.options_template(args.name, args.description, None)
        if args.dry:
            sys.stdout.write(template)
            return EXIT_OK
        oid = apps.create(one, _market_id(one, args.marketplace), template)
    sys.stdout.write(f"ID: {oid}\n")
    return EXIT_OK


def cmd_delete(args: argparse.Namespace) -> int:
    from onetools.market import apps

    return _each(args, "deleted", apps.delete)


def cmd_list(args: argparse.Namespace) -> int:
    from onetools.market import apps
    from onetools.market.monitor import refresh_stale

    with open_one(args) as one:
        # As onemarket list: markets due a refresh are refreshed first (embedded store only).
        refresh_stale(one, lambda line: log_line("WARN", line))
        rows = apps.list_apps(one, _filter_flag(one, args.filterflag))
    if args.output:
        emit_pool(
            "MARKETPLACEAPP",
            [a.xml for a in rows] if args.output == "xml" else [],
            [a.to_dict() for a in rows] if args.output != "xml" else [],
            args.output,
        )
    else:
        sys.stdout.write(render_table(_columns(), rows, args))
    return EXIT_OK


def _mask(app: OneObject, who: str) -> str:
    perms = app.permissions
    if perms is None:
        return "---"
    offset = {"OWNER": 0, "GROUP": 3, "OTHER": 6}[who]
    bits = perms.bits[offset : offset + 3]
    return "".join(letter if bit == 1 else "-" for letter, bit in zip("uma", bits, strict=True))


def show_text(app: OneObject, tty: bool = False) -> str:
    """The show layout of §1.5 (headings bold and underlined on a terminal)."""
    import time

    from onetools.market.apps import decode64, element_text, summary

    def heading(text: str) -> str:
        return f"\x1b[1;4m{text}\x1b[0m" if tty else text

    def row(key: str, value: object) -> str:
        return f"{key:<15}: {value}".rstrip()

    fields = summary(app)
    regtime = int(fields["REGTIME"] or 0)
    lines = [heading(f"MARKETPLACE APP {app.id} INFORMATION")]
    for key in ("ID", "NAME", "TYPE", "USER", "GROUP", "MARKETPLACE", "STATE", "LOCK"):
        lines.append(row(key, fields[key]))
    lines += ["", heading("PERMISSIONS")]
    lines += [row(who, _mask(app, who)) for who in ("OWNER", "GROUP", "OTHER")]
    lines += ["", heading("DETAILS")]
    details = {
        "SOURCE": fields["SOURCE"],
        "MD5": fields["MD5"],
        "PUBLISHER": fields["PUBLISHER"],
        "REGISTER TIME": time.strftime("%c", time.localtime(regtime)) if regtime else "-",
        "VERSION": fields["VERSION"],
        "DESCRIPTION": fields["DESCRIPTION"],
        "SIZE": fields["SIZE"],
        "ORIGIN_ID": fields["ORIGIN_ID"],
        "FORMAT": fields["FORMAT"],
    }
    lines += [row(key, value) for key, value in details.items()]
    try:
        imported = decode64(app.text("APPTEMPLATE64"))
    except OnetoolsError:
        imported = "(not valid base64)"
    lines += ["", heading("IMPORT TEMPLATE"), imported.rstrip("\n")]
    lines += ["", heading("MARKETPLACE APP TEMPLATE")]
    lines.append(element_text(app.root.find("TEMPLATE")).rstrip("\n"))
    return "".join(line + "\n" for line in lines)


def cmd_show(args: argparse.Namespace) -> int:
    from onetools.market import apps

    with open_one(args) as one:
        app = apps.show(one, _app_id(one, args.app))
    if args.output:
        emit_object(app.xml, app.to_dict(), args.output)
    else:
        sys.stdout.write(show_text(app, sys.stdout.isatty()))
    return EXIT_OK


def _edit(text: str) -> str:
    return edit_text(text, "onemarketapp-", ".txt")


def cmd_update(args: argparse.Namespace) -> int:
    from onetools.market import apps

    with open_one(args) as one:
        oid = _app_id(one, args.app)
        if args.file:
            text = _read_file(args.file)
        else:
            current = apps.element_text(apps.show(one, oid).root.find("TEMPLATE"))
            text = _edit(current)
            if text == current:
                return EXIT_OK
        apps.update(one, oid, text, append=args.append)
    return EXIT_OK


def cmd_rename(args: argparse.Namespace) -> int:
    from onetools.market import apps

    with open_one(args) as one:
        apps.rename(one, _app_id(one, args.app), args.name)
    return EXIT_OK


def cmd_chgrp(args: argparse.Namespace) -> int:
    from onetools.market import apps

    with open_one(args) as one:
        gid = group_id(one, args.group)
    return _each(args, "chgrp", lambda one, oid: apps.chown(one, oid, -1, gid))


def cmd_chown(args: argparse.Namespace) -> int:
    from onetools.market import apps

    with open_one(args) as one:
        uid = user_id(one, args.user)
        gid = group_id(one, args.group) if args.group is not None else -1
    return _each(args, "chown", lambda one, oid: apps.chown(one, oid, uid, gid))


def cmd_chmod(args: argparse.Namespace) -> int:
    from onetools.market import apps

    permissions = permissions_of(args.octet)
    return _each(args, "chmod", lambda one, oid: apps.chmod(one, oid, permissions))


def cmd_enable(args: argparse.Namespace) -> int:
    from onetools.market import apps

    return _each(args, "enabled", lambda one, oid: apps.enable(one, oid, True))


def cmd_disable(args: argparse.Namespace) -> int:
    from onetools.market import apps

    return _each(args, "disabled", lambda one, oid: apps.enable(one, oid, False))


def cmd_lock(args: argparse.Namespace) -> int:
    from onetools.market import apps

    return _each(args, "locked", lambda one, oid: apps.lock(one, oid, args.level))


def cmd_unlock(args: argparse.Namespace) -> int:
    from onetools.market import apps

    return _each(args, "unlocked", apps.unlock)


def cmd_export(args: argparse.Namespace) -> int:
    from onetools.market.export import export

    if args.datastore is None:
        raise UsageError("Missing datastore id: -d/--datastore ID|NAME")
    bar = _Bar()
    with open_one(args) as one:
        app_id = _app_id(one, args.app)
        datastore = _datastore_id(one, args.datastore)
        file_ds = _datastore_id(one, args.file_datastore) if args.file_datastore else None
        base: int | None = None
        if args.base_template is not None:
            from onetools.one.api import TEMPLATE

            text = args.base_template.strip()
            base = -1 if text == "-1" else resolve_id(text, lambda: one.pool(TEMPLATE), "template")
        try:
            result = export(
                one,
                app_id,
                args.name,
                datastore,
                file_datastore=file_ds,
                template=not args.no,
                vmname=args.vmname,
                base_template=base,
                progress=bar,
                parallel=args.parallel,
            )
        finally:
            bar.end()
    for key, ids in result.as_dict().items():
        sys.stdout.write(key + "\n" + "".join(f"    ID: {oid}\n" for oid in ids))
    return EXIT_OK


def cmd_download(args: argparse.Namespace) -> int:
    from onetools.market import apps
    from onetools.market.download import download

    s3_market = None
    with open_one(args) as one:
        app = apps.show(one, _app_id(one, args.app))
        source = app.text("SOURCE")
        if source.startswith("s3://"):
            from onetools.market.drivers import s3

            # the market of this connection (--home / --endpoint), not the environment's
            s3_market = s3.market_of_app(one, app) or s3.market_for(source, one)
    if not source:
        raise UsageError(f"App {app.id} ({app.name}) has no SOURCE to download")
    md5, sha256 = apps.checksums(app)
    bar = _Bar()
    try:
        download(
            source,
            args.path,
            md5=md5,
            sha256=sha256,
            progress=bar,
            force=args.force,
            s3_market=s3_market,
        )
    finally:
        bar.end()
    return EXIT_OK


def _ask(question: str) -> str:
    """One answer from stdin (the question on stdout, as the original); end of input is an
    error, so that a script without a terminal is never stuck in a loop."""
    sys.stdout.write(question)
    sys.stdout.flush()
    line = sys.stdin.readline()
    if not line:
        sys.stdout.write("\n")
        raise EOFError
    return line.strip()


def _import_images(args: argparse.Namespace) -> bool:
    """--yes / --no, else the original's question until yes or no (empty: yes)."""
    if args.yes or args.no:
        return bool(args.yes)
    while True:
        try:
            answer = _ask("Do you want to import images too? (yes/no, default=yes): ").lower()
        except EOFError:
            raise UsageError("No answer whether to import images: give --yes or --no") from None
        if not answer:
            sys.stdout.write("yes\n")
            return True
        if answer in ("yes", "no"):
            return answer == "yes"


def _import_market(one: OneApi, args: argparse.Namespace, what: str) -> int:
    """--market, else the original's prompt: the private markets, then their ID (empty: the
    first) until the reply is one of them."""
    from onetools.market.import_ import private_markets

    if args.market is not None:
        return _market_id(one, args.market)
    markets = private_markets(one)
    if not markets:
        raise UsageError("There are no http/s3 marketplaces")
    sys.stdout.write("Available Marketplaces (please enter ID)\n")
    sys.stdout.write("".join(f"- {m.id}: {m.name}\n" for m in markets))
    ids = {str(m.id): m.id for m in markets}
    while True:
        try:
            reply = _ask(f"Where do you want to import the {what}? (default={markets[0].id}) ")
        except EOFError:
            raise UsageError("No marketplace chosen: give --market ID") from None
        if not reply:
            return markets[0].id
        if reply in ids:
            return ids[reply]


def _print_imported(ids: Sequence[int]) -> None:
    sys.stdout.write("".join(f"ID: {oid}\n" for oid in ids))


def cmd_vm_template_import(args: argparse.Namespace) -> int:
    from onetools.market.import_ import import_vm_template
    from onetools.one.api import TEMPLATE

    with open_one(args) as one:
        template_id = resolve_id(args.template, lambda: one.pool(TEMPLATE), "VM template")
        images = _import_images(args)
        market = _import_market(one, args, "VM template")
        result = import_vm_template(one, template_id, market, import_all=images, name=args.vmname)
    _print_imported(result.ids)
    return EXIT_OK


def cmd_service_template_import(args: argparse.Namespace) -> int:
    from onetools.market.import_ import import_service_template
    from onetools.one.api import DOC_SERVICE_TEMPLATE, DOCUMENT

    with open_one(args) as one:
        doc_id = resolve_id(
            args.service_template,
            lambda: one.pool(DOCUMENT, doc_type=DOC_SERVICE_TEMPLATE),
            "service template",
        )
        images = _import_images(args)
        market = _import_market(one, args, "Service template")
        result = import_service_template(one, doc_id, market, import_all=images)
    _print_imported(result.ids)
    return EXIT_OK


def cmd_vm_import(args: argparse.Namespace) -> int:
    from onetools.market.import_ import import_vm
    from onetools.one.api import VM

    with open_one(args) as one:
        vm_id = resolve_id(args.vm, lambda: one.pool(VM), "VM")
        images = _import_images(args)
        market = _import_market(one, args, "VM template")
        result = import_vm(
            one, vm_id, market, import_all=images, name=args.vmname, timeout=args.timeout
        )
    _print_imported(result.ids)
    return EXIT_OK


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number of 1 or more")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("the timeout must be more than 0 seconds")
    return value


def cmd_group(args: argparse.Namespace) -> int:  # pragma: no cover - argparse requires action
    raise UsageError(f"{args.command}: an action is required")


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
    "lock",
    "unlock",
    "export",
    "download",
    "vm-template",
    "service-template",
    "vm",
)

IMPORT_HELP = """\
Publish a local {what} in a private marketplace (http, s3; --market, else asked on stdin):
{parts}
Images are published too with --yes, not with --no, else the question is asked on stdin.
Without images the apps reference no image apps (nothing dangling). If any part fails, every
app the import created is deleted again, and the error says if one could not be.
Prints 'ID: n' per created app: image apps, VM template apps, then the service app.
"""

VM_TEMPLATE_HELP = """\
Marketplace apps made of local VM templates:
  vm-template import ID|NAME [--market ID|NAME] [--yes|--no] [--vmname NAME]
"""

SERVICE_TEMPLATE_HELP = """\
Marketplace apps made of local service templates:
  service-template import ID|NAME [--market ID|NAME] [--yes|--no]
"""


VM_HELP = """\
Marketplace apps made of local virtual machines:
  vm import ID|NAME [--market ID|NAME] [--yes|--no] [--vmname NAME] [--timeout SECONDS]
"""


def build_parser(selected: str | None = None) -> ToolParser:
    """The ``onemarketapp`` parser with every command's options (completions and man pages
    call it so); ``selected`` builds only that command's options (faster start)."""
    connection = connection_parent()
    parser, commands = make_parser("onemarketapp", DESCRIPTION, __version__, [connection])

    def command(
        name: str,
        func: Callable[[argparse.Namespace], int],
        summary: str,
        description: str,
        parents: Sequence[argparse.ArgumentParser] = (),
    ) -> ToolParser:
        if selected is not None and name != selected:
            commands.add_parser(name, help=summary)
            return ToolParser(add_help=False)  # options of a command not run: not needed
        return add_command(commands, name, func, summary, description, [connection, *parents])

    def ranged(name: str, func: Callable[[argparse.Namespace], int], summary: str) -> ToolParser:
        sub = command(name, func, summary, summary.capitalize() + ".\n")
        sub.add_argument("range", metavar="RANGE|LIST", help="IDs, names, ranges: 1,8..15,name")
        return sub

    create = command("create", cmd_create, "create an app in a private marketplace", CREATE_HELP)
    create.add_argument("file", nargs="?", metavar="FILE", help="app template ('-': stdin)")
    create.add_argument("-m", "--marketplace", metavar="ID|NAME", help="marketplace (required)")
    create.add_argument("--name", metavar="NAME", help="name of the app")
    create.add_argument("--description", metavar="TEXT", help="description of the app")
    create.add_argument("--image", metavar="ID|NAME", help="image the app is made of")
    create.add_argument("--dry", action="store_true", help="print the template, create nothing")

    ranged("delete", cmd_delete, "delete apps")

    listing = command(
        "list",
        cmd_list,
        "list apps",
        "List the apps: ID NAME VERSION SIZE ARCH HYPERVISOR STAT TYPE REGTIME MARKET ZONE.\n"
        "FILTERFLAG: a|all (default), m|mine, g|group, G|primary, a user ID or name.\n",
        [format_parent(), table_parent()],
    )
    listing.add_argument("filterflag", nargs="?", metavar="FILTERFLAG")

    show = command("show", cmd_show, "show an app", "Show an app.\n", [format_parent()])
    show.add_argument("app", metavar="ID|NAME")

    update = command(
        "update",
        cmd_update,
        "update an app's template",
        "Replace the app's template with FILE, or edit it in $EDITOR (default vi).\n"
        "SOURCE, SIZE, MD5, FORMAT, REGTIME and ORIGIN_ID cannot be changed.\n",
    )
    update.add_argument("app", metavar="ID|NAME")
    update.add_argument("file", nargs="?", metavar="FILE")
    update.add_argument("-a", "--append", action="store_true", help="merge instead of replace")

    rename = command("rename", cmd_rename, "rename an app", "Rename an app.\n")
    rename.add_argument("app", metavar="ID|NAME")
    rename.add_argument("name", metavar="NAME")

    chgrp = ranged("chgrp", cmd_chgrp, "change the group of apps")
    chgrp.add_argument("group", metavar="GROUP", help="group ID or name")
    chown = ranged("chown", cmd_chown, "change the owner of apps")
    chown.add_argument("user", metavar="USER", help="user ID or name")
    chown.add_argument("group", nargs="?", metavar="GROUP", help="group ID or name")
    chmod = ranged("chmod", cmd_chmod, "change the permissions of apps")
    chmod.add_argument("octet", metavar="OCTET", help="e.g. 640 (U=4 M=2 A=1)")
    ranged("enable", cmd_enable, "enable apps")
    ranged("disable", cmd_disable, "disable apps")
    lock = ranged("lock", cmd_lock, "lock apps")
    levels = lock.add_mutually_exclusive_group()
    for flag, level in (("--use", 1), ("--manage", 2), ("--admin", 3), ("--all", 4)):
        levels.add_argument(
            flag, dest="level", action="store_const", const=level, help=f"lock level {level}"
        )
    lock.set_defaults(level=1)
    ranged("unlock", cmd_unlock, "unlock apps")

    export = command("export", cmd_export, "export an app into the cloud", EXPORT_HELP)
    export.add_argument("app", metavar="ID|NAME")
    export.add_argument("name", metavar="NAME")
    export.add_argument("-d", "--datastore", metavar="ID|NAME", help="image datastore (required)")
    export.add_argument(
        "--file-datastore", dest="file_datastore", metavar="ID|NAME", help="FILE datastore"
    )
    export.add_argument("--vmname", metavar="NAME", help="name of the VM template (IMAGE apps)")
    export.add_argument("--no", action="store_true", help="do not create the VM template")
    export.add_argument(
        "--template",
        dest="base_template",
        metavar="ID|NAME",
        help="build the VM template from a copy of this one (-1: none)",
    )
    export.add_argument(
        "--parallel",
        type=_count,
        default=4,
        metavar="N",
        help="disk files downloaded at once (embedded store) or fetched at once (default 4)",
    )

    download = command("download", cmd_download, "download an app's file", DOWNLOAD_HELP)
    download.add_argument("app", metavar="ID|NAME")
    download.add_argument("path", metavar="PATH")
    download.add_argument("--force", action="store_true", help="overwrite an existing PATH")

    def group(name: str, summary: str, description: str) -> Any:
        """A command with subcommands (``vm-template import``); None when another one runs."""
        if selected is not None and name != selected:
            commands.add_parser(name, help=summary)
            return None
        holder = add_command(commands, name, cmd_group, summary, description, [connection])
        return holder.add_subparsers(
            dest="action", metavar="<action>", parser_class=ToolParser, required=True
        )

    def import_options(sub: ToolParser) -> None:
        sub.add_argument("--market", metavar="ID|NAME", help="private marketplace (else asked)")
        answer = sub.add_mutually_exclusive_group()
        answer.add_argument("--yes", action="store_true", help="publish the images too")
        answer.add_argument("--no", action="store_true", help="do not publish the images")

    vm_templates = group("vm-template", "apps made of VM templates", VM_TEMPLATE_HELP)
    if vm_templates is not None:
        parts = (
            "one IMAGE app per image disk (volatile disks skipped), then the VMTEMPLATE app\n"
            "(its DISK = [ NAME, APP ] entries name them; NICs lose network and addresses)."
        )
        sub = add_command(
            vm_templates,
            "import",
            cmd_vm_template_import,
            "publish a VM template",
            IMPORT_HELP.format(what="VM template", parts=parts),
            [connection],
        )
        sub.add_argument("template", metavar="ID|NAME", help="VM template")
        import_options(sub)
        sub.add_argument("--vmname", metavar="NAME", help="name of the VMTEMPLATE app")

    services = group("service-template", "apps made of service templates", SERVICE_TEMPLATE_HELP)
    if services is not None:
        parts = (
            "each distinct role VM template as with vm-template import, then the\n"
            "SERVICE_TEMPLATE app (the service JSON, ROLE = [ NAME, APP ] per role)."
        )
        sub = add_command(
            services,
            "import",
            cmd_service_template_import,
            "publish a service template",
            IMPORT_HELP.format(what="service template", parts=parts),
            [connection],
        )
        sub.add_argument("service_template", metavar="ID|NAME", help="service template")
        import_options(sub)
    vms = group("vm", "apps made of virtual machines", VM_HELP)
    if vms is not None:
        parts = (
            "the VM is saved as a VM template '<vm name>-saved' (its image disks saved as\n"
            "images; a RUNNING VM is powered off for that and resumed afterwards), which is\n"
            "then published as with vm-template import. The saved template and images are\n"
            "deleted afterwards, also when the import fails. With --no no disk is saved\n"
            "and a running VM keeps running."
        )
        sub = add_command(
            vms,
            "import",
            cmd_vm_import,
            "publish a virtual machine",
            IMPORT_HELP.format(what="virtual machine", parts=parts),
            [connection],
        )
        sub.add_argument("vm", metavar="ID|NAME", help="virtual machine")
        import_options(sub)
        sub.add_argument("--vmname", metavar="NAME", help="name of the VMTEMPLATE app")
        sub.add_argument(
            "--timeout",
            type=_seconds,
            default=300.0,
            metavar="SECONDS",
            help="wait at most this long for poweroff and saved images (default 300)",
        )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    tokens = list(sys.argv[1:] if argv is None else argv)
    command = command_of(tokens, COMMANDS)
    # Only the command run gets its options built; with none (--help, a typo) every
    # command's, so that the help and the error messages are complete.
    sys.exit(run(build_parser(command), argv))


if __name__ == "__main__":  # pragma: no cover
    main()
