"""``validate_tree``: the two-process path reports exactly what the sequential one does."""

from __future__ import annotations

from pathlib import Path

from helpers import copy_stock
from onetools.config.validate import validate_tree


def test_parallel_and_sequential_agree(tmp_path: Path) -> None:
    tree = copy_stock("7.5.80", tmp_path / "tree")
    kvmrc = tree / "var/lib/one/remotes/etc/vmm/kvm/kvmrc"
    kvmrc.write_text(kvmrc.read_text() + 'BROKEN="unterminated\n')
    yaml_file = tree / "etc/one/oneflow-server.conf"
    yaml_file.write_text(yaml_file.read_text() + ":bad: [\n")

    parallel = validate_tree(str(tree))
    sequential = validate_tree(str(tree), parallel=False)
    assert [r.to_dict() for r in parallel] == [r.to_dict() for r in sequential]
    failed = {r.path: r.error for r in parallel if not r.ok}
    assert set(failed) == {str(kvmrc), str(yaml_file)}
    assert "at line" in (failed[str(kvmrc)] or "")
    assert len(parallel) == 146
