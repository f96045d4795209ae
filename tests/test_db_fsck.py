"""onedb fsck: a consistent database reports nothing; each planted inconsistency is found,
reported without changes under ``dry`` and fixed otherwise (a second run is then clean)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest

from db_objects import (
    HOLD_LEASE_MAGIC,
    NOW,
    VM_MAGIC,
    VNET_MAGIC,
    add_user,
    body_of,
    consistent_world,
    create_schema,
    dump,
    replace_in_body,
)
from onetools.db.backends import open_backend
from onetools.db.backends.base import Backend, ConnectionSettings
from onetools.db.fsck import FsckReport, fsck


@pytest.fixture
def world(any_backend_settings: ConnectionSettings) -> Iterator[Backend]:
    backend = open_backend(any_backend_settings, create=True)
    create_schema(backend)
    consistent_world(backend)
    yield backend
    backend.close()


def run(backend: Backend, dry: bool = False) -> tuple[FsckReport, list[str]]:
    lines: list[str] = []
    report = fsck(backend, dry=dry, log=lines.append)
    return report, lines


def test_consistent_database_reports_nothing(world: Backend) -> None:
    before = dump(world)
    report, lines = run(world)
    assert lines == []
    assert report.exit_code == 0
    assert report.problems == []
    assert "Total errors found: 0" in report.summary()
    assert dump(world) == before


PUB_ALLOC = f"0 {VM_MAGIC} 1 {VM_MAGIC | 1} 2 {VM_MAGIC | 2} 5 {VNET_MAGIC | 2} 6 {VNET_MAGIC | 2}"


def _sql(statement: str) -> Callable[[Backend], None]:
    return lambda b: b.execute(statement) and None


def _body(table: str, oid: int, old: str, new: str) -> Callable[[Backend], None]:
    return lambda b: replace_in_body(b, table, oid, old, new)


def _open_record(vid: int, seq: int, *tags: str) -> Callable[[Backend], None]:
    """Zero the ``etime`` column and ``tags`` of one history record (not of the VM copy
    that history bodies carry)."""

    def plant(backend: Backend) -> None:
        body = str(backend.scalar("SELECT body FROM history WHERE vid = ? AND seq = ?", (vid, seq)))
        record, vm, rest = body.partition("<VM>")
        for tag in tags:
            record, count = re.subn(f"<{tag}>[0-9]+</{tag}>", f"<{tag}>0</{tag}>", record)
            assert count == 1, tag
        backend.execute(
            "UPDATE history SET body = ?, etime = 0 WHERE vid = ? AND seq = ?",
            (record + vm + rest, vid, seq),
        )

    return plant


def _both(*steps: Callable[[Backend], None]) -> Callable[[Backend], None]:
    def apply(b: Backend) -> None:
        for step in steps:
            step(b)

    return apply


CASES: dict[str, tuple[Callable[[Backend], None], str]] = {
    "pool_control": (
        _sql("UPDATE pool_control SET last_oid = 1 WHERE tablename = 'vm_pool'"),
        "pool_control vm_pool: last_oid is 1, set to 4",
    ),
    "pool_control_missing": (
        _sql("DELETE FROM pool_control WHERE tablename = 'image_pool'"),
        "pool_control image_pool: no last_oid row",
    ),
    "user_gid_column": (_sql("UPDATE user_pool SET gid = 5 WHERE oid = 1"), "user 1: gid column"),
    "user_missing_group": (
        _both(
            _body("user_pool", 1, "<GID>1</GID>", "<GID>55</GID>"),
            _body("user_pool", 1, "<GROUPS><ID>1</ID>", "<GROUPS><ID>55</ID>"),
        ),
        "user 1: primary group 55 does not exist",
    ),
    "user_secondary_group": (
        _body("user_pool", 2, "<ID>100</ID></GROUPS>", "<ID>100</ID><ID>77</ID></GROUPS>"),
        "user 2: secondary groups [77] do not exist",
    ),
    "group_users": (
        _body("group_pool", 1, "<USERS><ID>1</ID><ID>2</ID>", "<USERS><ID>2</ID>"),
        "group 1: USERS list wrong (missing [1]",
    ),
    "host_cluster_name": (
        _body("host_pool", 1, "<CLUSTER><![CDATA[default]]>", "<CLUSTER><![CDATA[old]]>"),
        "host 1: cluster name 'old' should be 'default'",
    ),
    "host_missing_cluster": (
        _both(
            _body("host_pool", 1, "<CLUSTER_ID>0</CLUSTER_ID>", "<CLUSTER_ID>77</CLUSTER_ID>"),
            _sql("UPDATE host_pool SET cid = 77 WHERE oid = 1"),
        ),
        "host 1: cluster 77 does not exist",
    ),
    "host_cid_column": (_sql("UPDATE host_pool SET cid = 100 WHERE oid = 0"), "host 0: cid column"),
    "datastore_missing_cluster": (
        _body("datastore_pool", 2, "<CLUSTERS><ID>0</ID>", "<CLUSTERS><ID>0</ID><ID>55</ID>"),
        "datastore 2: clusters [55] do not exist",
    ),
    "vnet_missing_cluster": (
        _body("network_pool", 1, "<CLUSTERS><ID>0</ID>", "<CLUSTERS><ID>0</ID><ID>55</ID>"),
        "vnet 1: clusters [55] do not exist",
    ),
    "vnet_cluster_from_relation": (
        _both(
            _body("network_pool", 1, "<CLUSTERS><ID>0</ID></CLUSTERS>", "<CLUSTERS/>"),
        ),
        "vnet 1: clusters [0] hold it",
    ),
    "cluster_hosts": (
        _body("cluster_pool", 0, "<HOSTS><ID>0</ID><ID>1</ID>", "<HOSTS><ID>0</ID>"),
        "cluster 0: HOSTS list wrong (missing [1]",
    ),
    "cluster_vnets": (
        _body("cluster_pool", 0, "<VNETS><ID>0</ID><ID>1</ID><ID>2</ID>", "<VNETS><ID>9</ID>"),
        "cluster 0: VNETS list wrong",
    ),
    "relation_stale": (
        _sql("INSERT INTO cluster_datastore_relation (cid, oid) VALUES (100, 1)"),
        "cluster 100: cluster_datastore_relation row for datastore 1 is stale",
    ),
    "relation_missing": (
        _sql("DELETE FROM cluster_datastore_relation WHERE cid = 0 AND oid = 2"),
        "cluster 0: cluster_datastore_relation lacks datastore 2",
    ),
    "image_datastore_name": (
        _body("image_pool", 1, "<DATASTORE><![CDATA[default]]>", "<DATASTORE><![CDATA[x]]>"),
        "image 1: datastore name 'x' should be 'default'",
    ),
    "datastore_images": (
        _body("datastore_pool", 1, "<ID>1</ID><ID>2</ID></IMAGES>", "<ID>1</ID></IMAGES>"),
        "datastore 1: IMAGES list wrong (missing [2]",
    ),
    "host_cpu_usage": (
        _body("host_pool", 0, "<CPU_USAGE>300</CPU_USAGE>", "<CPU_USAGE>100</CPU_USAGE>"),
        "host 0: CPU_USAGE is 100, set to 300",
    ),
    "host_mem_usage": (
        _body("host_pool", 1, "<MEM_USAGE>524288<", "<MEM_USAGE>0<"),
        "host 1: MEM_USAGE is 0, set to 524288",
    ),
    "host_running_vms": (
        _body("host_pool", 1, "<RUNNING_VMS>1<", "<RUNNING_VMS>4<"),
        "host 1: RUNNING_VMS is 4, set to 1",
    ),
    "host_vms": (
        _body("host_pool", 1, "<VMS><ID>1</ID></VMS>", "<VMS><ID>1</ID><ID>9</ID></VMS>"),
        "host 1: VMS list wrong (missing [], extra [9])",
    ),
    "host_pci": (
        _body("host_pool", 0, "<VMID>-1</VMID>", "<VMID>3</VMID>"),
        "host 0: PCI 0000:02:00.0 assigned to VM 3",
    ),
    "image_running_vms": (
        _body("image_pool", 0, "<RUNNING_VMS>2<", "<RUNNING_VMS>5<"),
        "image 0: RUNNING_VMS is 5, set to 2",
    ),
    "image_vms": (
        _body("image_pool", 0, "<VMS><ID>0</ID><ID>1</ID></VMS>", "<VMS><ID>0</ID></VMS>"),
        "image 0: VMS list wrong (missing [1]",
    ),
    "image_clones": (
        _body("image_pool", 0, "<CLONES><ID>2</ID></CLONES>", "<CLONES/>"),
        "image 0: CLONES list wrong (missing [2]",
    ),
    "image_app_clones": (
        _body("image_pool", 0, "<APP_CLONES><ID>0</ID></APP_CLONES>", "<APP_CLONES/>"),
        "image 0: APP_CLONES list wrong (missing [0]",
    ),
    "image_cloning_ops": (
        _body("image_pool", 0, "<CLONING_OPS>2<", "<CLONING_OPS>0<"),
        "image 0: CLONING_OPS is 0, set to 2",
    ),
    "image_state": (
        _body("image_pool", 1, "<STATE>8</STATE>", "<STATE>1</STATE>"),
        "image 1: STATE is 1, set to 8",
    ),
    "image_state_idle": (
        _body("image_pool", 0, "<STATE>2</STATE>", "<STATE>1</STATE>"),
        "image 0: STATE is 1, set to 2",
    ),
    "lease_missing": (
        _body("network_pool", 0, PUB_ALLOC, PUB_ALLOC.replace(f" 1 {VM_MAGIC | 1}", "")),
        "vnet 0: AR 0: lease 02:00:0a:00:00:02 used by VM 1 is not allocated, added",
    ),
    "lease_unused": (
        _body("network_pool", 1, f"0 {VM_MAGIC}", f"0 {VM_MAGIC} 5 {VM_MAGIC | 3}"),
        "vnet 1: AR 0: lease 02:00:00:00:01:05 allocated to VM 3, which does not use it, freed",
    ),
    "lease_owner": (
        _body("network_pool", 0, f"2 {VM_MAGIC | 2}", f"2 {VM_MAGIC | 3}"),
        "allocated to VM 3 but used by VM 2, fixed",
    ),
    "lease_reservation": (
        _body("network_pool", 0, f" 6 {VNET_MAGIC | 2}", ""),
        "lease 02:00:0a:00:00:07 used by VNet 2 is not allocated",
    ),
    "used_leases": (
        _body("network_pool", 1, "<USED_LEASES>1</USED_LEASES>", "<USED_LEASES>7</USED_LEASES>"),
        "vnet 1: USED_LEASES is 7, set to 1",
    ),
    "app_market_name": (
        _body("marketplaceapp_pool", 1, "<![CDATA[OpenNebula Public]]>", "<![CDATA[ONE]]>"),
        "marketplaceapp 1: marketplace name 'ONE' should be 'OpenNebula Public'",
    ),
    "market_apps": (
        _body("marketplace_pool", 1, "<MARKETPLACEAPPS><ID>0</ID>", "<MARKETPLACEAPPS>"),
        "marketplace 1: MARKETPLACEAPPS list wrong (missing [0]",
    ),
    "market_zone": (
        _body("marketplace_pool", 0, "<ZONE_ID><![CDATA[0]]></ZONE_ID>", ""),
        "marketplace 0: ZONE_ID is missing, set to 0",
    ),
    "user_quota_cpu": (
        _body("user_quotas", 1, "<CPU_USED><![CDATA[1.5]]>", "<CPU_USED><![CDATA[7]]>"),
        "user 1: VM quota CPU_USED is 7, set to 1.5",
    ),
    "user_quota_running": (
        _body(
            "user_quotas", 2, "<RUNNING_VMS_USED><![CDATA[2]]>", "<RUNNING_VMS_USED><![CDATA[0]]>"
        ),
        "user 2: VM quota RUNNING_VMS_USED is 0, set to 2",
    ),
    "user_quota_system_disk": (
        _body("user_quotas", 1, "<![CDATA[4608]]>", "<![CDATA[0]]>"),
        "user 1: VM quota SYSTEM_DISK_SIZE_USED is 0, set to 4608",
    ),
    "group_quota_leases": (
        _body("group_quotas", 1, "<LEASES_USED><![CDATA[5]]>", "<LEASES_USED><![CDATA[1]]>"),
        "group 1: NETWORK 0 quota LEASES_USED is 1, set to 5",
    ),
    "user_quota_image_entry": (
        _body(
            "user_quotas",
            2,
            "<IMAGE><ID><![CDATA[1]]></ID><RVMS><![CDATA[-1]]></RVMS>"
            "<RVMS_USED><![CDATA[1]]></RVMS_USED></IMAGE>",
            "",
        ),
        "user 2: IMAGE 1 quota missing, added",
    ),
    "group_quota_datastore": (
        _body("group_quotas", 1, "<SIZE_USED><![CDATA[5120]]>", "<SIZE_USED><![CDATA[1]]>"),
        "group 1: DATASTORE 1 quota SIZE_USED is 1, set to 5120",
    ),
    "history_done_vm_last_record_open": (
        _open_record(4, 0, "ETIME"),
        f"vm 4: DONE, but history record 0 has no end time, set to {NOW - 800}",
    ),
    "history_earlier_record_open": (
        _open_record(0, 0, "ETIME"),
        "vm 0: history record 0 has no end time, set to RETIME",
    ),
    "quota_row_missing": (
        _sql("DELETE FROM user_quotas WHERE user_oid = 2"),
        "user 2: no user_quotas row, created",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_planted_inconsistency(world: Backend, case: str) -> None:
    plant, expected = CASES[case]
    with world.transaction():
        plant(world)
    planted = dump(world)

    report, lines = run(world, dry=True)
    assert any(expected in line for line in lines), lines
    assert report.exit_code == 1
    assert "Dry run" in report.summary()
    assert dump(world) == planted  # dry: nothing written

    report, lines = run(world)
    assert any(expected in line for line in lines), lines
    assert report.exit_code == 1
    assert report.unrepairable == 0, lines
    assert dump(world) != planted

    report, lines = run(world)
    assert lines == [], lines
    assert report.exit_code == 0


def test_fix_restores_the_original_values(world: Backend) -> None:
    original = body_of(world, "host_pool", 0)
    replace_in_body(world, "host_pool", 0, "<CPU_USAGE>300</CPU_USAGE>", "<CPU_USAGE>1</CPU_USAGE>")
    replace_in_body(world, "host_pool", 0, "<VMS><ID>0</ID><ID>2</ID>", "<VMS><ID>2</ID>")
    run(world)
    fixed = body_of(world, "host_pool", 0)
    assert "<CPU_USAGE>300</CPU_USAGE>" in fixed
    assert "<VMS><ID>0</ID><ID>2</ID></VMS>" in fixed
    assert len(fixed) == len(original)


def test_app_in_missing_marketplace_is_unrepaired(world: Backend) -> None:
    replace_in_body(world, "marketplaceapp_pool", 1, "<MARKETPLACE_ID>0<", "<MARKETPLACE_ID>9<")
    report, lines = run(world)
    assert any(line.startswith("[UNREPAIRED] marketplaceapp 1: marketplace 9") for line in lines)
    assert any("marketplace 0: MARKETPLACEAPPS list wrong" in line for line in lines)
    assert report.unrepairable == 1
    report, lines = run(world)
    assert report.exit_code == 1
    assert len(lines) == 1 and "[UNREPAIRED]" in lines[0]


def test_vm_using_missing_image_is_unrepaired(world: Backend) -> None:
    new_disk = (
        "<DISK><IMAGE_ID>42</IMAGE_ID><SIZE>1</SIZE><CLONE>YES</CLONE>"
        "<CLONE_TARGET>SYSTEM</CLONE_TARGET></DISK><MEMORY>"
    )
    replace_in_body(world, "vm_pool", 3, "<MEMORY>", new_disk)
    _report, lines = run(world, dry=True)
    assert "[UNREPAIRED] vm 3: uses image 42, which does not exist" in lines


def test_hold_leases_are_kept(world: Backend) -> None:
    replace_in_body(world, "network_pool", 1, f"0 {VM_MAGIC}", f"0 {VM_MAGIC} 9 {HOLD_LEASE_MAGIC}")
    replace_in_body(world, "network_pool", 1, "<USED_LEASES>1<", "<USED_LEASES>2<")
    report, lines = run(world)
    assert lines == []
    assert report.exit_code == 0


def test_done_vms_are_ignored(world: Backend) -> None:
    # VM 4 is DONE: its NIC lease, image and host must not count anywhere.
    report, _lines = run(world)
    assert report.exit_code == 0
    assert "<RUNNING_VMS>2</RUNNING_VMS>" in body_of(world, "image_pool", 0)


def test_report_serialises(world: Backend) -> None:
    replace_in_body(world, "host_pool", 0, "<CPU_USAGE>300<", "<CPU_USAGE>3<")
    report, _lines = run(world, dry=True)
    data = report.to_dict()
    assert data["errors"] == 1 and data["dry"] is True
    assert data["problems"][0]["object"] == "host"
    assert data["problems"][0]["id"] == 0


def test_history_fix_values(world: Backend) -> None:
    """The DONE VM's open last record takes the VM's ETIME in every end time that is 0, in
    the row, its ``etime`` column and the VM body's copy; an earlier record its RETIME."""
    _open_record(4, 0, "ETIME", "RETIME")(world)
    replace_in_body(
        world, "vm_pool", 4, f"<ETIME>{NOW - 800}</ETIME><VM_MAD>", "<ETIME>0</ETIME><VM_MAD>"
    )
    _open_record(0, 0, "ETIME")(world)
    report, lines = run(world)
    assert report.exit_code == 1 and report.unrepairable == 0, lines
    end = NOW - 800
    row = world.query("SELECT etime, body FROM history WHERE vid = 4 AND seq = 0")[0]
    assert row[0] == end
    record = str(row[1]).partition("<VM>")[0]
    for tag in ("ETIME", "RETIME", "ESTIME", "EETIME"):
        assert f"<{tag}>{end}</{tag}>" in record, tag
    vm = body_of(world, "vm_pool", 4)
    assert f"<ETIME>{end}</ETIME><VM_MAD>" in vm and f"<EETIME>{end}</EETIME>" in vm
    earlier = world.query("SELECT etime, body FROM history WHERE vid = 0 AND seq = 0")[0]
    assert earlier[0] == NOW - 50 and f"<ETIME>{NOW - 50}</ETIME>" in str(earlier[1])
    assert run(world)[0].exit_code == 0


