"""``oneprovider``: the providers of edge clusters (cloud credentials and location).

Thin layer over ``onetools.provision.provider``: parse, resolve names, call, print.  Commands
and output follow the original (``reference/oneprovision.md`` §1.5); connection secrets are
masked in every output unless ``--decrypt``.  Nothing heavy is imported at module level, so
``--help`` and ``list`` on the embedded store start fast.
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
    from onetools.provision.provider import Provider

DESCRIPTION = """\
Manage providers: the credentials and location of a cloud (aws, equinix, google, digitalocean,
vultr_metal, vultr_virtual) or an on-premise site (onprem) that provisions deploy edge clusters
on. Providers are OpenNebula documents (type 102) on the front-end given by --endpoint (or
$ONE_XMLRPC, ~/.one/one_endpoint), else in the embedded store ($ONETOOLS_HOME).

Connection secrets are encrypted at rest and shown as ******** unless --decrypt.
exit codes: 0 success; 255 any error
"""

CREATE_HELP = """\
Create a provider from a YAML file:

  name: aws-frankfurt
  description: Edge cluster in AWS Frankfurt
  provider: aws                 # aws, digitalocean, equinix, google, onprem,
                                # vultr_metal, vultr_virtual
  connection:                   # the driver's keys (none for onprem)
    access_key: ...
    secret_key: ...
    region: eu-central-1
  inputs: [...]                 # optional, offered to provisions
  plain: {provision_type: metal}  # optional, stored unencrypted

