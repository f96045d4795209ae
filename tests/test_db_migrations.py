"""Each migration step on a bootstrapped database with representative rows, on every engine.

A test bootstraps version X, inserts objects built with the small builders below, runs the
step(s) X -> Y and checks the schema (columns, indexes) and the rewritten bodies element by
element.  PostgreSQL only runs steps between versions OpenNebula supported on it (5.12-6.8).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from lxml import etree
from lxml.builder import E

from onetools.db.backends import open_backend
from onetools.db.backends.base import Backend, ConnectionSettings
from onetools.db.migrations import (
    MigrationError,
    discover,
    parse_body,
    pending_steps,
)
from onetools.db.schema import LOCAL, POSTGRESQL_VERSIONS, SCHEMAS, bootstrap, list_indexes

# -- builders -----------------------------------------------------------------------------------


def xml(element: etree._Element) -> str:
    return etree.tostring(element, encoding="unicode")


def text(value: object) -> str:
    return str(value)


def nic(nic_id: int, network_id: int, ip: str) -> etree._Element:
    return E.NIC(E.NIC_ID(text(nic_id)), E.NETWORK_ID(text(network_id)), E.IP(ip))


def disk(disk_id: int, disk_type: str = "FILE", image_id: int | None = None) -> etree._Element:
    element = E.DISK(E.DISK_ID(text(disk_id)), E.TYPE(disk_type))
    if image_id is not None:
        element.append(E.IMAGE_ID(text(image_id)))
    return element


def history_record(vid: int, seq: int, hid: int, with_vm: bool = True) -> etree._Element:
    record = E.HISTORY(
        E.OID(text(vid)),
        E.SEQ(text(seq)),
        E.HOSTNAME(f"host{hid}"),
        E.HID(text(hid)),
        E.STIME("1000"),
        E.ETIME("0"),
    )
    if with_vm:
        record.append(
            E.VM(E.ID(text(vid)), E.UID("0"), E.UNAME("oneadmin"), E.GID("0"), E.GNAME("oneadmin"))
        )
    return record


def vm_element(
    oid: int,
    state: int,
    *,
    lcm_state: int = 3,
    uid: int = 2,
    uname: str = "alice",
    gid: int = 100,
    gname: str = "devs",
    nics: tuple[etree._Element, ...] = (),
    disks: tuple[etree._Element, ...] = (),
    template: tuple[etree._Element, ...] = (),
    user_template: tuple[etree._Element, ...] = (),
    extra: tuple[etree._Element, ...] = (),
) -> etree._Element:
    return E.VM(
        E.ID(text(oid)),
        E.UID(text(uid)),
        E.GID(text(gid)),
        E.UNAME(uname),
        E.GNAME(gname),
        E.NAME(f"vm{oid}"),
        E.STATE(text(state)),
        E.LCM_STATE(text(lcm_state)),
        E.STIME("1000"),
        E.ETIME("0"),
        E.DEPLOY_ID(f"one-{oid}"),
        E.TEMPLATE(E.CPU("1"), E.MEMORY("512"), *disks, *nics, *template),
        E.USER_TEMPLATE(*user_template),
        E.HISTORY_RECORDS(history_record(oid, 0, 1)),
        *extra,
    )


def insert(backend: Backend, table: str, **columns: Any) -> None:
    names = list(columns)
    backend.execute(
        f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
        [columns[name] for name in names],
    )


def insert_pool(backend: Backend, table: str, oid: int, name: str, body: str, **extra: Any) -> None:
    insert(
        backend,
        table,
        oid=oid,
        name=name,
        body=body,
        uid=0,
        gid=0,
        owner_u=1,
        group_u=0,
        other_u=0,
        **extra,
    )


def insert_vm(
    backend: Backend, version: str, vm: etree._Element, short: etree._Element | None = None
) -> None:
    columns: dict[str, Any] = {
        "state": int(vm.findtext("STATE") or 0),
        "lcm_state": int(vm.findtext("LCM_STATE") or 0),
        "short_body": xml(short if short is not None else E.VM(E.ID(vm.findtext("ID") or ""))),
    }
    table_columns = SCHEMAS[version].table("vm_pool").column_names
    if "last_poll" in table_columns:
        columns["last_poll"] = 1000
    if "search_token" in table_columns:
        columns["search_token"] = vm.findtext("NAME")
    insert(
        backend,
        "vm_pool",
        oid=int(vm.findtext("ID") or 0),
        name=vm.findtext("NAME"),
        body=xml(vm),
        uid=int(vm.findtext("UID") or 0),
        gid=int(vm.findtext("GID") or 0),
        owner_u=1,
        group_u=0,
        other_u=0,
        **columns,
    )


def body_of(
    backend: Backend, table: str, key: str, value: Any, column: str = "body"
) -> etree._Element:
    return parse_body(backend.scalar(f"SELECT {column} FROM {table} WHERE {key} = ?", (value,)))


def children(element: etree._Element | None) -> list[str]:
    assert element is not None
    return [child.tag for child in element]


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "mysql", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    return str(request.param)


def open_at(
    engine: str, version: str, request: pytest.FixtureRequest, tmp_path: Any
) -> Iterator[Backend]:
    if engine == "postgresql" and version not in POSTGRESQL_VERSIONS:
        pytest.skip(f"OpenNebula {version} did not run on PostgreSQL")
    if engine == "sqlite":
        from db_servers import sqlite_settings_for

        settings: ConnectionSettings = sqlite_settings_for(tmp_path / "one.db")
    else:
        settings = request.getfixturevalue(f"{engine}_server").new_database()
    backend = open_backend(settings)
    bootstrap(backend, version, now=1_600_000_000)
    try:
        yield backend
    finally:
        backend.close()


def run_step(backend: Backend, chain: str, source: str) -> str:
    (step,) = [step for step in discover(chain) if step.source == source]
    with backend.transaction():
        step.run(backend)
    return step.target


def assert_schema(backend: Backend, version: str, scope: str = LOCAL) -> None:
    """The tables of ``scope`` (the chain that ran) are exactly ``version``'s."""
    schema = SCHEMAS[version]
    assert backend.tables() == sorted(schema.table_names)
    for table in schema.tables:
        if table.scope != scope:
            continue
        assert tuple(backend.columns(table.name)) == table.column_names, table.name
    expected = ["state_oid_idx"]
    if backend.kind == "mysql" and schema.table("vm_pool").fulltext:
        expected = ["ftidx", "state_oid_idx"]
    assert list_indexes(backend, "vm_pool") == expected
    assert list_indexes(backend, "logdb") == ["applied_idx", "fed_index_idx"]
    if backend.kind == "postgresql":
        # Rewritten tables keep oned's constraint names (ON CONFLICT ON CONSTRAINT t_pkey).
        for table in ("vm_pool", "image_pool", "network_pool", "history"):
            names = backend.query(
                "SELECT c.conname FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid "
                "WHERE t.relname = ? ORDER BY 1",
                (table,),
            )
            assert (f"{table}_pkey",) in names, names


