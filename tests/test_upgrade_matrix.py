"""Upgrades of customized stock trees across every consecutive version pair and two long jumps.

The oracle: the stock tree of the new version with the same customizations applied (as
``onecfg patch`` would, where the key still exists).  The upgraded tree must have the same files
as the new stock tree, byte-identical where nothing was customized and ``similar`` where it was.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest

from conftest import STOCK_VERSIONS
from onetools.config.files import CLASSIFICATION
from onetools.config.formats import format_class
from onetools.config.formats.one import OneDocument
from onetools.config.lineformat import parse_lines
from onetools.config.patch import apply_patch, classify_existing
from onetools.config.stock import store
from onetools.config.upgrade import UpgradeOptions, upgrade

CUSTOMIZATIONS = """\
/etc/one/oned.conf set PORT 2634
/etc/one/oned.conf set VM_MAD/"kvm"/ARGUMENTS "\\"-t 15 -r 0 kvm -c\\""
/etc/one/oned.conf ins VM_RESTRICTED_ATTR "\\"MYATTR\\""
/etc/one/oned.conf rm DEFAULT_UMASK
/etc/one/oneflow-server.conf set :port 2475
/etc/one/cli/onevm.yaml ins :default ":MYCOL"
/etc/one/defaultrc set PRIORITY "15" # {"export":true}
"""
CUSTOMIZED = {
    "/etc/one/oned.conf",
    "/etc/one/oneflow-server.conf",
    "/etc/one/cli/onevm.yaml",
    "/etc/one/defaultrc",
}
COMMENT = "# site: flow listens on 2475 (ticket 42)\n"

JUMPS = [*pairwise(STOCK_VERSIONS), ("5.10.0", "7.5.80"), ("6.0.0", "6.10.0")]


def customize(prefix: Path) -> None:
    changes = parse_lines(CUSTOMIZATIONS, classify_existing(str(prefix)).get, "customizations")
    outcome = apply_patch(changes, prefix=str(prefix), converge=True)
    assert outcome.applied == outcome.total
    flow = prefix / "etc/one/oneflow-server.conf"
    text = flow.read_text()
    flow.write_text(text.replace(":port: 2475", COMMENT + ":port: 2475", 1))


def kvm_arguments(version: str) -> list[str]:
    text = store().read(version, "/etc/one/oned.conf") or ""
    tree = OneDocument.parse(text, "oned.conf").tree()
    return list(tree["VM_MAD"]['"kvm"']["ARGUMENTS"])


def classified(prefix: Path) -> dict[str, str]:
    scan = CLASSIFICATION.scan(str(prefix)).classified
    return {path: entry.format_name or "" for path, entry in scan.items()}


@pytest.mark.parametrize(("old", "new"), JUMPS, ids=[f"{a}->{b}" for a, b in JUMPS])
def test_customized_upgrade(
    old: str, new: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ONECFG_ETC_DIR", str(tmp_path))
    monkeypatch.setenv("ONECFG_BACKUP_DIR", str(tmp_path / "backups"))
    tree = tmp_path / "tree"
    store().materialize(old, str(tree))
    customize(tree)
    assert COMMENT in (tree / "etc/one/oneflow-server.conf").read_text()

    outcome = upgrade(UpgradeOptions(prefix=str(tree), source=old, target=new))
    assert outcome.saved and outcome.final == new
    # Where the new version changes the kvm arguments too, the user's value wins and the
    # upgrade says so.
    kvm_conflicts = [
        r
        for r in outcome.reports
        if r.kind == "conflict" and 'VM_MAD/\\"kvm\\"/ARGUMENTS' in r.change
    ]
    assert bool(kvm_conflicts) == (kvm_arguments(old) != kvm_arguments(new)), outcome.reports
    assert (tmp_path / "onecfg.conf").read_text() == f"---\nversion: {new}\n"

    oracle = tmp_path / "oracle"
    store().materialize(new, str(oracle))
    customize(oracle)

    got, want = classified(tree), classified(oracle)
    assert sorted(got) == sorted(want), "created/deleted files differ from the new stock tree"
    for path, format_name in want.items():
        ours = (tree / path.lstrip("/")).read_text()
        expected = (oracle / path.lstrip("/")).read_text()
        if path not in CUSTOMIZED:
            assert ours == expected, f"{path} differs from stock {new}"
            continue
        cls = format_class(format_name)
        assert cls.parse(ours, path).similar(cls.parse(expected, path)), path
    # The comment the user added survives (the file keeps a customization, so it is patched,
    # not replaced by the stock text).
    assert COMMENT in (tree / "etc/one/oneflow-server.conf").read_text()
