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


def stock_baseline(version: str) -> str:
    """The shipped stock version a configuration of ``version`` is compared with: the newest
    stock version not after it (``6.10.3`` -> ``6.10.2``)."""
    from onetools.config.versions import CHAIN, Version, check_supported, parse_version

    wanted = check_supported(parse_version(version, "config version"), "config version")
    candidates = [v for v in CHAIN if Version(v) <= wanted]
    return candidates[-1]


def diff_against_stock(prefix: str, version: str) -> ChangeSet:
    """The customizations of the tree at ``prefix``: stock files of ``version`` -> current files.

    Files missing from the tree or from the stock are left out (as the original does).
    """
    from onetools.config.stock import store

    baseline = stock_baseline(version)
    stock = store()
    changes: ChangeSet = {}
    scan = CLASSIFICATION.scan(prefix).classified
    for path in stock.paths(baseline):
        entry = scan.get(path)
        if entry is None or entry.format_name is None:
            continue
        stock_text = stock.read(baseline, path)
        assert stock_text is not None
        current = read_text(prefixed(prefix, path))
        if current == stock_text:
            continue
        file_changes = diff_file(stock_text, current, entry.format_name, path)
        if file_changes.ops:
            changes[path] = file_changes
    return changes
