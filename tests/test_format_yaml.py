"""Tests of the Yaml and Yaml::Strict formats (reference §3.7) and their surgical text edits."""

from __future__ import annotations

import contextlib
import difflib
import itertools
import json
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import STOCK_VERSIONS, read_stock, stock_files
from onetools.config.formats.yaml import StrictYamlDocument, YamlDocument, canon
from onetools.config.ops import NOTHING, ChangeOp, Symbol, strict_equal
from onetools.errors import (
    FileParseError,
    PatchError,
    PatchPathNotFound,
    PatchUnexpectedData,
    PatchValueNotFound,
)

CLASSES: dict[str, type[YamlDocument]] = {
    "Yaml": YamlDocument,
    "Yaml::Strict": StrictYamlDocument,
}


def _stock(version: str) -> list[tuple[str, str]]:
    return stock_files(version, "Yaml") + stock_files(version, "Yaml::Strict")


# -- real files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", STOCK_VERSIONS)
def test_stock_files_round_trip(version: str) -> None:
    files = _stock(version)
    assert files
    for path, format_name in files:
        text = read_stock(version, path)
        doc = CLASSES[format_name].parse(text, path)
        assert doc.render() == text, path
        assert doc.similar(doc), path
        assert doc.diff(CLASSES[format_name].parse(text)) == [], path


def _line_round_trip(cls: type[YamlDocument], op: ChangeOp) -> ChangeOp:
    """What the line format gives back for ``op`` (JSON-encoded value and annotations)."""
    components, value, notes = cls.line_annotations(op)
    texts = [str(part) for part in components]
    # The line format splits the path on "/" and drops empty components.
    texts = [part for text in texts for part in text.split("/") if part]
    if value is not NOTHING:
        value = json.loads(json.dumps(value))
    notes = json.loads(json.dumps(notes))
    return cls.op_from_line(op.state, texts, value, notes)


