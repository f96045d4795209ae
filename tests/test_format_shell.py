"""Augeas::Shell documents: stock files, diff/patch semantics (reference §3.6), line round trip."""

from __future__ import annotations

import itertools
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import STOCK_VERSIONS, read_stock, stock_files
from onetools.config.formats.shell import ShellDocument
from onetools.config.lineformat import op_from_parsed, parse_line, render_op
from onetools.config.ops import NOTHING, ChangeOp
from onetools.errors import FileParseError, PatchError

SHELL = "Augeas::Shell"

OLD = """export LIBVIRT_URI=qemu:///system
QEMU_PROTOCOL=qemu+ssh
BAR=1
export BAR
DUP=1
DUP=2
GONE=x
"""
NEW = """LIBVIRT_URI=qemu:///system
QEMU_PROTOCOL=qemu+tcp
export BAR=1
DUP=2
NEWV='q'
export NEWE=1
"""


def doc(text: str) -> ShellDocument:
    return ShellDocument.parse(text, "test")


def line_round_trip(op: ChangeOp) -> ChangeOp:
    """Render ``op`` as a full change line and parse it back."""
    parsed = parse_line(f"/etc/one/defaultrc {render_op(op, ShellDocument)}")
    assert parsed is not None
    return op_from_parsed(ShellDocument, parsed)


# ---------------------------------------------------------------------------------------------
# Stock files


def _stock_params() -> list[tuple[str, str]]:
    return [(v, p) for v in STOCK_VERSIONS for p, _ in stock_files(v, SHELL)]


def _pair_params() -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    for old, new in itertools.pairwise(STOCK_VERSIONS):
        common = {p for p, _ in stock_files(old, SHELL)} & {p for p, _ in stock_files(new, SHELL)}
        out.extend((old, new, p) for p in sorted(common))
    return out


@pytest.mark.parametrize(("version", "path"), _stock_params())
def test_stock_parse_render_identical(version: str, path: str) -> None:
    text = read_stock(version, path)
    document = ShellDocument.parse(text, path)
    assert document.render() == text
    assert document.similar(ShellDocument.parse(text, path))
    assert document.diff(ShellDocument.parse(text, path)) == []


@pytest.mark.parametrize(("old", "new", "path"), _pair_params())
def test_stock_upgrade_pairs(old: str, new: str, path: str) -> None:
    before = ShellDocument.parse(read_stock(old, path), path)
    after = ShellDocument.parse(read_stock(new, path), path)
    ops = before.diff(after)
    for op in ops:
        assert line_round_trip(op) == op
    results = before.patch(ops)
    assert all(r.applied for r in results)
    rendered = before.render()
    assert ShellDocument.parse(rendered, path).similar(after)
    assert before.similar(after)


def test_stock_has_files() -> None:
    assert len(_stock_params()) > 50
    assert _pair_params()


def test_parse_render_speed() -> None:
    text = read_stock(STOCK_VERSIONS[-1], "/etc/one/defaultrc")
    ShellDocument.parse(text).render()  # lens compile
    start = time.perf_counter()
    for _ in range(20):
        ShellDocument.parse(text).render()
    assert (time.perf_counter() - start) / 20 < 0.01


# ---------------------------------------------------------------------------------------------
# Reading


def test_worked_example_ops() -> None:
    a, b = doc(OLD), doc(NEW)
    assert a.warnings == [
        "Variable DUP specified multiple times. Only last value will be respected."
    ]
    assert a.diff(b) == [
        ChangeOp("rm", [], "GONE", old="x"),
        ChangeOp("set", [], "LIBVIRT_URI", extra={"export": False}),
        ChangeOp("ins", [], "NEWE", value="1", extra={"export": True}),
        ChangeOp("ins", [], "NEWV", value="'q'", extra={"export": False}),
        ChangeOp("set", [], "QEMU_PROTOCOL", value="qemu+tcp", old="qemu+ssh"),
    ]


def test_worked_example_patch_and_line_round_trip() -> None:
    a, b = doc(OLD), doc(NEW)
    ops = a.diff(b)
    assert [line_round_trip(op) for op in ops] == ops
    results = a.patch([line_round_trip(op) for op in ops], ["replace"])
    assert all(r.applied for r in results)
    assert a.similar(b)
    assert doc(a.render()).similar(b)


def test_raw_values_and_quotes() -> None:
    d = doc("A=\"a b\"\nB='q'\nC=$(date)\nD=\nE=x\\ y\n")
    values = {k: v.value for k, v in d.variables().items()}
    assert values == {"A": '"a b"', "B": "'q'", "C": "$(date)", "D": "", "E": "x\\ y"}


def test_export_forms() -> None:
    d = doc("export A=1\nB=2\nexport B\nC=3\nexport X C\nD=4\n")
    assert {k: v.exported for k, v in d.variables().items()} == {
        "A": True,
        "B": True,
        "C": True,
        "D": False,
    }


def test_nested_and_other_statements_ignored() -> None:
    d = doc("A=1\nif [ -f x ]; then\n  B=2\nfi\nunset C\n. /etc/x\n# c\n")
    assert list(d.variables()) == ["A"]


def test_missing_final_newline_round_trips() -> None:
    d = doc("# c\nA=1")
    assert d.render() == "# c\nA=1"
    d.patch([ChangeOp("ins", [], "B", value="2")])
    assert d.render() == "# c\nA=1\nB=2"


def test_duplicates_last_value_counts() -> None:
    a, b = doc("A=1\nA=2\n"), doc("A=2\n")
    assert a.similar(b)
    assert a.diff(b) == []


