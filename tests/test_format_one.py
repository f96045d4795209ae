"""Tests of the ``Augeas::ONE`` format (oned.conf-like files): lens, model, diff, apply, lines."""

from __future__ import annotations

import itertools
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import STOCK_VERSIONS, read_stock, stock_files
from onetools.config.formats import format_class
from onetools.config.formats._augeas import AugeasTree
from onetools.config.formats.one import LENS, OneDocument, _scan
from onetools.config.ops import NOTHING, ChangeOp, PatchResult
from onetools.errors import (
    FatalError,
    FileParseError,
    PatchInvalidMultiple,
    PatchPathNotFound,
    PatchUnexpectedData,
    StructureError,
)

# ------------------------------------------------------------------------------------ helpers


def doc(text: str, name: str = "test.conf") -> OneDocument:
    return OneDocument.parse(text, name)


def roundtrip(op: ChangeOp) -> ChangeOp:
    components, value, notes = OneDocument.line_annotations(op)
    return OneDocument.op_from_line(op.state, components, value, notes)


def scanner_model(text: str) -> list[Any]:
    """What the Python scanner sees: [(label, value) | (label, [(label, value)...])]."""
    source = text if not text or text.endswith("\n") else text + "\n"
    out: list[Any] = []
    for node in _scan(source, "x"):
        if hasattr(node, "entries"):
            out.append((node.label, [(e.label, e.value) for e in node.entries]))
        else:
            out.append((node.label, node.value))
    return out


def augeas_model(text: str) -> list[Any]:
    """What the lens sees, in the same shape as ``scanner_model``."""
    source = text if not text or text.endswith("\n") else text + "\n"
    tree = AugeasTree(LENS, source, "x")

    def label(path: str) -> str:
        return path.rsplit("/", 1)[-1].split("[", 1)[0]

    out: list[Any] = []
    for path in tree.match("*"):
        if label(path) == "#comment":
            continue
        value = tree.get(path)
        if value is None:
            children = [
                (label(c), tree.get(c)) for c in tree.match(f"{path}/*") if "#comment" not in c
            ]
            out.append((label(path), children))
        else:
            out.append((label(path), value))
    return out


WORKED_A = """LOG = [ SYSTEM = "file", DEBUG_LEVEL = 3 ]
PORT = 2633   # comment
VM_MAD = [ NAME = "kvm", ARGUMENTS = "-t 15 -r 0 kvm" ]
VM_MAD = [ NAME = "qemu", ARGUMENTS = "-t 15 -r 0 kvm" ]
VM_RESTRICTED_ATTR = "CONTEXT/FILES"
VM_RESTRICTED_ATTR = "NIC/MAC"
"""

DIFF_A = """LOG=[SYSTEM="file",DEBUG_LEVEL=3]
PORT=2633
TM_MAD_SYSTEM="X"
TM_MAD_SYSTEM="Y"
VM_MAD=[NAME="kvm",ARGUMENTS="-t 15"]
VM_MAD=[NAME="lxd",ARGUMENTS="-t 1"]
INHERIT_VNET_ATTR="A"
INHERIT_VNET_ATTR="B"
"""

DIFF_B = """LOG=[SYSTEM="syslog",DEBUG_LEVEL=3]
PORT=2633
TM_MAD_SYSTEM="Z"
VM_MAD=[ARGUMENTS="-t 15 -p",NAME="kvm"]
VM_MAD=[ARGUMENTS="-t 2",NAME="lxc"]
INHERIT_VNET_ATTR="B"
INHERIT_VNET_ATTR="C"
"""

# The worked diff example of reference §3.5, in the order onecfg printed it.
DIFF_OPS: list[dict[str, Any]] = [
    {"path": ["LOG"], "key": "SYSTEM", "value": '"syslog"', "old": '"file"', "state": "set",
     "extra": {}},
    {"path": [], "key": "TM_MAD_SYSTEM", "old": '"Y"', "state": "rm",
     "extra": {"multiple": True}},
    {"path": [], "key": "TM_MAD_SYSTEM", "value": '"Z"', "old": '"X"', "state": "set",
     "extra": {}},
    {"path": ["VM_MAD", '"kvm"'], "key": "ARGUMENTS", "value": '"-t 15 -p"', "old": '"-t 15"',
     "state": "set", "extra": {}},
    {"path": ["VM_MAD", '"lxd"'], "key": None, "state": "rm", "extra": {}},
    {"path": ["VM_MAD", '"lxc"'], "key": "NAME", "value": '"lxc"', "state": "ins",
     "extra": {"multiple": False}},
    {"path": ["VM_MAD", '"lxc"'], "key": "ARGUMENTS", "value": '"-t 2"', "state": "ins",
     "extra": {"multiple": False}},
    {"path": [], "key": "INHERIT_VNET_ATTR", "old": '"A"', "state": "rm",
     "extra": {"multiple": True}},
    {"path": [], "key": "INHERIT_VNET_ATTR", "value": '"C"', "state": "ins",
     "extra": {"multiple": True}},
]  # fmt: skip


