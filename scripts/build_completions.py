"""Generate the bash/zsh completions and the man pages of every onetools command.

Usage: python scripts/build_completions.py [--check] [--out DIR]

Everything is generated from the commands' own argparse parsers, so completions and manuals
cannot drift from ``--help``.  For every tool in ``TOOLS`` it writes, under the repository
(or ``--out DIR``):

``completions/bash/<tool>``
    bash completion (``shtab``); the file name is what bash-completion's loader looks for.
``completions/zsh/_<tool>``
    zsh completion (``shtab``), a ``#compdef`` file for a directory on ``$fpath``.
``man/<tool>.1``
    the manual page, written by the small roff writer below (argparse-manpage's output files
    every command under "POSITIONAL ARGUMENTS", wraps the usage lines in the middle of
    options and fills example blocks into one paragraph).

and the same files again under ``src/onetools/share/`` (package data: they ship in the wheel).
With ``--check`` nothing is written: the files that are missing, differ, or are left over
from a tool no longer listed are printed and the exit code is 1.

Output is deterministic: no dates, and the only version in it is the package version (in the
man pages' ``.TH`` line, so a version bump needs a regeneration).  ``COLUMNS`` is fixed.
Python's argparse is the source of the usage lines, so another Python minor version can
change them: regenerate with the project's ``.venv``.

Adding a tool is one line in ``TOOLS``: its name, the ``module:function`` that returns its
complete parser (every subcommand with its options) and the environment variables it reads.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The copy shipped as package data (pyproject.toml, [tool.setuptools.package-data]).
PACKAGE_SHARE = Path("src") / "onetools" / "share"
COLUMNS = "80"
EXIT_CODES_PREFIX = "exit codes:"


@dataclass(frozen=True)
class Tool:
    """A command line to document: ``factory`` is ``module:function`` returning its parser
    with every subcommand built; ``environment`` names the variables it reads (described in
    ``ENVIRONMENT``)."""

    name: str
    factory: str
    environment: tuple[str, ...] = ()


TOOLS: tuple[Tool, ...] = (
    Tool("onecfg", "onetools.cli.onecfg:build_parser", ("ONECFG_ONE_VERSION", "ONECFG_ETC_DIR", "ONECFG_BACKUP_DIR", "ONECFG_LOCK_TIMEOUT", "ONE_LOCATION")),  # noqa: E501
    Tool("onedb", "onetools.cli.onedb:build_full_parser", ("ONE_DB_PASSWORD", "ONEDB_ONED_CONF", "ONE_LOCATION", "ONE_XMLRPC", "ONE_AUTH")),  # noqa: E501
    Tool("onemarket", "onetools.cli.onemarket:build_parser", ("ONE_XMLRPC", "ONE_AUTH", "ONETOOLS_HOME", "EDITOR")),  # noqa: E501
    Tool("onemarketapp", "onetools.cli.onemarketapp:build_parser", ("ONE_XMLRPC", "ONE_AUTH", "ONETOOLS_HOME", "EDITOR")),  # noqa: E501
    Tool("oneprovider", "onetools.cli.oneprovider:build_parser", ("ONE_XMLRPC", "ONE_AUTH", "ONETOOLS_HOME", "EDITOR")),  # noqa: E501
    Tool("oneprovision", "onetools.cli.oneprovision:build_parser", ("ONE_XMLRPC", "ONE_AUTH", "ONETOOLS_HOME")),  # noqa: E501
)  # fmt: skip

# What each variable means; "tool:NAME" overrides "NAME" for that tool's man page.
ENVIRONMENT: dict[str, str] = {
    "ONE_LOCATION": (
        "Root of a self-contained OpenNebula installation: configuration, database and lock "
        "files are looked for under it (etc/, var/) instead of /etc/one and /var/lib/one."
    ),
    "ONE_XMLRPC": (
        "Endpoint of the OpenNebula XML-RPC API when --endpoint is not given (else "
        "~/.one/one_endpoint, then /var/lib/one/.one/one_endpoint); with none of them the "
        "embedded store is used."
    ),
    "onedb:ONE_XMLRPC": (
        "Endpoint of the OpenNebula XML-RPC API (default: ~/.one/one_endpoint, then "
        "/var/lib/one/.one/one_endpoint, then http://localhost:2633/RPC2). onedb probes it "
        "to make sure oned is stopped before changing the database."
    ),
    "ONE_AUTH": (
        "File holding the user:password line for the XML-RPC API (default: ~/.one/one_auth, "
        "then /var/lib/one/.one/one_auth)."
    ),
    "EDITOR": "Editor for 'update' without a file (default: vi).",
    "ONETOOLS_HOME": (
        "Directory of the embedded object store used when no XML-RPC endpoint is configured "
        "(default: ~/.onetools)."
    ),
    "ONE_DB_PASSWORD": (
        "Database password when neither -p nor oned.conf gives one (instead of a prompt)."
    ),
    "ONEDB_ONED_CONF": (
        "The oned.conf file the database connection is read from (default: "
        "$ONE_LOCATION/etc/oned.conf or /etc/one/oned.conf)."
    ),
    "ONECFG_ONE_VERSION": (
        "The installed OpenNebula version, for hosts and containers without oned "
        "(--one-version takes precedence)."
    ),
    "ONECFG_ETC_DIR": "Directory of the settings file onecfg.conf (default: /etc).",
    "ONECFG_BACKUP_DIR": (
        "Where emergency backups are written before configuration files change "
        "(default: /var/lib/one/backups/config)."
    ),
    "ONECFG_LOCK_TIMEOUT": (
        "Seconds to wait for another onecfg run on the same tree to finish (default: 600)."
    ),
}


# -- building the parsers ------------------------------------------------------------------------
def load_parser(tool: Tool) -> argparse.ArgumentParser:
    """A fresh parser of ``tool`` (callers annotate their own copy)."""
    module_name, _, function_name = tool.factory.partition(":")
    factory: Callable[[], argparse.ArgumentParser] = getattr(
        importlib.import_module(module_name), function_name
    )
    return factory()


def subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, summary, parser) of each public subcommand, in the order they were added."""
    result = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                if choice.help != argparse.SUPPRESS:
                    result.append((choice.dest, choice.help or "", action.choices[choice.dest]))
    return result


