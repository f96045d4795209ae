"""The XML bodies of OpenNebula objects as oned 6.10 writes them (xmlrpc.md §5, the 6.10 XSDs).

Bodies are built and edited as ElementTree elements and written by ``serialize``, which does
what ElementTree cannot: values inside ``TEMPLATE`` (and the top-level fields oned writes that
way, ``CDATA_PATHS``) go out as ``<![CDATA[...]]>``, everything else escaped, no whitespace
between elements.  ``TEMPLATE`` children are written in alphabetical order (oned keeps them in a
sorted multimap), vector members too.

The same text is what the embedded store keeps in the ``body`` column, so ``onedb`` (fsck,
upgrades) reads exactly what a real oned would have written.  Two objects differ between the
stored and the ``info`` form, as in oned: a virtual network's address ranges are stored with
``ALLOCATED`` and shown by ``info`` with ``USED_LEASES``/``LEASES`` (``vnet_info_form``), and
users/groups get their quota sections from the quota tables (``with_quotas``).
"""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence

from onetools.one.template import Template

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

Element = ET.Element

#: Top-level fields (paths below the root; ``X/*`` = every child of X) that oned writes as
#: CDATA.  Everything below ``TEMPLATE`` is CDATA for every object.
CDATA_PATHS: dict[str, frozenset[str]] = {
    "HOST": frozenset({"IM_MAD", "VM_MAD", "HOST_SHARE/DATASTORES/*"}),
    "DATASTORE": frozenset({"DS_MAD", "TM_MAD", "BASE_PATH"}),
    "VNET": frozenset({"BRIDGE", "BRIDGE_TYPE", "STATE", "PREV_STATE", "VN_MAD", "AR_POOL/AR/*"}),
    "IMAGE": frozenset({"SOURCE", "PATH", "FORMAT", "FS", "SNAPSHOTS/*"}),
    "VM": frozenset({"USER_TEMPLATE/*"}),
    "MARKETPLACE": frozenset({"MARKET_MAD", "ZONE_ID"}),
    "MARKETPLACEAPP": frozenset(
        {
            "ZONE_ID",
            "ORIGIN_ID",
            "SOURCE",
            "MD5",
            "DESCRIPTION",
            "VERSION",
            "FORMAT",
            "APPTEMPLATE64",
        }
    ),
}

#: ``DEFAULT_UMASK = 177``: owner USE and MANAGE only.
DEFAULT_PERMISSIONS: tuple[int, ...] = (1, 1, 0, 0, 0, 0, 0, 0, 0)
#: What oned gives its own first objects (default datastores and markets): ``um- u-- u--``.
SYSTEM_PERMISSIONS: tuple[int, ...] = (1, 1, 0, 1, 0, 0, 1, 0, 0)
PERMISSION_FIELDS = (
    "OWNER_U",
    "OWNER_M",
    "OWNER_A",
    "GROUP_U",
    "GROUP_M",
    "GROUP_A",
    "OTHER_U",
    "OTHER_M",
    "OTHER_A",
)
BASE_PATH = "/var/lib/one//datastores"


# ---- writing -------------------------------------------------------------------------------
def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cdata(text: str) -> str:
    # "]]>" cannot appear inside a CDATA section: close and reopen around the ">".
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def serialize(root: Element) -> str:
    """The element as oned writes it (see the module docstring)."""
    cdata_paths = CDATA_PATHS.get(root.tag, frozenset())
    parts: list[str] = []

    def walk(element: Element, path: str, parent: str, in_template: bool) -> None:
        tag = element.tag
        if len(element):
            parts.append(f"<{tag}>")
            for child in element:
                walk(child, f"{path}/{child.tag}" if path else child.tag, path, in_template)
            parts.append(f"</{tag}>")
            return
        text = element.text or ""
        if path == "TEMPLATE" or tag == "LEASES":  # empty containers, not values
            parts.append(f"<{tag}></{tag}>")
        elif in_template or path in cdata_paths or f"{parent}/*" in cdata_paths:
            parts.append(f"<{tag}>{_cdata(text)}</{tag}>")
        else:
            parts.append(f"<{tag}>{_escape(text)}</{tag}>")

    parts.append(f"<{root.tag}>")
    for child in root:
        walk(child, child.tag, "", child.tag == "TEMPLATE")
    parts.append(f"</{root.tag}>")
    return "".join(parts)


