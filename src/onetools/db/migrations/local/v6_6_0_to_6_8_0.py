"""local 6.6.0 -> 6.8.0: NUMA free/used memory leaves hosts; labels upper-cased; scheduled
actions move to the new ``schedaction_pool``; ``backupjob_pool`` is created.

* ``host_pool``: ``HOST_SHARE/NUMA_NODES/NODE/{HUGEPAGE/FREE, MEMORY/FREE, MEMORY/USED}``
  are removed (oned 6.8 no longer stores them).
* ``template_pool`` and ``vm_pool`` (body and ``short_body``): ``LABELS`` becomes its text,
  trimmed and upper-cased.
* ``vm_pool``: every VM gets ``SCHED_ACTIONS``; actions of VMs that are not DONE get the
  next global id k, ``TYPE`` VM, ``PARENT_ID``, an absolute ``TIME`` (``+N`` is relative to
  ``STIME``), defaults for missing fields, lose ``WARNING``, and become rows of
  ``schedaction_pool``.  All ``TEMPLATE/SCHED_ACTION`` elements leave the VM bodies (DONE
  VMs' actions are dropped, as in the original).  ``pool_control`` records k.
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from onetools.db.backends.base import Backend
from onetools.db.migrations import (
    BATCH,
    Progress,
    append,
    body_transform,
    create_table,
    parse_body,
    remove_all,
    require,
    rewrite_table,
    text_of,
    to_text,
)

SOURCE = "6.6.0"
TARGET = "6.8.0"
STEP = "local/6.6.0_to_6.8.0"

DONE = "6"
ACTION_DEFAULTS = (
    ("MESSAGE", ""),
    ("ARGS", ""),
    ("DONE", "-1"),
    ("REPEAT", "-1"),
    ("DAYS", ""),
    ("END_TYPE", "-1"),
    ("END_VALUE", "-1"),
)


def _host(root: etree._Element, row: dict[str, Any]) -> None:
    for path in ("HUGEPAGE/FREE", "MEMORY/FREE", "MEMORY/USED"):
        remove_all(root, f"HOST_SHARE/NUMA_NODES/NODE/{path}")


def upper_labels(root: etree._Element, path: str) -> None:
    """Each ``LABELS`` at ``path`` holds its first child's text, trimmed and upper-cased."""
    for labels in root.findall(path):
        if labels.text is not None:
            value = labels.text
        elif len(labels):
            value = "".join(str(text) for text in labels[0].itertext())
        else:
            continue
        for child in list(labels):
            labels.remove(child)
        labels.text = value.strip().upper()


def _template(root: etree._Element, row: dict[str, Any]) -> None:
    upper_labels(root, "TEMPLATE/LABELS")


class _VmActions:
    """The VM rewrite: labels, then scheduled actions numbered by one global counter.

    Rows are numbered in ``oid`` order whether the rewrite runs alone or fused with other
    steps' (it reads nothing but its row and writes ``schedaction_pool`` and, once done,
    ``pool_control``).
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.next_id = 0
        self.actions: list[tuple[int, int, str, str, int, int]] = []

    def flush(self) -> None:
        """Write the actions collected so far to ``schedaction_pool``."""
        if self.actions:
            self.backend.executemany(
                "INSERT INTO schedaction_pool (oid, parent_id, type, body, time, done) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                self.actions,
            )
            self.actions.clear()

    def finish(self) -> None:
        """After the last VM: write the remaining actions and the pool's last id."""
        self.flush()
        self.backend.execute("DELETE FROM pool_control WHERE tablename = 'schedaction_pool'")
        self.backend.execute(
            "INSERT INTO pool_control (tablename, last_oid) VALUES ('schedaction_pool', ?)",
            (self.next_id,),
        )

    def edit(self, root: etree._Element, row: dict[str, Any]) -> None:
        """Change one VM's body (``root``) and ``short_body``."""
        upper_labels(root, "USER_TEMPLATE/LABELS")
        short = parse_body(row["short_body"])
        upper_labels(short, "USER_TEMPLATE/LABELS")
        row["short_body"] = to_text(short)

        index = append(root, "SCHED_ACTIONS")
        if text_of(root, "STATE").strip() != DONE:
            vm_id = text_of(root, "ID")
            for action in root.findall("TEMPLATE/SCHED_ACTION"):
                self._migrate(root, action, vm_id, index)
        remove_all(root, "TEMPLATE/SCHED_ACTION")
        if len(self.actions) >= BATCH:
            self.flush()

    def _migrate(
        self, root: etree._Element, action: etree._Element, vm_id: str, index: etree._Element
    ) -> None:
        action_id = self.next_id
        append(index, "ID", str(action_id))
        require(action, "ID").text = str(action_id)
        append(action, "TYPE", "VM")
        append(action, "PARENT_ID", vm_id)
        when = require(action, "TIME")
        text = (when.text or "").strip()
        if text.startswith("+"):
            when.text = str(int(text_of(root, "STIME").strip()) + int(text[1:]))
        remove_all(action, "WARNING")
        for tag, default in ACTION_DEFAULTS:
            if action.find(tag) is None:
                append(action, tag, default)
        self.actions.append(
            (
                action_id,
                int(vm_id),
                "VM",
                to_text(action),
                int((when.text or "0").strip()),
                int(text_of(action, "DONE", "-1").strip()),
            )
        )
        self.next_id += 1


def upgrade(backend: Backend, progress: Progress) -> None:
    """Rewrite hosts, templates and VMs; create and fill the new pools."""
    rewrite_table(
        backend,
        "host_pool",
        body_transform(_host),
        step=STEP,
        target_version=TARGET,
        progress=progress,
        defer=True,
    )
    rewrite_table(
        backend,
        "template_pool",
        body_transform(_template),
        step=STEP,
        target_version=TARGET,
        progress=progress,
        defer=True,
    )
    create_table(backend, "backupjob_pool", TARGET)
    create_table(backend, "schedaction_pool", TARGET)
    vms = _VmActions(backend)
    rewrite_table(
        backend,
        "vm_pool",
        body_transform(vms.edit),
        step=STEP,
        target_version=TARGET,
        progress=progress,
        defer=True,
        also_writes=("schedaction_pool", "pool_control"),
        after=vms.finish,
    )
