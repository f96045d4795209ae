"""Test data builder for onedb: realistic OpenNebula 6.10.0 rows (bodies shaped per the XSD).

Every ``add_*`` function inserts one object with the derived fields (lists of ids, counters,
leases) given explicitly, so a test can plant an inconsistency by passing a wrong value.
``consistent_world`` builds a small cloud whose derived data is all correct (computed by hand,
independently of fsck): users/groups with quotas, clusters, hosts, datastores, images with
clones, vnets with address ranges and a reservation, VMs in several states with NICs, disks
and history, marketplaces and apps.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from onetools.db.backends.base import Backend
from onetools.db.schema import bootstrap

NOW = 1_700_000_000
VM_MAGIC = 0x0000001000000000
VNET_MAGIC = 0x0000004000000000
VROUTER_MAGIC = 0x0004000000000000

USERS: dict[int, str] = {0: "oneadmin", 1: "alice", 2: "bob", 3: "carol"}
GROUPS: dict[int, str] = {0: "oneadmin", 1: "users", 100: "devs"}


def create_schema(backend: Backend, version: str = "6.10.0") -> None:
    """Create the empty tables of ``version`` as ``oned -i`` does (no default objects).

    PostgreSQL only exists up to 6.8.0: there the 6.8.0 schema stands in for 6.10.0 (same
    tables except ``vm_pool.search_token`` instead of ``body_json``).
    """
    if backend.kind == "postgresql" and version == "6.10.0":
        version = "6.8.0"
    bootstrap(backend, version, default_objects=False, now=NOW)


# -- XML helpers ------------------------------------------------------------------------------


def t(tag: str, value: Any) -> str:
    """``<TAG>value</TAG>``; strings go in CDATA like oned writes them, numbers as text."""
    if isinstance(value, str):
        return f"<{tag}><![CDATA[{value}]]></{tag}>"
    return f"<{tag}>{value}</{tag}>"


def ids(tag: str, values: Iterable[int]) -> str:
    return f"<{tag}>" + "".join(f"<ID>{v}</ID>" for v in values) + f"</{tag}>"


def perms(owner: str = "110", group: str = "000", other: str = "000") -> str:
    parts = []
    for who, bits in (("OWNER", owner), ("GROUP", group), ("OTHER", other)):
        for letter, bit in zip("UMA", bits, strict=True):
            parts.append(f"<{who}_{letter}>{bit}</{who}_{letter}>")
    return "<PERMISSIONS>" + "".join(parts) + "</PERMISSIONS>"


def attrs(values: dict[str, Any]) -> str:
    return "".join(t(k, v) for k, v in values.items())


def _ins(backend: Backend, table: str, row: dict[str, Any]) -> None:
    cols = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    backend.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", list(row.values()))


def _std(oid: int, name: str, body: str, uid: int, gid: int) -> dict[str, Any]:
    return {
        "oid": oid,
        "name": name,
        "body": body,
        "uid": uid,
        "gid": gid,
        "owner_u": 1,
        "group_u": 0,
        "other_u": 0,
    }


def _owner(uid: int, gid: int) -> str:
    return (
        t("UID", uid) + t("GID", gid) + t("UNAME", USERS.get(uid, f"user{uid}"))
        + t("GNAME", GROUPS.get(gid, f"group{gid}"))
    )  # fmt: skip


# -- users, groups, quotas --------------------------------------------------------------------


def add_group(backend: Backend, oid: int, name: str, users: Sequence[int]) -> None:
    body = (
        f"<GROUP>{t('ID', oid)}{t('NAME', name)}<TEMPLATE/>{ids('USERS', users)}"
        f"{ids('ADMINS', [])}</GROUP>"
    )
    _ins(backend, "group_pool", _std(oid, name, body, 0, 0))


def add_user(
    backend: Backend, oid: int, name: str, gid: int, groups: Sequence[int] | None = None,
    gid_column: int | None = None, auth: str = "core",
) -> None:  # fmt: skip
    groups = list(groups) if groups is not None else [gid]
    body = (
        f"<USER>{t('ID', oid)}{t('GID', gid)}{ids('GROUPS', groups)}"
        f"{t('GNAME', GROUPS.get(gid, f'group{gid}'))}{t('NAME', name)}"
        f"{t('PASSWORD', 'x' * 40)}{t('AUTH_DRIVER', auth)}{t('ENABLED', 1)}"
        f"<TEMPLATE><TOKEN_PASSWORD><![CDATA[abc]]></TOKEN_PASSWORD></TEMPLATE></USER>"
    )
    _ins(
        backend, "user_pool", _std(oid, name, body, oid, gid if gid_column is None else gid_column)
    )


def quota_body(
    oid: int,
    vm: dict[str, Any] | None = None,
    networks: dict[int, int] | None = None,
    images: dict[int, int] | None = None,
    datastores: dict[int, tuple[int, int]] | None = None,
) -> str:
    """A ``<QUOTAS>`` body: usages given, every limit -1 (default)."""
    ds = "".join(
        "<DATASTORE>" + t("ID", str(i)) + t("IMAGES", "-1") + t("IMAGES_USED", str(n))
        + t("SIZE", "-1") + t("SIZE_USED", str(s)) + "</DATASTORE>"
        for i, (n, s) in sorted((datastores or {}).items())
    )  # fmt: skip
    net = "".join(
        "<NETWORK>" + t("ID", str(i)) + t("LEASES", "-1") + t("LEASES_USED", str(n)) + "</NETWORK>"
        for i, n in sorted((networks or {}).items())
    )
    img = "".join(
        "<IMAGE>" + t("ID", str(i)) + t("RVMS", "-1") + t("RVMS_USED", str(n)) + "</IMAGE>"
        for i, n in sorted((images or {}).items())
    )
    vmq = ""
    if vm is not None:
        vmq = "<VM>"
        for key in (
            "CPU", "MEMORY", "RUNNING_CPU", "RUNNING_MEMORY", "RUNNING_VMS", "SYSTEM_DISK_SIZE",
            "VMS",
        ):  # fmt: skip
            vmq += t(key, "-1") + t(f"{key}_USED", str(vm.get(key, 0)))
        vmq += "</VM>"
    return (
        f"<QUOTAS>{t('ID', oid)}<DATASTORE_QUOTA>{ds}</DATASTORE_QUOTA>"
        f"<NETWORK_QUOTA>{net}</NETWORK_QUOTA><VM_QUOTA>{vmq}</VM_QUOTA>"
        f"<IMAGE_QUOTA>{img}</IMAGE_QUOTA></QUOTAS>"
    )


def add_quotas(backend: Backend, kind: str, oid: int, body: str) -> None:
    """``kind`` is ``user`` or ``group``."""
    _ins(backend, f"{kind}_quotas", {f"{kind}_oid": oid, "body": body})


# -- infrastructure ---------------------------------------------------------------------------


def add_cluster(
    backend: Backend, oid: int, name: str, hosts: Sequence[int] = (),
    datastores: Sequence[int] = (), vnets: Sequence[int] = (),
) -> None:  # fmt: skip
    body = (
        f"<CLUSTER>{t('ID', oid)}{t('NAME', name)}{ids('HOSTS', hosts)}"
        f"{ids('DATASTORES', datastores)}{ids('VNETS', vnets)}"
        f"<TEMPLATE>{t('RESERVED_CPU', '')}{t('RESERVED_MEM', '')}</TEMPLATE></CLUSTER>"
    )
    _ins(backend, "cluster_pool", _std(oid, name, body, 0, 0))


def add_relation(backend: Backend, table: str, cid: int, oid: int) -> None:
    """``table``: ``cluster_datastore_relation`` or ``cluster_network_relation``."""
    _ins(backend, table, {"cid": cid, "oid": oid})


def add_host(
    backend: Backend, oid: int, name: str, cluster_id: int, cluster: str,
    vms: Sequence[int] = (), cpu_usage: int = 0, mem_usage: int = 0,
    running_vms: int | None = None, cid_column: int | None = None,
    pci: Sequence[tuple[str, int]] = (),
) -> None:  # fmt: skip
    pcis = "".join(
        "<PCI>" + attrs({"ADDRESS": addr, "BUS": "01", "CLASS": "0300", "CLASS_NAME": "VGA",
        "DEVICE": "1b80", "DEVICE_NAME": "GPU", "DOMAIN": "0000", "FUNCTION": "0",
        "NUMA_NODE": "0", "SHORT_ADDRESS": addr, "SLOT": "00", "TYPE": "10de:1b80:0300",
        "VENDOR": "10de", "VENDOR_NAME": "NVIDIA"}) + t("VMID", vmid) + "</PCI>"
        for addr, vmid in pci
    )  # fmt: skip
    share = (
        f"<HOST_SHARE>{t('MEM_USAGE', mem_usage)}{t('CPU_USAGE', cpu_usage)}"
        f"{t('TOTAL_MEM', 16777216)}{t('TOTAL_CPU', 800)}{t('MAX_MEM', 16777216)}"
        f"{t('MAX_CPU', 800)}{t('RUNNING_VMS', len(vms) if running_vms is None else running_vms)}"
        f"{t('VMS_THREAD', 1)}<DATASTORES>{t('DISK_USAGE', 0)}{t('FREE_DISK', 0)}"
        f"{t('MAX_DISK', 0)}{t('USED_DISK', 0)}</DATASTORES>"
        f"<PCI_DEVICES>{pcis}</PCI_DEVICES><NUMA_NODES/></HOST_SHARE>"
    )
    body = (
        f"<HOST>{t('ID', oid)}{t('NAME', name)}{t('STATE', 2)}{t('PREV_STATE', 2)}"
        f"{t('IM_MAD', 'kvm')}{t('VM_MAD', 'kvm')}{t('CLUSTER_ID', cluster_id)}"
        f"{t('CLUSTER', cluster)}{share}{ids('VMS', vms)}<TEMPLATE/><MONITORING/></HOST>"
    )
    row = _std(oid, name, body, 0, 0)
    row["state"] = 2
    row["cid"] = cluster_id if cid_column is None else cid_column
    _ins(backend, "host_pool", row)


def add_datastore(
    backend: Backend, oid: int, name: str, ds_type: int = 0, clusters: Sequence[int] = (0,),
    images: Sequence[int] = (),
) -> None:  # fmt: skip
    body = (
        f"<DATASTORE>{t('ID', oid)}{_owner(0, 0)}{t('NAME', name)}{perms('110', '100', '000')}"
        f"{t('DS_MAD', 'fs')}{t('TM_MAD', 'ssh')}{t('BASE_PATH', f'/var/lib/one/datastores/{oid}')}"
        f"{t('TYPE', ds_type)}{t('DISK_TYPE', 0)}{t('STATE', 0)}{ids('CLUSTERS', clusters)}"
        f"{t('TOTAL_MB', 100000)}{t('FREE_MB', 90000)}{t('USED_MB', 10000)}"
        f"{ids('IMAGES', images)}<TEMPLATE>{t('DS_MAD', 'fs')}</TEMPLATE></DATASTORE>"
    )
    _ins(backend, "datastore_pool", _std(oid, name, body, 0, 0))


def add_image(
    backend: Backend, oid: int, name: str, uid: int, gid: int, datastore_id: int,
    datastore: str, size: int, persistent: bool = False, state: int = 1,
    vms: Sequence[int] = (), running_vms: int | None = None, clones: Sequence[int] = (),
    app_clones: Sequence[int] = (), cloning_ops: int | None = None, cloning_id: int = -1,
    snapshot_sizes: Sequence[int] = (),
) -> None:  # fmt: skip
    snaps = "".join(
        f"<SNAPSHOT>{t('DATE', NOW)}{t('ID', i)}{t('NAME', f's{i}')}{t('PARENT', -1)}"
        f"{t('SIZE', s)}</SNAPSHOT>"
        for i, s in enumerate(snapshot_sizes)
    )
    body = (
        f"<IMAGE>{t('ID', oid)}{_owner(uid, gid)}{t('NAME', name)}{perms()}{t('TYPE', 0)}"
        f"{t('DISK_TYPE', 0)}{t('PERSISTENT', int(persistent))}{t('REGTIME', NOW)}"
        f"{t('SOURCE', f'/var/lib/one/datastores/{datastore_id}/{oid:032x}')}"
        f"{t('PATH', '/tmp/img.qcow2')}{t('FORMAT', 'qcow2')}{t('FS', '')}{t('SIZE', size)}"
        f"{t('STATE', state)}{t('PREV_STATE', 1)}"
        f"{t('RUNNING_VMS', len(vms) if running_vms is None else running_vms)}"
        f"{t('CLONING_OPS', len(clones) + len(app_clones) if cloning_ops is None else cloning_ops)}"
        f"{t('CLONING_ID', cloning_id)}{t('TARGET_SNAPSHOT', -1)}"
        f"{t('DATASTORE_ID', datastore_id)}{t('DATASTORE', datastore)}{ids('VMS', vms)}"
        f"{ids('CLONES', clones)}{ids('APP_CLONES', app_clones)}"
        f"<TEMPLATE>{t('DEV_PREFIX', 'vd')}</TEMPLATE>"
        f"<SNAPSHOTS>{t('ALLOW_ORPHANS', 'NO')}{t('CURRENT_BASE', -1)}"
        f"{t('NEXT_SNAPSHOT', len(snapshot_sizes))}{snaps}</SNAPSHOTS>"
        f"<BACKUP_INCREMENTS/><BACKUP_DISK_IDS/></IMAGE>"
    )
    _ins(backend, "image_pool", _std(oid, name, body, uid, gid))


def mac_of(base: str, index: int) -> str:
    """The MAC ``index`` addresses after ``base``."""
    value = int(base.replace(":", ""), 16) + index
    raw = f"{value:012x}"
    return ":".join(raw[i : i + 2] for i in range(0, 12, 2))


def ip_of(base: str, index: int) -> str:
    parts = [int(p) for p in base.split(".")]
    value = (parts[0] << 24 | parts[1] << 16 | parts[2] << 8 | parts[3]) + index
    return ".".join(str((value >> s) & 255) for s in (24, 16, 8, 0))


def ar(
    ar_id: int, mac: str, size: int, allocated: dict[int, int], ip: str | None = None,
    parent_ar: int | None = None,
) -> str:  # fmt: skip
    """One ``<AR>``: ``allocated`` maps lease index → owner magic (type bits | id)."""
    alloc = " ".join(f"{i} {allocated[i]}" for i in sorted(allocated))
    out = f"<AR>{t('AR_ID', str(ar_id))}{t('ALLOCATED', alloc)}"
    if ip is not None:
        out += t("IP", ip)
    out += f"{t('MAC', mac)}"
    if parent_ar is not None:
        out += t("PARENT_NETWORK_AR_ID", str(parent_ar))
    out += f"{t('SIZE', str(size))}{t('TYPE', 'IP4' if ip else 'ETHER')}</AR>"
    return out


def add_vnet(
    backend: Backend, oid: int, name: str, uid: int, gid: int, ars: Sequence[str],
    used_leases: int, clusters: Sequence[int] = (0,), parent: int = -1,
) -> None:  # fmt: skip
    body = (
        f"<VNET>{t('ID', oid)}{_owner(uid, gid)}{t('NAME', name)}{perms()}"
        f"{ids('CLUSTERS', clusters)}{t('BRIDGE', f'br{oid}')}{t('BRIDGE_TYPE', 'linux')}"
        f"{t('STATE', 1)}{t('PREV_STATE', 0)}"
        f"{t('PARENT_NETWORK_ID', '' if parent < 0 else str(parent))}{t('VN_MAD', 'bridge')}"
        f"{t('PHYDEV', '')}{t('VLAN_ID', '')}{t('OUTER_VLAN_ID', '')}"
        f"{t('VLAN_ID_AUTOMATIC', 0)}{t('OUTER_VLAN_ID_AUTOMATIC', 0)}"
        f"{t('USED_LEASES', used_leases)}{ids('VROUTERS', [])}{ids('UPDATED_VMS', [])}"
        f"{ids('OUTDATED_VMS', [])}{ids('UPDATING_VMS', [])}{ids('ERROR_VMS', [])}"
        f"<TEMPLATE>{t('VN_MAD', 'bridge')}</TEMPLATE><AR_POOL>{''.join(ars)}</AR_POOL></VNET>"
    )
    row = _std(oid, name, body, uid, gid)
    row["pid"] = parent
    _ins(backend, "network_pool", row)


# -- VMs --------------------------------------------------------------------------------------


def nic(nic_id: int, network_id: int, ar_id: int, mac: str, ip: str | None = None) -> str:
    out = f"<NIC>{t('AR_ID', str(ar_id))}"
    if ip:
        out += t("IP", ip)
    out += f"{t('MAC', mac)}{t('NETWORK', f'net{network_id}')}{t('NETWORK_ID', str(network_id))}"
    return out + f"{t('NIC_ID', str(nic_id))}{t('VN_MAD', 'bridge')}</NIC>"


def disk(
    disk_id: int, size: int, image_id: int | None = None, clone: bool = True,
    target: str = "SYSTEM", datastore_id: int = 1, disk_type: str | None = None,
) -> str:  # fmt: skip
    out = "<DISK>"
    if image_id is not None:
        out += t("CLONE", "YES" if clone else "NO")
        out += t("CLONE_TARGET", target if clone else "SYSTEM")
        out += t("DATASTORE_ID", str(datastore_id))
        out += t("IMAGE", f"img{image_id}") + t("IMAGE_ID", str(image_id))
        out += t("LN_TARGET", "SYSTEM" if clone else target)
    out += t("DISK_ID", str(disk_id)) + t("SIZE", str(size))
    if disk_type is not None:
        out += t("TYPE", disk_type)
    return out + "</DISK>"


def history_xml(
    vid: int, seq: int, hid: int, hostname: str, stime: int, etime: int, cid: int = 0
) -> str:
    return (
        f"<HISTORY>{t('OID', vid)}{t('SEQ', seq)}{t('HOSTNAME', hostname)}{t('HID', hid)}"
        f"{t('CID', cid)}{t('STIME', stime)}{t('ETIME', etime)}{t('VM_MAD', 'kvm')}"
        f"{t('TM_MAD', 'ssh')}{t('DS_ID', 0)}{t('PSTIME', stime)}{t('PETIME', stime)}"
        f"{t('RSTIME', stime)}{t('RETIME', etime)}{t('ESTIME', 0)}{t('EETIME', 0)}"
        f"{t('ACTION', 0)}{t('UID', -1)}{t('GID', -1)}{t('REQUEST_ID', '-1')}</HISTORY>"
    )


def add_vm(
    backend: Backend, oid: int, name: str, uid: int, gid: int, state: int, lcm_state: int,
    cpu: float = 1, memory: int = 512, nics: Sequence[str] = (), disks: Sequence[str] = (),
    history: Sequence[tuple[int, str, int, int]] = (), stime: int = NOW, etime: int = 0,
    extra_template: str = "",
) -> None:  # fmt: skip
    """A VM; ``history`` holds (hid, hostname, stime, etime) records, seq 0.. in order."""
    records = [history_xml(oid, seq, *h) for seq, h in enumerate(history)]
    last = records[-1] if records else ""
    body = (
        f"<VM>{t('ID', oid)}{_owner(uid, gid)}{t('NAME', name)}{perms()}{t('LAST_POLL', 0)}"
        f"{t('STATE', state)}{t('LCM_STATE', lcm_state)}{t('PREV_STATE', state)}"
        f"{t('PREV_LCM_STATE', lcm_state)}{t('RESCHED', 0)}{t('STIME', stime)}"
        f"{t('ETIME', etime)}{t('DEPLOY_ID', f'one-{oid}')}<MONITORING/><SCHED_ACTIONS/>"
        f"<TEMPLATE>{t('CPU', f'{cpu:g}')}{''.join(disks)}{t('MEMORY', str(memory))}"
        f"{''.join(nics)}{extra_template}{t('TM_MAD_SYSTEM', 'ssh')}{t('VMID', str(oid))}"
        f"</TEMPLATE><USER_TEMPLATE/><HISTORY_RECORDS>{last}</HISTORY_RECORDS>"
        f"<BACKUPS><BACKUP_CONFIG/><BACKUP_IDS/></BACKUPS></VM>"
    )
    row = _std(oid, name, body, uid, gid)
    row.update(state=state, lcm_state=lcm_state, short_body="<VM/>")
    if "body_json" in backend.columns("vm_pool"):
        row["body_json"] = "{}"
    else:
        row["search_token"] = name
    _ins(backend, "vm_pool", row)
    for seq, (record, h) in enumerate(zip(records, history, strict=True)):
        vm_copy = body.replace(f"<HISTORY_RECORDS>{last}</HISTORY_RECORDS>", "<HISTORY_RECORDS/>")
        hbody = record.replace("</HISTORY>", vm_copy + "</HISTORY>")
        _ins(backend, "history", {"vid": oid, "seq": seq, "body": hbody, "stime": h[2],
                                  "etime": h[3]})  # fmt: skip


# -- marketplaces -----------------------------------------------------------------------------


def add_market(
    backend: Backend, oid: int, name: str, apps: Sequence[int], zone_id: int | None = 0
) -> None:
    zone = "" if zone_id is None else t("ZONE_ID", str(zone_id))
    body = (
        f"<MARKETPLACE>{t('ID', oid)}{_owner(0, 0)}{t('NAME', name)}{t('STATE', 0)}"
        f"{t('MARKET_MAD', 'one')}{zone}{t('TOTAL_MB', 0)}{t('FREE_MB', 0)}"
        f"{t('USED_MB', 0)}{ids('MARKETPLACEAPPS', apps)}{perms('110', '100', '100')}"
        f"<TEMPLATE/></MARKETPLACE>"
    )
    _ins(backend, "marketplace_pool", _std(oid, name, body, 0, 0))


def add_app(
    backend: Backend, oid: int, name: str, market_id: int, market: str, state: int = 1,
    origin_id: int = -1,
) -> None:  # fmt: skip
    body = (
        f"<MARKETPLACEAPP>{t('ID', oid)}{_owner(0, 0)}{t('REGTIME', NOW)}{t('NAME', name)}"
        f"{t('ZONE_ID', '0')}{t('ORIGIN_ID', str(origin_id))}{t('SOURCE', '')}{t('MD5', '')}"
        f"{t('SIZE', 2048)}{t('DESCRIPTION', '')}{t('VERSION', '1.0')}{t('FORMAT', 'qcow2')}"
        f"{t('APPTEMPLATE64', '')}{t('MARKETPLACE_ID', market_id)}{t('MARKETPLACE', market)}"
        f"{t('STATE', state)}{t('TYPE', 1)}{perms()}<TEMPLATE/></MARKETPLACEAPP>"
    )
    _ins(backend, "marketplaceapp_pool", _std(oid, name, body, 0, 0))


def set_pool_control(backend: Backend, values: dict[str, int]) -> None:
    for table, last in values.items():
        backend.execute("DELETE FROM pool_control WHERE tablename = ?", (table,))
        _ins(backend, "pool_control", {"tablename": table, "last_oid": last})


# -- the consistent world ---------------------------------------------------------------------

PUBLIC_MAC = "02:00:0a:00:00:01"
PUBLIC_IP = "10.0.0.1"
PRIVATE_MAC = "02:00:00:00:01:00"

#: Expected quota usages in ``consistent_world`` (worked out by hand).
ALICE_VM = {"CPU": "1.5", "MEMORY": 1536, "VMS": 2, "RUNNING_CPU": 1, "RUNNING_MEMORY": 1024,
            "RUNNING_VMS": 1, "SYSTEM_DISK_SIZE": 4608}  # fmt: skip
BOB_VM = {"CPU": 3, "MEMORY": 2304, "VMS": 2, "RUNNING_CPU": 3, "RUNNING_MEMORY": 2304,
          "RUNNING_VMS": 2, "SYSTEM_DISK_SIZE": 0}  # fmt: skip
USERS_VM = {"CPU": "4.5", "MEMORY": 3840, "VMS": 4, "RUNNING_CPU": 4, "RUNNING_MEMORY": 3328,
            "RUNNING_VMS": 3, "SYSTEM_DISK_SIZE": 4608}  # fmt: skip


def consistent_world(backend: Backend) -> None:
    """A small cloud whose derived data is consistent (fsck finds nothing).

    * users 0 oneadmin, 1 alice (group 1), 2 bob (groups 1 and 100), 3 carol (group 100)
    * cluster 0 ``default`` (hosts 0, 1; datastores 0, 1, 2; vnets 0, 1, 2), cluster 100 empty
    * images: 0 ubuntu (alice, non-persistent, VMs 0 and 1, cloned to image 2 and app 0),
      1 data (bob, persistent, VM 2), 2 ubuntu-copy (alice, LOCKED while cloning from 0)
    * vnets: 0 public (IP4, leases of VMs 0, 1, 2 and a 2-address reservation vnet 2 of bob),
      1 private (ETHER, VM 0), 2 bob-reservation (child of 0)
    * VMs: 0 ACTIVE on host 0, 1 POWEROFF on host 1, 2 ACTIVE on host 0, 3 PENDING, 4 DONE
    * marketplaces 0 (app 1) and 1 (app 0, LOCKED, exported from image 0)
    """
    with backend.transaction():
        add_group(backend, 0, "oneadmin", [0])
        add_group(backend, 1, "users", [1, 2])
        add_group(backend, 100, "devs", [2, 3])
        add_user(backend, 0, "oneadmin", 0)
        add_user(backend, 1, "alice", 1)
        add_user(backend, 2, "bob", 1, [1, 100])
        add_user(backend, 3, "carol", 100)

        add_cluster(backend, 0, "default", [0, 1], [0, 1, 2], [0, 1, 2])
        add_cluster(backend, 100, "spare")
        for ds in (0, 1, 2):
            add_relation(backend, "cluster_datastore_relation", 0, ds)
        for vn in (0, 1, 2):
            add_relation(backend, "cluster_network_relation", 0, vn)
        add_host(backend, 0, "node0", 0, "default", [0, 2], 300, 3072 * 1024,
                 pci=[("0000:01:00.0", 2), ("0000:02:00.0", -1)])  # fmt: skip
        add_host(backend, 1, "node1", 0, "default", [1], 50, 512 * 1024)
        add_datastore(backend, 0, "system", 1)
        add_datastore(backend, 1, "default", 0, images=[0, 1, 2])
        add_datastore(backend, 2, "files", 2)

        add_image(backend, 0, "ubuntu", 1, 1, 1, "default", 2048, state=2, vms=[0, 1],
                  clones=[2], app_clones=[0])  # fmt: skip
        add_image(backend, 1, "data", 2, 1, 1, "default", 1024, persistent=True, state=8,
                  vms=[2])  # fmt: skip
        add_image(backend, 2, "ubuntu-copy", 1, 1, 1, "default", 2048, state=4, cloning_id=0)

        pub = ar(0, PUBLIC_MAC, 10, {0: VM_MAGIC | 0, 1: VM_MAGIC | 1, 2: VM_MAGIC | 2,
                 5: VNET_MAGIC | 2, 6: VNET_MAGIC | 2}, ip=PUBLIC_IP)  # fmt: skip
        add_vnet(backend, 0, "public", 0, 0, [pub], 5)
        add_vnet(backend, 1, "private", 0, 0, [ar(0, PRIVATE_MAC, 100, {0: VM_MAGIC | 0})], 1)
        child = ar(0, mac_of(PUBLIC_MAC, 5), 2, {}, ip=ip_of(PUBLIC_IP, 5), parent_ar=0)
        add_vnet(backend, 2, "bob-reservation", 2, 1, [child], 0, parent=0)

        add_vm(backend, 0, "web0", 1, 1, 3, 3, cpu=1, memory=1024,
               nics=[nic(0, 0, 0, mac_of(PUBLIC_MAC, 0), ip_of(PUBLIC_IP, 0)),
                     nic(1, 1, 0, PRIVATE_MAC)],
               disks=[disk(0, 2048, image_id=0), disk(1, 512, disk_type="fs")],
               history=[(1, "node1", NOW - 100, NOW - 50), (0, "node0", NOW - 50, 0)])  # fmt: skip
        add_vm(backend, 1, "web1", 1, 1, 8, 0, cpu=0.5, memory=512,
               nics=[nic(0, 0, 0, mac_of(PUBLIC_MAC, 1), ip_of(PUBLIC_IP, 1))],
               disks=[disk(0, 2048, image_id=0)], history=[(1, "node1", NOW - 10, 0)])  # fmt: skip
        add_vm(backend, 2, "db", 2, 1, 3, 3, cpu=2, memory=2048,
               nics=[nic(0, 0, 0, mac_of(PUBLIC_MAC, 2), ip_of(PUBLIC_IP, 2))],
               disks=[disk(0, 1024, image_id=1, clone=False, target="NONE")],
               extra_template="<PCI>" + t("ADDRESS", "0000:01:00.0") + t("PCI_ID", "0")
               + "</PCI>",
               history=[(0, "node0", NOW - 30, 0)])  # fmt: skip
        add_vm(backend, 3, "queued", 2, 1, 1, 0, cpu=1, memory=256)
        add_vm(backend, 4, "old", 1, 1, 6, 0, cpu=4, memory=4096,
               nics=[nic(0, 0, 0, mac_of(PUBLIC_MAC, 7), ip_of(PUBLIC_IP, 7))],
               disks=[disk(0, 2048, image_id=0)], history=[(0, "node0", NOW - 900, NOW - 800)],
               stime=NOW - 900, etime=NOW - 800)  # fmt: skip

        add_market(backend, 0, "OpenNebula Public", [1])
        add_market(backend, 1, "local", [0])
        add_app(backend, 0, "ubuntu-app", 1, "local", state=2, origin_id=0)
        add_app(backend, 1, "alpine", 0, "OpenNebula Public")

        add_quotas(backend, "user", 0, quota_body(0))
        add_quotas(
            backend,
            "user",
            1,
            quota_body(
                1, ALICE_VM, networks={0: 2, 1: 1}, images={0: 2}, datastores={1: (2, 4096)}
            ),
        )
        add_quotas(
            backend,
            "user",
            2,
            quota_body(2, BOB_VM, networks={0: 3}, images={1: 1}, datastores={1: (1, 1024)}),
        )
        add_quotas(backend, "user", 3, quota_body(3))
        add_quotas(backend, "group", 0, quota_body(0))
        add_quotas(backend, "group", 1, quota_body(
            1, USERS_VM, networks={0: 5, 1: 1}, images={0: 2, 1: 1},
            datastores={1: (3, 5120)}))  # fmt: skip
        add_quotas(backend, "group", 100, quota_body(100))

        set_pool_control(backend, {
            "group_pool": 100, "user_pool": 3, "cluster_pool": 100, "host_pool": 1,
            "datastore_pool": 2, "image_pool": 2, "network_pool": 2, "vm_pool": 4,
            "marketplace_pool": 1, "marketplaceapp_pool": 1,
        })  # fmt: skip


def dump(backend: Backend) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted, for before/after comparisons."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    for table in backend.tables():
        rows = backend.query(f"SELECT * FROM {table}")
        out[table] = sorted(rows, key=repr)
    return out


def _key(table: str) -> str:
    return table.replace("_quotas", "_oid") if table.endswith("_quotas") else "oid"


def body_of(backend: Backend, table: str, oid: int) -> str:
    value = backend.scalar(f"SELECT body FROM {table} WHERE {_key(table)} = ?", (oid,))
    assert value is not None, f"{table} {oid} missing"
    return str(value)


def set_body(backend: Backend, table: str, oid: int, body: str) -> None:
    backend.execute(f"UPDATE {table} SET body = ? WHERE {_key(table)} = ?", (body, oid))


def replace_in_body(backend: Backend, table: str, oid: int, old: str, new: str) -> None:
    """Plant an inconsistency: textual replacement inside one body (must match once)."""
    body = body_of(backend, table, oid)
    assert body.count(old) == 1, f"{old!r} found {body.count(old)} times in {table} {oid}"
    set_body(backend, table, oid, body.replace(old, new))


#: ``ALLOCATED`` owner of a lease on hold (VM type, id 0xFFFFFFFF).
HOLD_LEASE_MAGIC = VM_MAGIC | 0xFFFFFFFF
