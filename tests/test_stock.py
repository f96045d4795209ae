"""The stock trees shipped in the package (``onetools.config.stock``) and the data behind them."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO, SHARED_DATA, STOCK_VERSIONS, stock_tree
from onetools.config import stock as stock_module
from onetools.config.files import CLASSIFICATION
from onetools.config.stock import DATA_FILE, StockStore, store, version_key
from onetools.errors import FatalError

BUILD_SCRIPT = REPO / "scripts" / "build_stock_data.py"
WHEEL_LIMIT = 5 * 1024 * 1024


def tree_bytes(prefix: Path) -> dict[str, bytes]:
    """Unprefixed path -> bytes of every regular file below ``prefix``."""
    found: dict[str, bytes] = {}
    for directory, _dirnames, filenames in os.walk(prefix):
        for name in filenames:
            full = Path(directory, name)
            found["/" + full.relative_to(prefix).as_posix()] = full.read_bytes()
    return found


def test_versions_match_shared_data(stock_versions: list[str]) -> None:
    assert stock_module.stock_versions() == stock_versions
    assert store().versions() == STOCK_VERSIONS
    assert all(store().has(v) for v in STOCK_VERSIONS)
    assert not store().has("1.2.3")


def test_version_order() -> None:
    assert sorted(["6.10.0", "6.8.0", "7.5.80", "5.12.0", "6.10.2"], key=version_key) == [
        "5.12.0",
        "6.8.0",
        "6.10.0",
        "6.10.2",
        "7.5.80",
    ]


@pytest.mark.parametrize("version", STOCK_VERSIONS)
def test_every_file_byte_identical(version: str) -> None:
    expected = tree_bytes(stock_tree(version))
    stock = store()
    assert stock.paths(version) == sorted(expected)
    tree = stock.tree(version)
    assert list(tree) == sorted(expected)
    for path, raw in expected.items():
        text = stock.read(version, path)
        assert text is not None and text.encode("utf-8") == raw, path
        assert tree[path] == text
        assert stock.digest(version, path) is not None


def test_lookups() -> None:
    stock = store()
    assert stock.read("7.5.80", "/etc/one/no-such.conf") is None
    assert stock.digest("7.5.80", "/etc/one/no-such.conf") is None
    # Paths without the leading slash name the same file.
    assert stock.read("7.5.80", "etc/one/oned.conf") == stock.read("7.5.80", "/etc/one/oned.conf")
    # Equal digests mean equal contents, across versions too.
    a, b = STOCK_VERSIONS[-2], STOCK_VERSIONS[-1]
    for path in set(stock.paths(a)) & set(stock.paths(b)):
        same_digest = stock.digest(a, path) == stock.digest(b, path)
        assert same_digest == (stock.read(a, path) == stock.read(b, path)), path


@pytest.mark.parametrize("call", ["paths", "tree", "digest", "read", "materialize"])
def test_unknown_version(call: str, tmp_path: Path) -> None:
    stock = store()
    calls = {
        "paths": lambda: stock.paths("4.0.0"),
        "tree": lambda: stock.tree("4.0.0"),
        "digest": lambda: stock.digest("4.0.0", "/etc/one/oned.conf"),
        "read": lambda: stock.read("4.0.0", "/etc/one/oned.conf"),
        "materialize": lambda: stock.materialize("4.0.0", str(tmp_path)),
    }
    with pytest.raises(FatalError, match=r"^No stock configuration for version 4\.0\.0$"):
        calls[call]()
    assert not any(tmp_path.iterdir())


def test_bad_data_file(tmp_path: Path) -> None:
    bad = tmp_path / "stock.json.xz"
    bad.write_bytes(b"not xz")
    with pytest.raises(FatalError, match="Cannot load stock configuration data"):
        StockStore(str(bad)).versions()
    with pytest.raises(FatalError, match="Cannot load stock configuration data"):
        StockStore(str(tmp_path / "missing.xz")).versions()


@pytest.mark.parametrize("version", STOCK_VERSIONS)
def test_materialize_reproduces_tree(version: str, tmp_path: Path) -> None:
    prefix = tmp_path / "root"
    written = store().materialize(version, str(prefix))
    expected = tree_bytes(stock_tree(version))
    assert tree_bytes(prefix) == expected
    assert sorted(written) == sorted(str(prefix) + path for path in expected)
    for path in expected:
        entry = CLASSIFICATION.classify(path)
        mode = stat.S_IMODE((prefix / path.lstrip("/")).stat().st_mode)
        assert mode == (entry.mode if entry is not None else 0o640), path
    for directory, _dirnames, _files in os.walk(prefix):
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o750, directory
    # The materialized tree scans like the original one.
    original = CLASSIFICATION.scan(str(stock_tree(version)))
    copy = CLASSIFICATION.scan(str(prefix))
    assert copy.classified == original.classified
    assert copy.unclassified == original.unclassified


def test_materialize_plain_modes_and_overwrite(tmp_path: Path) -> None:
    version = STOCK_VERSIONS[-1]
    oned = tmp_path / "etc" / "one" / "oned.conf"
    oned.parent.mkdir(parents=True)
    os.chmod(oned.parent, 0o755)
    oned.write_text("changed\n")
    store().materialize(version, str(tmp_path), mode_from_table=False)
    assert oned.read_text(encoding="utf-8") == store().read(version, "/etc/one/oned.conf")
    assert stat.S_IMODE(oned.stat().st_mode) == 0o644
    assert stat.S_IMODE(oned.parent.stat().st_mode) == 0o755  # existing directory kept


def test_materialize_does_not_follow_symlinks(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text("keep\n")
    prefix = tmp_path / "root"
    (prefix / "etc" / "one").mkdir(parents=True)
    (prefix / "etc" / "one" / "oned.conf").symlink_to(outside)
    with pytest.raises(OSError):
        store().materialize(STOCK_VERSIONS[-1], str(prefix))
    assert outside.read_text() == "keep\n"


def run_build(out: Path) -> bytes:
    result = subprocess.run(
        [sys.executable, str(BUILD_SCRIPT), "--shared", str(SHARED_DATA), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return (out / "stock.json.xz").read_bytes()


def test_build_is_deterministic_and_committed_data_is_current(tmp_path: Path) -> None:
    first = run_build(tmp_path / "a")
    second = run_build(tmp_path / "b")
    assert first == second
    assert (tmp_path / "a" / "NOTICE").read_bytes() == (tmp_path / "b" / "NOTICE").read_bytes()
    committed = Path(DATA_FILE)
    assert first == committed.read_bytes(), "stale data: run scripts/build_stock_data.py"
    assert (tmp_path / "a" / "NOTICE").read_bytes() == (committed.parent / "NOTICE").read_bytes()


def test_build_rejects_non_utf8(tmp_path: Path) -> None:
    tree = tmp_path / "shared" / "opennebula-etc" / "9.9.9" / "etc" / "one"
    tree.mkdir(parents=True)
    (tree / "oned.conf").write_bytes(b"PORT = 2633\n\xff\xfe\n")
    shared, out = tmp_path / "shared", tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(BUILD_SCRIPT), "--shared", str(shared), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "not UTF-8" in result.stderr
    assert not (out / "stock.json.xz").exists()


def _copy_project(target: Path) -> None:
    """The files a wheel is built from, so that the build never writes into the repository."""
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    shutil.copytree(REPO / "src", target / "src", ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE", "NOTICE", "setup.cfg", "setup.py"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, target / name)


def test_wheel_ships_data(tmp_path: Path) -> None:
    project = tmp_path / "project"
    _copy_project(project)
    dist = tmp_path / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(project)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    wheels = sorted(dist.glob("onetools-*.whl")) if dist.is_dir() else []
    if result.returncode != 0 or not wheels:
        pytest.skip(f"cannot build a wheel here (offline?): {result.stderr.strip()[-500:]}")
    wheel = wheels[0]
    assert wheel.stat().st_size <= WHEEL_LIMIT
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert "onetools/config/data/stock.json.xz" in names
        assert "onetools/config/data/NOTICE" in names
        assert "onetools/config/data/__init__.py" in names
        assert "onetools/config/lenses/onetools_oned.aug" in names
        assert archive.read("onetools/config/data/stock.json.xz") == Path(DATA_FILE).read_bytes()