def parse_body(text: str) -> Element:
    """A stored body as an element tree (CDATA sections become plain text)."""
    return ET.fromstring(text)


def sub(parent: Element, tag: str, text: object = None) -> Element:
    """Append ``<tag>text</tag>`` to ``parent``."""
    element = ET.SubElement(parent, tag)
    if text is not None:
        element.text = str(text)
    return element


def set_text(root: Element, path: str, text: object) -> None:
    """Set an existing element's text (the element must exist: bodies have a fixed shape)."""
    element = root.find(path)
    if element is None:
        raise KeyError(f"{root.tag} has no {path}")
    element.text = str(text)


def ids_element(parent: Element, tag: str, ids: Iterable[int]) -> Element:
    """A collection ``<tag><ID>…</ID>…</tag>`` appended to ``parent``."""
    element = sub(parent, tag)
    for oid in ids:
        sub(element, "ID", oid)
    return element


def get_ids(root: Element, tag: str) -> list[int]:
    """The ids of the collection ``tag`` (``HOSTS``, ``CLUSTERS``...)."""
    element = root.find(tag)
    return [] if element is None else [int(child.text or -1) for child in element.iter("ID")]


def set_ids(root: Element, tag: str, ids: Iterable[int]) -> None:
    """Replace the ``<ID>`` children of the collection ``tag`` (sorted, without duplicates)."""
    element = root.find(tag)
    if element is None:
        raise KeyError(f"{root.tag} has no {tag}")
    for child in list(element):
        element.remove(child)
    for oid in sorted(set(ids)):
        sub(element, "ID", oid)


def permissions_element(parent: Element, bits: Sequence[int]) -> Element:
    """``<PERMISSIONS>`` with the nine bits in oned's order."""
    element = sub(parent, "PERMISSIONS")
    for field, bit in zip(PERMISSION_FIELDS, bits, strict=True):
        sub(element, field, bit)
    return element


def get_permissions(root: Element) -> list[int]:
    """The nine permission bits, or ``[]`` for objects without PERMISSIONS."""
    element = root.find("PERMISSIONS")
    if element is None:
        return []
    return [int(element.findtext(field) or 0) for field in PERMISSION_FIELDS]


def template_element(parent: Element, template: Template, tag: str = "TEMPLATE") -> Element:
    """``<TEMPLATE>`` with the attributes in oned's (alphabetical) order."""
    element = sub(parent, tag)
    fill_template(element, template)
    return element


def fill_template(element: Element, template: Template) -> None:
    """Replace ``element``'s children with the template's attributes, oned's order."""
    for child in list(element):
        element.remove(child)
    for name, value in template.sorted():
        if isinstance(value, list):
            vector = sub(element, name)
            for key, item in value:
                sub(vector, key, item)
        else:
            sub(element, name, value)


def template_of(root: Element, tag: str = "TEMPLATE") -> Template:
    """The object's template as a ``Template`` (document order)."""
    element = root.find(tag)
    template = Template()
    if element is None:
        return template
    for child in element:
        if len(child):
            template.add(
                child.tag, [(sub_element.tag, sub_element.text or "") for sub_element in child]
            )
        else:
            template.add(child.tag, child.text or "")
    return template


def replace_template(root: Element, template: Template, tag: str = "TEMPLATE") -> None:
    """Replace the object's ``<TEMPLATE>`` contents."""
    element = root.find(tag)
    if element is None:
        raise KeyError(f"{root.tag} has no {tag}")
    fill_template(element, template)


def _owned(
    tag: str, oid: int, uid: int, gid: int, uname: str, gname: str, name: str | None
) -> Element:
    root = ET.Element(tag)
    sub(root, "ID", oid)
    sub(root, "UID", uid)
    sub(root, "GID", gid)
    sub(root, "UNAME", uname)
    sub(root, "GNAME", gname)
    if name is not None:
        sub(root, "NAME", name)
    return root


class Owner:
    """Who owns a new object, and its permission bits."""

    __slots__ = ("gid", "gname", "permissions", "uid", "uname")

    def __init__(
        self,
        uid: int = 0,
        gid: int = 0,
        uname: str = "oneadmin",
        gname: str = "oneadmin",
        permissions: Sequence[int] = DEFAULT_PERMISSIONS,
    ) -> None:
        self.uid, self.gid, self.uname, self.gname = uid, gid, uname, gname
        self.permissions = tuple(permissions)