# -- discovery ----------------------------------------------------------------------------------


def test_discovery_chains() -> None:
    for chain in ("shared", "local"):
        steps = pending_steps(chain, "5.10.0")
        assert [step.source for step in steps] == [
            "5.10.0", "5.12.0", "6.0.0", "6.2.0", "6.4.0", "6.6.0", "6.8.0",
        ]  # fmt: skip
        assert steps[-1].target == "6.10.0"
        for step in steps:
            module = step.module()
            assert (step.source, step.target) == (module.SOURCE, module.TARGET)
    assert pending_steps("local", "6.10.0") == []
    assert pending_steps("local", "4.0.0") == []


# -- 5.10.0 -> 5.12.0 ---------------------------------------------------------------------------


def test_shared_5_10_to_5_12(engine: str, request: pytest.FixtureRequest, tmp_path: Any) -> None:
    for backend in open_at(engine, "5.10.0", request, tmp_path):
        insert(backend, "acl", oid=0, user=4294967297, resource=1, rights=1, zone=17179869184)
        insert(backend, "acl", oid=1, user=8589934593, resource=2, rights=3, zone=17179869184)
        insert_pool(
            backend, "marketplace_pool", 0, "OpenNebula Public", xml(E.MARKETPLACE(E.ID("0")))
        )
        insert_pool(
            backend, "marketplace_pool", 3, "Linux Containers", xml(E.MARKETPLACE(E.ID("3")))
        )
        run_step(backend, "shared", "5.10.0")
        assert backend.columns("acl") == ["oid", "userset", "resource", "rights", "zone"]
        assert backend.query(
            "SELECT oid, userset, resource, rights, zone FROM acl ORDER BY oid"
        ) == [
            (0, 4294967297, 1, 1, 17179869184),
            (1, 8589934593, 2, 3, 17179869184),
        ]
        assert backend.query(
            "SELECT oid, name, uid, gid, owner_u, group_u, other_u FROM marketplace_pool "
            "WHERE oid = 4"
        ) == [(4, "DockerHub", 0, 0, 1, 1, 1)]
        market = body_of(backend, "marketplace_pool", "oid", 4)
        assert children(market) == [
            "ID", "UID", "GID", "UNAME", "GNAME", "NAME", "MARKET_MAD", "ZONE_ID", "TOTAL_MB",
            "FREE_MB", "USED_MB", "MARKETPLACEAPPS", "PERMISSIONS", "TEMPLATE",
        ]  # fmt: skip
        assert market.findtext("ID") == "4" and market.findtext("MARKET_MAD") == "dockerhub"
        assert "<MARKET_MAD><![CDATA[dockerhub]]></MARKET_MAD>" in backend.scalar(
            "SELECT body FROM marketplace_pool WHERE oid = 4"
        )
        perms = market.find("PERMISSIONS")
        assert [(p.tag, p.text) for p in perms] == [
            ("OWNER_U", "1"), ("OWNER_M", "1"), ("OWNER_A", "1"),
            ("GROUP_U", "1"), ("GROUP_M", "0"), ("GROUP_A", "0"),
            ("OTHER_U", "1"), ("OTHER_M", "0"), ("OTHER_A", "0"),
        ]  # fmt: skip
        assert children(market.find("TEMPLATE")) == ["DESCRIPTION", "MARKET_MAD"]


