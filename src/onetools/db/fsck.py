"""``onedb fsck``: find and fix inconsistencies between derived data and its sources (§5).

Works offline on 6.10.0 databases (and older versions where the tables match).  Checks, in
order:

1. ``pool_control``: ``last_oid`` below a pool's ``MAX(oid)``;
2. users: primary group missing (→ group 1), primary not in ``GROUPS``, missing secondary
   groups, ``user_pool.gid`` column, LDAP names equal but for case (reported only);
3. groups: ``USERS`` list;
4-8. clusters: host ``CLUSTER_ID``/``CLUSTER``/``cid`` column, datastore and vnet
   ``CLUSTERS`` lists, cluster ``HOSTS``/``DATASTORES``/``VNETS`` and both relation tables;
9. images ↔ datastores: ``DATASTORE`` name, datastore ``IMAGES`` list;
10. one streaming pass over the VMs that are not DONE, building compact aggregates (per
   host, image, vnet lease, user and group);
11. hosts: ``RUNNING_VMS``, ``VMS``, ``CPU_USAGE``, ``MEM_USAGE``, PCI devices held by VMs
   that are not there;
12-13. marketplace apps (``MARKETPLACE`` name, missing marketplace) and marketplaces
   (``MARKETPLACEAPPS``, ``ZONE_ID``);
14. images: ``RUNNING_VMS``, ``VMS``, ``CLONES``, ``APP_CLONES``, ``CLONING_OPS``, ``STATE``;
15. vnets: AR ``ALLOCATED`` leases against VM NICs, vrouter floating IPs and reservations,
   ``USED_LEASES``;
16. user and group quotas: usage recomputed from the aggregates of step 10;
17. history: a DONE VM's last record without an end time gets the VM's ``ETIME`` (in
   ``ETIME``, ``RETIME``, ``ESTIME``, ``EETIME`` where they are 0, the ``etime`` column and
   the copy in the VM body); an earlier record without one gets its ``EETIME`` or
   ``RETIME`` (unrepaired when both are 0).

Memory: tables are read by keyset paging (``oid > ? ORDER BY oid LIMIT n``) or streamed;
only small per-object aggregates (ids and counters) are kept, never bodies.  Each check
writes its fixes in one transaction, in batches; with ``dry`` nothing is written.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from onetools.db.backends.base import Backend, Row
from onetools.db.body import Element, int_of, parse_xml, set_text, text_of, to_xml
from onetools.db.errors import DatabaseError

# VM states
INIT, PENDING, HOLD, ACTIVE, STOPPED, SUSPENDED, DONE = 0, 1, 2, 3, 4, 5, 6
POWEROFF, UNDEPLOYED, CLONING, CLONING_FAILURE = 8, 9, 10, 11
ON_HOST_STATES = frozenset({ACTIVE, SUSPENDED, POWEROFF})
RUNNING_QUOTA_STATES = frozenset({PENDING, HOLD, ACTIVE, CLONING})
# image states
IMG_READY, IMG_USED, IMG_CLONE, IMG_USED_PERS = 1, 2, 6, 8
# lease owner bits
VM_BIT = 0x0000001000000000
VNET_BIT = 0x0000004000000000
VROUTER_BIT = 0x0004000000000000
TYPE_MASK = 0xFFFFFFFF00000000
ID_MASK = 0x00000000FFFFFFFF
HOLD_LEASE = VM_BIT | ID_MASK

POOL_TABLES = (
    "group_pool",
    "user_pool",
    "acl",
    "image_pool",
    "host_pool",
    "network_pool",
    "template_pool",
    "vm_pool",
    "cluster_pool",
    "datastore_pool",
    "document_pool",
    "zone_pool",
    "secgroup_pool",
    "vdc_pool",
    "vrouter_pool",
    "marketplace_pool",
    "marketplaceapp_pool",
    "vmgroup_pool",
    "vn_template_pool",
    "hook_pool",
    "backupjob_pool",
    "schedaction_pool",
)

PAGE = 500


# -- report -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Inconsistency:
    """One problem: the object it is about and what was wrong (and done about it)."""

    object_type: str
    oid: int | str
    message: str
    repaired: bool = True

    def line(self) -> str:
        prefix = "" if self.repaired else "[UNREPAIRED] "
        return f"{prefix}{self.object_type} {self.oid}: {self.message}"


@dataclass
class FsckReport:
    """What fsck found; ``exit_code`` is 0 when nothing was found, 1 otherwise."""

    dry: bool
    problems: list[Inconsistency] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.problems else 0

    @property
    def repairable(self) -> int:
        return sum(1 for p in self.problems if p.repaired)

    @property
    def unrepairable(self) -> int:
        return len(self.problems) - self.repairable

    def summary(self) -> str:
        """The closing lines of a run (total, repaired or repairable, unrepaired)."""
        if self.dry:
            return (
                f"Total errors found: {len(self.problems)}\n"
                f"Total errors repairable: {self.repairable}\n"
                f"Total errors unrepairable: {self.unrepairable}\n"
                "Dry run: nothing was written"
            )
        return (
            f"Total errors found: {len(self.problems)}\n"
            f"Total errors repaired: {self.repairable}\n"
            f"Total errors unrepaired: {self.unrepairable}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry": self.dry,
            "errors": len(self.problems),
            "repaired": 0 if self.dry else self.repairable,
            "unrepaired": self.unrepairable,
            "problems": [
                {"object": p.object_type, "id": p.oid, "message": p.message, "repaired": p.repaired}
                for p in self.problems
            ],
        }


def fsck(
    backend: Backend, dry: bool = False, log: Callable[[str], object] | None = None
) -> FsckReport:
    """Check the database and fix what can be fixed (nothing is written when ``dry``).

    ``log`` receives each problem as one line, as it is found.  Returns the report; its
    ``exit_code`` is 0 when the database was consistent, 1 otherwise.
    """
    checker = _Fsck(backend, dry, log)
    checker.run()
    return checker.report


# -- helpers ----------------------------------------------------------------------------------


def _ids(root: Element, path: str) -> list[int]:
    out: list[int] = []
    for node in root.iterfind(path):
        try:
            out.append(int((node.text or "").strip()))
        except ValueError:
            continue
    return out


def _set_ids(root: Element, container: str, values: Iterable[int]) -> None:
    """Replace the ``<ID>`` children of ``container`` (created at the end if missing)."""
    node = root.find(container)
    if node is None:
        node = etree.SubElement(root, container)
    for child in list(node):
        node.remove(child)
    for value in values:
        etree.SubElement(node, "ID").text = str(value)


def _num(text: str | None) -> float:
    try:
        return float((text or "").strip() or 0)
    except ValueError:
        return 0.0


def _fmt(value: float) -> str:
    """A number as oned writes it: no trailing zeros, at most two decimals."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _mac(text: str) -> int | None:
    try:
        return int(text.strip().replace(":", ""), 16)
    except ValueError:
        return None


