"""Patch input of any shape raises nothing but the documented parse error (exit 255)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onetools.config.formats import FORMATS
from onetools.config.lineformat import parse_lines, parse_yaml, render_yaml
from onetools.errors import FileParseError

CLASS_NAMES = sorted(FORMATS)

line_parts = st.lists(
    st.one_of(
        st.sampled_from(["set", "ins", "rm", "SET", "del"]),
        st.sampled_from(['VM_MAD/"kvm"/ARGUMENTS', ":port", "/", "A/B/C/D", '"x y"', "DB"]),
        st.sampled_from(['"v"', "1", "null", "[1,2]", '{"a":1}', '# {"old":1}', "{", "#"]),
        st.text(max_size=12),
    ),
    max_size=5,
)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(CLASS_NAMES), line_parts)
def test_any_line_into_any_format(class_name: str, parts: list[str]) -> None:
    text = "/etc/one/x.conf " + " ".join(parts)
    try:
        parse_lines(text, {"/etc/one/x.conf": class_name}.get, "fuzz")
    except FileParseError as exc:
        # Generated text may hold newlines, so the failing line is not always the first.
        assert exc.path == "fuzz" and exc.line is not None and exc.line >= 1


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_as_yaml_changes(text: str) -> None:
    with contextlib.suppress(FileParseError):
        parse_yaml("---\n" + text, "fuzz")


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("---\n- a\n", "does not contain expected YAML document"),
        ("---\npatches:\n  /etc/one/oned.conf: 3\n", "Missing 'class'"),
        ("---\npatches:\n  /f:\n    class: Nope\n", "Unknown file class 'Nope'"),
        ("---\npatches:\n  /f:\n    class: Yaml\n    change: {}\n", "must be a list"),
        ("---\npatches:\n  /f:\n    class: Yaml\n    change:\n    - state: upd\n", "change 1"),
        ("---\npatches: [\n", "line"),
    ],
)
def test_bad_yaml_change_documents(document: str, message: str) -> None:
    with pytest.raises((FileParseError, Exception)) as info:
        parse_yaml(document, "in.yaml")
    assert message in str(info.value)
    assert isinstance(info.value, FileParseError) or "Unknown file class" in str(info.value)


def test_yaml_change_document_round_trip() -> None:
    text = (
        "---\npatches:\n  /etc/one/sunstone-server.conf:\n    class: Yaml\n    change:\n"
        "    - path:\n      - :routes\n      key: null\n      value: :oneflow\n      state: ins\n"
        "      extra: {}\n"
    )
    changes = parse_yaml(text)
    again = parse_yaml(render_yaml(changes))
    assert (
        again["/etc/one/sunstone-server.conf"].ops == changes["/etc/one/sunstone-server.conf"].ops
    )
