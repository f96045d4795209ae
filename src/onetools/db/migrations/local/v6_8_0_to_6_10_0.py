"""local 6.8.0 -> 6.10.0: backup images list their disks; ``vm_pool.search_token`` becomes
``body_json``; scheduled actions get ``WARNING``.

* ``image_pool``: backup images (TYPE 6) get ``BACKUP_DISK_IDS`` with the ``DISK_ID`` of the
  backed-up VM's disks, leaving out swap disks and, unless the VM backs up volatile disks,
  FS disks.  A backup without a VM (or whose VM is gone) gets an empty list; the original
  aborted on a missing VM id.
* ``vm_pool``: rebuilt without ``search_token`` (and its MySQL FULLTEXT index) and with
  ``body_json``: the whole body as JSON (text -> string, empty -> null, repeated siblings ->
  list, ``TEMPLATE/DISK`` and ``TEMPLATE/NIC`` always lists).
* ``schedaction_pool``: ``WARNING`` 0 appended (oned 6.10 requires it).
"""

from __future__ import annotations

import json
from typing import Any

from lxml import etree

from onetools.db.backends.base import Backend
from onetools.db.migrations import (
    Progress,
    append,
    body_transform,
    parse_body,
    rewrite_table,
    text_of,
)

SOURCE = "6.8.0"
TARGET = "6.10.0"
STEP = "local/6.8.0_to_6.10.0"

BACKUP_IMAGE = "6"


def backup_disk_ids(vm: etree._Element) -> list[str]:
    """Disk ids a backup of ``vm`` holds."""
    volatile = text_of(vm, "BACKUPS/BACKUP_CONFIG/BACKUP_VOLATILE").strip().upper() == "YES"
    ids = []
    for disk in vm.findall("TEMPLATE/DISK"):
        disk_type = text_of(disk, "TYPE").strip().upper()
        if disk_type == "SWAP" or (disk_type == "FS" and not volatile):
            continue
        ids.append(text_of(disk, "DISK_ID"))
    return ids


def _image(backend: Backend) -> Any:
    def edit(root: etree._Element, row: dict[str, Any]) -> None:
        if text_of(root, "TYPE").strip() != BACKUP_IMAGE:
            return
        ids: list[str] = []
        vm_id = text_of(root, "VMS/ID").strip()
        if vm_id:
            body = backend.scalar("SELECT body FROM vm_pool WHERE oid = ?", (int(vm_id),))
            if body is not None:
                ids = backup_disk_ids(parse_body(body))
        disks = append(root, "BACKUP_DISK_IDS")
        for disk_id in ids:
            append(disks, "ID", disk_id)

    return body_transform(edit)


def element_to_json(element: etree._Element) -> Any:
    """An element as the JSON value ActiveSupport's ``Hash.from_xml`` would give.

    Leaves (most elements) are handled inline rather than by a recursive call: this runs on
    every VM body and dominated the step's time.
    """
    if not len(element):
        text = element.text
        return text if text else None
    value: dict[str, Any] = {}
    for child in element:
        tag = child.tag
        if not isinstance(tag, str):
            continue  # comments, processing instructions
        if len(child):
            item = element_to_json(child)
        else:
            text = child.text
            item = text if text else None
        if tag in value:
            existing = value[tag]
            if isinstance(existing, list):
                existing.append(item)
            else:
                value[tag] = [existing, item]
        else:
            value[tag] = item
    return value


def body_json(root: etree._Element) -> str:
    """``vm_pool.body_json`` for a VM body."""
    vm = element_to_json(root)
    template = vm.get("TEMPLATE") if isinstance(vm, dict) else None
    if not isinstance(template, dict):
        raise ValueError("VM without TEMPLATE")
    for key in ("DISK", "NIC"):
        if isinstance(template.get(key), dict):
            template[key] = [template[key]]
    return json.dumps({root.tag: vm}, separators=(",", ":"), ensure_ascii=False)


def _vm(root: etree._Element, row: dict[str, Any]) -> None:
    row["body_json"] = body_json(root)


def _sched_action(root: etree._Element, row: dict[str, Any]) -> None:
    append(root, "WARNING", "0")


def upgrade(backend: Backend, progress: Progress) -> None:
    """Rewrite backup images, VMs and scheduled actions."""
    rewrite_table(
        backend,
        "image_pool",
        _image(backend),
        step=STEP,
        target_version=TARGET,
        progress=progress,
    )
    rewrite_table(
        backend,
        "vm_pool",
        body_transform(_vm, modifies=False),
        step=STEP,
        target_version=TARGET,
        progress=progress,
        defer=True,  # reads its row only; the body is kept as it is
    )
    rewrite_table(
        backend,
        "schedaction_pool",
        body_transform(_sched_action),
        step=STEP,
        target_version=TARGET,
        progress=progress,
    )
