"""local 6.0.0 -> 6.2.0: scheduled actions move from ``USER_TEMPLATE`` to ``TEMPLATE``.

Actions without an ``ID`` get the next ids after the VM's largest one; ``short_body`` and
``search_token`` are copied unchanged.
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from onetools.db.backends.base import Backend
from onetools.db.migrations import Progress, append, body_transform, require, rewrite_table

SOURCE = "6.0.0"
TARGET = "6.2.0"
STEP = "local/6.0.0_to_6.2.0"


def _int_or_zero(text: str | None) -> int:
    try:
        return int((text or "").strip())
    except ValueError:
        return 0


def _vm(root: etree._Element, row: dict[str, Any]) -> None:
    actions = root.findall("USER_TEMPLATE/SCHED_ACTION")
    if not actions:
        return
    ids = [_int_or_zero(element.text) for element in root.findall("USER_TEMPLATE/SCHED_ACTION/ID")]
    next_id = max(ids, default=-1) + 1
    template = require(root, "TEMPLATE")
    for action in actions:
        if action.find("ID") is None:
            append(action, "ID", str(next_id))
            next_id += 1
        template.append(action)


def upgrade(backend: Backend, progress: Progress) -> None:
    """Move the VMs' scheduled actions."""
    rewrite_table(
        backend,
        "vm_pool",
        body_transform(_vm),
        step=STEP,
        target_version=TARGET,
        progress=progress,
        defer=True,  # reads its row only: may fuse with later steps' rewrites
    )