def _ip(text: str) -> int | None:
    parts = text.strip().split(".")
    if len(parts) != 4:
        return None
    try:
        value = 0
        for part in parts:
            byte = int(part)
            if not 0 <= byte <= 255:
                return None
            value = value << 8 | byte
        return value
    except ValueError:
        return None


def _ip_text(value: int) -> str:
    return ".".join(str((value >> s) & 255) for s in (24, 16, 8, 0))


def _mac_text(value: int) -> str:
    raw = f"{value:012x}"
    return ":".join(raw[i : i + 2] for i in range(0, 12, 2))


def _owner_text(magic: int) -> str:
    kind = magic & TYPE_MASK
    oid = magic & ID_MASK
    if magic == HOLD_LEASE:
        return "on hold"
    name = {VM_BIT: "VM", VNET_BIT: "VNet", VROUTER_BIT: "VRouter"}.get(kind, f"type {kind:#x}")
    return f"{name} {oid}"


@dataclass
class _Lease:
    """An address in use, as seen from its user (VM NIC, vrouter floating IP, reservation)."""

    ar_id: int  # -1: not given
    mac: int | None
    ip: int | None
    owner: int  # type bits | id


@dataclass
class _Usage:
    """Quota usage of one user or group."""

    cpu: float = 0.0
    memory: int = 0
    vms: int = 0
    system_disk: int = 0
    running_cpu: float = 0.0
    running_memory: int = 0
    running_vms: int = 0
    networks: dict[int, int] = field(default_factory=dict)
    images: dict[int, int] = field(default_factory=dict)
    datastores: dict[int, list[int]] = field(default_factory=dict)  # ds → [images, size]

    def add_ds(self, ds: int, images: int, size: int) -> None:
        entry = self.datastores.setdefault(ds, [0, 0])
        entry[0] += images
        entry[1] += size


class _Writer:
    """Batched ``UPDATE table SET body = ?[, col = ?…] WHERE oid = ?`` statements."""

    def __init__(
        self, fsck: _Fsck, table: str, columns: Sequence[str] = (), key: str | Sequence[str] = "oid"
    ):
        self.fsck = fsck
        cols = ", ".join(f"{c} = ?" for c in ("body", *columns))
        keys = (key,) if isinstance(key, str) else tuple(key)
        self.sql = f"UPDATE {table} SET {cols} WHERE {' AND '.join(f'{k} = ?' for k in keys)}"
        self.rows: list[tuple[Any, ...]] = []

    def add(self, oid: int | tuple[int, ...], root: Element, *values: Any) -> None:
        """Queue ``root`` as the new body of row ``oid`` (a tuple for a composite key)."""
        if self.fsck.dry:
            return
        self.rows.append((to_xml(root), *values, *(oid if isinstance(oid, tuple) else (oid,))))
        if len(self.rows) >= PAGE:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self.fsck.backend.executemany(self.sql, self.rows)
            self.rows = []


# -- the checks -------------------------------------------------------------------------------


