"""Differences between two trees of configuration files, as a change set."""

from __future__ import annotations

from onetools.config.files import CLASSIFICATION, Classification, prefixed
from onetools.config.formats import format_class
from onetools.config.lineformat import ChangeSet, FileChanges


def read_text(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def diff_file(old_text: str, new_text: str, format_name: str, name: str) -> FileChanges:
    """The changes that turn ``old_text`` into ``new_text`` (both of ``format_name``)."""
    cls = format_class(format_name)
    old = cls.parse(old_text, name)
    new = cls.parse(new_text, name)
    return FileChanges(format_name, old.diff(new))


def diff_trees(
    old_prefix: str, new_prefix: str, classification: Classification = CLASSIFICATION
) -> ChangeSet:
    """Changes for every classified file present in both trees with the same format.

    Files only in one tree, or whose format differs, are not part of the result (creating and
    deleting files is the business of upgrade steps).
    """
    old_scan = classification.scan(old_prefix).classified
    new_scan = classification.scan(new_prefix).classified
    changes: ChangeSet = {}
    for path, entry in old_scan.items():
        other = new_scan.get(path)
        if other is None or other.format_name != entry.format_name or entry.format_name is None:
            continue
        file_changes = diff_file(
            read_text(prefixed(old_prefix, path)),
            read_text(prefixed(new_prefix, path)),
            entry.format_name,
            path,
        )
        if file_changes.ops:
            changes[path] = file_changes
    return changes
