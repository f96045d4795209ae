"""shared 6.0.0 -> 6.2.0: every zone gets ``STATE`` 0 (enabled); oned 6.2 requires it."""

from __future__ import annotations

from typing import Any

from lxml import etree

from onetools.db.backends.base import Backend
from onetools.db.migrations import Progress, append, body_transform, rewrite_table

SOURCE = "6.0.0"
TARGET = "6.2.0"
STEP = "shared/6.0.0_to_6.2.0"


def _zone(root: etree._Element, row: dict[str, Any]) -> None:
    append(root, "STATE", "0")


def upgrade(backend: Backend, progress: Progress) -> None:
    """Add the zone state."""
    rewrite_table(
        backend,
        "zone_pool",
        body_transform(_zone),
        step=STEP,
        target_version=TARGET,
        progress=progress,
    )