class _Fsck:
    def __init__(self, backend: Backend, dry: bool, log: Callable[[str], object] | None) -> None:
        self.backend = backend
        self.dry = dry
        self.log = log
        self.report = FsckReport(dry=dry)
        self.tables = set(backend.tables())
        # collected along the way (ids and small values only)
        self.groups: dict[int, str] = {}
        self.group_users: dict[int, list[int]] = defaultdict(list)
        self.clusters: dict[int, str] = {}
        self.cluster_hosts: dict[int, list[int]] = defaultdict(list)
        self.cluster_ds: dict[int, list[int]] = defaultdict(list)
        self.cluster_vnets: dict[int, list[int]] = defaultdict(list)
        self.hosts: set[int] = set()
        self.datastores: dict[int, str] = {}
        self.ds_images: dict[int, list[int]] = defaultdict(list)
        self.images: set[int] = set()
        self.clones: dict[int, list[int]] = defaultdict(list)
        self.app_clones: dict[int, list[int]] = defaultdict(list)
        self.vnets: set[int] = set()
        self.reservations: list[tuple[int, int, int | None, int | None, int, int]] = []
        self.host_vms: dict[int, list[int]] = defaultdict(list)
        self.host_cpu: dict[int, float] = defaultdict(float)
        self.host_mem: dict[int, int] = defaultdict(int)
        self.image_vms: dict[int, list[int]] = defaultdict(list)
        self.leases: dict[int, list[_Lease]] = defaultdict(list)
        self.user_usage: dict[int, _Usage] = defaultdict(_Usage)
        self.group_usage: dict[int, _Usage] = defaultdict(_Usage)

    # -- plumbing -----------------------------------------------------------------------------
    def problem(self, kind: str, oid: int | str, message: str, repaired: bool = True) -> None:
        item = Inconsistency(kind, oid, message, repaired)
        self.report.problems.append(item)
        if self.log is not None:
            self.log(item.line())

    @contextlib.contextmanager
    def fixing(self) -> Iterator[None]:
        """One transaction per check (none when dry)."""
        if self.dry:
            yield
            return
        with self.backend.transaction():
            yield

    def pages(self, table: str, columns: str = "oid, body", where: str = "") -> Iterator[Row]:
        """Rows of ``table`` in oid order, read ``PAGE`` at a time by keyset paging (so the
        caller may write between pages on every engine)."""
        if table not in self.tables:
            return
        cond = f"{where} AND " if where else ""
        last = -(2**62)
        while True:
            rows = self.backend.query(
                f"SELECT {columns} FROM {table} WHERE {cond}oid > ? ORDER BY oid LIMIT {PAGE}",
                (last,),
            )
            if not rows:
                return
            yield from rows
            last = int(rows[-1][0])

    def bodies(self, table: str, columns: str = "oid, body") -> Iterator[tuple[int, Element, Row]]:
        for row in self.pages(table, columns):
            try:
                root = parse_xml(str(row[1]))
            except DatabaseError as exc:
                self.problem(table, int(row[0]), f"body is not valid XML ({exc})", False)
                continue
            yield int(row[0]), root, row

    def run(self) -> None:
        self.check_pool_control()
        self.check_users()
        self.check_groups()
        self.check_hosts_clusters()
        self.check_datastores_clusters()
        self.check_vnets_clusters()
        self.check_clusters()
        self.check_relations()
        self.check_images_datastores()
        self.scan_vms()
        self.scan_vrouters()
        self.check_hosts()
        self.check_apps()
        self.check_markets()
        self.check_images()
        self.check_networks()
        self.check_quotas("user")
        self.check_quotas("group")
        self.check_history()

    # -- 1. pool_control ----------------------------------------------------------------------
    def check_pool_control(self) -> None:
        if "pool_control" not in self.tables:
            return
        stored = {
            str(n): int(v)
            for n, v in self.backend.query("SELECT tablename, last_oid FROM pool_control")
            if v is not None
        }
        with self.fixing():
            for table in POOL_TABLES:
                if table not in self.tables:
                    continue
                top = self.backend.scalar(f"SELECT MAX(oid) FROM {table}")
                if top is None:
                    continue
                top = int(top)
                last = stored.get(table)
                if last is not None and last >= top:
                    continue
                if last is None:
                    self.problem("pool_control", table, f"no last_oid row, set to {top}")
                    if not self.dry:
                        self.backend.execute(
                            "INSERT INTO pool_control (tablename, last_oid) VALUES (?, ?)",
                            (table, top),
                        )
                else:
                    self.problem("pool_control", table, f"last_oid is {last}, set to {top}")
                    if not self.dry:
                        self.backend.execute(
                            "UPDATE pool_control SET last_oid = ? WHERE tablename = ?",
                            (top, table),
                        )

    # -- 2-3. users and groups ----------------------------------------------------------------
    def check_users(self) -> None:
        for oid, name in self.pages("group_pool", "oid, name"):
            self.groups[int(oid)] = str(name)
        writer = _Writer(self, "user_pool", ["gid"])
        ldap_names: dict[str, list[int]] = defaultdict(list)
        with self.fixing():
            for uid, root, row in self.bodies("user_pool", "oid, body, gid"):
                changed = False
                gid = int_of(root, "GID")
                groups = _ids(root, "GROUPS/ID")
                if gid not in self.groups:
                    new = 1
                    self.problem(
                        "user", uid, f"primary group {gid} does not exist, moved to group {new}"
                    )
                    groups = [g for g in groups if g != gid]
                    gid = new
                    set_text(root, "GID", str(gid))
                    set_text(root, "GNAME", self.groups.get(gid, "users"))
                    changed = True
                missing = [g for g in groups if g not in self.groups]
                if missing:
                    self.problem("user", uid, f"secondary groups {missing} do not exist, removed")
                    groups = [g for g in groups if g in self.groups]
                    changed = True
                if gid not in groups:
                    self.problem("user", uid, f"primary group {gid} missing from GROUPS, added")
                    groups.append(gid)
                    changed = True
                groups = sorted(set(groups))
                if changed:
                    _set_ids(root, "GROUPS", groups)
                if row[2] is None or int(row[2]) != gid:
                    self.problem("user", uid, f"gid column is {row[2]}, set to {gid}")
                    changed = True
                for group in groups:
                    self.group_users[group].append(uid)
                if text_of(root, "AUTH_DRIVER").lower() == "ldap":
                    ldap_names[text_of(root, "NAME").lower()].append(uid)
                if changed:
                    writer.add(uid, root, gid)
            writer.flush()
        # oned matches LDAP logins case-insensitively: such users would shadow each other.
        for name, uids in ldap_names.items():
            for uid in uids[1:]:
                self.problem(
                    "user",
                    uid,
                    f"LDAP user name {name!r} differs only in case from user {uids[0]}'s",
                    False,
                )

    def check_groups(self) -> None:
        writer = _Writer(self, "group_pool")
        with self.fixing():
            for gid, root, _row in self.bodies("group_pool"):
                expected = sorted(set(self.group_users.get(gid, [])))
                if self.fix_id_list("group", gid, root, "USERS", expected, ordered=False):
                    writer.add(gid, root)
            writer.flush()
        self.group_users.clear()

    # -- 4-8. clusters ------------------------------------------------------------------------
    def check_hosts_clusters(self) -> None:
        for oid, name in self.pages("cluster_pool", "oid, name"):
            self.clusters[int(oid)] = str(name)
        writer = _Writer(self, "host_pool", ["cid"])
        with self.fixing():
            for hid, root, row in self.bodies("host_pool", "oid, body, cid"):
                self.hosts.add(hid)
                changed = False
                cid = int_of(root, "CLUSTER_ID")
                if cid != -1 and cid not in self.clusters:
                    self.problem("host", hid, f"cluster {cid} does not exist, host moved out of it")
                    cid = -1
                    set_text(root, "CLUSTER_ID", "-1")
                    set_text(root, "CLUSTER", "")
                    changed = True
                elif cid != -1 and text_of(root, "CLUSTER") != self.clusters[cid]:
                    self.problem(
                        "host",
                        hid,
                        f"cluster name '{text_of(root, 'CLUSTER')}' should be "
                        f"'{self.clusters[cid]}', fixed",
                    )
                    set_text(root, "CLUSTER", self.clusters[cid])
                    changed = True
                if row[2] is None or int(row[2]) != cid:
                    self.problem("host", hid, f"cid column is {row[2]}, set to {cid}")
                    changed = True
                if cid != -1:
                    self.cluster_hosts[cid].append(hid)
                if changed:
                    writer.add(hid, root, cid)
            writer.flush()

    def _clusters_list(self, kind: str, oid: int, root: Element, extra: Iterable[int] = ()) -> bool:
        stored = _ids(root, "CLUSTERS/ID")
        kept = [c for c in stored if c in self.clusters]
        if len(kept) != len(stored):
            gone = sorted(set(stored) - set(kept))
            self.problem(kind, oid, f"clusters {gone} do not exist, removed from CLUSTERS")
        added = sorted(set(extra) - set(kept))
        if added:
            self.problem(kind, oid, f"clusters {added} hold it (relation table), added to CLUSTERS")
        if len(kept) != len(stored) or added:
            _set_ids(root, "CLUSTERS", sorted(set(kept) | set(added)))
            return True
        return False

    def check_datastores_clusters(self) -> None:
        writer = _Writer(self, "datastore_pool")
        with self.fixing():
            for ds, root, row in self.bodies("datastore_pool", "oid, body, name"):
                self.datastores[ds] = text_of(root, "NAME", str(row[2]))
                if self._clusters_list("datastore", ds, root):
                    writer.add(ds, root)
                for cid in _ids(root, "CLUSTERS/ID"):
                    self.cluster_ds[cid].append(ds)
            writer.flush()

    def check_vnets_clusters(self) -> None:
        related: dict[int, set[int]] = defaultdict(set)
        if "cluster_network_relation" in self.tables:
            for cid, oid in self.backend.stream("SELECT cid, oid FROM cluster_network_relation"):
                if int(cid) in self.clusters:
                    related[int(oid)].add(int(cid))
        writer = _Writer(self, "network_pool")
        with self.fixing():
            for vid, root, _row in self.bodies("network_pool"):
                self.vnets.add(vid)
                if self._clusters_list("vnet", vid, root, related.get(vid, ())):
                    writer.add(vid, root)
                for cid in _ids(root, "CLUSTERS/ID"):
                    self.cluster_vnets[cid].append(vid)
                self._collect_reservation(vid, root)
            writer.flush()

    def _collect_reservation(self, vid: int, root: Element) -> None:
        """A reservation (child vnet) holds its addresses as leases of the parent's AR."""
        parent = int_of(root, "PARENT_NETWORK_ID")
        if parent < 0:
            return
        uid, gid = int_of(root, "UID"), int_of(root, "GID")
        for ar in root.iterfind("AR_POOL/AR"):
            size = int_of(ar, "SIZE", 0)
            parent_ar = int_of(ar, "PARENT_NETWORK_AR_ID")
            mac = _mac(text_of(ar, "MAC"))
            ip = _ip(text_of(ar, "IP")) if ar.find("IP") is not None else None
            self.reservations.append((parent, parent_ar, mac, ip, size, vid))
            if uid >= 0:
                usage = self.user_usage[uid].networks
                usage[parent] = usage.get(parent, 0) + size
            if gid >= 0:
                usage = self.group_usage[gid].networks
                usage[parent] = usage.get(parent, 0) + size

    def check_clusters(self) -> None:
        writer = _Writer(self, "cluster_pool")
        with self.fixing():
            for cid, root, _row in self.bodies("cluster_pool"):
                changed = False
                for container, members in (
                    ("HOSTS", self.cluster_hosts),
                    ("DATASTORES", self.cluster_ds),
                    ("VNETS", self.cluster_vnets),
                ):
                    expected = sorted(set(members.get(cid, [])))
                    if self.fix_id_list("cluster", cid, root, container, expected):
                        changed = True
                if changed:
                    writer.add(cid, root)
            writer.flush()

    def check_relations(self) -> None:
        for table, members, kind in (
            ("cluster_datastore_relation", self.cluster_ds, "datastore"),
            ("cluster_network_relation", self.cluster_vnets, "vnet"),
        ):
            if table not in self.tables:
                continue
            expected = {(c, o) for c, objs in members.items() for o in objs}
            stored = {
                (int(c), int(o)) for c, o in self.backend.query(f"SELECT cid, oid FROM {table}")
            }
            missing = sorted(expected - stored)
            extra = sorted(stored - expected)
            for cid, oid in missing:
                self.problem("cluster", cid, f"{table} lacks {kind} {oid}, added")
            for cid, oid in extra:
                self.problem("cluster", cid, f"{table} row for {kind} {oid} is stale, deleted")
            if self.dry or not (missing or extra):
                continue
            with self.fixing():
                if missing:
                    self.backend.executemany(
                        f"INSERT INTO {table} (cid, oid) VALUES (?, ?)", missing
                    )
                if extra:
                    self.backend.executemany(
                        f"DELETE FROM {table} WHERE cid = ? AND oid = ?", extra
                    )

    def fix_id_list(
        self,
        kind: str,
        oid: int,
        root: Element,
        container: str,
        expected: list[int],
        ordered: bool = True,
    ) -> bool:
        """Make ``<container>/ID`` list ``expected``; report and rewrite it when it differs.

        With ``ordered`` False only the set of ids (and duplicates) matters, not their order.
        Returns whether the body changed.
        """
        stored = _ids(root, f"{container}/ID")
        if (stored if ordered else sorted(stored)) == expected:
            return False
        missing = sorted(set(expected) - set(stored))
        extra = sorted(set(stored) - set(expected))
        self.problem(
            kind, oid, f"{container} list wrong (missing {missing}, extra {extra}), rebuilt"
        )
        _set_ids(root, container, expected)
        return True

    def check_parent(
        self,
        kind: str,
        oid: int,
        root: etree._Element,
        parent_kind: str,
        names: dict[int, str],
        writer: _Writer,
    ) -> int | None:
        """The id of the object's parent (``<PARENT>_ID``), fixing a wrong ``<PARENT>`` name;
        ``None`` (reported, not repairable here) when the parent does not exist."""
        tag = {"datastore": "DATASTORE", "marketplace": "MARKETPLACE"}[parent_kind]
        parent = int_of(root, f"{tag}_ID")
        if parent not in names:
            table = {"image": "image_pool", "marketplaceapp": "marketplaceapp_pool"}[kind]
            noun = "image" if kind == "image" else "app"
            self.problem(
                kind,
                oid,
                f"{parent_kind} {parent} does not exist (delete the {noun}: DELETE FROM {table} "
                f"WHERE oid={oid})",
                False,
            )
            return None
        if text_of(root, tag) != names[parent]:
            self.problem(
                kind,
                oid,
                f"{parent_kind} name '{text_of(root, tag)}' should be '{names[parent]}', fixed",
            )
            set_text(root, tag, names[parent])
            writer.add(oid, root)
        return parent

    # -- 9. images and datastores -------------------------------------------------------------
    def check_images_datastores(self) -> None:
        writer = _Writer(self, "image_pool")
        with self.fixing():
            for iid, root, _row in self.bodies("image_pool"):
                self.images.add(iid)
                parent = self.check_parent("image", iid, root, "datastore", self.datastores, writer)
                if parent is not None:
                    self.ds_images[parent].append(iid)
                ds = int_of(root, "DATASTORE_ID")  # usage counts even for a missing datastore
                origin = int_of(root, "CLONING_ID")
                if origin >= 0:
                    self.clones[origin].append(iid)
                size = int_of(root, "SIZE", 0) + sum(
                    int_of(s, "SIZE", 0) for s in root.iterfind("SNAPSHOTS/SNAPSHOT")
                )
                uid, gid = int_of(root, "UID"), int_of(root, "GID")
                if uid >= 0:
                    self.user_usage[uid].add_ds(ds, 1, size)
                if gid >= 0:
                    self.group_usage[gid].add_ds(ds, 1, size)
            writer.flush()
        writer = _Writer(self, "datastore_pool")
        with self.fixing():
            for ds, root, _row in self.bodies("datastore_pool"):
                expected = sorted(set(self.ds_images.get(ds, [])))
                if self.fix_id_list("datastore", ds, root, "IMAGES", expected):
                    writer.add(ds, root)
            writer.flush()
        self.ds_images.clear()

    # -- 10. the VM pass ----------------------------------------------------------------------
    def scan_vms(self) -> None:
        """One streaming pass over the VMs that are not DONE, aggregating what later checks
        compare with: host VMs/CPU/memory, image users, vnet leases, quota usage."""
        if "vm_pool" not in self.tables:
            return
        rows = self.backend.stream(f"SELECT oid, body FROM vm_pool WHERE state <> {DONE}")
        for oid_value, body in rows:
            oid = int(oid_value)
            try:
                root = parse_xml(str(body))
            except DatabaseError as exc:
                self.problem("vm", oid, f"body is not valid XML ({exc})", False)
                continue
            self._scan_vm(oid, root)

    def _scan_vm(self, oid: int, root: Element) -> None:
        state = int_of(root, "STATE")
        if state == DONE:
            return
        uid, gid = int_of(root, "UID"), int_of(root, "GID")
        tmpl = root.find("TEMPLATE")
        if tmpl is None:
            tmpl = etree.Element("TEMPLATE")
        cpu = _num(tmpl.findtext("CPU"))
        memory = int(_num(tmpl.findtext("MEMORY")))

        if state in ON_HOST_STATES:
            records = root.findall("HISTORY_RECORDS/HISTORY")
            if records:
                hid = int_of(records[-1], "HID")
                if hid >= 0:
                    if hid not in self.hosts:
                        self.problem("vm", oid, f"runs on host {hid}, which does not exist", False)
                    self.host_vms[hid].append(oid)
                    self.host_cpu[hid] += cpu
                    self.host_mem[hid] += memory

        system_disk = 0
        used_images: set[int] = set()
        self_clones: list[tuple[int, int]] = []
        for disk in tmpl.iterfind("DISK"):
            size = int_of(disk, "SIZE", 0)
            snaps = int_of(disk, "DISK_SNAPSHOT_TOTAL_SIZE", 0)
            image_text = text_of(disk, "IMAGE_ID")
            if not image_text:
                if text_of(disk, "TYPE").lower() in ("fs", "swap"):
                    system_disk += size
                continue
            try:
                image = int(image_text)
            except ValueError:
                continue
            if image not in self.images:
                self.problem("vm", oid, f"uses image {image}, which does not exist", False)
            used_images.add(image)
            clone = text_of(disk, "CLONE").upper() == "YES"
            target = text_of(disk, "CLONE_TARGET" if clone else "LN_TARGET").upper()
            if target == "SYSTEM":
                system_disk += size + snaps
            elif clone and target == "SELF":
                self_clones.append((int_of(disk, "DATASTORE_ID"), size + snaps))
        for image in used_images:
            self.image_vms[image].append(oid)

        networks: dict[int, int] = {}
        for nic in (*tmpl.iterfind("NIC"), *tmpl.iterfind("NIC_ALIAS"), *tmpl.iterfind("PCI")):
            net_text = text_of(nic, "NETWORK_ID")
            if not net_text:
                continue
            try:
                net = int(net_text)
            except ValueError:
                continue
            if net not in self.vnets:
                self.problem("vm", oid, f"NIC uses vnet {net}, which does not exist", False)
                continue
            ar_text = text_of(nic, "AR_ID")
            ip_text = text_of(nic, "IP")
            self.leases[net].append(
                _Lease(
                    int(ar_text) if ar_text.lstrip("-").isdigit() else -1,
                    _mac(text_of(nic, "MAC")),
                    _ip(ip_text) if ip_text else None,
                    VM_BIT | oid,
                )
            )
            networks[net] = networks.get(net, 0) + 1

        running = state in RUNNING_QUOTA_STATES
        for owner, usages in ((uid, self.user_usage), (gid, self.group_usage)):
            if owner < 0:
                continue
            usage = usages[owner]
            usage.cpu += cpu
            usage.memory += memory
            usage.vms += 1
            usage.system_disk += system_disk
            if running:
                usage.running_cpu += cpu
                usage.running_memory += memory
                usage.running_vms += 1
            for net, count in networks.items():
                usage.networks[net] = usage.networks.get(net, 0) + count
            for image in used_images:
                usage.images[image] = usage.images.get(image, 0) + 1
            for ds, size in self_clones:
                usage.add_ds(ds, 0, size)

    def scan_vrouters(self) -> None:
        """Floating IPs of virtual routers are leases owned by the router."""
        for rid, root, _row in self.bodies("vrouter_pool"):
            uid, gid = int_of(root, "UID"), int_of(root, "GID")
            for nic in root.iterfind("TEMPLATE/NIC"):
                if text_of(nic, "FLOATING_IP").upper() != "YES":
                    continue
                net_text = text_of(nic, "NETWORK_ID")
                if not net_text.isdigit():
                    continue
                net = int(net_text)
                ar_text = text_of(nic, "AR_ID")
                ip_text = text_of(nic, "IP")
                self.leases[net].append(
                    _Lease(
                        int(ar_text) if ar_text.isdigit() else -1,
                        _mac(text_of(nic, "MAC")),
                        _ip(ip_text) if ip_text else None,
                        VROUTER_BIT | rid,
                    )
                )
                for owner, usages in ((uid, self.user_usage), (gid, self.group_usage)):
                    if owner >= 0:
                        nets = usages[owner].networks
                        nets[net] = nets.get(net, 0) + 1

    # -- 11. hosts ----------------------------------------------------------------------------
    def check_hosts(self) -> None:
        writer = _Writer(self, "host_pool")
        with self.fixing():
            for hid, root, _row in self.bodies("host_pool"):
                changed = False
                vms = sorted(set(self.host_vms.get(hid, [])))
                cpu = round(self.host_cpu.get(hid, 0.0) * 100)
                mem = self.host_mem.get(hid, 0) * 1024
                for path, value in (
                    ("HOST_SHARE/RUNNING_VMS", len(vms)),
                    ("HOST_SHARE/CPU_USAGE", cpu),
                    ("HOST_SHARE/MEM_USAGE", mem),
                ):
                    stored = text_of(root, path)
                    if stored != str(value):
                        self.problem(
                            "host",
                            hid,
                            f"{path.split('/')[-1]} is {stored or 'missing'}, set to {value}",
                        )
                        set_text(root, path, str(value))
                        changed = True
                if self.fix_id_list("host", hid, root, "VMS", vms):
                    changed = True
                running = set(vms)
                for pci in root.iterfind("HOST_SHARE/PCI_DEVICES/PCI"):
                    vmid = int_of(pci, "VMID")
                    if vmid >= 0 and vmid not in running:
                        self.problem(
                            "host",
                            hid,
                            f"PCI {text_of(pci, 'SHORT_ADDRESS') or text_of(pci, 'ADDRESS')} "
                            f"assigned to VM {vmid}, which is not running there; freed",
                        )
                        set_text(pci, "VMID", "-1")
                        changed = True
                if changed:
                    writer.add(hid, root)
            writer.flush()
        self.host_vms.clear()
        self.host_cpu.clear()
        self.host_mem.clear()

    # -- 12-13. marketplaces ------------------------------------------------------------------
    def check_apps(self) -> None:
        self.markets: dict[int, str] = {}
        for mid, name in self.pages("marketplace_pool", "oid, name"):
            self.markets[int(mid)] = str(name)
        self.market_apps: dict[int, list[int]] = defaultdict(list)
        writer = _Writer(self, "marketplaceapp_pool")
        with self.fixing():
            for aid, root, _row in self.bodies("marketplaceapp_pool"):
                market = self.check_parent(
                    "marketplaceapp", aid, root, "marketplace", self.markets, writer
                )
                if market is not None:
                    self.market_apps[market].append(aid)
                origin = int_of(root, "ORIGIN_ID")
                if int_of(root, "STATE") == 2 and origin >= 0:
                    self.app_clones[origin].append(aid)
            writer.flush()

    def check_markets(self) -> None:
        writer = _Writer(self, "marketplace_pool")
        with self.fixing():
            for mid, root, _row in self.bodies("marketplace_pool"):
                changed = False
                expected = sorted(set(self.market_apps.get(mid, [])))
                if self.fix_id_list("marketplace", mid, root, "MARKETPLACEAPPS", expected):
                    changed = True
                zone = text_of(root, "ZONE_ID")
                if zone in ("", "-1"):
                    self.problem("marketplace", mid, f"ZONE_ID is {zone or 'missing'}, set to 0")
                    set_text(root, "ZONE_ID", "0")
                    changed = True
                if changed:
                    writer.add(mid, root)
            writer.flush()

    # -- 14. images ---------------------------------------------------------------------------
    def check_images(self) -> None:
        writer = _Writer(self, "image_pool")
        with self.fixing():
            for iid, root, _row in self.bodies("image_pool"):
                changed = False
                vms = sorted(set(self.image_vms.get(iid, [])))
                clones = sorted(set(self.clones.get(iid, [])))
                app_clones = sorted(set(self.app_clones.get(iid, [])))
                for path, value in (
                    ("RUNNING_VMS", len(vms)),
                    ("CLONING_OPS", len(clones) + len(app_clones)),
                ):
                    stored = text_of(root, path)
                    if stored != str(value):
                        self.problem(
                            "image", iid, f"{path} is {stored or 'missing'}, set to {value}"
                        )
                        set_text(root, path, str(value))
                        changed = True
                for container, expected in (
                    ("VMS", vms),
                    ("CLONES", clones),
                    ("APP_CLONES", app_clones),
                ):
                    if self.fix_id_list("image", iid, root, container, expected):
                        changed = True
                state = int_of(root, "STATE")
                new = _image_state(
                    state, text_of(root, "PERSISTENT") == "1", bool(vms), bool(clones or app_clones)
                )
                if new != state:
                    self.problem("image", iid, f"STATE is {state}, set to {new}")
                    set_text(root, "STATE", str(new))
                    changed = True
                if changed:
                    writer.add(iid, root)
            writer.flush()
        self.image_vms.clear()

    # -- 15. networks -------------------------------------------------------------------------
    def check_networks(self) -> None:
        for parent, parent_ar, mac, ip, size, child in self.reservations:
            for index in range(size):
                self.leases[parent].append(
                    _Lease(
                        parent_ar,
                        None if mac is None else mac + index,
                        None if ip is None else ip + index,
                        VNET_BIT | child,
                    )
                )
        self.reservations.clear()
        writer = _Writer(self, "network_pool")
        with self.fixing():
            for vid, root, _row in self.bodies("network_pool"):
                if self._check_vnet(vid, root, self.leases.pop(vid, [])):
                    writer.add(vid, root)
            writer.flush()
        self.leases.clear()

    def _check_vnet(self, vid: int, root: Element, leases: list[_Lease]) -> bool:
        changed = False
        ars: list[tuple[int, Element, int | None, int | None, int]] = []
        for ar in root.iterfind("AR_POOL/AR"):
            ip_text = text_of(ar, "IP")
            ars.append(
                (
                    int_of(ar, "AR_ID"),
                    ar,
                    _mac(text_of(ar, "MAC")),
                    _ip(ip_text) if ip_text else None,
                    int_of(ar, "SIZE", 0),
                )
            )
        expected: dict[int, dict[int, int]] = {ar_id: {} for ar_id, *_ in ars}
        by_id = {a[0]: a for a in ars}
        for lease in leases:
            candidates = [by_id[lease.ar_id]] if lease.ar_id in by_id else ars
            placed = False
            for ar_id, _ar, mac, ip, size in candidates:
                if lease.mac is not None and mac is not None:
                    index = lease.mac - mac
                elif lease.ip is not None and ip is not None:
                    index = lease.ip - ip
                else:
                    continue
                if not 0 <= index < size:
                    continue
                if lease.ip is not None and ip is not None and lease.ip != ip + index:
                    self.problem(
                        "vnet",
                        vid,
                        f"AR {ar_id}: {_owner_text(lease.owner)} has IP {_ip_text(lease.ip)} but "
                        f"its MAC gives {_ip_text(ip + index)}",
                        False,
                    )
                other = expected[ar_id].get(index)
                if other is not None and other != lease.owner:
                    self.problem(
                        "vnet",
                        vid,
                        f"AR {ar_id}: lease {index} used by both {_owner_text(other)} and "
                        f"{_owner_text(lease.owner)}",
                        False,
                    )
                expected[ar_id][index] = lease.owner
                placed = True
                break
            if not placed:
                where = _mac_text(lease.mac) if lease.mac is not None else "?"
                self.problem(
                    "vnet",
                    vid,
                    f"{_owner_text(lease.owner)} uses address {where}, which matches no address "
                    f"range",
                    False,
                )
        total = 0
        for ar_id, ar, mac, _ip_start, _size in ars:
            stored = _allocated(text_of(ar, "ALLOCATED"))
            want = expected[ar_id]
            for index, owner in stored.items():
                if owner == HOLD_LEASE:
                    want.setdefault(index, owner)
            if stored != want:
                for index in sorted(set(stored) | set(want)):
                    old, new = stored.get(index), want.get(index)
                    if old == new:
                        continue
                    addr = _mac_text(mac + index) if mac is not None else str(index)
                    if old is None and new is not None:
                        self.problem(
                            "vnet",
                            vid,
                            f"AR {ar_id}: lease {addr} used by {_owner_text(new)} is not "
                            f"allocated, added",
                        )
                    elif new is None and old is not None:
                        self.problem(
                            "vnet",
                            vid,
                            f"AR {ar_id}: lease {addr} allocated to {_owner_text(old)}, which "
                            f"does not use it, freed",
                        )
                    elif old is not None and new is not None:
                        self.problem(
                            "vnet",
                            vid,
                            f"AR {ar_id}: lease {addr} allocated to {_owner_text(old)} but used "
                            f"by {_owner_text(new)}, fixed",
                        )
                value = " ".join(f"{i} {want[i]}" for i in sorted(want))
                node = ar.find("ALLOCATED")
                if node is None:
                    node = etree.SubElement(ar, "ALLOCATED")
                node.text = etree.CDATA(value)
                changed = True
            total += len(want)
        stored_used = text_of(root, "USED_LEASES")
        if stored_used != str(total):
            self.problem("vnet", vid, f"USED_LEASES is {stored_used or 'missing'}, set to {total}")
            set_text(root, "USED_LEASES", str(total))
            changed = True
        return changed

    # -- 16. quotas ---------------------------------------------------------------------------
    def check_quotas(self, kind: str) -> None:
        """Recompute the usage counters of ``user_quotas``/``group_quotas`` (row 0 is kept)."""
        pool, table, key = f"{kind}_pool", f"{kind}_quotas", f"{kind}_oid"
        if pool not in self.tables or table not in self.tables:
            return
        usages = self.user_usage if kind == "user" else self.group_usage
        updates = _Writer(self, table, key=key)
        inserts: list[tuple[int, str]] = []
        with self.fixing():
            last = -(2**62)
            while True:
                rows = self.backend.query(
                    f"SELECT p.oid, q.body FROM {pool} p LEFT JOIN {table} q ON q.{key} = p.oid "
                    f"WHERE p.oid > ? ORDER BY p.oid LIMIT {PAGE}",
                    (last,),
                )
                if not rows:
                    break
                last = int(rows[-1][0])
                for oid_value, body in rows:
                    oid = int(oid_value)
                    if oid == 0:
                        continue
                    usage = usages.get(oid, _Usage())
                    if body is None:
                        if _empty(usage):
                            continue
                        root = parse_xml(_empty_quotas(oid))
                        self.problem(kind, oid, f"no {table} row, created")
                        self._fix_quota(kind, oid, root, usage)
                        if not self.dry:
                            inserts.append((oid, to_xml(root)))
                        continue
                    try:
                        root = parse_xml(str(body))
                    except DatabaseError as exc:
                        self.problem(kind, oid, f"{table} body is not valid XML ({exc})", False)
                        continue
                    if self._fix_quota(kind, oid, root, usage):
                        updates.add(oid, root)
            updates.flush()
            if inserts:
                self.backend.executemany(
                    f"INSERT INTO {table} ({key}, body) VALUES (?, ?)", inserts
                )
        usages.clear()

    def _fix_quota(self, kind: str, oid: int, root: Element, usage: _Usage) -> bool:
        changed = False

        def put(node: Element, tag: str, value: str, what: str, cpu: bool = False) -> None:
            nonlocal changed
            stored = text_of(node, tag)
            same = (
                abs(_num(stored) - _num(value)) < 0.005
                if cpu and stored
                else stored == value or (stored != "" and _num(stored) == _num(value))
            )
            if not same:
                self.problem(kind, oid, f"{what} {tag} is {stored or 'missing'}, set to {value}")
                set_text(node, tag, value)
                changed = True

        def section(tag: str) -> Element:
            node = root.find(tag)
            if node is None:
                node = etree.SubElement(root, tag)
            return node

        # VM
        vm_section = section("VM_QUOTA")
        vm = vm_section.find("VM")
        if vm is None and not _empty_vm(usage):
            vm = etree.SubElement(vm_section, "VM")
            for name in _VM_QUOTA_KEYS:
                etree.SubElement(vm, name).text = "-1"
                etree.SubElement(vm, f"{name}_USED").text = "0"
        if vm is not None:
            values = {
                "CPU": _fmt(usage.cpu),
                "MEMORY": str(usage.memory),
                "RUNNING_CPU": _fmt(usage.running_cpu),
                "RUNNING_MEMORY": str(usage.running_memory),
                "RUNNING_VMS": str(usage.running_vms),
                "SYSTEM_DISK_SIZE": str(usage.system_disk),
                "VMS": str(usage.vms),
            }
            for name, value in values.items():
                put(vm, f"{name}_USED", value, "VM quota", cpu=name.endswith("CPU"))
        # per-object quotas
        for container, entry_tag, counts in (
            ("NETWORK_QUOTA", "NETWORK", {k: [v] for k, v in usage.networks.items()}),
            ("IMAGE_QUOTA", "IMAGE", {k: [v] for k, v in usage.images.items()}),
            ("DATASTORE_QUOTA", "DATASTORE", dict(usage.datastores.items())),
        ):
            fields = _ENTRY_FIELDS[entry_tag]
            holder = section(container)
            seen: set[int] = set()
            for entry in holder.iterfind(entry_tag):
                try:
                    eid = int(text_of(entry, "ID"))
                except ValueError:
                    continue
                seen.add(eid)
                values_list = counts.get(eid, [0] * len(fields))
                for (_limit, used), count in zip(fields, values_list, strict=True):
                    put(entry, used, str(count), f"{entry_tag} {eid} quota")
            for eid in sorted(set(counts) - seen):
                values_list = counts[eid]
                if not any(values_list):
                    continue
                self.problem(kind, oid, f"{entry_tag} {eid} quota missing, added")
                entry = etree.SubElement(holder, entry_tag)
                etree.SubElement(entry, "ID").text = str(eid)
                for (limit, used), count in zip(fields, values_list, strict=True):
                    etree.SubElement(entry, limit).text = "-1"
                    etree.SubElement(entry, used).text = str(count)
                changed = True
        return changed

    # -- 17. history --------------------------------------------------------------------------
    def check_history(self) -> None:
        """End times of closed history records (reference §5.2 #13, with HEAD's repair of
        earlier records).  Only the suspect rows are read: records with ``etime`` 0 that are
        not their VM's last, or are the last of a DONE VM."""
        if "history" not in self.tables or "vm_pool" not in self.tables:
            return
        suspects = self.backend.query(
            "SELECT h.vid, h.seq, m.last_seq, v.state FROM history h "
            "JOIN (SELECT vid, MAX(seq) AS last_seq FROM history GROUP BY vid) m "
            "ON m.vid = h.vid LEFT JOIN vm_pool v ON v.oid = h.vid "
            f"WHERE h.etime = 0 AND (h.seq < m.last_seq OR v.state = {DONE}) "
            "ORDER BY h.vid, h.seq"
        )
        records = _Writer(self, "history", ["etime"], key=("vid", "seq"))
        vm_bodies = _Writer(self, "vm_pool")
        with self.fixing():
            for vid, seq, last_seq, _state in suspects:
                vid, seq = int(vid), int(seq)
                body = self.backend.scalar(
                    "SELECT body FROM history WHERE vid = ? AND seq = ?", (vid, seq)
                )
                try:
                    record = parse_xml(str(body))
                except DatabaseError as exc:
                    self.problem("vm", vid, f"history record {seq} is not valid XML ({exc})", False)
                    continue
                if seq < int(last_seq):
                    end = self._earlier_record_end(vid, seq, record)
                else:
                    end = self._last_record_end(vid, seq, record, vm_bodies)
                if end:
                    records.add((vid, seq), record, end)
            records.flush()
            vm_bodies.flush()

    def _earlier_record_end(self, vid: int, seq: int, record: Element) -> int:
        """A record before the VM's last has ended: take its epilog or running end time."""
        for source in ("EETIME", "RETIME"):
            end = int_of(record, source, 0)
            if end > 0:
                self.problem("vm", vid, f"history record {seq} has no end time, set to {source}")
                set_text(record, "ETIME", str(end))
                return end
        self.problem(
            "vm", vid, f"history record {seq} has no end time and no EETIME or RETIME", False
        )
        return 0

    def _last_record_end(self, vid: int, seq: int, record: Element, vm_bodies: _Writer) -> int:
        """The last record of a DONE VM ends when the VM did; the VM body holds a copy."""
        raw = self.backend.scalar("SELECT body FROM vm_pool WHERE oid = ?", (vid,))
        try:
            vm = parse_xml(str(raw))
        except DatabaseError as exc:
            self.problem("vm", vid, f"body is not valid XML ({exc})", False)
            return 0
        end = int_of(vm, "ETIME", 0)
        if end <= 0:
            self.problem(
                "vm", vid, f"DONE, but neither it nor history record {seq} has an end time", False
            )
            return 0
        self.problem("vm", vid, f"DONE, but history record {seq} has no end time, set to {end}")
        copies = [record]
        embedded = vm.find("HISTORY_RECORDS/HISTORY")
        open_copy = embedded is not None and int_of(embedded, "ETIME", 0) == 0
        if embedded is not None and open_copy and int_of(embedded, "SEQ") == seq:
            copies.append(embedded)
        for copy in copies:
            for tag in ("ETIME", "RETIME", "ESTIME", "EETIME"):
                if int_of(copy, tag, 0) == 0:
                    set_text(copy, tag, str(end))
        if len(copies) > 1:
            vm_bodies.add(vid, vm)
        return end


