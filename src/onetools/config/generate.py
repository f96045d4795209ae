"""``onecfg generate``: a step descriptor between two stock trees (directories or versions)."""

from __future__ import annotations

import os

from onetools.config.descriptors import Descriptor, generate
from onetools.config.diff import read_text
from onetools.config.files import CLASSIFICATION, prefixed
from onetools.errors import FatalError, UsageError


def read_tree(spec: str) -> tuple[dict[str, str], str | None]:
    """(files, version) of a tree given as a directory or as a shipped stock version."""
    if os.path.isdir(spec):
        scan = CLASSIFICATION.scan(spec, strict=True)
        return {path: read_text(prefixed(spec, path)) for path in scan.classified}, None
    from onetools.config.stock import store

    stock = store()
    if stock.has(spec):
        return stock.tree(spec), spec
    raise UsageError(f"'{spec}' is neither a directory nor a shipped stock version")


def generate_descriptor(old: str, new: str) -> Descriptor:
    old_files, old_version = read_tree(old)
    new_files, new_version = read_tree(new)
    if not old_files or not new_files:
        raise FatalError("A tree has no classified configuration files")
    return generate(old_files, new_files, old_version, new_version)
