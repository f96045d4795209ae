"""The generated shell completions and man pages (scripts/build_completions.py).

They are committed (completions/, man/, and the package-data copy in src/onetools/share/), so
these tests regenerate them and compare, check that every shell and roff tool at hand accepts
them, and drive the bash completion function the way bash does on <TAB>.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib
from fnmatch import fnmatch
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "build_completions.py"
REGENERATE = "python scripts/build_completions.py"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_completions", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


generator = _load_generator()
TOOL_NAMES = [tool.name for tool in generator.TOOLS]


def run_generator(*args: str, columns: str = "37") -> subprocess.CompletedProcess[str]:
    # A narrow COLUMNS on purpose: the output must not depend on the caller's terminal.
    env = dict(os.environ, COLUMNS=columns)
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, check=False
    )


def generated_tree(root: Path) -> dict[Path, bytes]:
    return {path.relative_to(root): path.read_bytes() for path in root.rglob("*") if path.is_file()}


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A regeneration into an empty directory."""
    out = tmp_path_factory.mktemp("generated")
    result = run_generator("--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def parsers() -> dict[str, argparse.ArgumentParser]:
    return {tool.name: generator.load_parser(tool) for tool in generator.TOOLS}


# -- the committed files are what the parsers generate -------------------------------------------
def test_committed_files_match_a_regeneration(fresh: Path) -> None:
    files = generated_tree(fresh)
    per_tool = [
        name
        for tool in TOOL_NAMES
        for name in (f"completions/bash/{tool}", f"completions/zsh/_{tool}", f"man/{tool}.1")
    ]
    assert set(files) == {
        Path(top, name) for top in ("", "src/onetools/share") for name in per_tool
    }
    stale = [
        str(relative)
        for relative, data in sorted(files.items())
        if not (REPO / relative).is_file() or (REPO / relative).read_bytes() != data
    ]
    assert not stale, (
        f"generated completions/man pages are out of date ({', '.join(stale)}): "
        f"a parser changed; run `{REGENERATE}` and commit the result"
    )


def test_check_mode_passes_on_the_repository() -> None:
    result = run_generator("--check")
    assert result.returncode == 0, (
        f"`{REGENERATE} --check` reports stale files:\n{result.stdout}"
        f"run `{REGENERATE}` and commit the result"
    )


def test_check_mode_lists_stale_files_and_a_run_repairs_them(tmp_path: Path) -> None:
    assert run_generator("--out", str(tmp_path)).returncode == 0
    (tmp_path / "man" / "onedb.1").write_text("old\n")
    (tmp_path / "src/onetools/share/completions/bash/onecfg").unlink()
    (tmp_path / "completions/zsh/_onegone").write_text("#compdef onegone\n")

    result = run_generator("--check", "--out", str(tmp_path))
    assert result.returncode == 1
    assert "man/onedb.1 (out of date)" in result.stdout
    assert "src/onetools/share/completions/bash/onecfg (missing)" in result.stdout
    assert "completions/zsh/_onegone (not generated" in result.stdout
    assert len(result.stdout.splitlines()) == 3

    assert run_generator("--out", str(tmp_path)).returncode == 0
    assert run_generator("--check", "--out", str(tmp_path)).returncode == 0
    assert not (tmp_path / "completions/zsh/_onegone").exists()


def test_output_does_not_depend_on_the_terminal_width(fresh: Path, tmp_path: Path) -> None:
    assert run_generator("--out", str(tmp_path), columns="250").returncode == 0
    assert generated_tree(tmp_path) == generated_tree(fresh)


def test_package_data_ships_the_generated_copies() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["onetools"]
    share = REPO / "src" / "onetools"
    shipped = [
        path
        for sub in ("completions", "man")
        for path in (share / "share" / sub).rglob("*")
        if path.is_file()
    ]
    assert len(shipped) == 3 * len(TOOL_NAMES)
    # every file under share/ ships, but dotfiles (tool settings such as .ansible-lint)
    shipped += [
        path
        for path in (share / "share").rglob("*")
        if path.is_file() and not path.name.startswith(".")
    ]
    for path in shipped:
        relative = path.relative_to(share).as_posix()
        # setuptools reads "**/" as any number of directories, none included
        assert any(
            fnmatch(relative, pattern) or fnmatch(relative, pattern.replace("**/", ""))
            for pattern in patterns
        ), relative


# -- the parsers documented are complete -----------------------------------------------------
@pytest.mark.parametrize("tool", TOOL_NAMES)
def test_documented_parsers_have_every_command_built(
    tool: str, parsers: dict[str, argparse.ArgumentParser]
) -> None:
    # onedb (and oneprovider) build only the chosen command's options for start-up speed; the
    # factories in TOOLS must build them all, or the files below would miss options.
    commands = generator.subcommands(parsers[tool])
    assert len(commands) >= 7
    for name, _, subparser in commands:
        own = [action for action in subparser._actions if "-h" not in action.option_strings]
        assert own, f"{tool} {name}: no options built (the factory builds a partial parser)"


# -- shells accept the files -------------------------------------------------------------------
@pytest.mark.parametrize("tool", TOOL_NAMES)
def test_bash_completion_is_valid_bash(tool: str) -> None:
    result = subprocess.run(
        ["bash", "-n", str(REPO / "completions" / "bash" / tool)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("tool", TOOL_NAMES)
def test_zsh_completion_is_valid_zsh(tool: str) -> None:
    zsh = shutil.which("zsh")
    if zsh is None:
        pytest.skip("zsh is not installed: the zsh completions were not syntax-checked")
    path = REPO / "completions" / "zsh" / f"_{tool}"
    assert path.read_text().startswith(f"#compdef {tool}\n")
    result = subprocess.run([zsh, "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_zsh_completion_works_around_shtab_quirks(
    parsers: dict[str, argparse.ArgumentParser],
) -> None:
    # Checked without zsh: subcommands are described by their summary (shtab would take the
    # first line of the long description), and a ':' in a metavar is escaped (unescaped it
    # ends the message field of the _arguments spec).
    onecfg = (REPO / "completions" / "zsh" / "_onecfg").read_text()
    for name, summary, _ in generator.subcommands(parsers["onecfg"]):
        assert f"{name}:'{summary}'" in onecfg
    assert "]:MODES[\\:FILE[\\:VERSION]]:" in onecfg
    assert "MODES[:" not in onecfg


# -- man pages -----------------------------------------------------------------------------------
def man_source(tool: str) -> str:
    return (REPO / "man" / f"{tool}.1").read_text(encoding="ascii")  # non-ASCII is escaped


def unescape(roff: str) -> str:
    """The text of roff source: font changes dropped, escaped characters plain."""
    text = re.sub(r"\\f[BIRP]", "", roff)
    return text.replace("\\-", "-").replace("\\ ", " ").replace("\\e", "\\")


@pytest.mark.parametrize("tool", TOOL_NAMES)
def test_man_page_structure(tool: str) -> None:
    source = man_source(tool)
    headings = re.findall(r"^\.SH (.+)$", source, re.MULTILINE)
    assert re.search(rf'^\.TH {tool.upper()} 1 "" "onetools [0-9.]+', source, re.MULTILINE)
    assert headings[:4] == ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS"]
    for section in ("COMMANDS", "EXIT STATUS", "ENVIRONMENT", "SEE ALSO"):
        assert section in headings
    name_line = source.split(".SH NAME\n", 1)[1].splitlines()[0]
    assert name_line.startswith(f"{tool} \\- ")
    # No line may start a roff request by accident (help text starting with '.' or "'").
    for line in source.splitlines():
        if line[:1] in (".", "'"):
            assert re.match(r"^\.(\\\"|[A-Za-z]{1,2}\b)", line), line


@pytest.mark.parametrize("tool", TOOL_NAMES)
def test_man_page_documents_every_command_and_long_option(
    tool: str, parsers: dict[str, argparse.ArgumentParser]
) -> None:
    text = unescape(man_source(tool))
    parser = parsers[tool]
    for name, _, _ in generator.subcommands(parser):
        assert f".SS {tool} {name}\n" in text, f"{tool} {name} has no section"
        assert f'.SY "{tool} {name}"' in text, f"{tool} {name} missing from SYNOPSIS"
    for option in generator.long_options(parser):
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text), option


def test_man_page_exit_status_lists_each_documented_code() -> None:
    source = man_source("onedb")
    status = source.split(".SH EXIT STATUS\n", 1)[1].split(".SH ", 1)[0]
    # onedb version: 0 current, 1 not bootstrapped, 2 upgrade needed, 3 newer, 255 other.
    version = status.split("\\fBonedb version\\fR", 1)[1].split(".PP", 1)[0]
    assert re.findall(r"\\fB(\d+)\\fR", version) == ["0", "1", "2", "3", "255"]
    assert "upgrade needed (either table behind)" in version


@pytest.mark.parametrize("tool", TOOL_NAMES)
def test_man_page_renders(tool: str, parsers: dict[str, argparse.ArgumentParser]) -> None:
    groff = shutil.which("groff")
    if groff is None:
        pytest.skip("groff is not installed: the structure test above is all that runs")
    result = subprocess.run(
        [groff, "-man", "-Tutf8", "-ww", str(REPO / "man" / f"{tool}.1")],
        capture_output=True,
        text=True,
        env=dict(os.environ, MANWIDTH="80"),
    )
    assert result.returncode == 0
    assert result.stderr == "", result.stderr  # -ww: every groff warning
    rendered = re.sub(r".\x08", "", result.stdout)  # overstrike bold/underline
    rendered = rendered.replace("\u2010", "-").replace("\u2212", "-")
    for heading in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "ENVIRONMENT"):
        assert re.search(rf"^{heading}$", rendered, re.MULTILINE), heading
    for option in generator.long_options(parsers[tool]):
        # Hyphenation is off, so an option is never split across lines.
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", rendered), option
    if shutil.which("man"):
        shown = subprocess.run(
            ["man", "-l", str(REPO / "man" / f"{tool}.1")],
            capture_output=True,
            text=True,
            env=dict(os.environ, MANWIDTH="80", MANPAGER="cat", PAGER="cat"),
        )
        assert shown.returncode == 0, shown.stderr
        assert "SYNOPSIS" in shown.stdout


# -- bash completion, driven as bash does on <TAB> ---------------------------------------------
# Sources the file, then for each line of stdin (the words typed, tab-separated, the last one
# being the word under the cursor; EMPTY stands for an empty one) sets COMP_WORDS/COMP_CWORD,
# calls the function registered with `complete -F` and prints COMPREPLY, then "--end--".
EMPTY = "\x01"
BASH_DRIVER = r"""
source "$1"
function_name=$(complete -p "$2" | sed -E 's/.* -F ([^ ]+) .*/\1/')
while IFS=$'\t' read -r -a COMP_WORDS; do
  [[ ${COMP_WORDS[-1]} == $'\x01' ]] && COMP_WORDS[-1]=""
  COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
  COMPREPLY=()
  "$function_name" "$2" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
  printf '%s\n' "${COMPREPLY[@]}"
  echo "--end--"
done
"""


def complete_bash(tool: str, queries: list[list[str]], cwd: Path | None = None) -> list[list[str]]:
    """COMPREPLY for each query (the words typed, the last one being completed)."""
    lines = ["\t".join([*words[:-1], words[-1] or EMPTY]) for words in queries]
    result = subprocess.run(
        ["bash", "-c", BASH_DRIVER, "driver", str(REPO / "completions" / "bash" / tool), tool],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    replies = result.stdout.split("--end--\n")
    assert replies[-1] == ""
    return [[line for line in reply.splitlines() if line] for reply in replies[:-1]]


def test_bash_completes_a_subcommand_name() -> None:
    assert complete_bash("onedb", [["onedb", "ver"]]) == [["version"]]


def test_bash_completes_every_subcommand_and_its_long_options(
    parsers: dict[str, argparse.ArgumentParser],
) -> None:
    for tool in TOOL_NAMES:
        commands = generator.subcommands(parsers[tool])
        queries = [[tool, ""], [tool, "--"]] + [[tool, name, "--"] for name, _, _ in commands]
        replies = complete_bash(tool, queries)
        assert replies[0] == [name for name, _, _ in commands]
        top_level = {
            option
            for action in parsers[tool]._actions
            for option in action.option_strings
            if option.startswith("--")
        }
        assert {"--help", "--version"} <= top_level <= set(replies[1])
        for (name, _, subparser), reply in zip(commands, replies[2:], strict=True):
            expected = {
                option
                for action in subparser._actions
                for option in action.option_strings
                if option.startswith("--")
            }
            assert expected and expected <= set(reply), f"{tool} {name}: {expected - set(reply)}"


def test_bash_completes_values(tmp_path: Path) -> None:
    (tmp_path / "one.db").write_text("")
    (tmp_path / "other.sql").write_text("")
    (tmp_path / "tree").mkdir()
    onedb = complete_bash(
        "onedb",
        [
            ["onedb", "backup", "--f"],
            ["onedb", "-s", "o"],  # FILE: file names
            ["onedb", "version", "--sqlite", ""],
            ["onedb", "purge-history", "-s", "2024", "--"],  # -s is --start here
        ],
        cwd=tmp_path,
    )
    assert onedb[0] == ["--force", "--federated"]
    assert sorted(onedb[1]) == ["one.db", "other.sql"]
    assert sorted(onedb[2]) == ["one.db", "other.sql", "tree"]
    assert "--sqlite" in onedb[3] and "--start" in onedb[3]
    onecfg = complete_bash(
        "onecfg",
        [
            ["onecfg", "patch", "--format", ""],  # metavar line|yaml: those words
            ["onecfg", "diff", "--format", "y"],
            ["onecfg", "upgrade", "--prefix", "t"],  # DIR: directories
        ],
        cwd=tmp_path,
    )
    assert onecfg == [["line", "yaml"], ["yaml"], ["tree"]]
