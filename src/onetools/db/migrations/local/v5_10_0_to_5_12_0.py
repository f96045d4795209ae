"""local 5.10.0 -> 5.12.0: OneFlow ``networks``; host and VM monitoring split from the pools.

* ``document_pool``: in the JSON of ``/DOCUMENT/TEMPLATE/BODY`` the old ``custom_attrs``
  become ``networks`` (services, type 100, also move ``custom_attrs_values`` to
  ``networks_values`` and keep only the identity keys of each node's ``vm_info.VM``).
* ``host_monitoring``: each full ``<HOST>`` snapshot becomes a ``<MONITORING>`` record.
* ``host_pool``: column ``last_mon_time`` goes; monitoring values leave the body and the
  disk figures move under ``HOST_SHARE/DATASTORES``.
* ``vm_monitoring``: ``<VM>`` records become ``<MONITORING>`` (``LAST_POLL`` -> ``TIMESTAMP``).
* ``vm_pool``: column ``last_poll`` goes; the body loses ``LAST_POLL`` and its monitoring.
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
    remove_all,
    require,
    rewrite_table,
    to_text,
)

SOURCE = "5.10.0"
TARGET = "5.12.0"
STEP = "local/5.10.0_to_5.12.0"

SERVICE = 100
VM_INFO_KEYS = ("ID", "UID", "GID", "UNAME", "GNAME", "NAME")
HOST_DISK_VALUES = ("DISK_USAGE", "MAX_DISK", "FREE_DISK", "USED_DISK")


def _document(root: etree._Element, row: dict[str, Any]) -> None:
    body = root.find(".//BODY")
    if body is None or not body.text:
        raise ValueError("document without TEMPLATE/BODY")
    doc = json.loads(body.text)
    doc["networks"] = doc.get("custom_attrs") or {}
    doc["custom_attrs"] = {}
    if int(row["type"]) == SERVICE:
        doc["networks_values"] = doc.get("custom_attrs_values") or {}
        doc["custom_attrs_values"] = {}
        for role in doc["roles"]:
            for node in role["nodes"]:
                vm = node["vm_info"]["VM"]
                node["vm_info"]["VM"] = {key: vm[key] for key in VM_INFO_KEYS if key in vm}
    target = require(root, "TEMPLATE/BODY")
    for child in list(target):
        target.remove(child)
    target.text = etree.CDATA(json.dumps(doc, separators=(",", ":"), ensure_ascii=False))


def _host_monitoring(row: dict[str, Any]) -> dict[str, Any]:
    host = parse_body(row["body"])
    record = etree.Element("MONITORING")
    append(record, "ID", require(host, "ID").text or "")
    append(record, "TIMESTAMP", require(host, "LAST_MON_TIME").text or "")
    capacity = append(record, "CAPACITY")
    for tag, source in (
        ("FREE_CPU", "FREE_CPU"),
        ("USED_CPU", "USED_CPU"),
        ("FREE_MEMORY", "FREE_MEM"),
        ("USED_MEMORY", "USED_MEM"),
    ):
        value = host.find(f"HOST_SHARE/{source}")
        if value is not None:
            append(capacity, tag, value.text)
    system = append(record, "SYSTEM")
    for tag in ("NETRX", "NETTX"):
        value = host.find(f"TEMPLATE/{tag}")
        if value is not None:
            append(system, tag, value.text)
    row["body"] = to_text(record)
    return row


def _host(root: etree._Element, row: dict[str, Any]) -> None:
    share = require(root, "HOST_SHARE")
    datastores = require(share, "DATASTORES")
    moved = [require(share, tag) for tag in HOST_DISK_VALUES]
    for path in ("LAST_MON_TIME", "TEMPLATE/NETRX", "TEMPLATE/NETTX"):
        remove_all(root, path)
    for tag in ("FREE_MEM", "FREE_CPU", "USED_MEM", "USED_CPU"):
        remove_all(share, tag)
    for element in moved:
        datastores.append(element)  # lxml moves the element


def _vm_monitoring(root: etree._Element, row: dict[str, Any]) -> None:
    require(root, "LAST_POLL").tag = "TIMESTAMP"
    remove_all(root, "STATE")
    remove_all(root, "TEMPLATE")
    root.tag = "MONITORING"


def _vm(root: etree._Element, row: dict[str, Any]) -> None:
    remove_all(root, "LAST_POLL")
    remove_all(root, "MONITORING")
    append(root, "MONITORING")


def upgrade(backend: Backend, progress: Progress) -> None:
    """Rewrite documents, hosts, VMs and both monitoring tables."""
    for table, transform in (
        ("document_pool", body_transform(_document)),
        ("host_monitoring", _host_monitoring),
        ("host_pool", body_transform(_host)),
        ("vm_monitoring", body_transform(_vm_monitoring)),
        ("vm_pool", body_transform(_vm)),
    ):
        # Each transform reads its row only: the rewrites may wait and fuse with later steps'.
        rewrite_table(
            backend,
            table,
            transform,
            step=STEP,
            target_version=TARGET,
            progress=progress,
            defer=True,
        )