def test_shared_5_10_to_5_12_empty_marketplace(
    tmp_path: Any, request: pytest.FixtureRequest
) -> None:
    for backend in open_at("sqlite", "5.10.0", request, tmp_path):
        run_step(backend, "shared", "5.10.0")
        assert backend.query("SELECT oid, name FROM marketplace_pool") == [(0, "DockerHub")]


def host_5_10(oid: int) -> etree._Element:
    return E.HOST(
        E.ID(text(oid)),
        E.NAME(f"host{oid}"),
        E.STATE("2"),
        E.LAST_MON_TIME("1500"),
        E.HOST_SHARE(
            E.DISK_USAGE("10"),
            E.MEM_USAGE("1024"),
            E.CPU_USAGE("100"),
            E.MAX_DISK("1000"),
            E.FREE_DISK("900"),
            E.USED_DISK("100"),
            E.FREE_MEM("2048"),
            E.FREE_CPU("300"),
            E.USED_MEM("1024"),
            E.USED_CPU("100"),
            E.RUNNING_VMS("2"),
            E.DATASTORES(E.DS(E.ID("0"))),
        ),
        E.VMS(E.ID("1"), E.ID("2")),
        E.TEMPLATE(E.NETRX("111"), E.NETTX("222"), E.HYPERVISOR("kvm")),
    )


def service_document(oid: int) -> str:
    doc = {
        "name": "svc",
        "custom_attrs": {"net": "M|network|Net"},
        "custom_attrs_values": {"net": "0"},
        "roles": [
            {
                "name": "web",
                "nodes": [
                    {
                        "deploy_id": 7,
                        "vm_info": {
                            "VM": {"ID": "7", "UID": "2", "GID": "100", "UNAME": "alice",
                                   "GNAME": "devs", "NAME": "web_0", "TEMPLATE": {"CPU": "1"}}
                        },
                    }
                ],
            }
        ],
    }  # fmt: skip
    return xml(E.DOCUMENT(E.ID(text(oid)), E.TEMPLATE(E.BODY(etree.CDATA(json.dumps(doc))))))