def expected_diff_ops() -> list[ChangeOp]:
    return [ChangeOp.from_dict(data) for data in DIFF_OPS]


# ------------------------------------------------------------------------------- stock files

STOCK = [
    (version, path) for version in STOCK_VERSIONS for path, _ in stock_files(version, "Augeas::ONE")
]
PAIRS = [
    (old, new, path)
    for old, new in itertools.pairwise(STOCK_VERSIONS)
    for path, _ in stock_files(old, "Augeas::ONE")
    if path in dict(stock_files(new, "Augeas::ONE"))
]


def test_stock_matrix_is_not_empty() -> None:
    assert len(STOCK) >= 50
    assert len(PAIRS) >= 45


def test_registered_in_formats() -> None:
    assert format_class("Augeas::ONE") is OneDocument
    assert OneDocument.safe_modes == frozenset({"skip"})


@pytest.mark.parametrize(("version", "path"), STOCK)
def test_stock_parse_render_identity(version: str, path: str) -> None:
    text = read_stock(version, path)
    document = doc(text, path)
    assert document.render() == text
    assert document.similar(document)
    assert document.diff(document) == []
    if path.endswith("oned.conf"):
        assert {"PORT", "LOG", "DB", "VM_MAD", "TM_MAD_CONF"} <= set(document.tree())


@pytest.mark.parametrize(("version", "path"), STOCK)
def test_stock_scanner_agrees_with_lens(version: str, path: str) -> None:
    text = read_stock(version, path)
    assert scanner_model(text) == augeas_model(text)
    assert AugeasTree(LENS, text, path).render() == text


@pytest.mark.parametrize(("old", "new", "path"), PAIRS)
def test_stock_upgrade_pairs(old: str, new: str, path: str) -> None:
    before, after = doc(read_stock(old, path), path), doc(read_stock(new, path), path)
    ops = before.diff(after)
    results = before.patch(ops)
    assert len(results) == len(ops)
    failed = [op for op, result in zip(ops, results, strict=True) if not result.applied]
    assert failed == []
    assert before.similar(after)
    reparsed = doc(before.render(), path)
    assert reparsed.similar(after)
    for op in ops:
        assert roundtrip(op) == op, op


@pytest.mark.parametrize(("old", "new", "path"), PAIRS[-8:])
def test_stock_upgrade_from_lines(old: str, new: str, path: str) -> None:
    """Ops read back from their line form apply just as well (with the patch mode replace)."""
    before, after = doc(read_stock(old, path), path), doc(read_stock(new, path), path)
    ops = [roundtrip(op) for op in before.diff(after)]
    assert all(r.applied for r in before.patch(ops, ["replace"]))
    assert doc(before.render()).similar(after)


def test_parse_performance() -> None:
    text = read_stock(STOCK_VERSIONS[-1], "/etc/one/oned.conf")
    doc(text)
    start = time.perf_counter()
    for _ in range(5):
        doc(text)
    assert (time.perf_counter() - start) / 5 < 0.05


# ------------------------------------------------------------------------- worked examples


def test_worked_example_tree() -> None:
    assert doc(WORKED_A).tree() == {
        "LOG": {None: {"SYSTEM": ['"file"'], "DEBUG_LEVEL": ["3"]}},
        "PORT": ["2633"],
        "VM_MAD": {
            '"kvm"': {"NAME": ['"kvm"'], "ARGUMENTS": ['"-t 15 -r 0 kvm"']},
            '"qemu"': {"NAME": ['"qemu"'], "ARGUMENTS": ['"-t 15 -r 0 kvm"']},
        },
        "VM_RESTRICTED_ATTR": ['"CONTEXT/FILES"', '"NIC/MAC"'],
    }


def test_worked_diff_example_ops_and_warning() -> None:
    a, b = doc(DIFF_A, "a.conf"), doc(DIFF_B, "b.conf")
    assert a.diff(b) == expected_diff_ops()
    assert [op.to_dict() for op in a.diff(b)] == DIFF_OPS
    assert a.warnings == ["File a.conf: Parameter TM_MAD_SYSTEM specified multiple times."] * 2