def visible_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        action
        for action in parser._actions
        if action.help != argparse.SUPPRESS and not isinstance(action, argparse._SubParsersAction)
    ]


def long_options(parser: argparse.ArgumentParser) -> list[str]:
    """Every long option of the parser and its subcommands (used by the tests too)."""
    names = [
        option
        for action in visible_actions(parser)
        for option in action.option_strings
        if option.startswith("--")
    ]
    for _, _, subparser in subcommands(parser):
        names += [name for name in long_options(subparser) if name not in names]
    return list(dict.fromkeys(names))


def annotate_for_completion(parser: argparse.ArgumentParser) -> None:
    """Tell shtab what values complete, from the metavars our parsers use consistently:
    ``FILE`` completes file names, ``DIR`` directories, ``a|b|c`` those words.  Without this
    bash offers nothing after ``--sqlite`` (shtab registers ``-o bashdefault``, not
    ``-o default``)."""
    import shtab

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                annotate_for_completion(subparser)
            continue
        if hasattr(action, "complete") or action.choices or action.nargs == 0:
            continue
        metavar = action.metavar if isinstance(action.metavar, str) else None
        if metavar == "FILE":
            action.complete = shtab.FILE  # type: ignore[attr-defined]
        elif metavar == "DIR":
            action.complete = shtab.DIRECTORY  # type: ignore[attr-defined]
        elif metavar and re.fullmatch(r"[a-z0-9-]+(\|[a-z0-9-]+)+", metavar):
            action.choices = metavar.split("|")