def test_local_5_10_to_5_12(engine: str, request: pytest.FixtureRequest, tmp_path: Any) -> None:
    for backend in open_at(engine, "5.10.0", request, tmp_path):
        insert_pool(backend, "document_pool", 0, "svc", service_document(0), type=100)
        template_doc = {"name": "tpl", "custom_attrs": {"a": "b"}, "roles": []}
        insert_pool(
            backend, "document_pool", 1, "tpl",
            xml(E.DOCUMENT(E.ID("1"), E.TEMPLATE(E.BODY(json.dumps(template_doc))))), type=101,
        )  # fmt: skip
        for oid in (0, 1):
            insert_pool(
                backend,
                "host_pool",
                oid,
                f"host{oid}",
                xml(host_5_10(oid)),
                state=2,
                last_mon_time=1500,
                cid=0,
            )
            insert(
                backend, "host_monitoring", hid=oid, last_mon_time=1500, body=xml(host_5_10(oid))
            )
        vms = [
            vm_element(
                1,
                3,
                nics=(nic(0, 0, "10.0.0.1"), nic(1, 1, "10.0.1.1")),
                disks=(disk(0, image_id=0),),
            ),
            vm_element(2, 8, lcm_state=0, disks=(disk(0), disk(1, "SWAP"))),
            vm_element(3, 6, lcm_state=0),
        ]
        for vm in vms:
            vm.insert(8, E.LAST_POLL("1490"))
            vm.append(E.MONITORING(E.CPU("5"), E.MEMORY("100")))
            insert_vm(backend, "5.10.0", vm)
            insert(
                backend, "vm_monitoring", vmid=int(vm.findtext("ID") or 0), last_poll=1490,
                body=xml(E.VM(E.ID(vm.findtext("ID")), E.LAST_POLL("1490"), E.STATE("3"),
                              E.MONITORING(E.CPU("5")), E.TEMPLATE(E.CPU("1"), E.MEMORY("512")))),
            )  # fmt: skip
        target = run_step(backend, "local", "5.10.0")
        assert_schema(backend, target)

        service = json.loads(
            body_of(backend, "document_pool", "oid", 0).findtext("TEMPLATE/BODY") or ""
        )
        assert service["networks"] == {"net": "M|network|Net"} and service["custom_attrs"] == {}
        assert service["networks_values"] == {"net": "0"} and service["custom_attrs_values"] == {}
        assert service["roles"][0]["nodes"][0]["vm_info"]["VM"] == {
            "ID": "7", "UID": "2", "GID": "100", "UNAME": "alice", "GNAME": "devs", "NAME": "web_0",
        }  # fmt: skip
        assert list(service)[-1] == "networks_values"  # new keys go last
        tpl = json.loads(
            body_of(backend, "document_pool", "oid", 1).findtext("TEMPLATE/BODY") or ""
        )
        assert tpl["networks"] == {"a": "b"} and "networks_values" not in tpl

        monitoring = body_of(backend, "host_monitoring", "hid", 1)
        assert monitoring.tag == "MONITORING"
        assert children(monitoring) == ["ID", "TIMESTAMP", "CAPACITY", "SYSTEM"]
        assert (monitoring.findtext("ID"), monitoring.findtext("TIMESTAMP")) == ("1", "1500")
        capacity = monitoring.find("CAPACITY")
        assert [(e.tag, e.text) for e in capacity] == [
            ("FREE_CPU", "300"), ("USED_CPU", "100"),
            ("FREE_MEMORY", "2048"), ("USED_MEMORY", "1024"),
        ]  # fmt: skip
        assert [(e.tag, e.text) for e in monitoring.find("SYSTEM")] == [
            ("NETRX", "111"),
            ("NETTX", "222"),
        ]

        host = body_of(backend, "host_pool", "oid", 0)
        assert host.find("LAST_MON_TIME") is None
        assert children(host.find("TEMPLATE")) == ["HYPERVISOR"]
        assert children(host.find("HOST_SHARE")) == [
            "MEM_USAGE",
            "CPU_USAGE",
            "RUNNING_VMS",
            "DATASTORES",
        ]
        assert children(host.find("HOST_SHARE/DATASTORES")) == [
            "DS", "DISK_USAGE", "MAX_DISK", "FREE_DISK", "USED_DISK",
        ]  # fmt: skip
        assert host.findtext("HOST_SHARE/DATASTORES/FREE_DISK") == "900"
        assert backend.query("SELECT oid, name, state, cid FROM host_pool ORDER BY oid") == [
            (0, "host0", 2, 0), (1, "host1", 2, 0),
        ]  # fmt: skip

        record = body_of(backend, "vm_monitoring", "vmid", 2)
        assert record.tag == "MONITORING"
        assert children(record) == ["ID", "TIMESTAMP", "MONITORING"]
        assert record.findtext("TIMESTAMP") == "1490" and record.findtext("MONITORING/CPU") == "5"

        for vm in vms:
            oid = int(vm.findtext("ID") or 0)
            body = body_of(backend, "vm_pool", "oid", oid)
            assert body.find("LAST_POLL") is None
            assert children(body)[-1] == "MONITORING" and len(body.find("MONITORING")) == 0
            assert len(body.findall("MONITORING")) == 1
            assert len(body.findall("TEMPLATE/NIC")) == len(vm.findall("TEMPLATE/NIC"))
        assert backend.query("SELECT oid, state, lcm_state FROM vm_pool ORDER BY oid") == [
            (1, 3, 3), (2, 8, 0), (3, 6, 0),
        ]  # fmt: skip


def test_local_5_10_to_5_12_bad_host(request: pytest.FixtureRequest, tmp_path: Any) -> None:
    for backend in open_at("sqlite", "5.10.0", request, tmp_path):
        host = host_5_10(5)
        host.find("HOST_SHARE").remove(host.find("HOST_SHARE/DATASTORES"))
        insert_pool(backend, "host_pool", 5, "host5", xml(host), state=2, last_mon_time=0, cid=0)
        with pytest.raises(MigrationError) as caught:
            run_step(backend, "local", "5.10.0")
        assert caught.value.table == "host_pool" and caught.value.row_id == 5
        assert "local/5.10.0_to_5.12.0" in str(caught.value) and "DATASTORES" in str(caught.value)


# -- 5.12.0 -> 6.0.0 ----------------------------------------------------------------------------


def image(
    oid: int,
    disk_type: int,
    *,
    state: int = 1,
    fstype: str | None = None,
    template: tuple[etree._Element, ...] = (),
    datastore: int = 1,
) -> str:
    element = E.IMAGE(
        E.ID(text(oid)),
        E.NAME(f"img{oid}"),
        E.TYPE("0"),
        E.DISK_TYPE(text(disk_type)),
        E.STATE(text(state)),
        E.DATASTORE_ID(text(datastore)),
    )
    if fstype is not None:
        element.append(E.FSTYPE(fstype))
    element.append(E.TEMPLATE(*template))
    return xml(element)