# ---- locks ---------------------------------------------------------------------------------
def set_lock(root: Element, lock: tuple[int, int, int, int] | None) -> None:
    """Put (or remove, with None) ``<LOCK>`` where oned writes it for this object: after
    PERMISSIONS in a DOCUMENT, after GNAME in a MARKETPLACEAPP, after NAME elsewhere."""
    old = root.find("LOCK")
    if old is not None:
        root.remove(old)
    if lock is None:
        return
    anchor = {"DOCUMENT": "PERMISSIONS", "MARKETPLACEAPP": "GNAME"}.get(root.tag, "NAME")
    tags = [child.tag for child in root]
    element = ET.Element("LOCK")
    for field, value in zip(("LOCKED", "OWNER", "TIME", "REQ_ID"), lock, strict=True):
        sub(element, field, value)
    root.insert(tags.index(anchor) + 1, element)


def get_lock(root: Element) -> tuple[int, int, int, int] | None:
    """``(LOCKED, OWNER, TIME, REQ_ID)`` of a locked object, else None."""
    element = root.find("LOCK")
    if element is None:
        return None
    values = [int(element.findtext(f) or 0) for f in ("LOCKED", "OWNER", "TIME", "REQ_ID")]
    return values[0], values[1], values[2], values[3]


# ---- builders, one per object --------------------------------------------------------------
def cluster(oid: int, name: str, template: Template) -> Element:
    """A new ``<CLUSTER>`` (xmlrpc.md §5.1), with empty collections."""
    root = ET.Element("CLUSTER")
    sub(root, "ID", oid)
    sub(root, "NAME", name)
    ids_element(root, "HOSTS", [])
    ids_element(root, "DATASTORES", [])
    ids_element(root, "VNETS", [])
    template_element(root, template)
    return root


def host(
    oid: int,
    name: str,
    im_mad: str,
    vm_mad: str,
    cluster_id: int,
    cluster_name: str,
    template: Template,
) -> Element:
    """A new ``<HOST>`` in state INIT (§5.2), not monitored yet."""
    root = ET.Element("HOST")
    sub(root, "ID", oid)
    sub(root, "NAME", name)
    sub(root, "STATE", 0)
    sub(root, "PREV_STATE", 0)
    sub(root, "IM_MAD", im_mad)
    sub(root, "VM_MAD", vm_mad)
    sub(root, "CLUSTER_ID", cluster_id)
    sub(root, "CLUSTER", cluster_name)
    share = sub(root, "HOST_SHARE")
    for field in ("MEM_USAGE", "CPU_USAGE", "TOTAL_MEM", "TOTAL_CPU", "MAX_MEM", "MAX_CPU"):
        sub(share, field, 0)
    sub(share, "RUNNING_VMS", 0)
    sub(share, "VMS_THREAD", 1)
    datastores = sub(share, "DATASTORES")
    for field in ("DISK_USAGE", "FREE_DISK", "MAX_DISK", "USED_DISK"):
        sub(datastores, field, 0)
    sub(share, "PCI_DEVICES")
    sub(share, "NUMA_NODES")
    ids_element(root, "VMS", [])
    template_element(root, template)
    sub(root, "MONITORING")
    return root


DATASTORE_TYPES = {"IMAGE_DS": 0, "SYSTEM_DS": 1, "FILE_DS": 2, "BACKUP_DS": 3}
DISK_TYPES = {
    "FILE": 0,
    "CD_ROM": 1,
    "BLOCK": 2,
    "RBD": 3,
    "RBD_CDROM": 4,
    "GLUSTER": 5,
    "GLUSTER_CDROM": 6,
    "SHEEPDOG": 7,
    "SHEEPDOG_CDROM": 8,
    "ISCSI": 9,
}