def prepare_for_zsh(parser: argparse.ArgumentParser) -> None:
    """Work around two shtab (1.7-1.13) zsh quirks on our own copy of the parser: it describes
    a subcommand by the first line of its long description (cut mid-sentence here) instead of
    its summary, and writes metavars unescaped into the ``:message:`` field of an
    ``_arguments`` spec, where a ``:`` (``MODES[:FILE[:VERSION]]``) ends the field."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                subparser.description = None
                prepare_for_zsh(subparser)
        elif isinstance(action.metavar, str):
            # Parent parsers' actions are shared by the commands: escape only once.
            action.metavar = re.sub(r"(?<!\\):", r"\\:", action.metavar)


# -- completions -------------------------------------------------------------------------------
def bash_completion(tool: Tool) -> str:
    import shtab

    parser = load_parser(tool)
    annotate_for_completion(parser)
    script: str = shtab.complete(parser, shell="bash")
    header = (
        f"# bash completion for {tool.name}, generated from its argparse parser by\n"
        "# scripts/build_completions.py (onetools): do not edit, regenerate.\n"
    )
    return header + script.rstrip("\n") + "\n"


def zsh_completion(tool: Tool) -> str:
    import shtab

    parser = load_parser(tool)
    annotate_for_completion(parser)
    prepare_for_zsh(parser)
    script: str = shtab.complete(parser, shell="zsh")
    first, _, rest = script.partition("\n")  # '#compdef <tool>' must stay the first line
    header = (
        f"# zsh completion for {tool.name}, generated from its argparse parser by\n"
        "# scripts/build_completions.py (onetools): do not edit, regenerate.\n"
    )
    return first + "\n" + header + rest.rstrip("\n") + "\n"


# -- man pages -----------------------------------------------------------------------------------
def roff_escape(text: str) -> str:
    """Text as roff input: backslashes, hyphens (so options stay ASCII and searchable), and
    non-ASCII characters as named escapes (groff without preconv reads Latin-1)."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "".join(char if ord(char) < 128 else f"\\[u{ord(char):04X}]" for char in text)


def roff_line(text: str) -> str:
    """One escaped input line; a leading ``.`` or ``'`` would make it a request."""
    escaped = roff_escape(text)
    return "\\&" + escaped if escaped[:1] in (".", "'") else escaped


def bold(text: str) -> str:
    return f"\\fB{roff_escape(text)}\\fR"


def italic(text: str) -> str:
    return f"\\fI{roff_escape(text)}\\fR"


def split_exit_codes(description: str) -> tuple[str, str | None]:
    """The description without its ``exit codes:`` text (from a line starting so to the end
    of that paragraph), and that text."""
    kept, codes = [], None
    for paragraph in re.split(r"\n[ \t]*\n", description.strip("\n")):
        lines = paragraph.splitlines()
        start = next(
            (
                index
                for index, line in enumerate(lines)
                if line.lower().startswith(EXIT_CODES_PREFIX)
            ),
            None,
        )
        if start is None:
            kept.append(paragraph)
            continue
        codes = " ".join(" ".join(lines[start:])[len(EXIT_CODES_PREFIX) :].split())
        if start:
            kept.append("\n".join(lines[:start]))
    return "\n\n".join(kept), codes


def exit_code_items(text: str) -> list[tuple[str, str]] | None:
    """``0 done; 1 some; 255 error`` as [(code, meaning)], or None when the text does not read
    as a list of increasing codes (then it is shown as written)."""
    parts = re.split(r"(?:^|[;,]\s+)(\d{1,3})\s+", text)
    if parts[0] != "":
        return None
    items = [(parts[index], parts[index + 1].strip()) for index in range(1, len(parts), 2)]
    numbers = [int(code) for code, _ in items]
    if numbers != sorted(set(numbers)) or numbers[-1] > 255:
        return None
    return items


def text_blocks(text: str) -> list[str]:
    """Help text (argparse raw-description style) as roff: blank lines part paragraphs,
    indented lines are examples kept as written, other lines are filled."""
    lines: list[str] = []
    for paragraph in re.split(r"\n[ \t]*\n", text.strip("\n")):
        lines.append(".PP")
        example: list[str] = []
        for line in paragraph.splitlines():
            if line[:1] in (" ", "\t"):
                example.append(line.rstrip())
                continue
            lines += example_block(example)
            example = []
            lines.append(roff_line(line.strip()))
        lines += example_block(example)
    return lines


def example_block(example: list[str]) -> list[str]:
    if not example:
        return []
    indent = min(len(line) - len(line.lstrip()) for line in example)
    body = [roff_line(line[indent:]) if line.strip() else ".sp" for line in example]
    return [".RS 4", ".nf", *body, ".fi", ".RE"]