def test_local_5_12_to_6_0(engine: str, request: pytest.FixtureRequest, tmp_path: Any) -> None:
    for backend in open_at(engine, "5.12.0", request, tmp_path):
        insert_pool(
            backend,
            "datastore_pool",
            1,
            "default",
            xml(E.DATASTORE(E.ID("1"), E.TEMPLATE(E.DRIVER("qcow2")))),
        )
        insert_pool(
            backend, "datastore_pool", 2, "files", xml(E.DATASTORE(E.ID("2"), E.TEMPLATE()))
        )
        images = {
            0: image(0, 1, template=(E.DRIVER("qcow2"),)),  # block device: raw, DRIVER removed
            1: image(1, 0, state=2, template=(E.DRIVER("vmdk"), E.FORMAT("x"))),
            2: image(2, 0, fstype="ext4", template=(E.FORMAT("qcow2"),)),
            3: image(3, 0, template=(E.FORMAT("vdi"),)),
            4: image(4, 0),  # from datastore 1
            5: image(5, 0, datastore=2),  # datastore without DRIVER
        }
        for oid, body in images.items():
            insert_pool(backend, "image_pool", oid, f"img{oid}", body)
        insert_vm(backend, "5.12.0", vm_element(1, 3, uid=5, uname="bob", gid=101, gname="ops"))
        insert_vm(backend, "5.12.0", vm_element(2, 6, lcm_state=0))
        for seq, with_vm in ((0, True), (1, True), (2, False)):
            insert(
                backend,
                "history",
                vid=1,
                seq=seq,
                body=xml(history_record(1, seq, 1, with_vm)),
                stime=1000,
                etime=0,
            )
        insert(
            backend,
            "history",
            vid=2,
            seq=0,
            body=xml(history_record(2, 0, 1)),
            stime=1000,
            etime=2000,
        )
        insert(
            backend,
            "history",
            vid=99,
            seq=0,
            body=xml(history_record(99, 0, 1)),
            stime=1000,
            etime=2000,
        )
        target = run_step(backend, "local", "5.12.0")
        assert_schema(backend, target)

        formats = {}
        for oid in images:
            body = body_of(backend, "image_pool", "oid", oid)
            formats[oid] = body.findtext("FORMAT")
            assert children(body)[-2:] == ["FORMAT", "PREV_STATE"]
            assert body.findtext("PREV_STATE") == body.findtext("STATE")
            assert body.find("FSTYPE") is None and body.find("TEMPLATE/FORMAT") is None
        assert formats == {0: "raw", 1: "vmdk", 2: "ext4", 3: "vdi", 4: "qcow2", 5: "raw"}
        assert body_of(backend, "image_pool", "oid", 0).find("TEMPLATE/DRIVER") is None
        assert body_of(backend, "image_pool", "oid", 1).findtext("TEMPLATE/DRIVER") == "vmdk"
        assert body_of(backend, "image_pool", "oid", 1).findtext("PREV_STATE") == "2"

        assert backend.query("SELECT vid, seq FROM history ORDER BY vid, seq") == [
            (1, 0),
            (1, 1),
            (1, 2),
            (2, 0),
        ]
        newest_with_vm = body_of(backend, "history", "vid = 1 AND seq", 1)
        assert [newest_with_vm.findtext(f"VM/{f}") for f in ("UID", "UNAME", "GID", "GNAME")] == [
            "5",
            "bob",
            "101",
            "ops",
        ]
        older = body_of(backend, "history", "vid = 1 AND seq", 0)
        assert older.findtext("VM/UNAME") == "oneadmin"
        assert body_of(backend, "history", "vid = 2 AND seq", 0).findtext("VM/UNAME") == "alice"


def test_local_5_12_to_6_0_bad_image(request: pytest.FixtureRequest, tmp_path: Any) -> None:
    for backend in open_at("sqlite", "5.12.0", request, tmp_path):
        insert_pool(backend, "image_pool", 0, "ok", image(0, 0))
        insert_pool(backend, "image_pool", 7, "bad", "<IMAGE><ID>7</ID><DISK_TYPE>")
        with pytest.raises(
            MigrationError, match=r"step local/5.12.0_to_6.0.0, table image_pool, row 7"
        ):
            run_step(backend, "local", "5.12.0")


# -- 6.0.0 -> 6.2.0 ----------------------------------------------------------------------------


def test_shared_6_0_to_6_2(engine: str, request: pytest.FixtureRequest, tmp_path: Any) -> None:
    for backend in open_at(engine, "6.0.0", request, tmp_path):
        insert_pool(
            backend,
            "zone_pool",
            0,
            "OpenNebula",
            xml(
                E.ZONE(
                    E.ID("0"),
                    E.NAME("OpenNebula"),
                    E.TEMPLATE(E.ENDPOINT("http://localhost:2633/RPC2")),
                )
            ),
        )
        run_step(backend, "shared", "6.0.0")
        zone = body_of(backend, "zone_pool", "oid", 0)
        assert (
            children(zone) == ["ID", "NAME", "TEMPLATE", "STATE"] and zone.findtext("STATE") == "0"
        )