def test_worked_diff_example_apply() -> None:
    a, b = doc(DIFF_A), doc(DIFF_B)
    results = a.patch(a.diff(b))
    assert [r.applied for r in results] == [True] * 9
    assert a.similar(b)
    text = a.render()
    assert 'NAME="lxd"' not in text
    assert text.count('NAME="lxc"') == 1 and '"-t 2"' in text
    assert text.startswith('LOG=[SYSTEM="syslog",DEBUG_LEVEL=3]\nPORT=2633\n')
    assert doc(text).tree()["VM_MAD"] == {
        '"kvm"': {"NAME": ['"kvm"'], "ARGUMENTS": ['"-t 15 -p"']},
        '"lxc"': {"NAME": ['"lxc"'], "ARGUMENTS": ['"-t 2"']},
    }
    assert doc(text).tree()["INHERIT_VNET_ATTR"] == ['"B"', '"C"']


def test_new_instance_is_appended_with_default_layout() -> None:
    d = doc('PORT = 1\nLOG = [ SYSTEM = "file" ]\n')
    d.patch(
        [
            ChangeOp("ins", ["VM_MAD", '"lxc"'], "NAME", value='"lxc"'),
            ChangeOp("ins", ["VM_MAD", '"lxc"'], "ARGUMENTS", value='"-t 2"'),
            ChangeOp("ins", [], "NEW_KEY", value=5),
            ChangeOp("ins", ["LOG"], "DEBUG_LEVEL", value=3),
        ]
    )
    assert d.render() == (
        "PORT = 1\n"
        'LOG = [ SYSTEM = "file",\n    DEBUG_LEVEL = 3 ]\n'
        'VM_MAD = [\n    NAME = "lxc",\n    ARGUMENTS = "-t 2"\n]\n'
        "NEW_KEY = 5\n"
    )


def test_new_instance_goes_after_the_last_one_of_its_kind() -> None:
    d = doc('VM_MAD = [ NAME = "kvm" ]\n# next block\nPORT = 1\n')
    d.apply(ChangeOp("ins", ["VM_MAD", '"lxc"'], "NAME", value='"lxc"'), frozenset())
    text = d.render()
    assert text.index('"kvm"') < text.index('"lxc"') < text.index("# next block")


# ------------------------------------------------------------------------------ similarity


def test_similar_ignores_layout_case_order_and_comments() -> None:
    a = doc('# c\nPORT = 2633\nLOG = [ SYSTEM = "file", DEBUG_LEVEL = 3 ]\nA = "x"\nA = "y"\n')
    b = doc('a="y"\n\nlog=[\n  debug_level=3, # dl\n  system="file"\n]\nA="x"\nport=2633 # p\n')
    assert not a.same(b)
    assert a.similar(b) and b.similar(a)


def test_similar_is_sensitive_to_quoting_and_values() -> None:
    assert not doc("PORT = 2633\n").similar(doc('PORT = "2633"\n'))
    assert not doc("PORT = 2633\n").similar(doc("PORT = 2634\n"))


# ----------------------------------------------------------------------------------- grammar

ACCEPTED = [
    "A=1\n",
    "  A = 1\n",
    "A = 1   \n",
    "A = 1 # c\n",
    "lower = 1\n",
    'A = [B=1,C="x"]\n',
    "A = [ B = 1]\n",
    "A = [\n\n  B = 1,\n  # inside\n\n  C = 2\n]\n",
    "A = [ A=123,  #abc\n B=223# abc\n]\n",
    'A = ""\n',
    'A = "multi\nline"\n',
    'A = "o\\"n\\\\e"\n',
    "A = [ B = 1 ]   \n",
    "A = 1",
    "   # indented comment\n",
    "",
]

REJECTED = [
    "KEY = a b\n",
    "A-B = 1\n",
    "A=\n",
    "A = [ B = 1, ]\n",
    "A = [ B = [ C = 1 ] ]\n",
    "A = [ B = a b ]\n",
    "A = [ B = 1 ] # c\n",
    "A = [ B = 1 # c\n, C = 2 ]\n",
    'A = "unterminated\n',
    "A = []\n",
    "= 1\n",
    "A 1\n",
]


@pytest.mark.parametrize("text", ACCEPTED)
def test_accepted_inputs(text: str) -> None:
    d = doc(text)
    assert d.render() == text
    assert scanner_model(text) == augeas_model(text)


@pytest.mark.parametrize("text", REJECTED)
def test_rejected_inputs(text: str) -> None:
    with pytest.raises(FileParseError) as info:
        doc(text)
    assert info.value.line == 1
    with pytest.raises(FileParseError):
        augeas_model(text)