def one_line_usage(
    parser: argparse.ArgumentParser, actions: Sequence[argparse.Action] | None = None
) -> str:
    """The usage argparse prints (of ``actions``, default all), on one line, without the
    ``usage:`` prefix and the program name."""
    formatter = parser._get_formatter()
    formatter._width = 100_000  # no wrapping: the man page's own filling does it
    chosen = parser._actions if actions is None else list(actions)
    formatter.add_usage(None, chosen, parser._mutually_exclusive_groups, "")
    usage = " ".join(formatter.format_help().split())
    return usage[len(parser.prog) :].strip() if usage.startswith(parser.prog) else usage


def synopsis(prog: str, usage: str, other_options: bool = False) -> list[str]:
    """A ``.SY`` block: bold command name, ``[options]`` for the options described elsewhere,
    then the usage with the spaces inside brackets unbreakable (so that
    ``[--format line|yaml]`` never splits across lines)."""
    out, depth = [], 0
    for char in usage:
        if char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
        out.append("\\ " if char == " " and depth > 0 else roff_escape(char))
    text = ("[\\fIoptions\\fR] " if other_options else "") + "".join(out)
    if text[:1] in (".", "'"):
        text = "\\&" + text
    return [f'.SY "{roff_escape(prog)}"', *([text.rstrip()] if text.strip() else []), ".YS"]


def invocation(action: argparse.Action, formatter: argparse.HelpFormatter) -> str:
    """``-s, --sqlite FILE`` in roff: option names bold, the value italic."""
    if not action.option_strings:
        (metavar,) = formatter._metavar_formatter(action, action.dest)(1)
        return bold(metavar)
    names = ", ".join(bold(option) for option in action.option_strings)
    if action.nargs == 0:
        return names
    value = formatter._format_args(action, action.dest.upper())
    return f"{names} {italic(value)}"


def action_signature(action: argparse.Action) -> tuple[object, ...]:
    return (tuple(action.option_strings), action.dest, action.metavar, action.help, action.nargs)


def options_block(
    parser: argparse.ArgumentParser, actions: Sequence[argparse.Action], heading_prefix: str = ""
) -> list[str]:
    """The actions as ``.TP`` entries, grouped under their argparse group titles."""
    formatter = parser._get_formatter()
    wanted = {id(action) for action in actions}
    lines: list[str] = []
    for group in parser._action_groups:
        members = [action for action in group._group_actions if id(action) in wanted]
        if not members:
            continue
        title = {"positional arguments": "arguments", "optional arguments": "options"}.get(
            group.title or "", group.title or "options"
        )
        lines += [".PP", f"\\fI{roff_escape(heading_prefix + title)}:\\fR"]
        for action in members:
            lines += [".TP", invocation(action, formatter)]
            if action.help:
                help_text = formatter._expand_help(action)
                lines.append(roff_line(" ".join(help_text.split())))
    return lines


def short_description(tool: Tool, parser: argparse.ArgumentParser) -> str:
    """What the NAME line says: the CLI module docstring's first line when it reads
    ``"``tool``: summary."``, else the first sentence of the parser's description."""
    module = importlib.import_module(tool.factory.partition(":")[0])
    summary = (module.__doc__ or "").strip().splitlines()[:1]
    match = re.fullmatch(rf"``{re.escape(tool.name)}``:\s*(.+?)\.?", summary[0] if summary else "")
    if match:
        return match.group(1)
    description = " ".join((parser.description or tool.name).split())
    return re.split(r"(?<=[a-z)])[.:] ", description)[0].rstrip(".")


@dataclass
class ManLayout:
    """Which options a man page describes where: the top-level ones under OPTIONS, the ones
    every command shares under COMMON OPTIONS, the rest under each command."""

    parser: argparse.ArgumentParser
    commands: list[tuple[str, str, argparse.ArgumentParser]]
    top_actions: list[argparse.Action]
    common_actions: list[argparse.Action]
    own_actions: dict[str, list[argparse.Action]]

    @classmethod
    def of(cls, parser: argparse.ArgumentParser) -> ManLayout:
        commands = subcommands(parser)
        top_actions = visible_actions(parser)
        top = {action_signature(action) for action in top_actions}
        common: set[tuple[object, ...]] = set()
        if len(commands) > 1:
            common = (
                set.intersection(
                    *(
                        {action_signature(action) for action in visible_actions(sub)}
                        for _, _, sub in commands
                    )
                )
                - top
            )
        own = {
            name: [
                action
                for action in visible_actions(sub)
                if action_signature(action) not in common | top
            ]
            for name, _, sub in commands
        }
        common_actions = (
            [
                action
                for action in visible_actions(commands[0][2])
                if action_signature(action) in common
            ]
            if commands
            else []
        )
        return cls(parser, commands, top_actions, common_actions, own)