def test_local_6_0_to_6_2(engine: str, request: pytest.FixtureRequest, tmp_path: Any) -> None:
    for backend in open_at(engine, "6.0.0", request, tmp_path):
        actions = (
            E.SCHED_ACTION(E.ACTION("poweroff"), E.ID("3"), E.TIME("+60")),
            E.SCHED_ACTION(E.ACTION("resume"), E.TIME("2000")),
            E.SCHED_ACTION(E.ACTION("terminate"), E.TIME("3000")),
        )
        insert_vm(backend, "6.0.0", vm_element(1, 3, user_template=(E.LABELS("a"), *actions)))
        insert_vm(
            backend,
            "6.0.0",
            vm_element(
                2, 6, lcm_state=0, user_template=(E.SCHED_ACTION(E.ACTION("x"), E.ID("oops")),)
            ),
        )
        insert_vm(backend, "6.0.0", vm_element(3, 8, lcm_state=0))
        target = run_step(backend, "local", "6.0.0")
        assert_schema(backend, target)
        vm = body_of(backend, "vm_pool", "oid", 1)
        assert vm.find("USER_TEMPLATE/SCHED_ACTION") is None
        assert children(vm.find("USER_TEMPLATE")) == ["LABELS"]
        moved = vm.findall("TEMPLATE/SCHED_ACTION")
        assert [(a.findtext("ACTION"), a.findtext("ID")) for a in moved] == [
            ("poweroff", "3"),
            ("resume", "4"),
            ("terminate", "5"),
        ]
        assert children(vm.find("TEMPLATE"))[-3:] == ["SCHED_ACTION"] * 3
        assert children(moved[1]) == ["ACTION", "TIME", "ID"]
        done = body_of(backend, "vm_pool", "oid", 2)
        assert done.findtext("TEMPLATE/SCHED_ACTION/ID") == "oops"
        assert backend.scalar("SELECT search_token FROM vm_pool WHERE oid = 1") == "vm1"


# -- 6.2.0 -> 6.4.0 ----------------------------------------------------------------------------


def vnet(oid: int, *allocated: str) -> str:
    ars = [E.AR(E.AR_ID(text(i)), E.ALLOCATED(a)) for i, a in enumerate(allocated)]
    return xml(E.VNET(E.ID(text(oid)), E.NAME(f"net{oid}"), E.AR_POOL(*ars), E.TEMPLATE()))


def test_local_6_2_to_6_4(engine: str, request: pytest.FixtureRequest, tmp_path: Any) -> None:
    for backend in open_at(engine, "6.2.0", request, tmp_path):
        for oid in (0, 1):
            insert_pool(backend, "network_pool", oid, f"net{oid}", vnet(oid, ""), pid=-1)
        for oid, name in enumerate(
            ("vcenter_net_create", "vcenter_net_delete", "vcenter_net_instantiate", "mine")
        ):
            insert_pool(backend, "hook_pool", oid, name, xml(E.HOOK(E.ID(text(oid)))), type=0)
        insert(backend, "hook_log", hkid=0, exeid=0, timestamp=1, rc=0, body="<HOOK_EXECUTION/>")
        target = run_step(backend, "local", "6.2.0")
        assert_schema(backend, target)
        for oid in (0, 1):
            net = body_of(backend, "network_pool", "oid", oid)
            assert children(net)[-2:] == ["STATE", "PREV_STATE"]
            assert (net.findtext("STATE"), net.findtext("PREV_STATE")) == ("1", "1")
        assert backend.query("SELECT oid, name FROM hook_pool") == [(3, "mine")]
        assert backend.query("SELECT hkid FROM hook_log") == [(0,)]
        assert backend.query("SELECT pid FROM network_pool ORDER BY oid") == [(-1,), (-1,)]


# -- 6.4.0 -> 6.6.0 ----------------------------------------------------------------------------

VM_BIT = 0x0000001000000000
VNET_BIT = 0x0000004000000000


def test_local_6_4_to_6_6(engine: str, request: pytest.FixtureRequest, tmp_path: Any) -> None:
    for backend in open_at(engine, "6.4.0", request, tmp_path):
        leases = f"0 {VM_BIT | 5} 1 {VM_BIT | 6} 2 {VNET_BIT | 9} 3 {VM_BIT | 0xFFFFFFFF}"
        insert_pool(backend, "network_pool", 0, "net0", vnet(0, leases, f"7 {VM_BIT | 5}"), pid=-1)
        insert_pool(backend, "network_pool", 1, "net1", vnet(1, ""), pid=-1)
        for oid, state in ((5, 3), (6, 8), (7, 6)):
            insert_vm(backend, "6.4.0", vm_element(oid, state, nics=(nic(0, 0, f"10.0.0.{oid}"),)))
        target = run_step(backend, "local", "6.4.0")
        assert_schema(backend, target)
        net = body_of(backend, "network_pool", "oid", 0)
        assert children(net)[-4:] == ["OUTDATED_VMS", "UPDATING_VMS", "ERROR_VMS", "UPDATED_VMS"]
        assert [e.text for e in net.findall("UPDATED_VMS/ID")] == ["5", "6", "4294967295", "5"]
        assert len(body_of(backend, "network_pool", "oid", 1).find("UPDATED_VMS")) == 0
        for oid in (5, 6, 7):
            vm = body_of(backend, "vm_pool", "oid", oid)
            assert children(vm)[-1] == "BACKUPS"
            assert children(vm.find("BACKUPS")) == ["BACKUP_CONFIG", "BACKUP_IDS"]


