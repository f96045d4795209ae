"""onedb show-body, update-body and change-body on every engine."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from db_objects import body_of, consistent_world, create_schema, dump
from onetools.db.backends import open_backend
from onetools.db.backends.base import Backend, ConnectionSettings
from onetools.db.body import change_body, object_table, show_body, update_body
from onetools.db.errors import DatabaseError


@pytest.fixture
def world(any_backend_settings: ConnectionSettings) -> Iterator[Backend]:
    backend = open_backend(any_backend_settings, create=True)
    create_schema(backend)
    consistent_world(backend)
    yield backend
    backend.close()


def test_show_body_is_pretty(world: Backend) -> None:
    text = show_body(world, "vm", 0)
    assert text.startswith("<VM>\n  <ID>0</ID>")
    assert "<![CDATA[web0]]>" in text


def test_object_keywords() -> None:
    assert object_table("vnet") == "network_pool"
    assert object_table("marketapp") == "marketplaceapp_pool"
    assert object_table("market") == "marketplace_pool"
    assert object_table("vntemplate") == "vn_template_pool"
    assert object_table("secgroup") == "secgroup_pool"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nothing", 0, "<X/>"), "Unknown object type 'nothing'"),
        (("vm", 99, "<VM><ID>99</ID></VM>"), "vm 99 not found"),
        (("vm", 0, "<VM><ID>0</ID><NAME>x</VM>"), "Malformed XML"),
        (("vm", 0, "<HOST><ID>0</ID></HOST>"), "must be <VM>, not <HOST>"),
        (("vm", 0, "<VM><ID>1</ID></VM>"), "must be 0"),
        (("vm", 0, "<VM><NAME>x</NAME></VM>"), "ID (missing) must be 0"),
    ],
)
def test_update_body_errors_change_nothing(
    world: Backend, args: tuple[str, int, str], message: str
) -> None:
    before = dump(world)
    with pytest.raises(DatabaseError, match=message.replace("(", r"\(").replace(")", r"\)")):
        update_body(world, *args)
    assert dump(world) == before


@pytest.mark.parametrize("object_type", ["nothing", "vm"])
def test_show_body_errors(world: Backend, object_type: str) -> None:
    with pytest.raises(DatabaseError):
        show_body(world, object_type, 99)


def test_update_body_syncs_columns(world: Backend) -> None:
    text = show_body(world, "vm", 1)
    text = text.replace("<![CDATA[web1]]>", "renamed").replace(
        "<STATE>8</STATE>", "<STATE>3</STATE>"
    )
    text = text.replace("<OWNER_U>1</OWNER_U>", "<OWNER_U>0</OWNER_U>")
    update_body(world, "vm", 1, text)
    row = world.query("SELECT name, state, owner_u, body FROM vm_pool WHERE oid = 1")[0]
    assert (row[0], int(row[1]), int(row[2])) == ("renamed", 3, 0)
    assert "\n" not in str(row[3]) and str(row[3]).startswith("<VM><ID>1</ID>")


def test_update_body_host_cluster_column(world: Backend) -> None:
    text = show_body(world, "host", 1).replace("<CLUSTER_ID>0<", "<CLUSTER_ID>100<")
    update_body(world, "host", 1, text)
    assert int(world.scalar("SELECT cid FROM host_pool WHERE oid = 1")) == 100


def test_change_body_by_id(world: Backend) -> None:
    changes = change_body(world, "vm", "/VM/TEMPLATE/MEMORY", "4096", oid=2)
    assert changes == [(2, "2048", "4096")]
    assert "<MEMORY>4096</MEMORY>" in body_of(world, "vm_pool", 2)


def test_change_body_unknown_id(world: Backend) -> None:
    with pytest.raises(DatabaseError, match="vm 77 not found"):
        change_body(world, "vm", "/VM/NAME", "x", oid=77)


def test_change_body_all_objects_including_done(world: Backend) -> None:
    changes = change_body(world, "vm", "TEMPLATE/TM_MAD_SYSTEM", "shared", batch=2)
    assert [c[0] for c in changes] == [0, 1, 2, 3, 4]
    assert all(c[1:] == ("ssh", "shared") for c in changes)


def test_change_body_filter_xpath(world: Backend) -> None:
    changes = change_body(world, "vm", "/VM/USER_TEMPLATE", "x", filter_xpath="/VM/TEMPLATE/PCI")
    assert [c[0] for c in changes] == [2]


@pytest.mark.parametrize(
    ("expr", "ids"),
    [
        ("UNAME=alice", [0, 1, 4]),
        ("UNAME != alice", [2, 3]),
        ("STATE>3", [1, 4]),
        ("TEMPLATE/MEMORY>=1024", [0, 2, 4]),
        ("TEMPLATE/MEMORY<512", [3]),
        ("TEMPLATE/MEMORY<=512", [1, 3]),
    ],
)
def test_change_body_expr(world: Backend, expr: str, ids: list[int]) -> None:
    changes = change_body(world, "vm", "/VM/DEPLOY_ID", "z", expr=expr, dry=True)
    assert [c[0] for c in changes] == ids


@pytest.mark.parametrize("expr", ["NOOP", "STATE>abc", "=3", "A[=1"])
def test_change_body_bad_expr(world: Backend, expr: str) -> None:
    with pytest.raises(DatabaseError):
        change_body(world, "vm", "/VM/NAME", "x", expr=expr)


def test_change_body_delete(world: Backend) -> None:
    changes = change_body(world, "vm", "/VM/TEMPLATE/NIC", delete=True, oid=0)
    assert changes == [(0, None, None)]
    assert "<NIC>" not in body_of(world, "vm_pool", 0)


def test_change_body_append(world: Backend) -> None:
    changes = change_body(world, "host", "/HOST/TEMPLATE/reserved_cpu", "10", append=True)
    assert [c[0] for c in changes] == [0, 1]
    assert "<RESERVED_CPU><![CDATA[10]]></RESERVED_CPU>" in body_of(world, "host_pool", 1)


def test_change_body_dry_writes_nothing(world: Backend) -> None:
    before = dump(world)
    changes = change_body(world, "image", "/IMAGE/PERSISTENT", "1", dry=True)
    assert len(changes) == 3
    assert dump(world) == before


def test_change_body_syncs_name_and_refuses_id(world: Backend) -> None:
    change_body(world, "user", "/USER/NAME", "alicia", oid=1)
    assert world.scalar("SELECT name FROM user_pool WHERE oid = 1") == "alicia"
    before = dump(world)
    with pytest.raises(DatabaseError, match="ID"):
        change_body(world, "user", "/USER/ID", "7", oid=1)
    with pytest.raises(DatabaseError):
        change_body(world, "user", "/USER/NAME")  # no value, no delete
    assert dump(world) == before