def test_comment_values_in_tree() -> None:
    assert augeas_model("A = 1 # c\n") == [("A", "1")]
    tree = AugeasTree(LENS, "A = 1 # trailing comment\n   # ind\n", "x")
    assert tree.get("A/#comment") == "# trailing comment"
    assert tree.get("#comment") == "# ind"


def test_parse_error_carries_line_and_file() -> None:
    with pytest.raises(FileParseError) as info:
        doc("A = 1\n# c\nB = [\n  C = 1,\n  D = x y\n]\n", "/etc/one/oned.conf")
    assert info.value.line == 5
    assert info.value.path == "/etc/one/oned.conf"
    assert "oned.conf" in str(info.value) and "line 5" in str(info.value)


def test_nul_character_is_a_parse_error() -> None:
    with pytest.raises(FileParseError) as info:
        doc("A = 1\nB = a\0b\n")
    assert info.value.line == 2


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("DB = [ A = 1 ]\nDB = [ A = 2 ]\n", "Invalid multiple sections of DB", 2),
        ('X = 1\nVM_MAD = [ NAME = "a" ]\nVM_MAD = [ A = 1 ]\n',
         "Missing NAME identification for VM_MAD[2]", 3),
        ('VM_MAD = [ NAME = "a", name = "b" ]\n', "Multiple NAME identifications for VM_MAD[1]", 1),
        ('VM_MAD = [ NAME = "a" ]\n\nvm_mad = [ NAME = "a" ]\n',
         'Duplicate identification for VM_MAD["a"]', 3),
        ("LOG = 1\nLOG = [ A = 1 ]\n", "Parameter LOG used as a value and a section", 2),
    ],
)  # fmt: skip
def test_structure_errors(text: str, message: str, line: int) -> None:
    with pytest.raises(StructureError) as info:
        doc(text, "f.conf")
    assert info.value.reason == message
    assert info.value.line == line
    assert info.value.path == "f.conf"


# ------------------------------------------------------------------------------- case/quotes


def test_lower_case_keys_stay_untouched() -> None:
    text = 'log = [ system = "file",\n  debug_level = 3 ]\nport = 2633\nvm_mad = [ name = "kvm" ]\n'
    d = doc(text)
    assert d.render() == text
    assert d.tree()["LOG"] == {None: {"SYSTEM": ['"file"'], "DEBUG_LEVEL": ["3"]}}
    result = d.apply(ChangeOp("set", [], "PORT", value="2634", old="2633"), frozenset())
    assert result.applied
    d.apply(ChangeOp("set", ["LOG"], "DEBUG_LEVEL", value="5", old="3"), frozenset())
    d.apply(ChangeOp("ins", ["VM_MAD", '"kvm"'], "ARGUMENTS", value='"-t 1"'), frozenset())
    assert d.render() == (
        'log = [ system = "file",\n  debug_level = 5 ]\nport = 2634\n'
        'vm_mad = [ name = "kvm",\n    ARGUMENTS = "-t 1" ]\n'
    )


def test_name_with_single_quote() -> None:
    d = doc('VM_MAD = [ NAME = "it\'s", ARGUMENTS = "a" ]\n')
    ident = '"it\'s"'
    assert list(d.tree()["VM_MAD"]) == [ident]
    assert d.apply(
        ChangeOp("set", ["VM_MAD", ident], "ARGUMENTS", value='"b"', old='"a"'), frozenset()
    ).applied
    assert 'ARGUMENTS = "b"' in d.render()
    op = OneDocument.op_from_line("rm", ["VM_MAD", ident])
    assert d.apply(op, frozenset()).applied
    assert d.render() == ""


def test_escaped_quotes_survive_edits() -> None:
    d = doc('A = "o\\"n"\nB = 1\n')
    d.apply(ChangeOp("set", [], "B", value='"x\\"y"', old="1"), frozenset())
    assert d.render() == 'A = "o\\"n"\nB = "x\\"y"\n'
    assert doc(d.render()).tree()["B"] == ['"x\\"y"']


def test_missing_final_newline_is_kept() -> None:
    d = doc("A = 1\nB = 2")
    assert d.render() == "A = 1\nB = 2"
    d.apply(ChangeOp("set", [], "A", value="3", old="1"), frozenset())
    assert d.render() == "A = 3\nB = 2"


# ------------------------------------------------------------------------------------- apply

NONE: frozenset[str] = frozenset()
SKIP = frozenset({"skip"})
REPLACE = frozenset({"replace"})