def test_parse_error_has_line() -> None:
    with pytest.raises(FileParseError) as info:
        doc('A=1\nB="unterminated\n')
    assert info.value.line == 2


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_parse_arbitrary_text_only_file_parse_error(text: str) -> None:
    try:
        document = ShellDocument.parse(text)
    except FileParseError:
        return
    assert document.render() == text


# ---------------------------------------------------------------------------------------------
# Applying


def test_rm_removes_all_and_unexports() -> None:
    d = doc("A=1\nexport A=2\nB=1\nexport A B\n")
    result = d.apply(ChangeOp("rm", [], "A", old="2"), frozenset())
    assert result.applied and result.old == "2"
    assert d.render() == "B=1\nexport B\n"
    assert not d.apply(ChangeOp("rm", [], "A"), frozenset()).applied


def test_rm_drops_export_line_left_empty() -> None:
    d = doc("A=1\nexport A\nB=2\n")
    d.apply(ChangeOp("rm", [], "A"), frozenset())
    assert d.render() == "B=2\n"


def test_ins_creates_with_export() -> None:
    d = doc("A=1\n")
    assert d.apply(ChangeOp("ins", [], "B", value='"x y"', extra={"export": True}), frozenset())
    assert d.render() == 'A=1\nexport B="x y"\n'


def test_ins_existing() -> None:
    d = doc("A=1\n")
    assert not d.apply(ChangeOp("ins", [], "A", value="1"), frozenset()).applied
    assert not d.apply(ChangeOp("ins", [], "A", value="2"), frozenset()).applied
    result = d.apply(ChangeOp("ins", [], "A", value="2"), frozenset({"replace"}))
    assert (result.applied, result.mode, result.old) == (True, "replace", "1")
    assert d.render() == "A=2\n"


def test_set_branches() -> None:
    d = doc("A=1\nA=2\nB=3\n")
    op = ChangeOp("set", [], "A", value="5", old="1")
    assert not d.apply(op, frozenset()).applied  # last value is 2, not 1
    result = d.apply(op, frozenset({"replace"}))
    assert (result.applied, result.mode, result.old) == (True, "replace", "2")
    assert d.render() == "A=5\nB=3\n"  # duplicates dropped, one assignment kept
    result = d.apply(ChangeOp("set", [], "B", value="4", old="3"), frozenset())
    assert (result.applied, result.mode) == (True, None)
    # set on a deleted variable: only replace recreates it
    assert not d.apply(ChangeOp("set", [], "C", value="1", old="0"), frozenset()).applied
    assert d.apply(ChangeOp("set", [], "C", value="1", old="0"), frozenset({"replace"})).applied
    assert d.render() == "A=5\nB=4\nC=1\n"


def test_set_keeps_export_of_dropped_duplicate() -> None:
    d = doc("export A=1\nA=2\n")
    d.apply(ChangeOp("set", [], "A", value="3", old="2"), frozenset())
    assert d.render() == "export A=3\n"
    assert d.variables()["A"].exported


def test_export_toggle() -> None:
    d = doc("A=1 # note\nB=2\nexport B\n")
    assert d.apply(ChangeOp("set", [], "A", extra={"export": True}), frozenset()).applied
    assert d.render() == "export A=1 # note\nB=2\nexport B\n"
    assert not d.apply(ChangeOp("set", [], "A", extra={"export": True}), frozenset()).applied
    assert d.apply(ChangeOp("set", [], "B", extra={"export": False}), frozenset()).applied
    assert d.render() == "export A=1 # note\nB=2\n"
    assert d.apply(ChangeOp("set", [], "A", extra={"export": False}), frozenset()).applied
    assert d.render() == "A=1 # note\nB=2\n"


def test_export_toggle_from_line_applies() -> None:
    a = doc("export LIBVIRT_URI=qemu:///system\n")
    b = doc("LIBVIRT_URI=qemu:///system\n")
    (op,) = a.diff(b)
    line = render_op(op, ShellDocument)
    assert "export" in line  # the flag is no longer lost (original defect §8.1 #1)
    parsed = line_round_trip(op)
    assert parsed == op
    assert a.patch([parsed], ["replace"])[0].applied
    assert a.render() == "LIBVIRT_URI=qemu:///system\n"


def test_original_line_forms() -> None:
    d = doc("A=1\nB=2\n")
    for text in ('set A "9"', "ins C 5", "rm B"):
        parsed = parse_line(f"/etc/one/defaultrc {text}")
        assert parsed is not None
        op = op_from_parsed(ShellDocument, parsed)
        assert d.apply(op, frozenset({"replace"})).applied, text
    assert d.render() == "A=9\nC=5\n"
    parsed = parse_line('/etc/one/defaultrc rm A "9"')
    assert parsed is not None
    assert op_from_parsed(ShellDocument, parsed) == ChangeOp("rm", [], "A", old="9")
    assert op_from_parsed(ShellDocument, parsed).value is NOTHING


def test_array_values() -> None:
    d = doc("A=(a b c)\n")
    assert d.variables()["A"].value == "(a b c)"
    d.apply(ChangeOp("set", [], "A", value="(x 'y z')", old="(a b c)"), frozenset())
    assert d.render() == "A=(x 'y z')\n"
    d.apply(ChangeOp("set", [], "A", value="plain", old="(x 'y z')"), frozenset())
    assert d.render() == "A=plain\n"


def test_invalid_value_rejected_and_restored() -> None:
    d = doc("A=1\n")
    with pytest.raises(PatchError):
        d.patch(
            [ChangeOp("set", [], "A", value="2", old="1"), ChangeOp("ins", [], "B", value="x y")]
        )
    assert d.render() == "A=1\n"
    assert d.variables()["A"].value == "1"


def test_nested_path_does_not_apply() -> None:
    d = doc("A=1\n")
    assert not d.apply(ChangeOp("set", ["X"], "A", value="2", old="1"), frozenset()).applied
