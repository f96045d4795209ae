"""The line format tokenizer and renderer (reference §4.1-4.3, plus our annotations)."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onetools.config.lineformat import (
    detect_format,
    parse_line,
    parse_lines,
    render_path,
)
from onetools.config.ops import NOTHING
from onetools.errors import FileParseError


def test_bare_and_quoted_paths() -> None:
    line = parse_line('/etc/one/oned.conf set VM_MAD/"kvm"/ARGUMENTS "\\"-t 15\\""')
    assert line is not None
    assert line.filename == "/etc/one/oned.conf"
    assert line.components == ["VM_MAD", '"kvm"', "ARGUMENTS"]
    assert line.value == '"-t 15"'

    line = parse_line('/f set "/path with spaces/:tmpdir" "/v"')
    assert line is not None and line.components == ["path with spaces", ":tmpdir"]
    assert line.value == "/v"

    line = parse_line('/f set "/path/\\"with custom key\\"/:tmpdir" "/v"')
    assert line is not None and line.components == ["path", '"with custom key"', ":tmpdir"]


@pytest.mark.parametrize(
    "text",
    [
        "/f set :tmpdir /var/tmp/x",  # value is not JSON
        "/f set '/path with spaces/:tmpdir' '/v'",  # single quotes mean nothing
        '/f set /path/"with custom key"/:tmpdir "/v"',  # bare token ends at the space
        "/f set PORT {oops",
        "/f set PORT 1 2",
    ],
)
def test_values_that_are_not_json_are_rejected(text: str) -> None:
    with pytest.raises(FileParseError, match="Error reading line patch"):
        parse_line(text, "p.txt", 7)


def test_errors_name_file_and_line() -> None:
    with pytest.raises(FileParseError) as info:
        parse_line("/etc/one/oned.conf del PORT", "changes.txt", 3)
    assert str(info.value) == "changes.txt: Invalid patch action 'del' at line 3"
    with pytest.raises(FileParseError, match="Invalid format at line 9"):
        parse_line("lonely", "changes.txt", 9)


def test_commands_are_case_insensitive_and_values_optional() -> None:
    line = parse_line("/f RM //A//B/")
    assert line is not None
    assert (line.state, line.components, line.value) == ("rm", ["A", "B"], NOTHING)
    line = parse_line("/f ins list null")
    assert line is not None and line.value is None


def test_comments_and_blank_lines_are_skipped() -> None:
    assert parse_line("   ") is None
    assert parse_line("  # /etc/one/oned.conf set PORT 1") is None


def test_annotations() -> None:
    line = parse_line('/f set PORT "2634" # {"old":"2633"}')
    assert line is not None and line.annotations == {"old": "2633"} and line.value == "2634"
    line = parse_line('/f set LIBVIRT_URI # {"export": false}')
    assert line is not None and line.value is NOTHING and line.annotations == {"export": False}
    with pytest.raises(FileParseError, match="Unknown line patch annotation 'colour'"):
        parse_line('/f set A 1 # {"colour": 1}')
    with pytest.raises(FileParseError, match="expected a JSON object"):
        parse_line("/f set A 1 # [1]")


def test_parse_lines_groups_per_file_and_rejects_unknown_files() -> None:
    text = "/a set X 1\n\n# comment\n/b set Y 2\n/a rm Z\n"
    known = {"/a": "Augeas::Shell", "/b": "Augeas::Shell"}
    changes = parse_lines(text, known.get, "in.txt")
    assert list(changes) == ["/a", "/b"]
    assert [op.key for op in changes["/a"].ops] == ["X", "Z"]
    with pytest.raises(FileParseError) as info:
        parse_lines("/a set X 1\n/c set Y 2\n", known.get, "in.txt")
    assert str(info.value) == "in.txt: Unknown or missing file to patch '/c' at line 2"


def test_detect_format() -> None:
    assert detect_format("---\npatches: {}\n") == "yaml"
    assert detect_format("patches:\n  /etc/one/oned.conf: {}\n") == "yaml"
    assert detect_format("/etc/one/oned.conf set PORT 1\n") == "line"


components = st.lists(st.text(min_size=1).filter(lambda s: "/" not in s), min_size=1, max_size=4)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300)
@given(components, json_values)
def test_render_then_parse_round_trips(parts: list[str], value: object) -> None:
    # Whitespace inside components is significant only when it is not at the token edges of a
    # bare token, which render_path always quotes.
    text = f"/f set {render_path(parts)} {json.dumps(value)}"
    line = parse_line(text)
    assert line is not None
    assert line.components == parts
    assert line.value == value


@settings(max_examples=500)
@given(st.text())
def test_arbitrary_text_raises_only_parse_errors(text: str) -> None:
    with contextlib.suppress(FileParseError):
        parse_line(text, "fuzz", 1)