# -- 6.6.0 -> 6.8.0 ----------------------------------------------------------------------------


def numa_host(oid: int) -> str:
    node = E.NODE(
        E.NODE_ID("0"),
        E.HUGEPAGE(E.SIZE("2048"), E.PAGES("0"), E.FREE("0"), E.USAGE("0")),
        E.MEMORY(E.DISTANCE("0"), E.TOTAL("100"), E.FREE("50"), E.USED("50"), E.USAGE("10")),
    )
    return xml(
        E.HOST(
            E.ID(text(oid)),
            E.HOST_SHARE(E.NUMA_NODES(node, E.NODE(E.NODE_ID("1")))),
            E.VMS(E.ID("1")),
        )
    )


def test_local_6_6_to_6_8(engine: str, request: pytest.FixtureRequest, tmp_path: Any) -> None:
    for backend in open_at(engine, "6.6.0", request, tmp_path):
        insert_pool(backend, "host_pool", 0, "host0", numa_host(0), state=2, cid=0)
        insert_pool(
            backend,
            "template_pool",
            0,
            "tpl",
            xml(E.VMTEMPLATE(E.ID("0"), E.TEMPLATE(E.LABELS(etree.CDATA(" web,Db "))))),
        )
        insert_pool(
            backend,
            "template_pool",
            1,
            "plain",
            xml(E.VMTEMPLATE(E.ID("1"), E.TEMPLATE(E.CPU("1")))),
        )
        actions = (
            E.SCHED_ACTION(E.ACTION("poweroff"), E.ID("0"), E.TIME("+3600"), E.WARNING("10")),
            E.SCHED_ACTION(
                E.ACTION("resume"), E.ID("1"), E.TIME("5000"), E.DONE("4000"), E.REPEAT("0")
            ),
        )
        vm_a = vm_element(1, 3, template=actions, user_template=(E.LABELS("prod, x"),))
        insert_vm(backend, "6.6.0", vm_a, E.VM(E.ID("1"), E.USER_TEMPLATE(E.LABELS("prod, x"))))
        insert_vm(
            backend,
            "6.6.0",
            vm_element(
                2, 6, lcm_state=0, template=(E.SCHED_ACTION(E.ACTION("x"), E.ID("0"), E.TIME("1")),)
            ),
        )
        insert_vm(
            backend,
            "6.6.0",
            vm_element(
                3,
                8,
                lcm_state=0,
                template=(E.SCHED_ACTION(E.ACTION("terminate"), E.ID("7"), E.TIME("9000")),),
            ),
        )
        target = run_step(backend, "local", "6.6.0")
        assert_schema(backend, target)

        host = body_of(backend, "host_pool", "oid", 0)
        assert children(host.find("HOST_SHARE/NUMA_NODES/NODE/HUGEPAGE")) == [
            "SIZE",
            "PAGES",
            "USAGE",
        ]
        assert children(host.find("HOST_SHARE/NUMA_NODES/NODE/MEMORY")) == [
            "DISTANCE",
            "TOTAL",
            "USAGE",
        ]
        assert body_of(backend, "template_pool", "oid", 0).findtext("TEMPLATE/LABELS") == "WEB,DB"
        assert body_of(backend, "template_pool", "oid", 1).findtext("TEMPLATE/CPU") == "1"

        vm = body_of(backend, "vm_pool", "oid", 1)
        assert vm.findtext("USER_TEMPLATE/LABELS") == "PROD, X"
        assert (
            body_of(backend, "vm_pool", "oid", 1, "short_body").findtext("USER_TEMPLATE/LABELS")
            == "PROD, X"
        )
        assert vm.find("TEMPLATE/SCHED_ACTION") is None
        assert [e.text for e in vm.findall("SCHED_ACTIONS/ID")] == ["0", "1"]
        done_vm = body_of(backend, "vm_pool", "oid", 2)
        assert (
            done_vm.find("TEMPLATE/SCHED_ACTION") is None
            and len(done_vm.find("SCHED_ACTIONS")) == 0
        )
        assert [
            e.text for e in body_of(backend, "vm_pool", "oid", 3).findall("SCHED_ACTIONS/ID")
        ] == ["2"]

        rows = backend.query(
            "SELECT oid, parent_id, type, time, done FROM schedaction_pool ORDER BY oid"
        )
        assert rows == [(0, 1, "VM", 4600, -1), (1, 1, "VM", 5000, 4000), (2, 3, "VM", 9000, -1)]
        first = body_of(backend, "schedaction_pool", "oid", 0)
        assert children(first) == [
            "ACTION", "ID", "TIME", "TYPE", "PARENT_ID", "MESSAGE", "ARGS", "DONE", "REPEAT",
            "DAYS", "END_TYPE", "END_VALUE",
        ]  # fmt: skip
        assert (first.findtext("ID"), first.findtext("PARENT_ID"), first.findtext("TIME")) == (
            "0",
            "1",
            "4600",
        )
        second = body_of(backend, "schedaction_pool", "oid", 1)
        assert (second.findtext("REPEAT"), second.findtext("DONE")) == ("0", "4000")
        assert backend.query(
            "SELECT last_oid FROM pool_control WHERE tablename = 'schedaction_pool'"
        ) == [(3,)]
        assert backend.query("SELECT COUNT(*) FROM backupjob_pool") == [(0,)]


