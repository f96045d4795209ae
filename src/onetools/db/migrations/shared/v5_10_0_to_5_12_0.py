"""shared 5.10.0 -> 5.12.0: ``acl.user`` becomes ``userset``; a DockerHub marketplace appears.

``user`` is a reserved word in PostgreSQL, which 5.12 started to support.  The DockerHub
marketplace gets the next free oid; like the original, ``pool_control`` is left to fsck.
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from onetools.db.backends.base import Backend
from onetools.db.migrations import Progress, append, rewrite_table, to_text

SOURCE = "5.10.0"
TARGET = "5.12.0"
STEP = "shared/5.10.0_to_5.12.0"

DOCKERHUB_DESCRIPTION = (
    "Marketplace backed by Docker Hub: its official images can be imported as OpenNebula images."
)


def _acl_row(row: dict[str, Any]) -> dict[str, Any]:
    row["userset"] = row.pop("user")
    return row


def dockerhub_body(oid: int) -> str:
    """The ``<MARKETPLACE>`` document of the DockerHub marketplace."""
    root = etree.Element("MARKETPLACE")
    for tag, text in (
        ("ID", str(oid)),
        ("UID", "0"),
        ("GID", "0"),
        ("UNAME", "oneadmin"),
        ("GNAME", "oneadmin"),
        ("NAME", "DockerHub"),
    ):
        append(root, tag, text)
    append(root, "MARKET_MAD").text = etree.CDATA("dockerhub")
    append(root, "ZONE_ID").text = etree.CDATA("0")
    for tag in ("TOTAL_MB", "FREE_MB", "USED_MB"):
        append(root, tag, "0")
    append(root, "MARKETPLACEAPPS")
    permissions = append(root, "PERMISSIONS")
    for who, bits in (("OWNER", "111"), ("GROUP", "100"), ("OTHER", "100")):
        for right, bit in zip("UMA", bits, strict=True):
            append(permissions, f"{who}_{right}", bit)
    template = append(root, "TEMPLATE")
    append(template, "DESCRIPTION").text = etree.CDATA(DOCKERHUB_DESCRIPTION)
    append(template, "MARKET_MAD").text = etree.CDATA("dockerhub")
    return to_text(root)


def upgrade(backend: Backend, progress: Progress) -> None:
    """Rename the ACL column and add the DockerHub marketplace."""
    rewrite_table(backend, "acl", _acl_row, step=STEP, target_version=TARGET, progress=progress)
    last = backend.scalar("SELECT MAX(oid) FROM marketplace_pool")
    oid = 0 if last is None else int(last) + 1
    backend.execute(
        "INSERT INTO marketplace_pool (oid, name, body, uid, gid, owner_u, group_u, other_u) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (oid, "DockerHub", dockerhub_body(oid), 0, 0, 1, 1, 1),
    )