BASE = """PORT = 2633
LOG = [ SYSTEM = "file", DEBUG_LEVEL = 3 ]
DUP = 1
DUP = 2
VM_MAD = [ NAME = "kvm", ARGUMENTS = "-t 15" ]
VM_MAD = [ NAME = "qemu", ARGUMENTS = "-t 15" ]
VM_RESTRICTED_ATTR = "A"
VM_RESTRICTED_ATTR = "B"
"""


def values(d: OneDocument, *path: str) -> Any:
    node: Any = d.tree()
    for part in path:
        node = node[part]
    return node


def test_apply_set_branches() -> None:
    d = doc(BASE)
    assert d.apply(ChangeOp("set", [], "PORT", value=2634, old="2633"), NONE) == PatchResult(True)
    assert values(d, "PORT") == ["2634"]
    # old does not match: silent no-op without replace, replaced with it
    assert d.apply(ChangeOp("set", [], "PORT", value="1", old="9"), NONE) == PatchResult(False)
    assert d.apply(ChangeOp("set", [], "PORT", value="1", old="9"), REPLACE) == PatchResult(
        True, "replace", old=["2634"]
    )
    # several occurrences: the first one is set when old matches, replace drops the others
    assert d.apply(ChangeOp("set", [], "DUP", value="7", old="1"), NONE).applied
    assert values(d, "DUP") == ["7", "2"]
    assert d.apply(ChangeOp("set", [], "DUP", value="8", old="x"), REPLACE).old == ["7", "2"]
    assert values(d, "DUP") == ["8"]
    # a missing key is only created with replace
    assert not d.apply(ChangeOp("set", [], "NEW", value="1", old="1"), NONE).applied
    assert d.apply(ChangeOp("set", [], "NEW", value=True, old="0"), REPLACE).applied
    assert values(d, "NEW") == ["true"]


def test_apply_ins_branches() -> None:
    d = doc(BASE)
    assert d.apply(ChangeOp("ins", ["LOG"], "NEW", value="1"), NONE) == PatchResult(True)
    assert values(d, "LOG", None, "NEW") == ["1"]
    # equal existing value: no-op
    assert d.apply(ChangeOp("ins", [], "PORT", value="2633"), NONE) == PatchResult(False)
    # different single value: only with replace
    assert d.apply(ChangeOp("ins", [], "PORT", value="1"), NONE) == PatchResult(False)
    assert d.apply(ChangeOp("ins", [], "PORT", value="1"), REPLACE) == PatchResult(
        True, "replace", old="2633"
    )
    # multiple keys get another occurrence unless the value is there already
    assert d.apply(ChangeOp("ins", [], "VM_RESTRICTED_ATTR", value='"C"'), NONE).applied
    assert not d.apply(ChangeOp("ins", [], "VM_RESTRICTED_ATTR", value='"A"'), NONE).applied
    assert values(d, "VM_RESTRICTED_ATTR") == ['"A"', '"B"', '"C"']
    extra_multi = {"multiple": True}
    assert d.apply(ChangeOp("ins", [], "DUP", value="3", extra=extra_multi), NONE).applied
    # several values of a plain key and a new value: error, skip or replace
    with pytest.raises(PatchInvalidMultiple, match="Wrong multiple use of parameter 'DUP'"):
        d.apply(ChangeOp("ins", [], "DUP", value="4"), NONE)
    assert d.apply(ChangeOp("ins", [], "DUP", value="4"), SKIP) == PatchResult(
        False, "skip", reason="Wrong multiple use of parameter DUP"
    )
    assert d.apply(ChangeOp("ins", [], "DUP", value="4"), REPLACE).old == ["1", "2", "3"]
    assert values(d, "DUP") == ["4"]


def test_new_multiple_values_stay_together() -> None:
    d = doc('VM_RESTRICTED_ATTR = "A"\nPORT = 1\n')
    d.apply(ChangeOp("ins", [], "VM_RESTRICTED_ATTR", value='"B"'), NONE)
    assert d.render() == 'VM_RESTRICTED_ATTR = "A"\nVM_RESTRICTED_ATTR = "B"\nPORT = 1\n'