def man_page(tool: Tool, version: str) -> str:
    """The roff source of ``tool``'s manual page."""
    parser = load_parser(tool)
    layout = ManLayout.of(parser)
    lines = [
        f'.\\" Manual page of {tool.name}, generated from its argparse parser by',
        '.\\" scripts/build_completions.py (onetools): do not edit, regenerate.',
        f'.TH {tool.name.upper()} 1 "" "onetools {version}" "onetools manual"',
        ".nh",  # no hyphenation: option names must stay whole and searchable
        ".ad l",
        ".SH NAME",
        f"{tool.name} \\- {roff_escape(short_description(tool, parser))}",
        *synopsis_section(layout),
    ]
    description, top_codes = split_exit_codes(parser.description or "")
    if description:
        lines += [".SH DESCRIPTION", *text_blocks(description)]
    lines += options_sections(layout)
    command_lines, command_codes = commands_section(layout)
    lines += command_lines
    if top_codes or command_codes:
        lines += [
            ".SH EXIT STATUS",
            *exit_status_block(parser.prog, top_codes, command_codes),
        ]
    lines += environment_section(tool)
    others = [other.name for other in TOOLS if other.name != tool.name]
    if others:
        lines += [".SH SEE ALSO", ",\n".join(f".BR {name} (1)" for name in others)]
    return "\n".join(lines) + "\n"


def synopsis_section(layout: ManLayout) -> list[str]:
    lines = [".SH SYNOPSIS", *synopsis(layout.parser.prog, one_line_usage(layout.parser))]
    for name, _, subparser in layout.commands:
        usage = one_line_usage(subparser, layout.own_actions[name])
        lines += synopsis(subparser.prog, usage, other_options=True)
    return [*lines, ".nh"]  # groff's .YS turns hyphenation back on


def options_sections(layout: ManLayout) -> list[str]:
    lines = [".SH OPTIONS"]
    if layout.commands:
        note = after_name_note(layout.parser, layout.commands)
        lines += [".PP", "Options before the command name." + note]
    lines += options_block(layout.parser, layout.top_actions)
    if layout.common_actions:
        lines += [
            ".SH COMMON OPTIONS",
            ".PP",
            "Every command accepts these options after its name.",
            *options_block(layout.commands[0][2], layout.common_actions),
        ]
    return lines


def commands_section(layout: ManLayout) -> tuple[list[str], list[tuple[str, str]]]:
    """The COMMANDS section, and the exit codes each command documents."""
    lines = [".SH COMMANDS"] if layout.commands else []
    codes_by_command: list[tuple[str, str]] = []
    for name, summary, subparser in layout.commands:
        description, codes = split_exit_codes(subparser.description or summary)
        if codes:
            codes_by_command.append((subparser.prog, codes))
        lines += [f".SS {roff_escape(subparser.prog)}", *text_blocks(description)]
        lines += options_block(subparser, layout.own_actions[name])
    return lines, codes_by_command


def environment_section(tool: Tool) -> list[str]:
    lines = [".SH ENVIRONMENT"] if tool.environment else []
    for variable in tool.environment:
        meaning = ENVIRONMENT.get(f"{tool.name}:{variable}") or ENVIRONMENT.get(variable)
        if meaning is None:
            raise SystemExit(f"ERROR : {tool.name}: describe {variable} in ENVIRONMENT")
        lines += [".TP", bold(variable), roff_line(meaning)]
    return lines


