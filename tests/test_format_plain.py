"""Simple (plain text) documents: whole-text diffs replayed with fuzz (reference §3.3)."""

from __future__ import annotations

import itertools

import pytest

from conftest import STOCK_VERSIONS, read_stock, stock_files
from onetools.config.formats.plain import PlainDocument
from onetools.config.lineformat import op_from_parsed, parse_line, render_op
from onetools.config.ops import NOTHING, ChangeOp, PatchResult
from onetools.config.unidiff import DiffApplyError
from onetools.errors import PatchError

SIMPLE = "Simple"
OLD = "line1\nline2\nline3\n"
NEW = "line1\nline2 changed\nline3\n"
DIFF = "--- old\n+++ new\n@@ -1,3 +1,3 @@\n line1\n-line2\n+line2 changed\n line3\n"


def _stock_params() -> list[tuple[str, str]]:
    return [(v, p) for v in STOCK_VERSIONS for p, _ in stock_files(v, SIMPLE)]


def _pair_params() -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    for old, new in itertools.pairwise(STOCK_VERSIONS):
        common = {p for p, _ in stock_files(old, SIMPLE)} & {p for p, _ in stock_files(new, SIMPLE)}
        out.extend((old, new, p) for p in sorted(common))
    return out


def line_round_trip(op: ChangeOp) -> ChangeOp:
    parsed = parse_line(f"/etc/one/az_driver.default {render_op(op, PlainDocument)}")
    assert parsed is not None
    return op_from_parsed(PlainDocument, parsed)


@pytest.mark.parametrize(("version", "path"), _stock_params())
def test_stock_parse_render(version: str, path: str) -> None:
    text = read_stock(version, path)
    document = PlainDocument.parse(text, path)
    assert document.render() == text
    assert document.similar(PlainDocument.parse(text, path))
    assert document.diff(PlainDocument.parse(text, path)) == []


@pytest.mark.parametrize(("old", "new", "path"), _pair_params())
def test_stock_upgrade_pairs(old: str, new: str, path: str) -> None:
    before = PlainDocument.parse(read_stock(old, path), path)
    after = PlainDocument.parse(read_stock(new, path), path)
    ops = before.diff(after)
    assert [line_round_trip(op) for op in ops] == ops
    assert all(r.applied for r in before.patch(ops))
    assert before.render() == after.render()


def test_stock_has_files() -> None:
    assert _stock_params()


def test_diff_op_shape() -> None:
    (op,) = PlainDocument.parse(OLD).diff(PlainDocument.parse(NEW))
    assert op == ChangeOp("set", [], None, value=DIFF)
    assert op.old is NOTHING
    assert op.to_dict() == {"path": [], "key": None, "value": DIFF, "state": "set", "extra": {}}
    assert PlainDocument.parse(OLD).diff(PlainDocument.parse(OLD)) == []


def test_line_form() -> None:
    op = ChangeOp("set", [], None, value=DIFF)
    line = render_op(op, PlainDocument)
    assert line.startswith('set / "--- old\\n+++ new\\n@@ -1,3 +1,3 @@')
    assert line_round_trip(op) == op
    parsed = parse_line("/etc/one/az_driver.default set / " + line.split(" ", 2)[2])
    assert parsed is not None
    assert op_from_parsed(PlainDocument, parsed) == op


def test_apply_with_user_changes_elsewhere() -> None:
    base = "".join(f"l{i}\n" for i in range(30))
    new = base.replace("l20\n", "twenty\n")
    (op,) = PlainDocument.parse(base).diff(PlainDocument.parse(new))
    user = PlainDocument.parse("# mine\n" + base.replace("l2\n", "L2\n"))
    assert user.apply(op, frozenset()) == PatchResult(True)
    assert user.render() == "# mine\n" + new.replace("l2\n", "L2\n")


def test_failed_hunk_raises_or_skips() -> None:
    op = ChangeOp("set", [], None, value=DIFF)
    document = PlainDocument.parse("something else\n")
    with pytest.raises(DiffApplyError) as info:
        document.apply(op, frozenset())
    assert info.value.op is op
    result = document.apply(op, frozenset({"skip"}))
    assert (result.applied, result.mode) == (False, "skip")
    assert document.render() == "something else\n"


def test_other_states_rejected() -> None:
    document = PlainDocument.parse(OLD)
    for state in ("ins", "rm"):
        with pytest.raises(PatchError):
            document.apply(ChangeOp(state, [], None, value=DIFF), frozenset({"skip"}))


def test_patch_restores_on_failure() -> None:
    document = PlainDocument.parse(OLD)
    good = ChangeOp("set", [], None, value=DIFF)
    with pytest.raises(PatchError):
        document.patch([good, ChangeOp("set", [], None, value=DIFF)])
    assert document.render() == OLD