def test_apply_rm_branches() -> None:
    d = doc(BASE)
    multi = {"multiple": True}
    assert d.apply(ChangeOp("rm", [], "VM_RESTRICTED_ATTR", old='"B"', extra=multi), NONE).applied
    assert not d.apply(ChangeOp("rm", [], "VM_RESTRICTED_ATTR", old='"Z"'), NONE).applied
    assert values(d, "VM_RESTRICTED_ATTR") == ['"A"']
    # non-multiple: every occurrence goes, whatever old says
    assert d.apply(ChangeOp("rm", [], "DUP", old="9", extra={"multiple": False}), NONE).applied
    assert "DUP" not in d.tree()
    assert not d.apply(ChangeOp("rm", [], "DUP"), NONE).applied
    assert d.apply(ChangeOp("rm", ["LOG"], "DEBUG_LEVEL", old="3"), NONE).applied
    assert values(d, "LOG") == {None: {"SYSTEM": ['"file"']}}
    assert d.apply(ChangeOp("rm", ["VM_MAD", '"qemu"'], None), NONE).applied
    assert list(values(d, "VM_MAD")) == ['"kvm"']
    assert d.apply(ChangeOp("rm", ["LOG"], None), NONE).applied
    assert "LOG" not in d.tree()
    assert d.apply(ChangeOp("rm", [], "VM_MAD"), NONE).applied
    assert "VM_MAD" not in d.tree()
    assert d.render() == 'PORT = 2633\nVM_RESTRICTED_ATTR = "A"\n'


def test_rm_multiple_key_without_value_removes_all() -> None:
    d = doc(BASE)
    assert d.apply(OneDocument.op_from_line("rm", ["VM_RESTRICTED_ATTR"]), NONE).applied
    assert "VM_RESTRICTED_ATTR" not in d.tree()


def test_emptied_section_is_dropped_on_render() -> None:
    d = doc('PORT = 1\nLOG = [ SYSTEM = "file" ]\nX = 2\n')
    d.apply(ChangeOp("rm", ["LOG"], "SYSTEM", old='"file"'), NONE)
    assert "LOG" not in d.tree()
    assert d.render() == "PORT = 1\nX = 2\n"
    # but a removal followed by an insertion keeps the section in place
    d = doc('PORT = 1\nLOG = [ SYSTEM = "file" ]\nX = 2\n')
    d.patch([ChangeOp("rm", ["LOG"], "SYSTEM"), ChangeOp("ins", ["LOG"], "DEBUG_LEVEL", value=3)])
    assert doc(d.render()).tree() == doc("PORT=1\nLOG=[DEBUG_LEVEL=3]\nX=2\n").tree()
    assert d.render().index("LOG") < d.render().index("X")


def test_missing_named_instance() -> None:
    d = doc(BASE)
    op = ChangeOp("set", ["VM_MAD", '"lxd"'], "ARGUMENTS", value='"x"', old='"y"')
    with pytest.raises(PatchPathNotFound, match="Patch path 'VM_MAD/\"lxd\"' not found"):
        d.apply(op, NONE)
    assert d.apply(op, SKIP).mode == "skip"
    assert not d.apply(op, SKIP).applied
    with pytest.raises(PatchPathNotFound):
        d.apply(ChangeOp("rm", ["VM_MAD", '"lxd"'], None), NONE)
    # the identifying key creates the instance; rm of a missing instance's NAME is a no-op
    assert not d.apply(ChangeOp("rm", ["VM_MAD", '"lxd"'], "NAME", old='"lxd"'), NONE).applied
    assert d.apply(ChangeOp("ins", ["VM_MAD", '"lxd"'], "NAME", value='"lxd"'), NONE).applied
    assert d.apply(op, REPLACE).applied
    assert values(d, "VM_MAD", '"lxd"') == {"NAME": ['"lxd"'], "ARGUMENTS": ['"x"']}


def test_apply_errors() -> None:
    d = doc(BASE)
    with pytest.raises(FatalError, match="Unknown index key name for section LOG"):
        d.apply(ChangeOp("set", ["LOG", "x"], "A", value="1", old="1"), NONE)
    with pytest.raises(FatalError, match="Diff path can not have more than 2 components"):
        d.apply(ChangeOp("set", ["VM_MAD", '"kvm"', "X"], "A", value="1"), NONE)
    with pytest.raises(PatchUnexpectedData):
        d.apply(ChangeOp("ins", ["PORT"], "A", value="1"), NONE)
    assert d.apply(ChangeOp("ins", ["PORT"], "A", value="1"), SKIP).mode == "skip"
    with pytest.raises(PatchUnexpectedData):
        d.apply(ChangeOp("set", [], "LOG", value="1", old="1"), REPLACE)
    with pytest.raises(PatchInvalidMultiple):
        d.apply(ChangeOp("set", ["VM_MAD"], "ARGUMENTS", value="1", old="1"), NONE)
    # rm through a multi-instance section name touches every instance (as onecfg did)
    assert d.apply(ChangeOp("rm", ["VM_MAD"], "ARGUMENTS"), NONE).applied
    assert values(d, "VM_MAD", '"kvm"') == {"NAME": ['"kvm"']}
    assert doc(d.render()).similar(d)