def datastore(
    oid: int,
    name: str,
    owner: Owner,
    ds_mad: str,
    tm_mad: str,
    ds_type: int,
    disk_type: int,
    cluster_ids: Sequence[int],
    template: Template,
) -> Element:
    """A new ``<DATASTORE>`` (§5.3); the caller completed the template."""
    root = _owned("DATASTORE", oid, owner.uid, owner.gid, owner.uname, owner.gname, name)
    permissions_element(root, owner.permissions)
    sub(root, "DS_MAD", ds_mad)
    sub(root, "TM_MAD", tm_mad)
    sub(root, "BASE_PATH", f"{BASE_PATH}/{oid}")
    sub(root, "TYPE", ds_type)
    sub(root, "DISK_TYPE", disk_type)
    sub(root, "STATE", 0)
    ids_element(root, "CLUSTERS", cluster_ids)
    for field in ("TOTAL_MB", "FREE_MB", "USED_MB"):
        sub(root, field, 0)
    ids_element(root, "IMAGES", [])
    template_element(root, template)
    return root


def vnet(
    oid: int,
    name: str,
    owner: Owner,
    cluster_ids: Sequence[int],
    fields: dict[str, str],
    template: Template,
    address_ranges: Sequence[list[tuple[str, str]]],
) -> Element:
    """``fields``: BRIDGE, BRIDGE_TYPE, STATE, PREV_STATE, VN_MAD, PHYDEV and, when the caller
    gave them, VLAN_ID/OUTER_VLAN_ID; the ``*_AUTOMATIC`` flags."""
    root = _owned("VNET", oid, owner.uid, owner.gid, owner.uname, owner.gname, name)
    permissions_element(root, owner.permissions)
    ids_element(root, "CLUSTERS", cluster_ids)
    for field in ("BRIDGE", "BRIDGE_TYPE", "STATE", "PREV_STATE"):
        sub(root, field, fields[field])
    sub(root, "PARENT_NETWORK_ID", fields.get("PARENT_NETWORK_ID", ""))
    sub(root, "VN_MAD", fields["VN_MAD"])
    sub(root, "PHYDEV", fields.get("PHYDEV", ""))
    sub(root, "VLAN_ID", fields.get("VLAN_ID", ""))
    sub(root, "OUTER_VLAN_ID", fields.get("OUTER_VLAN_ID", ""))
    sub(root, "VLAN_ID_AUTOMATIC", fields.get("VLAN_ID_AUTOMATIC", "0"))
    sub(root, "OUTER_VLAN_ID_AUTOMATIC", fields.get("OUTER_VLAN_ID_AUTOMATIC", "0"))
    sub(root, "USED_LEASES", 0)
    for collection in ("VROUTERS", "UPDATED_VMS", "OUTDATED_VMS", "UPDATING_VMS", "ERROR_VMS"):
        ids_element(root, collection, [])
    template_element(root, template)
    pool = sub(root, "AR_POOL")
    for ar in address_ranges:
        add_address_range(pool, ar)
    return root


#: The members of a stored ``<AR>`` (vnet_pool.xsd), in the order oned writes them.
AR_STORED_FIELDS = (
    "ALLOCATED",
    "AR_ID",
    "GLOBAL_PREFIX",
    "IP",
    "MAC",
    "PARENT_NETWORK_AR_ID",
    "SIZE",
    "TYPE",
    "ULA_PREFIX",
    "VN_MAD",
)
AR_TYPES = ("ETHER", "IP4", "IP6", "IP6_STATIC", "IP4_6", "IP4_6_STATIC")
MAC_PREFIX = 0x0200


