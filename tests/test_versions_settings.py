"""Version arithmetic, the step chain (reference §1.4) and the settings file."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onetools.config.settings import Settings, _parse_simple, _parse_yaml, load_settings
from onetools.config.versions import (
    STEPS,
    Version,
    VersionError,
    final_version,
    is_supported,
    step_range,
    supported_range,
)
from onetools.errors import FatalError


def test_version_semantics() -> None:
    assert Version("5.4") == Version("5.4.0") == "5.4.0.0"
    assert Version("6.10.0") > Version("6.9.9") > Version("6.2")
    assert str(Version("7.5.80").bump()) == "7.6"
    assert str(Version("6.10.2").bump()) == "6.11"
    assert str(Version("7.0.0").bump()) == "7.1"
    with pytest.raises(VersionError):
        Version("6.10.0-rc1")


def test_supported_range() -> None:
    first, limit = supported_range()
    assert (str(first), str(limit)) == ("5.8.0", "7.6")
    assert is_supported(Version("7.5.99")) and not is_supported(Version("7.6.0"))
    assert not is_supported(Version("5.6.0"))
    assert len(STEPS) == 13


def names(source: str, target: str) -> list[str]:
    return [str(step) for step in step_range(Version(source), Version(target))]


def test_step_ranges_as_the_reference_examples() -> None:
    assert names("6.8.0", "6.10.0") == ["6.8.0 -> 6.10.0"]
    assert names("6.8.0", "6.8.3") == []
    assert names("5.12.0", "6.0.3") == ["5.12.0 -> 6.0.0"]
    assert names("6.10.0", "6.10.2") == ["6.10.0 -> 6.10.2"]
    assert names("7.4.0", "7.5.80") == ["7.4.0 -> 7.5.80"]
    assert names("6.10.0", "6.8.0") == []  # no downgrades
    assert len(names("5.8.0", "7.5.80")) == 13
    # Patch releases the steps do not name: config 6.8.0 with OpenNebula 6.10.3, skipped 6.8.x.
    assert names("6.8.0", "6.10.3") == ["6.8.0 -> 6.10.0", "6.10.0 -> 6.10.2"]
    assert names("6.8.5", "7.0.0") == ["6.8.0 -> 6.10.0", "6.10.0 -> 6.10.2", "6.10.2 -> 7.0.0"]
    assert str(final_version(Version("6.8.0"), Version("6.10.3"))) == "6.10.2"
    with pytest.raises(VersionError, match=r"Unsupported to version 7\.6\.0"):
        step_range(Version("6.8.0"), Version("7.6.0"))


@settings(max_examples=200)
@given(st.sampled_from(STEPS), st.sampled_from(STEPS), st.integers(0, 3), st.integers(0, 3))
def test_step_range_is_contiguous(a: object, b: object, da: int, db: int) -> None:
    source = Version(f"{a.source}")  # type: ignore[attr-defined]
    target = Version(f"{b.target}")  # type: ignore[attr-defined]
    chain = step_range(source, target)
    for left, right in itertools.pairwise(chain):
        assert left.target == right.source
    if chain:
        assert chain[0].contains(source) or chain[0].source >= source
        assert chain[-1].target <= target


def test_settings_round_trip_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "onecfg.conf"
    assert load_settings(str(path)) == Settings(str(path))
    path.write_text("---\nversion: 6.10\nbackup: /var/lib/one/backups/config/x y\n")
    loaded = load_settings(str(path))
    assert loaded.version == "6.10" and loaded.backup == "/var/lib/one/backups/config/x y"
    path.write_text(loaded.to_text())
    assert load_settings(str(path)) == loaded
    for text, message in [
        ("version: [1\n", "not valid YAML at line"),
        ("- a\n", "expected a mapping"),
        ("version: 6.0.0\noutdated: maybe\n", "'outdated' must be true or false"),
        ("version: {a: 1}\n", "'version' must be a string"),
    ]:
        path.write_text(text)
        with pytest.raises(FatalError, match=message):
            load_settings(str(path))


@settings(max_examples=300)
@given(
    st.one_of(st.none(), st.from_regex(r"[0-9]{1,2}(\.[0-9]{1,3}){0,3}", fullmatch=True)),
    st.one_of(st.none(), st.text(min_size=1, max_size=30)),
    st.booleans(),
)
def test_fast_settings_parser_agrees_with_yaml(
    version: str | None, backup: str | None, outdated: bool
) -> None:
    text = Settings("x", version=version, backup=backup, outdated=outdated).to_text()
    simple = _parse_simple(text)
    if simple is None:
        return  # the fast path declined; the YAML path is then used
    full = _parse_yaml(text, "x") or {}
    assert {k: v for k, v in simple.items() if v is not None} == {
        k: v for k, v in full.items() if v not in (None, "")
    }