def test_patch_is_all_or_nothing() -> None:
    d = doc(BASE)
    ops = [
        ChangeOp("set", [], "PORT", value="1", old="2633"),
        ChangeOp("ins", ["VM_MAD", '"new"'], "NAME", value='"new"'),
        ChangeOp("set", ["VM_MAD", '"missing"'], "A", value="1", old="1"),
    ]
    with pytest.raises(PatchPathNotFound):
        d.patch(ops)
    assert d.render() == BASE
    assert d.tree() == doc(BASE).tree()
    # the document still works after the restore
    assert d.patch(ops[:2])[1].applied
    assert '"new"' in d.render()


# -------------------------------------------------------------------------------- line format


def test_line_roundtrip_of_worked_diff() -> None:
    for op in expected_diff_ops():
        assert roundtrip(op) == op
    forms = [OneDocument.line_annotations(op) for op in expected_diff_ops()]
    assert forms[1] == (["TM_MAD_SYSTEM"], '"Y"', {})
    assert forms[4] == (["VM_MAD", '"lxd"'], NOTHING, {})
    assert forms[8] == (["INHERIT_VNET_ATTR"], '"C"', {})
    assert all(notes == {} or list(notes) == ["old"] for _, _, notes in forms)


def test_line_multi_value_removal() -> None:
    op = OneDocument.op_from_line("rm", ["VM_RESTRICTED_ATTR"], '"NIC/MAC"')
    assert op == ChangeOp("rm", [], "VM_RESTRICTED_ATTR", old='"NIC/MAC"', extra={"multiple": True})


@pytest.mark.parametrize(
    "op",
    [
        ChangeOp("rm", [], "PORT", old="2633", extra={"multiple": False}),
        ChangeOp("rm", ["LOG"], None),
        ChangeOp("rm", ["MY_SECTION"], None),
        ChangeOp("rm", ["VM_MAD", "unquoted"], None),
        ChangeOp("rm", [], "PORT"),
        ChangeOp("rm", ["LOG"], "DEBUG_LEVEL", old="3"),
        ChangeOp("ins", [], "VM_RESTRICTED_ATTR", value='"X"', extra={"multiple": False}),
        ChangeOp("ins", [], "PORT", value=5, extra={"multiple": True}),
        ChangeOp("ins", ["VM_MAD", '"a b"'], "NAME", value='"a b"', extra={"multiple": False}),
        ChangeOp("set", [], "PORT", value="1", old="1"),
        ChangeOp("set", ["DB"], "BACKEND", value='"mysql"', old='"sqlite"'),
    ],
)
def test_line_roundtrip_of_unusual_ops(op: ChangeOp) -> None:
    assert roundtrip(op) == op


def test_original_line_forms_keep_working() -> None:
    d = doc(BASE)
    lines: list[tuple[str, list[str], Any]] = [
        ("set", ["PORT"], "2634"),
        ("set", ["LOG", "DEBUG_LEVEL"], 5),
        ("set", ["VM_MAD", '"kvm"', "ARGUMENTS"], '"-t 1"'),
        ("ins", ["LOG", "NEW"], '"x"'),
        ("ins", ["VM_MAD", '"lxc"', "NAME"], '"lxc"'),
        ("ins", ["VM_MAD", '"lxc"', "ARGUMENTS"], '"-t 2"'),
        ("rm", ["LOG", "SYSTEM"], NOTHING),
        ("rm", ["VM_MAD", '"qemu"', "ARGUMENTS"], NOTHING),
        ("rm", ["VM_RESTRICTED_ATTR"], '"A"'),
        ("rm", ["DUP"], NOTHING),
    ]
    ops = [OneDocument.op_from_line(state, comps, value) for state, comps, value in lines]
    assert all(r.applied for r in d.patch(ops, ["replace"]))
    assert doc(d.render()).tree() == {
        "PORT": ["2634"],
        "LOG": {None: {"DEBUG_LEVEL": ["5"], "NEW": ['"x"']}},
        "VM_MAD": {
            '"kvm"': {"NAME": ['"kvm"'], "ARGUMENTS": ['"-t 1"']},
            '"qemu"': {"NAME": ['"qemu"']},
            '"lxc"': {"NAME": ['"lxc"'], "ARGUMENTS": ['"-t 2"']},
        },
        "VM_RESTRICTED_ATTR": ['"B"'],
    }