Google's connection 'credentials' names a JSON key file; its content is stored.
Prints the new provider's ID.
"""

UPDATE_HELP = """\
Replace the provider's body (or, with --plain, its PLAIN section) with the JSON in FILE, or
edit it in $EDITOR (default vi) when no FILE is given. The top-level keys, 'provider' and
'name' cannot change. A connection value of ******** keeps the stored secret.
"""

COLUMNS: tuple[Column, ...] = (
    Column("ID", 4, lambda p: p.id, align="right"),
    Column("NAME", 25, lambda p: p.name, expand=True),
    Column("REGTIME", 15, lambda p: p.registration_time, kind="date"),
)


# -- helpers ------------------------------------------------------------------------------------
def _names(one: OneApi) -> Callable[[], Sequence[OneObject]]:
    from onetools.provision.provider import provider_names

    return lambda: provider_names(one)


def _provider_ids(one: OneApi, spec: str) -> list[int]:
    return resolve_ids(spec, _names(one), "provider")


def _provider_id(one: OneApi, text: str) -> int:
    return resolve_id(text, _names(one), "provider")


def _report(ids: Sequence[int], failures: dict[int, OnetoolsError]) -> int:
    """One ``ERROR`` line per failed ID (the others were done); 255 if any failed.  With
    several IDs each line says which provider it is about; with one, the message is the
    library's own (the original's exact texts)."""
    for oid, error in failures.items():
        message = error.log_line()
        if len(ids) > 1:
            message = f"Provider {oid}: {message}"
        log_line(error.level, message)
    return EXIT_FATAL if failures else EXIT_OK


def _read_file(path: str) -> str:
    return read_text_file(path, allow_stdin=False)


# -- commands -----------------------------------------------------------------------------------
def cmd_create(args: argparse.Namespace) -> int:
    from onetools.provision.provider import create_provider

    text = _read_file(args.file)
    with open_one(args) as one:
        oid = create_provider(one, text, path=args.file)
    sys.stdout.write(f"ID: {oid}\n")
    return EXIT_OK


def cmd_delete(args: argparse.Namespace) -> int:
    from onetools.provision.provider import delete_providers

    with open_one(args) as one:
        ids = _provider_ids(one, args.range)
        return _report(ids, delete_providers(one, ids))


def cmd_list(args: argparse.Namespace) -> int:
    from onetools.provision.provider import list_providers

    with open_one(args) as one:
        providers = list_providers(one, decrypt=bool(args.output))
    if args.output:
        emit_pool(
            "DOCUMENT",
            [p.to_xml(args.decrypt) for p in providers] if args.output == "xml" else [],
            [p.to_dict(args.decrypt) for p in providers] if args.output != "xml" else [],
            args.output,
        )
    else:
        sys.stdout.write(render_table(COLUMNS, providers, args))
    return EXIT_OK


def _show_text(provider: Provider, decrypt: bool) -> str:
    lines = [
        f"PROVIDER {provider.id} INFORMATION",
        f"{'ID':<4} : {provider.id}",
        f"{'NAME':<4} : {provider.name}",
    ]
    if provider.driver == "onprem" and provider.body is not None:
        pass  # no connection to show (6.4+)
    elif provider.body is None or not provider.connection_in_clear:
        log_line(
            "WARN",
            f"Provider {provider.id}: the body cannot be decrypted (reading provider "
            "connections needs a user of the oneadmin group)",
        )
    else:
        pairs = provider.display_connection(decrypt)
        width = max([len(key) for key, _ in pairs] + [0])
        lines += ["", "CONNECTION INFORMATION"]
        lines += [f"{key:<{width}} : {value}" for key, value in pairs]
    return "".join(line + "\n" for line in lines)


def cmd_show(args: argparse.Namespace) -> int:
    from onetools.provision.provider import show_provider

    with open_one(args) as one:
        provider = show_provider(one, _provider_id(one, args.provider))
    if args.output:
        emit_object(provider.to_xml(args.decrypt), provider.to_dict(args.decrypt), args.output)
    else:
        sys.stdout.write(_show_text(provider, args.decrypt))
    return EXIT_OK


def _edit(text: str) -> str:
    return edit_text(text, "oneprovider-", ".json")


def cmd_update(args: argparse.Namespace) -> int:
    import json

    from onetools.provision.provider import ProviderError, show_provider, update_provider

    with open_one(args) as one:
        oid = _provider_id(one, args.provider)
        section = None
        if args.file:
            text = _read_file(args.file)
        else:
            current = show_provider(one, oid)
            section = current.plain if args.plain else current.body
            if section is None or not current.connection_in_clear:
                raise ProviderError(
                    f"Provider {oid}: the body cannot be decrypted (reading provider "
                    "connections needs a user of the oneadmin group)"
                )
            original = json.dumps(section, indent=4, ensure_ascii=False) + "\n"
            text = _edit(original)
            if text == original:
                if getattr(args, "verbose", False):
                    log_line("INFO", "No changes: provider not updated")
                return EXIT_OK
        changed = update_provider(one, oid, text, plain=args.plain, edited_from=section)
    if not changed and getattr(args, "verbose", False):
        log_line("INFO", "No changes: provider not updated")
    return EXIT_OK


def cmd_chgrp(args: argparse.Namespace) -> int:
    from onetools.provision.provider import chgrp_providers

    with open_one(args) as one:
        ids = _provider_ids(one, args.range)
        return _report(ids, chgrp_providers(one, ids, group_id(one, args.group)))


def cmd_chown(args: argparse.Namespace) -> int:
    from onetools.provision.provider import chown_providers

    with open_one(args) as one:
        ids = _provider_ids(one, args.range)
        uid = user_id(one, args.user)
        gid = group_id(one, args.group) if args.group is not None else -1
        return _report(ids, chown_providers(one, ids, uid, gid))


def cmd_chmod(args: argparse.Namespace) -> int:
    from onetools.provision.provider import chmod_providers

    permissions = permissions_of(args.octet)
    with open_one(args) as one:
        ids = _provider_ids(one, args.range)
        return _report(ids, chmod_providers(one, ids, permissions))


# -- parser -------------------------------------------------------------------------------------
COMMANDS = ("create", "delete", "list", "show", "update", "chgrp", "chown", "chmod")


def build_parser(selected: str | None = None) -> ToolParser:
    """The ``oneprovider`` parser with every command's options (completions and man pages
    call it so); ``selected`` builds only that command's options (faster start)."""
    connection = connection_parent()
    parser, commands = make_parser("oneprovider", DESCRIPTION, __version__, [connection])

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

    decrypt = argparse.ArgumentParser(add_help=False)
    decrypt.add_argument("--decrypt", action="store_true", help="show connection secrets in clear")

    create = command("create", cmd_create, "create a provider from a YAML file", CREATE_HELP)
    create.add_argument("file", metavar="FILE", help="provider YAML file")

    delete = command(
        "delete",
        cmd_delete,
        "delete providers",
        "Delete providers no provision uses.\n",
    )
    delete.add_argument("range", metavar="RANGE|LIST", help="IDs, names, ranges: 1,8..15,aws")

    command(
        "list",
        cmd_list,
        "list providers",
        "List the providers: ID, NAME, REGTIME (registration time).\n",
        [format_parent(), table_parent(), decrypt],
    )

    show = command(
        "show",
        cmd_show,
        "show a provider",
        "Show a provider and its connection information (secrets masked unless --decrypt).\n",
        [format_parent(), decrypt],
    )
    show.add_argument("provider", metavar="ID|NAME")

    update = command("update", cmd_update, "update a provider's body", UPDATE_HELP)
    update.add_argument("provider", metavar="ID|NAME")
    update.add_argument("file", nargs="?", metavar="FILE", help="JSON file (default: $EDITOR)")
    update.add_argument(
        "--plain", action="store_true", help="update the PLAIN section instead of the body"
    )

    chgrp = command("chgrp", cmd_chgrp, "change the group of providers", "Change the group.\n")
    chgrp.add_argument("range", metavar="RANGE|LIST")
    chgrp.add_argument("group", metavar="GROUP", help="group ID or name")

    chown = command(
        "chown", cmd_chown, "change the owner of providers", "Change the owner (and group).\n"
    )
    chown.add_argument("range", metavar="RANGE|LIST")
    chown.add_argument("user", metavar="USER", help="user ID or name")
    chown.add_argument("group", nargs="?", metavar="GROUP", help="group ID or name")

    chmod = command(
        "chmod",
        cmd_chmod,
        "change the permissions of providers",
        "Set the permissions from an octet such as 640 (owner, group, other; U=4 M=2 A=1).\n",
    )
    chmod.add_argument("range", metavar="RANGE|LIST")
    chmod.add_argument("octet", metavar="OCTET")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    tokens = list(sys.argv[1:] if argv is None else argv)
    command = command_of(tokens, COMMANDS)
    # Only the command run gets its options built; with none (--help, a typo) every
    # command's, so that the help and the error messages are complete.
    sys.exit(run(build_parser(command), argv))


if __name__ == "__main__":  # pragma: no cover
    main()