def address_range(values: list[tuple[str, str]], ar_id: int) -> list[tuple[str, str]]:
    """Validate an ``AR = [...]`` vector and complete it as oned stores it (AR_ID, a MAC
    derived from the IP with oned's default prefix ``02:00``).  Raises ``ValueError`` with
    oned's reason."""
    import secrets

    given = {key: value for key, value in values}
    ar_type = given.get("TYPE", "").upper()
    if ar_type not in AR_TYPES:
        raise ValueError("Unknown or missing TYPE in Address Range")
    try:
        size = int(given.get("SIZE", ""))
    except ValueError:
        raise ValueError("Wrong SIZE for Address Range") from None
    if size <= 0:
        raise ValueError("Wrong SIZE for Address Range")
    result: dict[str, str] = {"AR_ID": str(ar_id), "TYPE": ar_type, "SIZE": str(size)}
    ip_value = given.get("IP", "")
    if ar_type in ("IP4", "IP4_6", "IP4_6_STATIC"):
        try:
            ip = ipaddress.IPv4Address(ip_value)
        except ValueError:
            raise ValueError("Wrong or empty IP in Address Range") from None
        if int(ip) + size - 1 > 0xFFFFFFFF:
            raise ValueError("Address Range exceeds the IPv4 space")
        result["IP"] = str(ip)
    mac = given.get("MAC", "")
    if mac:
        try:
            mac_value = int(mac.replace(":", ""), 16)
        except ValueError:
            raise ValueError("Wrong MAC in Address Range") from None
    elif "IP" in result:
        mac_value = (MAC_PREFIX << 32) | int(ipaddress.IPv4Address(result["IP"]))
    else:
        mac_value = (MAC_PREFIX << 32) | secrets.randbits(32)
    result["MAC"] = format_mac(mac_value)
    for key in ("GLOBAL_PREFIX", "ULA_PREFIX", "VN_MAD", "PARENT_NETWORK_AR_ID"):
        if given.get(key):
            result[key] = given[key]
    result["ALLOCATED"] = ""
    return [(key, result[key]) for key in AR_STORED_FIELDS if key in result]


def format_mac(value: int) -> str:
    """``0x02000a000001`` → ``02:00:0a:00:00:01``."""
    text = f"{value:012x}"
    return ":".join(text[i : i + 2] for i in range(0, 12, 2))


def add_address_range(pool: Element, values: list[tuple[str, str]]) -> None:
    """Append an ``<AR>`` (stored form) to ``AR_POOL``."""
    element = sub(pool, "AR")
    for key, value in values:
        sub(element, key, value)


def vnet_info_form(root: Element) -> Element:
    """The ``info`` form of a stored VNET: each AR without ``ALLOCATED``, with ``MAC_END``,
    ``IP_END``, ``USED_LEASES`` and ``LEASES`` (vnet.xsd)."""
    for ar in root.iterfind("AR_POOL/AR"):
        allocated = ar.findtext("ALLOCATED") or ""
        node = ar.find("ALLOCATED")
        if node is not None:
            ar.remove(node)
        size = int(ar.findtext("SIZE") or 0)
        mac_text = ar.findtext("MAC") or ""
        if mac_text:
            sub(ar, "MAC_END", format_mac(int(mac_text.replace(":", ""), 16) + size - 1))
        ip_text = ar.findtext("IP")
        if ip_text:
            sub(
                ar,
                "IP_END",
                str(ipaddress.IPv4Address(int(ipaddress.IPv4Address(ip_text)) + size - 1)),
            )
        used = len(allocated.split()) // 2
        sub(ar, "USED_LEASES", used)
        sub(ar, "LEASES")
    return root


IMAGE_TYPES = {
    "OS": 0,
    "CDROM": 1,
    "DATABLOCK": 2,
    "KERNEL": 3,
    "RAMDISK": 4,
    "CONTEXT": 5,
    "BACKUP": 6,
}


def image(
    oid: int,
    name: str,
    owner: Owner,
    fields: dict[str, Any],
    datastore_id: int,
    datastore_name: str,
    template: Template,
) -> Element:
    """``fields``: TYPE, DISK_TYPE, PERSISTENT, REGTIME, SOURCE, PATH, FORMAT, FS, SIZE,
    STATE, PREV_STATE."""
    root = _owned("IMAGE", oid, owner.uid, owner.gid, owner.uname, owner.gname, name)
    permissions_element(root, owner.permissions)
    for field in ("TYPE", "DISK_TYPE", "PERSISTENT", "REGTIME", "SOURCE", "PATH", "FORMAT"):
        sub(root, field, fields[field])
    sub(root, "FS", fields.get("FS", ""))
    sub(root, "SIZE", fields["SIZE"])
    sub(root, "STATE", fields["STATE"])
    sub(root, "PREV_STATE", fields.get("PREV_STATE", 0))
    sub(root, "RUNNING_VMS", 0)
    sub(root, "CLONING_OPS", 0)
    sub(root, "CLONING_ID", -1)
    sub(root, "TARGET_SNAPSHOT", -1)
    sub(root, "DATASTORE_ID", datastore_id)
    sub(root, "DATASTORE", datastore_name)
    for collection in ("VMS", "CLONES", "APP_CLONES"):
        ids_element(root, collection, [])
    template_element(root, template)
    snapshots = sub(root, "SNAPSHOTS")
    sub(snapshots, "ALLOW_ORPHANS", "NO")
    sub(snapshots, "CURRENT_BASE", -1)
    sub(snapshots, "NEXT_SNAPSHOT", 0)
    sub(root, "BACKUP_INCREMENTS")
    ids_element(root, "BACKUP_DISK_IDS", [])
    return root