def test_line_defect_fixes() -> None:
    d = doc(BASE + 'IM_MAD = [ NAME = "kvm", A = "1", A = "2" ]\n')
    # §8.1 #2: removing a whole named instance from a line
    op = OneDocument.op_from_line("rm", ["VM_MAD", '"qemu"'])
    assert op == ChangeOp("rm", ["VM_MAD", '"qemu"'], None)
    assert d.apply(op, NONE).applied
    assert list(values(d, "VM_MAD")) == ['"kvm"']
    # §8.1 #3: removing one value inside sections
    op = OneDocument.op_from_line("rm", ["LOG", "SYSTEM"], '"file"')
    assert op == ChangeOp("rm", ["LOG"], "SYSTEM", old='"file"', extra={"multiple": True})
    assert d.apply(op, NONE).applied
    op = OneDocument.op_from_line("rm", ["IM_MAD", '"kvm"', "A"], '"2"')
    assert d.apply(op, NONE).applied
    assert values(d, "IM_MAD", '"kvm"', "A") == ['"1"']
    with pytest.raises(FileParseError, match="Diff path can not have more than 2 components"):
        OneDocument.op_from_line("set", ["IM_MAD", '"kvm"', "A", "B"], "1")
    with pytest.raises(FileParseError):
        OneDocument.op_from_line("set", [], "1")


# --------------------------------------------------------------------------------- hypothesis

FRAGMENTS = [
    "A", "b", "NAME", "VM_MAD", "=", " = ", " ", "\t", "\n", "[", "]", ",", "#", "# c", '"',
    '"x y"', "\\", '\\"', "1", "-", "x y", "\r", "é",
]  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=30).map("".join))
def test_scanner_and_lens_agree(text: str) -> None:
    try:
        mine: Any = scanner_model(text)
    except FileParseError:
        mine = "rejected"
    try:
        theirs: Any = augeas_model(text)
    except FileParseError:
        theirs = "rejected"
    assert mine == theirs


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join)))
def test_parse_raises_only_parse_errors(text: str) -> None:
    try:
        d = OneDocument.parse(text)
    except FileParseError:
        return
    assert d.render() == text
    assert d.diff(d) == []


_WS = st.sampled_from(["", " ", "\t", "  ", "\n", " \n "])
_VALUES = st.sampled_from(["1", '"a b"', '"x\ny"', "a]b", "a,b", '""', '"q\\"q"', "x#", "[", "]"])
_SEPARATORS = st.sampled_from([",", " , ", ",\n", ", # c\n", " # c\n", "\n# c\n", ""])


@st.composite
def _config_texts(draw: st.DrawFn) -> str:
    """Near-valid files: lines and sections with random blanks, values and separators."""
    parts: list[str] = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["top", "filler", "section"]))
        if kind == "top":
            comment = draw(st.sampled_from(["", " # c", "#c "]))
            parts.append(
                f"{draw(_WS)}K{draw(st.integers(0, 2))}{draw(_WS)}={draw(_WS)}"
                f"{draw(_VALUES)}{comment}{draw(_WS)}\n"
            )
        elif kind == "filler":
            parts.append(draw(st.sampled_from(["\n", "# c\n", "  # i  \n", " \t\n"])))
        else:
            entries = "".join(
                f"E{draw(st.integers(0, 2))}{draw(_WS)}={draw(_WS)}{draw(_VALUES)}"
                f"{draw(_SEPARATORS)}"
                for _ in range(draw(st.integers(0, 3)))
            )
            tail = draw(st.sampled_from(["", " ", " # c"]))
            parts.append(f"S{draw(_WS)}={draw(_WS)}[{draw(_WS)}{entries}{draw(_WS)}]{tail}\n")
    return "".join(parts)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_config_texts())
def test_scanner_and_lens_agree_on_near_valid_files(text: str) -> None:
    test_scanner_and_lens_agree.hypothesis.inner_test(text)  # type: ignore[attr-defined]


def test_lens_type_checks(tmp_path: Any) -> None:
    """augparse type-checks the lens (text_store does not, and hides ambiguities)."""
    augparse = shutil.which("augparse")
    if augparse is None:
        pytest.skip("augparse not installed")
    lenses = Path(__file__).resolve().parents[1] / "src/onetools/config/lenses"
    module = tmp_path / "test_onetools_oned.aug"
    module.write_text(
        "module Test_onetools_oned =\n"
        'test Onetools_oned.lns get "A = 1 # c\\nS = [ B = \\"x\\" ]\\n" =\n'
        '  { "A" = "1" { "#comment" = "# c" } }\n'
        '  { "S" { "B" = "\\"x\\"" } }\n'
        'test Onetools_oned.lns put "A = 1\\n" after set "S/NAME" "\\"n\\"" =\n'
        '  "A = 1\\nS = [\\n    NAME = \\"n\\"\\n]\\n"\n'
    )
    run = subprocess.run(
        [augparse, "-I", str(lenses), str(module)], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr
