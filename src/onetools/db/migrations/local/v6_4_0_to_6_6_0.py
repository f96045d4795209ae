"""local 6.4.0 -> 6.6.0: VMs get an empty ``BACKUPS`` section (required by oned 6.6);
virtual networks get ``OUTDATED_VMS``, ``UPDATING_VMS``, ``ERROR_VMS`` and ``UPDATED_VMS``,
the last listing every VM holding a lease (one ``ID`` per lease, as the original)."""

from __future__ import annotations

from typing import Any

from lxml import etree

from onetools.db.backends.base import Backend
from onetools.db.migrations import Progress, append, body_transform, rewrite_table

SOURCE = "6.4.0"
TARGET = "6.6.0"
STEP = "local/6.4.0_to_6.6.0"

VM_LEASE = 0x0000001000000000
OWNER_MASK = 0xFFFFFFFF


def _vm(root: etree._Element, row: dict[str, Any]) -> None:
    backups = append(root, "BACKUPS")
    append(backups, "BACKUP_CONFIG")
    append(backups, "BACKUP_IDS")


def lease_vm_ids(allocated: str) -> list[int]:
    """VM ids of an ``ALLOCATED`` list (pairs of lease index and type/owner word)."""
    words = allocated.split()
    ids = []
    for word in words[1::2]:
        value = int(word)
        if value & VM_LEASE:
            ids.append(value & OWNER_MASK)
    return ids


def _vnet(root: etree._Element, row: dict[str, Any]) -> None:
    for tag in ("OUTDATED_VMS", "UPDATING_VMS", "ERROR_VMS"):
        append(root, tag)
    updated = append(root, "UPDATED_VMS")
    for allocated in root.findall("AR_POOL/AR/ALLOCATED"):
        for vm_id in lease_vm_ids(allocated.text or ""):
            append(updated, "ID", str(vm_id))


def upgrade(backend: Backend, progress: Progress) -> None:
    """Add the VM backups section and the network update lists."""
    rewrite_table(
        backend,
        "vm_pool",
        body_transform(_vm),
        step=STEP,
        target_version=TARGET,
        progress=progress,
        defer=True,  # reads its row only: may fuse with later steps' rewrites
    )
    rewrite_table(
        backend,
        "network_pool",
        body_transform(_vnet),
        step=STEP,
        target_version=TARGET,
        progress=progress,
        defer=True,  # reads its row only: may fuse with later steps' rewrites
    )
