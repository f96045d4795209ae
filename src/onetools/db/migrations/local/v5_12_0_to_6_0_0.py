"""local 5.12.0 -> 6.0.0: images get ``FORMAT`` and ``PREV_STATE``; history owners fixed.

* ``image_pool``: a top-level ``FORMAT`` (oned 6.0 requires it).  Non-file images (DISK_TYPE
  != 0) are ``raw`` and lose ``TEMPLATE/DRIVER``; file images take the first non-empty of
  ``TEMPLATE/DRIVER``, ``FSTYPE``, ``TEMPLATE/FORMAT``, their datastore's
  ``TEMPLATE/DRIVER``, else ``raw``.  ``TEMPLATE/FORMAT`` and ``FSTYPE`` are removed, and
  ``PREV_STATE`` = ``STATE`` is added (the original rewrote the table twice; one pass gives
  the same rows).
* ``history``: the newest record of each VM that embeds the VM gets that VM's current
  owner (UID, UNAME, GID, GNAME); records of VMs no longer in ``vm_pool`` are dropped.
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from onetools.db.backends.base import Backend
from onetools.db.migrations import (
    OLD_PREFIX,
    Progress,
    append,
    body_transform,
    parse_body,
    remove_all,
    require,
    rewrite_table,
    text_of,
    to_text,
)

SOURCE = "5.12.0"
TARGET = "6.0.0"
STEP = "local/5.12.0_to_6.0.0"

OWNER_FIELDS = ("UID", "UNAME", "GID", "GNAME")


def _image_format(backend: Backend, root: etree._Element) -> str:
    disk_type = text_of(root, "DISK_TYPE").strip()
    if not disk_type:
        raise ValueError("image without DISK_TYPE")
    if int(disk_type) != 0:
        remove_all(root, "TEMPLATE/DRIVER")
        return "raw"
    for path in ("TEMPLATE/DRIVER", "FSTYPE", "TEMPLATE/FORMAT"):
        value = text_of(root, path).strip()
        if value:
            return value
    datastore_id = int(text_of(root, "DATASTORE_ID").strip())
    body = backend.scalar("SELECT body FROM datastore_pool WHERE oid = ?", (datastore_id,))
    if body is not None:
        driver = text_of(parse_body(body), "TEMPLATE/DRIVER").strip()
        if driver:
            return driver
    return "raw"


def _image(backend: Backend) -> Any:
    def edit(root: etree._Element, row: dict[str, Any]) -> None:
        image_format = _image_format(backend, root)
        append(root, "FORMAT", image_format)
        remove_all(root, "TEMPLATE/FORMAT")
        remove_all(root, "FSTYPE")
        append(root, "PREV_STATE", "".join(e.text or "" for e in root.iter("STATE")))

    return body_transform(edit)


class _HistoryOwners:
    """Per-VM facts for the history rewrite, looked up once per VM (rows come in vid order)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.vid: object = None
        self.owner: dict[str, str] | None = None
        self.target_seq: object = None

    def load(self, vid: object) -> None:
        self.vid = vid
        self.owner = None
        self.target_seq = None
        body = self.backend.scalar("SELECT body FROM vm_pool WHERE oid = ?", (vid,))
        if body is None:
            return
        vm = parse_body(body)
        self.owner = {field: text_of(vm, field) for field in OWNER_FIELDS}
        rows = self.backend.query(
            f"SELECT seq, body FROM {OLD_PREFIX}history WHERE vid = ? ORDER BY seq DESC", (vid,)
        )
        for seq, history_body in rows:
            if parse_body(history_body).find("VM/UID") is not None:
                self.target_seq = seq
                return

    def __call__(self, row: dict[str, Any]) -> dict[str, Any] | None:
        if row["vid"] != self.vid:
            self.load(row["vid"])
        if self.owner is None:
            return None  # the VM is gone: its history goes too
        if row["seq"] != self.target_seq:
            return row
        root = parse_body(row["body"])
        vm = require(root, "VM")
        for field in OWNER_FIELDS:
            require(vm, field).text = self.owner[field]
        row["body"] = to_text(root)
        return row


def upgrade(backend: Backend, progress: Progress) -> None:
    """Rewrite images and history."""
    rewrite_table(
        backend, "image_pool", _image(backend), step=STEP, target_version=TARGET, progress=progress
    )
    rewrite_table(
        backend,
        "history",
        _HistoryOwners(backend),
        step=STEP,
        target_version=TARGET,
        progress=progress,
    )
