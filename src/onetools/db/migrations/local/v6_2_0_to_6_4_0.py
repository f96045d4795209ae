"""local 6.2.0 -> 6.4.0: virtual networks get ``STATE``/``PREV_STATE`` 1 (READY); the three
vCenter network hooks are deleted (their ``hook_log`` rows stay)."""

from __future__ import annotations

from typing import Any

from lxml import etree

from onetools.db.backends.base import Backend
from onetools.db.migrations import Progress, append, body_transform, rewrite_table

SOURCE = "6.2.0"
TARGET = "6.4.0"
STEP = "local/6.2.0_to_6.4.0"

READY = "1"
VCENTER_HOOKS = ("vcenter_net_create", "vcenter_net_delete", "vcenter_net_instantiate")


def _vnet(root: etree._Element, row: dict[str, Any]) -> None:
    append(root, "STATE", READY)
    append(root, "PREV_STATE", READY)


def upgrade(backend: Backend, progress: Progress) -> None:
    """Add the network states; drop the vCenter network hooks."""
    rewrite_table(
        backend,
        "network_pool",
        body_transform(_vnet),
        step=STEP,
        target_version=TARGET,
        progress=progress,
    )
    for name in VCENTER_HOOKS:
        backend.execute("DELETE FROM hook_pool WHERE name = ?", (name,))
