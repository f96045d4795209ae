"""The CLI conventions shared by the OpenNebula tools (``onetools.cli._one``): tables, filters,
ID lists, name lookups, pool shapes."""

from __future__ import annotations

import argparse

import pytest

from onetools.cli._one import (
    Column,
    format_parent,
    parse_filters,
    parse_id_list,
    pool_dict,
    render_table,
    resolve_id,
    resolve_ids,
    table_parent,
)
from onetools.errors import UsageError
from onetools.one.xml import OneObject

COLUMNS = (
    Column("ID", 4, lambda row: row["id"], align="right"),
    Column("NAME", 10, lambda row: row["name"], expand=True),
    Column("REGTIME", 15, lambda row: row.get("time"), kind="date"),
)
ROWS = [
    {"id": 0, "name": "aws-frankfurt-metal", "time": 0},
    {"id": 7, "name": "onprem", "time": None},
    {"id": 12, "name": "do-ams3", "time": 1700000000},
]


def table_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(parents=[table_parent(), format_parent()])
    return parser.parse_args(list(argv))


def test_table_aligns_truncates_and_expands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    lines = render_table(COLUMNS, ROWS, table_args()).splitlines()
    assert lines[0].split() == ["ID", "NAME", "REGTIME"]
    assert lines[1].startswith("   0 aws-frankfurt-metal ")  # NAME grew into free width
    assert lines[2].startswith("   7 onprem") and lines[2].endswith("-")  # missing date
    assert lines[3].startswith("  12 do-ams3")

    monkeypatch.setenv("COLUMNS", "31")  # no free width: NAME keeps its declared 10
    narrow = render_table(COLUMNS, ROWS, table_args()).splitlines()
    assert narrow[1].startswith("   0 aws-frankf ")
    adjusted = render_table(COLUMNS, ROWS, table_args("--adjust", "name")).splitlines()
    assert adjusted[1].startswith("   0 aws-frankfurt-metal ")


def test_table_columns_header_and_csv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    picked = render_table(COLUMNS, ROWS, table_args("-l", "NAME,id", "--no-header"))
    assert picked.splitlines()[0].split() == ["aws-frankfurt-metal", "0"]
    csv = render_table(COLUMNS, ROWS, table_args("--csv", "-l", "ID,NAME"))
    assert csv == "ID,NAME\n0,aws-frankfurt-metal\n7,onprem\n12,do-ams3\n"
    semicolon = render_table(
        [Column("NAME", 3, lambda row: row["name"])],
        [{"name": 'a;"b"'}],
        table_args("--csv", "--csv-del", ";", "--no-header"),
    )
    assert semicolon == '"a;""b"""\n'
    with pytest.raises(UsageError, match="Unknown column 'NOPE'"):
        render_table(COLUMNS, ROWS, table_args("-l", "nope"))


@pytest.mark.parametrize(
    ("condition", "ids"),
    [
        ("ID=7", [7]),
        ("ID!=7", [0, 12]),
        ("ID>5", [7, 12]),  # numeric, not text ("12" < "5")
        ("ID<=7", [0, 7]),
        ("ID>=12", [12]),
        ("ID<1", [0]),
        ("NAME~^a", [0]),
        ("NAME~ams", [12]),
        ("name=onprem", [7]),
        ("REGTIME=-", [7]),
    ],
)
def test_filter_operators(condition: str, ids: list[int]) -> None:
    out = render_table(COLUMNS, ROWS, table_args("--filter", condition, "--no-header", "-l", "ID"))
    assert [int(line) for line in out.split()] == ids


def test_filter_and_or() -> None:
    both = table_args("--filter", "ID>0,NAME~o", "--no-header", "-l", "ID")
    assert render_table(COLUMNS, ROWS, both).split() == ["7", "12"]
    both.filters = "ID>7,NAME~frank"
    assert render_table(COLUMNS, ROWS, both).split() == []
    either = table_args("--filter", "ID>7,NAME~frank", "--operator", "or", "--no-header")
    assert [line.split()[0] for line in render_table(COLUMNS, ROWS, either).splitlines()] == [
        "0",
        "12",
    ]


def test_bad_filters() -> None:
    with pytest.raises(UsageError, match="Invalid filter"):
        parse_filters("ID", COLUMNS)
    with pytest.raises(UsageError, match="Unknown column 'SIZE'"):
        parse_filters("SIZE>3", COLUMNS)
    with pytest.raises(UsageError, match="Invalid regular expression"):
        parse_filters("NAME~(", COLUMNS)


def test_id_lists_and_ranges() -> None:
    assert parse_id_list("1,8..11") == [1, 8, 9, 10, 11]
    assert parse_id_list("a, b ,3") == ["a", "b", 3]
    assert parse_id_list("5..5") == [5]
    with pytest.raises(UsageError, match="greater"):
        parse_id_list("9..3")
    with pytest.raises(UsageError, match="more than"):
        parse_id_list("1..1000000000")
    with pytest.raises(UsageError, match="empty item"):
        parse_id_list("1,,2")


def _objects() -> list[OneObject]:
    return [
        OneObject("document", f"<DOCUMENT><ID>{oid}</ID><NAME>{name}</NAME></DOCUMENT>")
        for oid, name in ((0, "aws"), (3, "google"), (4, "twin"), (9, "twin"))
    ]


def test_names_resolve_over_the_pool() -> None:
    loads: list[int] = []

    def load() -> list[OneObject]:
        loads.append(1)
        return _objects()

    assert resolve_ids("0,1..2", load, "provider") == [0, 1, 2]
    assert loads == []  # IDs only: the pool is not read
    assert resolve_ids("google,aws,3", load, "provider") == [3, 0]  # duplicates dropped
    assert loads == [1]  # read once for several names
    assert resolve_id("google", load, "provider") == 3
    assert resolve_id("17", load, "provider") == 17
    with pytest.raises(UsageError, match="Provider named 'nope' not found"):
        resolve_id("nope", load, "provider")
    with pytest.raises(UsageError, match="multiple providers with name 'twin'"):
        resolve_ids("twin", load, "provider")


def test_pool_shapes() -> None:
    assert pool_dict("DOCUMENT", []) == {"DOCUMENT_POOL": {}}
    one = {"DOCUMENT": {"ID": "1"}}
    assert pool_dict("DOCUMENT", [one]) == {"DOCUMENT_POOL": {"DOCUMENT": [{"ID": "1"}]}}