def _line_safe(value: Any) -> bool:
    """Whether a value survives the line format: strings starting with ':' become symbols and
    non-string keys become strings (none of this occurs in the stock files, checked below)."""
    if isinstance(value, Symbol):
        return True
    if isinstance(value, str):
        return not value.startswith(":") or len(value) == 1
    if isinstance(value, list):
        return all(_line_safe(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _line_safe(k) and _line_safe(v) for k, v in value.items())
    return True


def _pairs() -> list[tuple[str, str]]:
    return list(itertools.pairwise(STOCK_VERSIONS))


@pytest.mark.parametrize(("old_version", "new_version"), _pairs())
def test_stock_upgrade_patches(old_version: str, new_version: str) -> None:
    """patch(old, diff(old, new)) applies every op, is similar to new and re-parses exactly;
    every op survives the line format."""
    new_files = dict(_stock(new_version))
    for path, format_name in _stock(old_version):
        if new_files.get(path) != format_name:
            continue
        cls = CLASSES[format_name]
        old_text = read_stock(old_version, path)
        old = cls.parse(old_text, path)
        new = cls.parse(read_stock(new_version, path), path)
        ops = old.diff(new)
        results = old.patch(ops)
        assert all(result.applied for result in results), path
        assert old.similar(new), path
        text = old.render()
        reparsed = cls.parse(text, path)
        assert strict_equal(reparsed.content, old.content), path
        assert strict_equal(reparsed.content, new.content, cls.strict), path
        if not ops:
            assert text == old_text
        for op in ops:
            parts = [*op.path, op.key] if op.key is not None else list(op.path)
            addressable = all(isinstance(p, str) and "/" not in p and p for p in parts)
            assert addressable, (path, op)  # the stock data has no such keys
            assert _line_safe(op.value) and _line_safe(op.old), (path, op)
            assert _line_round_trip(cls, op) == op, (path, op)


def _hunks(before: str, after: str) -> list[tuple[list[str], list[str]]]:
    """The (removed lines, added lines) of each changed region; all other lines are equal."""
    old, new = before.splitlines(keepends=True), after.splitlines(keepends=True)
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    return [
        (old[i1:i2], new[j1:j2]) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"
    ]


def test_set_keeps_every_other_line_fireedge() -> None:
    version = STOCK_VERSIONS[-1]
    path = "/etc/one/fireedge-server.conf"
    text = read_stock(version, path)
    doc = YamlDocument.parse(text, path)
    assert isinstance(doc.content, dict) and "port" in doc.content
    doc.patch([ChangeOp("set", [], "port", value=9999, old=doc.content["port"])])
    [(removed, added)] = _hunks(text, doc.render())
    assert len(removed) == 1 and len(added) == 1
    assert added[0].replace("9999", str(YamlDocument.parse(text).content["port"])) == removed[0]
    assert text.count("#") == doc.render().count("#")


def test_set_and_insert_keep_comments_sunstone() -> None:
    version = "6.8.0"
    path = "/etc/one/sunstone-server.conf"
    text = read_stock(version, path)
    doc = YamlDocument.parse(text, path)
    port = Symbol(":port")
    doc.patch(
        [
            ChangeOp("set", [], port, value=8080, old=doc.content[port]),
            ChangeOp("ins", [], Symbol(":new_key"), value={"a": [1, 2], Symbol(":b"): "x"}),
        ]
    )
    out = doc.render()
    # Everything but the port line and the appended key is byte-identical.
    assert _hunks(text, out) == [
        ([":port: 9869\n"], [":port: 8080\n"]),
        ([], [":new_key:\n", "  a:\n", "  - 1\n", "  - 2\n", "  :b: x\n"]),
    ]
    assert strict_equal(YamlDocument.parse(out).content, doc.content)


def test_strict_cli_file_positional_insert_keeps_format() -> None:
    version = STOCK_VERSIONS[-1]
    path = "/etc/one/cli/onevm.yaml"
    text = read_stock(version, path)
    doc = StrictYamlDocument.parse(text, path)
    columns = doc.content[Symbol(":default")]
    assert isinstance(columns, list) and len(columns) > 3
    target = [*columns[:2], Symbol(":EXTRA"), *columns[2:-1]]
    other = StrictYamlDocument.parse(text)
    other.content[Symbol(":default")] = target
    ops = doc.diff(other)
    assert [op.state for op in ops] == ["ins", "rm"]
    doc.patch(ops)
    out = doc.render()
    hunks = _hunks(text, out)
    assert len(hunks) == 2
    assert hunks[0][0] == [] and [line.strip() for line in hunks[0][1]] == ["- :EXTRA"]
    assert len(hunks[1][0]) == 1 and hunks[1][1] == []
    assert strict_equal(StrictYamlDocument.parse(out).content, doc.content)
    assert strict_equal(doc.content[Symbol(":default")], target)


def test_remove_key_and_item_lines() -> None:
    text = "# head\na: 1  # one\nb:\n  - x\n  - y   # why\n  - z\nc:\n  d: 2\n  e: 3\n# tail\n"
    doc = YamlDocument.parse(text)
    doc.patch(
        [
            ChangeOp("rm", [], "a", old=1),
            ChangeOp("rm", ["b"], None, old="y"),
            ChangeOp("rm", ["c"], "d", old=2),
        ]
    )
    assert doc.render() == "# head\nb:\n  - x\n  - z\nc:\n  e: 3\n# tail\n"


def test_flow_collections_rerendered_in_place() -> None:
    text = "a: [1, 2]   # list\nb: {x: 1}\nc: {}\n"
    doc = YamlDocument.parse(text)
    doc.patch(
        [
            ChangeOp("ins", ["a"], None, value=3),
            ChangeOp("set", ["b"], "x", value=2, old=1),
            ChangeOp("ins", ["c"], "k", value="v"),
        ]
    )
    assert doc.render() == "a: [1, 2, 3]   # list\nb: {x: 2}\nc:\n  k: v\n"


def test_values_keep_alignment_and_quoting_elsewhere() -> None:
    text = "a:     'x'\nbb:    \"y\"\nccc:   no\nd:\n"
    doc = YamlDocument.parse(text)
    doc.patch(
        [
            ChangeOp("set", [], "ccc", value=True, old=False),
            ChangeOp("set", [], "d", value="multi\nline", old=None),
        ]
    )
    assert doc.render() == "a:     'x'\nbb:    \"y\"\nccc:   true\nd: |-\n  multi\n  line\n"


def test_aliases_expanded_when_anchor_changes() -> None:
    text = "base: &b {x: 1}\nuse: *b\nother: *b\n"
    doc = YamlDocument.parse(text)
    doc.patch([ChangeOp("set", ["base"], "x", value=2, old=1)])
    out = doc.render()
    assert strict_equal(
        YamlDocument.parse(out).content, {"base": {"x": 2}, "use": {"x": 1}, "other": {"x": 1}}
    )


def test_aliases_real_file() -> None:
    path = "/etc/one/sunstone-views/kvm/cloud.yaml"
    text = read_stock("6.0.0", path)
    doc = YamlDocument.parse(text, path)
    assert "*" in text
    # Change something inside every anchored node: the aliases must keep their value.
    doc.content["tabs"] = {"dummy": True, **doc.content["tabs"]}
    out = doc.render()
    assert strict_equal(YamlDocument.parse(out).content, doc.content)


def test_empty_file() -> None:
    doc = YamlDocument.parse("# comment only\n")
    assert doc.content is False
    assert doc.render() == "# comment only\n"
    assert YamlDocument.parse("---\n").content is None
    other = YamlDocument.parse("a: 1\n")
    ops = doc.diff(other)
    assert ops == [ChangeOp("set", [], None, value={"a": 1}, old=False)]
    doc.patch(ops)
    assert doc.render().startswith("# comment only\n")
    assert YamlDocument.parse(doc.render()).content == {"a": 1}


def test_parse_errors() -> None:
    with pytest.raises(FileParseError) as info:
        YamlDocument.parse("a: 1\nb: [\n", "x.yaml")
    assert info.value.path == "x.yaml" and info.value.line == 3


def test_symbols_booleans_and_classes() -> None:
    doc = YamlDocument.parse(':a: yes\n":b": off\nc: 1\nd: 1.0\ne: "1"\n')
    assert doc.content == {Symbol(":a"): True, ":b": False, "c": 1, "d": 1.0, "e": "1"}
    other = YamlDocument.parse(':a: true\n":b": false\nc: 1.0\nd: 1\ne: 1\n')
    assert doc.diff(other) == [
        ChangeOp("set", [], "c", value=1.0, old=1),
        ChangeOp("set", [], "d", value=1, old=1.0),
        ChangeOp("set", [], "e", value=1, old="1"),
    ]


# -- the worked examples of reference §3.7 ---------------------------------------------------

L = Symbol(":l")
H = Symbol(":h")


def _doc(cls: type[YamlDocument], data: Any) -> YamlDocument:
    from onetools.config import yamlio

    return cls.parse(yamlio.dump(data))


def test_worked_example_non_strict_diff() -> None:
    old = _doc(YamlDocument, {L: ["A", "B", "C", "D"]})
    new = _doc(YamlDocument, {L: ["A", "X", "B", "D", "E"]})
    assert old.diff(new) == [
        ChangeOp("rm", [L], None, old="C"),
        ChangeOp("ins", [L], None, value="X"),
        ChangeOp("ins", [L], None, value="E"),
    ]


def test_worked_example_strict_diff_and_force() -> None:
    old = _doc(StrictYamlDocument, {L: ["A", "B", "C", "D"]})
    new = _doc(StrictYamlDocument, {L: ["A", "X", "B", "D", "E"]})
    ops = old.diff(new)
    assert ops == [
        ChangeOp("ins", [L], None, value="X", old="B", extra={"index": 1}),
        ChangeOp("rm", [L], None, old="C", extra={"index": 3}),
        ChangeOp("ins", [L], None, value="E", old=None, extra={"index": 4}),
    ]
    stock = _doc(StrictYamlDocument, {L: ["A", "B", "C", "D"]})
    stock.patch(ops)
    assert stock.content == {L: ["A", "X", "B", "D", "E"]}
    assert StrictYamlDocument.parse(stock.render()).content == stock.content

    user = _doc(StrictYamlDocument, {L: ["Z", "A", "B", "C", "D"]})
    with pytest.raises(PatchValueNotFound, match="Value 'B' not found"):
        user.patch(ops)
    with pytest.raises(PatchValueNotFound):
        user.patch(ops, ["skip"])  # skip does not help a positional insert
    assert user.content == {L: ["Z", "A", "B", "C", "D"]}  # restored
    results = user.patch(ops, ["force"])
    assert user.content == {L: ["Z", "A", "X", "B", "E", "D"]}
    assert [r.mode for r in results] == ["force", "force", "force"]
    assert StrictYamlDocument.parse(user.render()).content == user.content


def test_worked_example_non_strict_apply_and_replace() -> None:
    stock = _doc(YamlDocument, {L: ["A", "B", "C", "D"], H: {"a": 1}})
    new = _doc(YamlDocument, {L: ["A", "X", "B", "D", "E"], H: {"a": 2, "b": 3}})
    ops = stock.diff(new)
    user_data = {L: ["Z", "A", "B", "C", "D"], H: {"a": 5}}
    user = _doc(YamlDocument, user_data)
    results = user.patch(ops)
    assert user.content == {L: ["Z", "A", "B", "D", "X", "E"], H: {"a": 5, "b": 3}}
    assert [r.applied for r in results] == [True, True, True, False, True]
    assert YamlDocument.parse(user.render()).content == user.content
    user = _doc(YamlDocument, user_data)
    user.patch(ops, ["replace"])
    assert user.content[H] == {"a": 2, "b": 3}


# -- apply branches -------------------------------------------------------------------------


def test_path_not_found_and_skip() -> None:
    doc = _doc(YamlDocument, {"a": {"b": 1}, "l": [1]})
    op = ChangeOp("set", ["x", Symbol(":y")], "k", value=1, old=0)
    with pytest.raises(PatchPathNotFound, match="Patch path 'x/y' not found"):
        doc.patch([op])
    assert doc.patch([op], ["skip"])[0].mode == "skip"
    with pytest.raises(PatchPathNotFound):  # paths only go through hashes
        doc.patch([ChangeOp("rm", ["l", 0], "k")])


def test_unexpected_data() -> None:
    doc = _doc(YamlDocument, {"a": {"b": 1}, "l": [1], "s": "x"})
    with pytest.raises(PatchUnexpectedData, match="Expected Hash but got Array"):
        doc.patch([ChangeOp("rm", ["l"], "k")])
    with pytest.raises(PatchUnexpectedData, match="Expected Array but got Hash"):
        doc.patch([ChangeOp("ins", ["a"], None, value=1)])
    with pytest.raises(PatchUnexpectedData, match="Expected Array but got String"):
        doc.patch([ChangeOp("rm", ["s"], None, old=1)])
    with pytest.raises(PatchUnexpectedData, match="Expected Hash but got String"):
        doc.patch([ChangeOp("ins", ["s"], "k", value=1)])
    assert doc.patch([ChangeOp("rm", ["l"], "k")], ["skip"])[0].applied is False


def test_rm_ins_set_statuses() -> None:
    doc = _doc(YamlDocument, {"a": 1, "l": [1, 2, 1]})
    assert doc.patch([ChangeOp("rm", [], "zz")])[0].applied is False
    assert doc.patch([ChangeOp("rm", ["l"], None, old=1)])[0].applied is True
    assert doc.content["l"] == [2, 1]  # the first equal element only
    assert doc.patch([ChangeOp("rm", ["l"], None, old=9)])[0].applied is False
    assert doc.patch([ChangeOp("ins", [], "a", value=1)])[0].applied is False
    assert doc.patch([ChangeOp("ins", [], "a", value=2)])[0].applied is False
    result = doc.patch([ChangeOp("ins", [], "a", value=2)], ["replace"])[0]
    assert (result.applied, result.mode, result.old) == (True, "replace", 1)
    assert doc.patch([ChangeOp("ins", ["l"], None, value=2)])[0].applied is False
    assert doc.patch([ChangeOp("set", [], "a", value=3, old=1)])[0].applied is False
    assert doc.patch([ChangeOp("set", [], "a", value=3, old=2)])[0].applied is True
    with pytest.raises(PatchValueNotFound, match="Value 'nokey' not found"):
        doc.patch([ChangeOp("set", [], Symbol(":nokey"), value=1, old=0)])
    assert doc.patch([ChangeOp("set", [], "new", value=1, old=0)], ["skip"])[0].mode == "skip"
    result = doc.patch([ChangeOp("set", [], "new", value=1, old=0)], ["replace"])[0]
    assert (result.applied, result.mode) == (True, "replace")
    result = doc.patch([ChangeOp("set", [], None, value=[1], old=None)])[0]
    assert doc.content == [1] and result.applied
    assert YamlDocument.parse(doc.render()).content == [1]


def test_strict_rm_by_index() -> None:
    doc = _doc(StrictYamlDocument, {"l": ["a", "b", "c"]})
    op = ChangeOp("rm", ["l"], None, old="c", extra={"index": 0})
    with pytest.raises(PatchValueNotFound, match="Value 'c' not found"):
        doc.patch([op])
    assert doc.patch([op], ["skip"])[0].mode == "skip"
    assert doc.patch([op], ["force"])[0].mode == "force"
    assert doc.content == {"l": ["a", "b"]}
    assert doc.patch([ChangeOp("rm", ["l"], None, old="a", extra={"index": 0})])[0].applied
    assert doc.content == {"l": ["b"]}
    assert StrictYamlDocument.parse(doc.render()).content == doc.content


def test_from_line_differences() -> None:
    doc = _doc(YamlDocument, {"l": [1], Symbol(":h"): {"k": "v"}})
    op = YamlDocument.op_from_line("ins", ["l"], 2)
    assert (op.path, op.key) == ([], "l")
    assert doc.patch([op])[0].applied
    assert doc.content["l"] == [1, 2]
    op = YamlDocument.op_from_line("rm", ["l"], 1)
    assert (op.path, op.key, op.old) == (["l"], None, 1)
    assert doc.patch([op])[0].applied and doc.content["l"] == [2]
    op = YamlDocument.op_from_line("set", [":h", "k"], ":w")
    assert op == ChangeOp("set", [Symbol(":h")], "k", value=Symbol(":w"), old=Symbol(":w"))
    assert doc.patch([op], ["replace"])[0].applied
    assert doc.content[Symbol(":h")] == {"k": Symbol(":w")}
    assert YamlDocument.parse(doc.render()).content == doc.content


def test_line_round_trip_of_element_ops() -> None:
    for cls, op in [
        (YamlDocument, ChangeOp("ins", [L], None, value="X")),
        (YamlDocument, ChangeOp("ins", [], None, value={Symbol(":a"): [1]})),
        (YamlDocument, ChangeOp("rm", [L], None, old="C")),
        (StrictYamlDocument, ChangeOp("ins", [L], None, value="E", old=None, extra={"index": 4})),
        (StrictYamlDocument, ChangeOp("rm", [L], None, old="C", extra={"index": 3})),
        (YamlDocument, ChangeOp("set", [], None, value={"a": 1}, old=False)),
        (YamlDocument, ChangeOp("rm", [H], "k", old=[1, Symbol(":x")])),
    ]:
        assert _line_round_trip(cls, op) == op, op


def test_safe_modes() -> None:
    assert YamlDocument.safe_modes == frozenset()
    assert StrictYamlDocument.safe_modes == frozenset({"force"})
    assert StrictYamlDocument.format_name == "Yaml::Strict" and YamlDocument.symbols


def test_parse_render_speed() -> None:
    version = STOCK_VERSIONS[-1]
    items = [(CLASSES[fmt], read_stock(version, path)) for path, fmt in _stock(version)]
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for cls, text in items:
            cls.parse(text).render()
        best = min(best, time.perf_counter() - start)
    assert best < 0.3, best  # ~0.05 s measured


# -- properties ------------------------------------------------------------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.sampled_from([1.5, 0.0, "yes", "a b", ""]),
    st.sampled_from(["x", "y", "z", Symbol(":s"), "multi\nline", ":q", "#", "- a"]),
)
_keys = st.sampled_from(["a", "b", "c", Symbol(":d"), "e f", "1"])
_data = st.recursive(
    _scalars,
    # Unique list items: with duplicates the original's algorithm is not expected to converge
    # (an `ins` of a value already present is a no-op, an `rm` removes one occurrence).
    lambda inner: st.one_of(
        st.lists(inner, max_size=4, unique_by=lambda item: canon(item, False)),
        st.dictionaries(_keys, inner, max_size=4),
    ),
    max_leaves=16,
)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_arbitrary_text_only_raises_parse_errors(text: str) -> None:
    with contextlib.suppress(FileParseError):
        YamlDocument.parse(text).render()


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([YamlDocument, StrictYamlDocument]),
    _data,
    _data,
    st.sampled_from([0, 2, 4]),
    st.booleans(),
)
def test_patch_of_diff_is_similar(
    cls: type[YamlDocument], left: Any, right: Any, indent: int, comments: bool
) -> None:
    from onetools.config import yamlio

    if indent:
        text = yamlio.dump(left, indent)
        if comments:
            text = "# top\n" + text.replace("\n", "  # c\n", 1) + "# end\n"
    else:
        text = yamlio.dump_flow(left) or yamlio.dump(left)
    old = cls.parse(text)
    assert strict_equal(old.content, left)
    new = _doc(cls, right)
    ops = old.diff(new)
    try:
        results = old.patch(ops)
    except PatchError:
        # Strict lists whose items were reordered: the original's positional inserts refuse
        # values that are already present, so a later anchor is missing (no `force` here).
        assert cls.strict
    else:
        if all(result.applied for result in results) or not cls.strict:
            assert old.similar(new)
    rendered = old.render()
    assert strict_equal(cls.parse(rendered).content, old.content), rendered
    if comments and indent and isinstance(left, (dict, list)) and left:
        assert rendered.startswith("# top\n")
    for op in ops:
        if (
            all(
                isinstance(p, str) and "/" not in p and p
                for p in [*op.path, op.key]
                if p is not None
            )
            and _line_safe(op.value)
            and _line_safe(op.old)
        ):
            assert _line_round_trip(cls, op) == op