def vm_template(oid: int, name: str, owner: Owner, regtime: int, template: Template) -> Element:
    """A new ``<VMTEMPLATE>`` (§5.6)."""
    root = _owned("VMTEMPLATE", oid, owner.uid, owner.gid, owner.uname, owner.gname, name)
    permissions_element(root, owner.permissions)
    sub(root, "REGTIME", regtime)
    template_element(root, template)
    return root


def vm(
    oid: int,
    name: str,
    owner: Owner,
    state: int,
    stime: int,
    template: Template,
    user_template: Template,
) -> Element:
    """A new ``<VM>`` as oned writes it after ``one.vm.allocate`` (vm.xsd order): LCM_STATE
    0, no history, the completed TEMPLATE (DISK/NIC filled in by the caller) and what the
    template held besides oned's attributes in USER_TEMPLATE."""
    root = _owned("VM", oid, owner.uid, owner.gid, owner.uname, owner.gname, name)
    permissions_element(root, owner.permissions)
    for field, value in (
        ("LAST_POLL", 0),
        ("STATE", state),
        ("LCM_STATE", 0),
        ("PREV_STATE", state),
        ("PREV_LCM_STATE", 0),
        ("RESCHED", 0),
        ("STIME", stime),
        ("ETIME", 0),
        ("DEPLOY_ID", ""),
    ):
        sub(root, field, value)
    sub(root, "MONITORING")
    sub(root, "SCHED_ACTIONS")
    template_element(root, template)
    template_element(root, user_template, "USER_TEMPLATE")
    sub(root, "HISTORY_RECORDS")
    backups = sub(root, "BACKUPS")
    sub(backups, "BACKUP_CONFIG")
    ids_element(backups, "BACKUP_IDS", [])
    return root


def vm_history(
    root: Element, seq: int, host_id: int, host_name: str, cluster_id: int, fields: dict[str, Any]
) -> Element:
    """Append a ``<HISTORY>`` (a placement on a host) to the VM's HISTORY_RECORDS; ``fields``:
    VM_MAD, TM_MAD, DS_ID, STIME, UID, GID (the rest start at 0/-1 as oned writes them)."""
    records = root.find("HISTORY_RECORDS")
    if records is None:
        records = sub(root, "HISTORY_RECORDS")
    record = sub(records, "HISTORY")
    stime = fields["STIME"]
    for field, value in (
        ("OID", root.findtext("ID")),
        ("SEQ", seq),
        ("HOSTNAME", host_name),
        ("HID", host_id),
        ("CID", cluster_id),
        ("STIME", stime),
        ("ETIME", 0),
        ("VM_MAD", fields["VM_MAD"]),
        ("TM_MAD", fields["TM_MAD"]),
        ("DS_ID", fields["DS_ID"]),
        ("PSTIME", stime),
        ("PETIME", stime),
        ("RSTIME", stime),
        ("RETIME", 0),
        ("ESTIME", 0),
        ("EETIME", 0),
        ("ACTION", 0),
        ("UID", fields.get("UID", -1)),
        ("GID", fields.get("GID", -1)),
        ("REQUEST_ID", -1),
    ):
        sub(record, field, value)
    return record


def vn_template(oid: int, name: str, owner: Owner, regtime: int, template: Template) -> Element:
    """A new ``<VNTEMPLATE>`` (§5.7)."""
    root = _owned("VNTEMPLATE", oid, owner.uid, owner.gid, owner.uname, owner.gname, name)
    permissions_element(root, owner.permissions)
    sub(root, "REGTIME", regtime)
    template_element(root, template)
    return root


def document(oid: int, name: str, owner: Owner, doc_type: int, template: Template) -> Element:
    """A new ``<DOCUMENT>`` (§5.8): PERMISSIONS before any LOCK."""
    root = _owned("DOCUMENT", oid, owner.uid, owner.gid, owner.uname, owner.gname, name)
    sub(root, "TYPE", doc_type)
    permissions_element(root, owner.permissions)
    template_element(root, template)
    return root


