"""In-process unified diff and patch (``onetools.config.unidiff``)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onetools.config.unidiff import DiffApplyError, apply_diff, make_diff
from onetools.errors import PatchError

BASE = "".join(f"line{i}\n" for i in range(1, 21))


def test_equal_texts_give_empty_diff() -> None:
    assert make_diff("a\n", "a\n") == ""
    assert apply_diff("a\n", "") == "a\n"


def test_gnu_layout() -> None:
    old = "line1\nline2\nline3\n"
    new = "line1\nline2 changed\nline3\n"
    assert make_diff(old, new) == (
        "--- old\n+++ new\n@@ -1,3 +1,3 @@\n line1\n-line2\n+line2 changed\n line3\n"
    )


def test_empty_sides_and_single_line_ranges() -> None:
    assert make_diff("", "x\n") == "--- old\n+++ new\n@@ -0,0 +1 @@\n+x\n"
    assert make_diff("x\n", "") == "--- old\n+++ new\n@@ -1 +0,0 @@\n-x\n"
    assert apply_diff("", make_diff("", "x\n")) == "x\n"
    assert apply_diff("x\n", make_diff("x\n", "")) == ""


def test_no_newline_at_end_of_file() -> None:
    diff = make_diff("a\nb", "a\nc")
    assert diff == (
        "--- old\n+++ new\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n"
        "+c\n\\ No newline at end of file\n"
    )
    assert apply_diff("a\nb", diff) == "a\nc"
    # adding and removing the final newline
    assert apply_diff("a\nb", make_diff("a\nb", "a\nb\n")) == "a\nb\n"
    assert apply_diff("a\nb\n", make_diff("a\nb\n", "a\nb")) == "a\nb"


def test_context_is_three_lines() -> None:
    new = BASE.replace("line10\n", "ten\n")
    diff = make_diff(BASE, new)
    assert "@@ -7,7 +7,7 @@" in diff
    assert " line7\n" in diff and " line13\n" in diff and "line6" not in diff


def test_offset_after_inserted_lines() -> None:
    new = BASE.replace("line10\n", "ten\n")
    diff = make_diff(BASE, new)
    user = "extra1\nextra2\nextra3\n" + BASE
    assert apply_diff(user, diff) == "extra1\nextra2\nextra3\n" + new


def test_offset_after_removed_lines() -> None:
    new = BASE.replace("line15\n", "fifteen\n")
    user = BASE.replace("line2\nline3\n", "")
    assert apply_diff(user, make_diff(BASE, new)) == new.replace("line2\nline3\n", "")


def test_two_hunks_follow_offset() -> None:
    new = BASE.replace("line2\n", "two\n").replace("line18\n", "eighteen\n")
    diff = make_diff(BASE, new)
    assert diff.count("@@ -") == 2
    user = BASE.replace("line10\n", "line10\nuser1\nuser2\n")
    expected = new.replace("line10\n", "line10\nuser1\nuser2\n")
    assert apply_diff(user, diff) == expected


def test_fuzz_changed_context_line() -> None:
    new = BASE.replace("line10\n", "ten\n")
    diff = make_diff(BASE, new)
    user = BASE.replace("line7\n", "line7 edited by user\n")  # first context line differs
    assert apply_diff(user, diff) == new.replace("line7\n", "line7 edited by user\n")
    user = BASE.replace("line12\n", "changed\n")  # second-to-last context line: fuzz 2
    assert apply_diff(user, diff) == new.replace("line12\n", "changed\n")


def test_hunk_that_cannot_apply() -> None:
    new = BASE.replace("line10\n", "ten\n")
    diff = make_diff(BASE, new)
    with pytest.raises(DiffApplyError) as info:
        apply_diff(BASE.replace("line10\n", "mine\n"), diff)
    assert info.value.message == "Patch command failed: hunk 1 does not apply"
    assert isinstance(info.value, PatchError)
    # context too different even with fuzz
    user = BASE.replace("line9\n", "x\n").replace("line11\n", "y\n")
    with pytest.raises(DiffApplyError):
        apply_diff(user, diff)


def test_second_hunk_failing_is_named() -> None:
    new = BASE.replace("line2\n", "two\n").replace("line18\n", "eighteen\n")
    with pytest.raises(DiffApplyError, match="hunk 2 does not apply"):
        apply_diff(BASE.replace("line18\n", "gone\n"), make_diff(BASE, new))


def test_insert_at_top_anchors_to_start() -> None:
    text = "a\nb\nc\nd\na\nb\nc\n"
    new = "top\n" + text
    diff = make_diff(text, new)
    assert apply_diff(text, diff) == new


def test_empty_context_line_without_space() -> None:
    diff = "--- old\n+++ new\n@@ -1,3 +1,3 @@\n a\n\n-b\n+c\n"
    assert apply_diff("a\n\nb\n", diff) == "a\n\nc\n"


@pytest.mark.parametrize(
    ("diff", "message"),
    [
        ("garbage\n", "no hunks"),
        ("--- old\n+++ new\n@@ -1,2 +1,2 @@\n a\n", "truncated"),
        ("--- old\n+++ new\n@@ -1,2 +1,2 @@\n a\n?b\n", "unexpected line"),
        ("--- old\n+++ new\n@@ -1,1 +1,1 @@\n-a\n+b\n+c\n", "do not match"),
    ],
)
def test_malformed_diff(diff: str, message: str) -> None:
    with pytest.raises(DiffApplyError, match=message) as info:
        apply_diff("a\nb\n", diff)
    assert info.value.message.startswith("Patch command failed: malformed diff")


lines = st.lists(st.sampled_from(["a", "b", "c", "d", "", " x", "a b"]), max_size=25)


@settings(max_examples=400, deadline=None)
@given(lines, lines, st.booleans(), st.booleans())
def test_round_trip(a: list[str], b: list[str], a_eol: bool, b_eol: bool) -> None:
    old = "\n".join(a) + ("\n" if a and a_eol else "")
    new = "\n".join(b) + ("\n" if b and b_eol else "")
    assert apply_diff(old, make_diff(old, new)) == new


@settings(max_examples=200, deadline=None)
@given(st.text(), st.text())
def test_round_trip_any_text(old: str, new: str) -> None:
    assert apply_diff(old, make_diff(old, new)) == new
