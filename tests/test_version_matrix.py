"""The change engine on real data: every consecutive pair of the 14 stock versions.

For each pair: diff the two trees file by file, render the changes as lines and parse them back
(same ops), then apply them with ``onecfg patch``'s engine to a copy of the old tree: every op
applies and every file ends up ``similar`` to the new version's file.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from conftest import STOCK_VERSIONS, stock_tree
from helpers import copy_stock
from onetools.config.diff import diff_trees
from onetools.config.files import CLASSIFICATION
from onetools.config.formats import format_class
from onetools.config.lineformat import parse_lines, render_lines
from onetools.config.patch import apply_patch

PAIRS = list(itertools.pairwise(STOCK_VERSIONS))


@pytest.mark.parametrize(("old", "new"), PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_diff_render_parse_patch(
    old: str, new: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ONECFG_BACKUP_DIR", str(tmp_path / "backups"))
    changes = diff_trees(str(stock_tree(old)), str(stock_tree(new)))
    if not changes:  # 6.10.0 -> 6.10.2 only adds and removes files
        assert old == "6.10.0", f"no differences between {old} and {new}?"
        return

    # Lines round trip: rendering then parsing gives exactly the same ops.
    classes = {path: entry.format_name for path, entry in changes.items()}
    reparsed = parse_lines(render_lines(changes), classes.get, "rendered")
    assert list(reparsed) == list(changes)
    for path, entry in changes.items():
        assert reparsed[path].ops == entry.ops, path

    # Applying the parsed lines to the old tree gives the new files (semantically).
    tree = copy_stock(old, tmp_path / "tree")
    outcome = apply_patch(reparsed, prefix=str(tree))
    unapplied = [
        (report.path, op)
        for report in outcome.files
        for op, result in report.results
        if not result.applied
    ]
    assert not unapplied, unapplied[:5]
    new_scan = CLASSIFICATION.scan(str(stock_tree(new))).classified
    for path, entry in changes.items():
        cls = format_class(entry.format_name)
        patched = cls.parse((tree / path.lstrip("/")).read_text(), path)
        wanted = cls.parse((stock_tree(new) / path.lstrip("/")).read_text(), path)
        assert patched.similar(wanted), path
        assert new_scan[path].format_name == entry.format_name
    assert os.listdir(tmp_path / "backups")