def after_name_note(
    parser: argparse.ArgumentParser, commands: list[tuple[str, str, argparse.ArgumentParser]]
) -> str:
    """Whether the commands also take the top-level options after their name."""
    meta = (argparse._HelpAction, argparse._VersionAction)
    top = {
        action_signature(action)
        for action in visible_actions(parser)
        if not isinstance(action, meta)
    }
    if not top:
        return ""
    missing = [
        top - {action_signature(action) for action in visible_actions(sub)}
        for _, _, sub in commands
    ]
    if not any(missing):
        return " Every command also accepts them after its name."
    if all(len(gaps) < len(top) for gaps in missing):
        return " A command also accepts them after its name, unless it lists one differently."
    return ""


def exit_status_block(
    prog: str, top_codes: str | None, command_codes: list[tuple[str, str]]
) -> list[str]:
    """The documented codes only: the tool's, then each command's. Commands that document
    none get no invented default (``onedb history`` exits 1 on an empty database, say)."""
    lines: list[str] = []
    if top_codes:
        lines += [".PP", f"{bold(prog)}, in general:"]
        lines += exit_code_lines(top_codes)
    for prog, codes in command_codes:
        lines += [".PP", bold(prog)]
        lines += exit_code_lines(codes)
    return lines


def exit_code_lines(codes: str) -> list[str]:
    items = exit_code_items(codes)
    if items is None:
        return [".RS 4", roff_line(codes), ".RE"]
    lines = [".RS 4", ".PD 0"]  # no blank line between the codes of one list
    for code, meaning in items:
        lines += [".TP 6", bold(code), roff_line(meaning)]
    return [*lines, ".PD", ".RE"]


# -- files ---------------------------------------------------------------------------------------
def generate() -> dict[Path, bytes]:
    """Every generated file, by path relative to the output root (both copies)."""
    os.environ["COLUMNS"] = COLUMNS  # argparse reads it for every formatter
    src = str(REPO / "src")
    if sys.path[:1] != [src]:
        sys.path.insert(0, src)  # document this checkout, not an installed copy
    version: str = importlib.import_module("onetools").__version__
    files: dict[Path, bytes] = {}
    for tool in TOOLS:
        for relative, text in (
            (Path("completions") / "bash" / tool.name, bash_completion(tool)),
            (Path("completions") / "zsh" / f"_{tool.name}", zsh_completion(tool)),
            (Path("man") / f"{tool.name}.1", man_page(tool, version)),
        ):
            data = text.encode("utf-8")
            files[relative] = data
            files[PACKAGE_SHARE / relative] = data
    return files


def generated_dirs() -> list[Path]:
    tops = [Path("completions") / "bash", Path("completions") / "zsh", Path("man")]
    return tops + [PACKAGE_SHARE / top for top in tops]


def stale_files(root: Path, files: dict[Path, bytes]) -> list[str]:
    """Files under ``root`` that are missing, differ from ``files``, or are left over."""
    stale = []
    for relative, data in sorted(files.items()):
        path = root / relative
        if not path.is_file():
            stale.append(f"{relative} (missing)")
        elif path.read_bytes() != data:
            stale.append(f"{relative} (out of date)")
    for directory in generated_dirs():
        if (root / directory).is_dir():
            for path in sorted((root / directory).iterdir()):
                if path.relative_to(root) not in files and path.name != "__pycache__":
                    stale.append(f"{path.relative_to(root)} (not generated: remove it)")
    return stale


def write_files(root: Path, files: dict[Path, bytes]) -> list[Path]:
    """Write what changed; remove left-over files. Returns the paths touched."""
    touched = []
    for relative, data in sorted(files.items()):
        path = root / relative
        if path.is_file() and path.read_bytes() == data:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_bytes(data)
        temporary.replace(path)
        touched.append(relative)
    for directory in generated_dirs():
        if (root / directory).is_dir():
            for path in sorted((root / directory).iterdir()):
                if path.is_file() and path.relative_to(root) not in files:
                    path.unlink()
                    touched.append(path.relative_to(root))
    return touched


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 listing stale files"
    )
    parser.add_argument(
        "--out", type=Path, default=REPO, help="output root (default: the repository)"
    )
    args = parser.parse_args(None if argv is None else list(argv))
    files = generate()
    if args.check:
        stale = stale_files(args.out, files)
        for line in stale:
            print(f"stale: {line}")
        if stale:
            print("run: python scripts/build_completions.py", file=sys.stderr)
            return 1
        return 0
    for relative in write_files(args.out, files):
        print(f"wrote {relative}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