# -- 6.8.0 -> 6.10.0 ---------------------------------------------------------------------------


def test_local_6_8_to_6_10(engine: str, request: pytest.FixtureRequest, tmp_path: Any) -> None:
    for backend in open_at(engine, "6.8.0", request, tmp_path):
        if backend.kind == "postgresql":
            pytest.skip("6.10.0 does not run on PostgreSQL")
        vm_disks = (disk(0, image_id=3), disk(1, "SWAP"), disk(2, "FS"), disk(3, "BLOCK"))
        backups = E.BACKUPS(E.BACKUP_CONFIG(E.BACKUP_VOLATILE("NO")), E.BACKUP_IDS(E.ID("10")))
        vm1 = vm_element(1, 3, disks=vm_disks, nics=(nic(0, 0, "10.0.0.1"),), extra=(backups,))
        insert_vm(backend, "6.8.0", vm1)
        vol = E.BACKUPS(E.BACKUP_CONFIG(E.BACKUP_VOLATILE("yes")), E.BACKUP_IDS())
        insert_vm(
            backend,
            "6.8.0",
            vm_element(
                2,
                8,
                lcm_state=0,
                disks=vm_disks,
                nics=(nic(0, 0, "a"), nic(1, 1, "b")),
                extra=(vol,),
            ),
        )
        insert_vm(backend, "6.8.0", vm_element(3, 6, lcm_state=0))
        backup_image = E.IMAGE(E.ID("10"), E.TYPE("6"), E.VMS(E.ID("1")), E.TEMPLATE())
        insert_pool(backend, "image_pool", 10, "backup", xml(backup_image))
        insert_pool(
            backend,
            "image_pool",
            11,
            "backup2",
            xml(E.IMAGE(E.ID("11"), E.TYPE("6"), E.VMS(E.ID("2")), E.TEMPLATE())),
        )
        insert_pool(
            backend,
            "image_pool",
            12,
            "orphan",
            xml(E.IMAGE(E.ID("12"), E.TYPE("6"), E.VMS(), E.TEMPLATE())),
        )
        os_image = xml(E.IMAGE(E.ID("3"), E.TYPE("0"), E.VMS(E.ID("1")), E.TEMPLATE()))
        insert_pool(backend, "image_pool", 3, "os", os_image)
        insert(
            backend,
            "schedaction_pool",
            oid=0,
            parent_id=1,
            type="VM",
            body=xml(E.SCHED_ACTION(E.ID("0"), E.ACTION("poweroff"))),
            time=10,
            done=-1,
        )
        target = run_step(backend, "local", "6.8.0")
        assert_schema(backend, target)

        assert [
            e.text for e in body_of(backend, "image_pool", "oid", 10).findall("BACKUP_DISK_IDS/ID")
        ] == ["0", "3"]
        assert [
            e.text for e in body_of(backend, "image_pool", "oid", 11).findall("BACKUP_DISK_IDS/ID")
        ] == ["0", "2", "3"]
        orphan = body_of(backend, "image_pool", "oid", 12)
        assert (
            orphan.find("BACKUP_DISK_IDS") is not None and len(orphan.find("BACKUP_DISK_IDS")) == 0
        )
        assert backend.scalar("SELECT body FROM image_pool WHERE oid = 3") == os_image

        doc = json.loads(backend.scalar("SELECT body_json FROM vm_pool WHERE oid = 1"))
        vm = doc["VM"]
        assert vm["ID"] == "1" and vm["STATE"] == "3" and vm["USER_TEMPLATE"] is None
        assert (
            isinstance(vm["TEMPLATE"]["NIC"], list) and vm["TEMPLATE"]["NIC"][0]["IP"] == "10.0.0.1"
        )
        assert [d["DISK_ID"] for d in vm["TEMPLATE"]["DISK"]] == ["0", "1", "2", "3"]
        assert vm["BACKUPS"]["BACKUP_IDS"] == {"ID": "10"}
        assert vm["HISTORY_RECORDS"]["HISTORY"]["SEQ"] == "0"
        two = json.loads(backend.scalar("SELECT body_json FROM vm_pool WHERE oid = 2"))["VM"]
        assert [n["NIC_ID"] for n in two["TEMPLATE"]["NIC"]] == ["0", "1"]
        three = json.loads(backend.scalar("SELECT body_json FROM vm_pool WHERE oid = 3"))["VM"]
        assert "DISK" not in three["TEMPLATE"]

        action = body_of(backend, "schedaction_pool", "oid", 0)
        assert children(action)[-1] == "WARNING" and action.findtext("WARNING") == "0"
