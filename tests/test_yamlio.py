"""Tests of the project's YAML reader/writer (Psych semantics, symbols, round trips)."""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import STOCK_VERSIONS, read_stock, stock_files
from onetools.config import yamlio
from onetools.config.ops import Symbol, strict_equal
from onetools.errors import FileParseError


def test_symbols_versus_strings() -> None:
    data = yamlio.load(':port: 9869\n":quoted": 1\nv: [":a", b]\nw: :sym\nc: ":"\nd: ":"\n')
    assert data == {
        Symbol(":port"): 9869,
        ":quoted": 1,
        "v": [":a", "b"],
        "w": Symbol(":sym"),
        "c": ":",
        "d": ":",
    }
    assert type(data["v"][0]) is str
    assert Symbol(":port") in data and ":port" not in data
    assert ":quoted" in data and Symbol(":quoted") not in data


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("yes", True),
        ("No", False),
        ("ON", True),
        ("off", False),
        ("TrUe", True),
        ("y", "y"),
        ("n", "n"),
        ("~", None),
        ("null", None),
        ("NULL", None),
        ("", None),
        ("1", 1),
        ("1,000", 1000),
        ("0x1f", 31),
        ("017", 15),
        ("0b101", 5),
        ("08", "08"),
        ("1:20", 80),
        ("1_000", 1000),
        ("1.5", 1.5),
        (".5", 0.5),
        ("1.", 1.0),
        ("-.inf", -math.inf),
        ("1e3", "1e3"),
        ("1.0e+3", 1000.0),
        ("2020-01-01", "2020-01-01"),
        ("=", "="),
        ("'yes'", "yes"),
        ('"1"', "1"),
        ("!!str 1", "1"),
        ("!ruby/symbol x", Symbol(":x")),
        ("!!float 1", 1.0),
        ("abcdefyes", "abcdefyes"),
    ],
)
def test_yaml_11_scalars(text: str, value: Any) -> None:
    loaded = yamlio.load(f"k: {text}\n")["k"]
    assert strict_equal(loaded, value), (text, loaded)


def test_empty_and_multi_document() -> None:
    assert yamlio.load("") is None
    assert yamlio.load("# only a comment\n") is None
    assert yamlio.load("---\n") is None
    assert yamlio.load("--- 1\n--- 2\n") == 1  # later documents are ignored, as Psych does


def test_aliases_and_merge_keys() -> None:
    data = yamlio.load("a: &x {k: [1]}\nb: *x\nc:\n  <<: *x\n  z: 2\n")
    assert data == {"a": {"k": [1]}, "b": {"k": [1]}, "c": {"k": [1], "z": 2}}
    data["a"]["k"].append(2)  # aliases are copies: the model is a tree
    assert data["b"] == {"k": [1]}


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("a: [1, 2\n", 2),
        ("a: 1\n b: 2\n", 2),
        ("a: *nope\n", 1),
        ("x:\n  - a\n  b: 1\n", 3),
        ("a: &x [*x]\n", 1),
        ("!!int abc\n", 1),
        ("d: [a, :b]\n", 1),
    ],
)
def test_errors_carry_the_line(text: str, line: int) -> None:
    with pytest.raises(FileParseError) as info:
        yamlio.load(text, "f.yaml")
    assert info.value.path == "f.yaml"
    assert info.value.line == line


def test_dump_style() -> None:
    data = {
        Symbol(":port"): 1,
        ":str": "x",
        "multi": "a\nb\n",
        "list": [1, {"k": True}],
        "empty": {},
        "yes": "yes",
    }
    text = yamlio.dump(data)
    assert text == (
        "---\n:port: 1\n':str': x\nmulti: |\n  a\n  b\nlist:\n- 1\n- k: true\nempty: {}\n"
        "'yes': 'yes'\n"
    )
    assert strict_equal(yamlio.load(text), data)
    assert yamlio.dump({"a": {"b": 1}}, indent=4) == "---\na:\n    b: 1\n"


def test_dump_has_no_aliases() -> None:
    shared = [1, 2]
    text = yamlio.dump({"a": shared, "b": shared})
    assert "&" not in text and "*" not in text


def test_stock_files_load_like_pyyaml() -> None:
    """Our loader agrees with PyYAML on every stock file (modulo symbols)."""
    import yaml

    def symbolized(value: Any) -> Any:
        if isinstance(value, dict):
            return {symbolized(k): symbolized(v) for k, v in value.items()}
        if isinstance(value, list):
            return [symbolized(item) for item in value]
        return value

    for version in STOCK_VERSIONS[-3:]:
        for format_name in ("Yaml", "Yaml::Strict"):
            for path, _ in stock_files(version, format_name):
                text = read_stock(version, path)
                ours = yamlio.load(text)
                theirs = yaml.load(text, Loader=yaml.CSafeLoader)
                plain = _strip_symbols(ours)
                assert strict_equal(plain, symbolized(theirs)), path
                assert strict_equal(yamlio.load(yamlio.dump(ours)), ours), path


def _strip_symbols(value: Any) -> Any:
    if isinstance(value, Symbol):
        return str.__str__(value)
    if isinstance(value, dict):
        return {_strip_symbols(k): _strip_symbols(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_symbols(item) for item in value]
    return value


def test_compose_speed() -> None:
    """Composing (parse + data) every YAML file of the newest tree stays fast."""
    version = STOCK_VERSIONS[-1]
    texts = [
        read_stock(version, path)
        for fmt in ("Yaml", "Yaml::Strict")
        for path, _ in stock_files(version, fmt)
    ]
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        for text in texts:
            yamlio.compose(text)
        best = min(best, time.perf_counter() - start)
    assert best < 0.25, best  # ~0.035 s measured; generous for slow CI machines


# -- property tests -----------------------------------------------------------------------------

_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    _text,
    _text.map(lambda s: Symbol(":" + s) if s else Symbol(":x")),
    st.sampled_from(
        [
            "yes",
            "no",
            "~",
            "1,000",
            "0x1f",
            "1:20",
            ":a",
            "<<",
            "a: b",
            "- x",
            "2020-01-01",
            " lead",
            "trail ",
            "a\nb",
            "a\n",
            "\n",
            "#c",
            "'q'",
            '"',
            "\t",
            "x\r\ny",
            "\x85",
            "\u2028",
            "@",
            "`",
            "%",
            "!tag",
            "&a",
            "*a",
            "{",
            "[",
        ]
    ),
)
_keys = st.one_of(_text, _text.map(lambda s: Symbol(":" + s) if s else Symbol(":k")))
_data = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_keys, inner, max_size=4)),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(_data)
def test_dump_load_round_trip(data: Any) -> None:
    text = yamlio.dump(data)
    assert text.startswith("---")
    assert strict_equal(yamlio.load(text), data), text


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_arbitrary_text_only_raises_parse_errors(text: str) -> None:
    with contextlib.suppress(FileParseError):
        yamlio.load(text)