def test_history_without_any_end_time_is_unrepaired(world: Backend) -> None:
    _open_record(0, 0, "ETIME", "RETIME")(world)  # EETIME is 0 already
    replace_in_body(
        world, "vm_pool", 4, f"<ETIME>{NOW - 800}</ETIME><DEPLOY_ID>", "<ETIME>0</ETIME><DEPLOY_ID>"
    )
    _open_record(4, 0, "ETIME")(world)
    before = dump(world)
    report, lines = run(world)
    assert report.unrepairable == 2, lines
    assert "[UNREPAIRED] vm 0: history record 0 has no end time and no EETIME or RETIME" in lines
    assert "[UNREPAIRED] vm 4: DONE, but neither it nor history record 0 has an end time" in lines
    assert dump(world) == before


def test_ldap_names_equal_but_for_case_are_reported(world: Backend) -> None:
    """LDAP users whose names differ only in case are reported, not changed; core users
    with such names are not."""
    if world.kind == "mysql":
        pytest.skip("MySQL's case-insensitive collation refuses such names in user_pool.name")
    add_user(world, 10, "Dave", 1, auth="ldap")
    add_user(world, 11, "dave", 1, auth="ldap")
    add_user(world, 12, "DAVE", 1)  # core
    report, lines = run(world, dry=True)
    assert report.unrepairable >= 1
    ldap = [line for line in lines if "LDAP" in line]
    assert ldap == [
        "[UNREPAIRED] user 11: LDAP user name 'dave' differs only in case from user 10's"
    ]
    run(world)
    assert "<NAME><![CDATA[dave]]></NAME>" in body_of(world, "user_pool", 11)
