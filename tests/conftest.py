"""Shared test fixtures: where the real OpenNebula data lives (``../shared/data``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["db_servers", "market_servers", "one_fixtures", "ssh_hosts"]

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ONETOOLS_SHARED_DATA", REPO.parent / "shared" / "data"))
STOCK_ETC = SHARED_DATA / "opennebula-etc"


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


STOCK_VERSIONS: list[str] = (
    sorted((p.name for p in STOCK_ETC.iterdir() if p.is_dir()), key=_version_key)
    if STOCK_ETC.is_dir()
    else []
)


def stock_tree(version: str) -> Path:
    """The stock configuration tree (prefix) of an OpenNebula version."""
    path = STOCK_ETC / version
    if not path.is_dir():
        pytest.fail(f"missing stock tree {path}: tests need ../shared/data beside the repo")
    return path


def stock_files(version: str, format_name: str | None = None) -> list[tuple[str, str]]:
    """(unprefixed path, format name) of every classified file of a stock version."""
    from onetools.config.files import CLASSIFICATION

    scan = CLASSIFICATION.scan(str(stock_tree(version)))
    return [
        (path, entry.format_name or "")
        for path, entry in scan.classified.items()
        if format_name is None or entry.format_name == format_name
    ]


def read_stock(version: str, path: str) -> str:
    return (stock_tree(version) / path.lstrip("/")).read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def stock_versions() -> list[str]:
    assert STOCK_VERSIONS, f"no stock trees under {STOCK_ETC}"
    return STOCK_VERSIONS