def marketplace(oid: int, name: str, owner: Owner, market_mad: str, template: Template) -> Element:
    """A new ``<MARKETPLACE>`` (§5.9): PERMISSIONS after MARKETPLACEAPPS."""
    root = _owned("MARKETPLACE", oid, owner.uid, owner.gid, owner.uname, owner.gname, name)
    sub(root, "STATE", 0)
    sub(root, "MARKET_MAD", market_mad)
    sub(root, "ZONE_ID", 0)
    for field in ("TOTAL_MB", "FREE_MB", "USED_MB"):
        sub(root, field, 0)
    ids_element(root, "MARKETPLACEAPPS", [])
    permissions_element(root, owner.permissions)
    template_element(root, template)
    return root


APP_TYPES = {"UNKNOWN": 0, "IMAGE": 1, "VMTEMPLATE": 2, "SERVICE_TEMPLATE": 3}


def marketplace_app(
    oid: int,
    name: str,
    owner: Owner,
    fields: dict[str, Any],
    market_id: int,
    market_name: str,
    template: Template,
) -> Element:
    """``fields``: REGTIME, ORIGIN_ID, SOURCE, MD5, SIZE, DESCRIPTION, VERSION, FORMAT,
    APPTEMPLATE64, STATE, TYPE."""
    root = _owned("MARKETPLACEAPP", oid, owner.uid, owner.gid, owner.uname, owner.gname, None)
    sub(root, "REGTIME", fields["REGTIME"])
    sub(root, "NAME", name)
    sub(root, "ZONE_ID", 0)
    for field in ("ORIGIN_ID", "SOURCE", "MD5", "SIZE", "DESCRIPTION", "VERSION", "FORMAT"):
        sub(root, field, fields[field])
    sub(root, "APPTEMPLATE64", fields["APPTEMPLATE64"])
    sub(root, "MARKETPLACE_ID", market_id)
    sub(root, "MARKETPLACE", market_name)
    sub(root, "STATE", fields["STATE"])
    sub(root, "TYPE", fields["TYPE"])
    permissions_element(root, owner.permissions)
    template_element(root, template)
    return root


def user(
    oid: int,
    name: str,
    gid: int,
    gname: str,
    groups: Sequence[int],
    password: str,
    driver: str,
) -> Element:
    """A ``<USER>`` as oned stores it (quotas live in ``user_quotas``)."""
    root = ET.Element("USER")
    sub(root, "ID", oid)
    sub(root, "GID", gid)
    ids_element(root, "GROUPS", sorted(set(groups)))
    sub(root, "GNAME", gname)
    sub(root, "NAME", name)
    sub(root, "PASSWORD", password)
    sub(root, "AUTH_DRIVER", driver)
    sub(root, "ENABLED", 1)
    sub(root, "LOGIN_TOKEN")
    sub(root, "TEMPLATE")
    return root


def group(oid: int, name: str) -> Element:
    """A ``<GROUP>`` as oned stores it (quotas live in ``group_quotas``)."""
    root = ET.Element("GROUP")
    sub(root, "ID", oid)
    sub(root, "NAME", name)
    sub(root, "TEMPLATE")
    ids_element(root, "USERS", [])
    ids_element(root, "ADMINS", [])
    return root


def with_quotas(body: str, quotas: str | None, defaults: str | None) -> str:
    """A user/group body with the sections of its quota row (``<QUOTAS><ID>n</ID>…``) and,
    for ``info``, the ``DEFAULT_*_QUOTAS`` element, as oned's ``to_xml`` adds them.  An empty
    ``<LOGIN_TOKEN>`` (what the store keeps for "no tokens") is left out, as oned writes none."""
    root_end = body.rindex("</")
    sections = ""
    if quotas:
        start = quotas.find("</ID>")
        end = quotas.rfind("</QUOTAS>")
        if start >= 0 and end > start:
            sections = quotas[start + len("</ID>") : end]
    text = body[:root_end] + sections + (defaults or "") + body[root_end:]
    return text.replace("<LOGIN_TOKEN></LOGIN_TOKEN>", "").replace("<LOGIN_TOKEN/>", "")