_VM_QUOTA_KEYS = (
    "CPU",
    "MEMORY",
    "RUNNING_CPU",
    "RUNNING_MEMORY",
    "RUNNING_VMS",
    "SYSTEM_DISK_SIZE",
    "VMS",
)
_ENTRY_FIELDS: dict[str, list[tuple[str, str]]] = {
    "NETWORK": [("LEASES", "LEASES_USED")],
    "IMAGE": [("RVMS", "RVMS_USED")],
    "DATASTORE": [("IMAGES", "IMAGES_USED"), ("SIZE", "SIZE_USED")],
}


def _empty_vm(usage: _Usage) -> bool:
    return usage.vms == 0 and usage.system_disk == 0


def _empty(usage: _Usage) -> bool:
    return (
        _empty_vm(usage)
        and not any(usage.networks.values())
        and not any(usage.images.values())
        and not any(any(v) for v in usage.datastores.values())
    )


def _empty_quotas(oid: int) -> str:
    return (
        f"<QUOTAS><ID>{oid}</ID><DATASTORE_QUOTA/><NETWORK_QUOTA/><VM_QUOTA/>"
        "<IMAGE_QUOTA/></QUOTAS>"
    )


def _allocated(text: str) -> dict[int, int]:
    """``ALLOCATED`` (``index magic index magic …``) as index → owner magic."""
    parts = text.split()
    out: dict[int, int] = {}
    for i in range(0, len(parts) - 1, 2):
        try:
            out[int(parts[i])] = int(parts[i + 1])
        except ValueError:
            continue
    return out


def _image_state(state: int, persistent: bool, used: bool, cloning: bool) -> int:
    """The state an image should be in given its users (only READY/USED/CLONE/USED_PERS move)."""
    if state not in (IMG_READY, IMG_USED, IMG_CLONE, IMG_USED_PERS):
        return state
    if persistent:
        if used:
            return IMG_USED_PERS
        if cloning:
            return IMG_CLONE
        return IMG_READY
    if used or cloning:
        return IMG_USED
    return IMG_READY
