"""Step descriptors: what changes in the stock configuration from one version to the next.

A descriptor lists every managed file of the two stock trees (reference §5.1):

* ``apply`` — the file exists in both and changed: ``change`` holds the ops (old -> new stock);
* ``create`` — new in the target version; ``delete`` — gone from it;
* no action — unchanged (its ``content`` still serves as the stock baseline).

``content`` is the stock text (of the target version; of the source for ``delete``).  Descriptors
printed by ``onecfg generate`` embed it, like the original's; the ones shipped in the package
leave it out and read it from the stock store.  ``directories`` lists directories that are new in
the target tree, with the owner and mode they get.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from onetools.config.files import CLASSIFICATION, MANAGED_ROOTS, Classification
from onetools.config.formats import format_class
from onetools.config.ops import ChangeOp
from onetools.errors import FatalError, FileParseError

ACTIONS = ("apply", "create", "delete")


@dataclass
class DescriptorEntry:
    path: str
    format_name: str
    owner: str
    group: str
    mode: int
    action: str | None = None
    change: list[ChangeOp] = field(default_factory=list)
    content: str | None = None

    def to_dict(self, with_content: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "class": self.format_name,
            "owner": self.owner,
            "group": self.group,
            "mode": f"{self.mode:04o}",
        }
        if self.action is not None:
            out["action"] = self.action
        if self.action == "apply":
            out["change"] = [op.to_dict() for op in self.change]
        if with_content and self.content is not None:
            out["content"] = self.content
        return out


@dataclass
class NewDirectory:
    path: str
    owner: str
    group: str
    mode: int = 0o750

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "owner": self.owner,
            "group": self.group,
            "mode": f"{self.mode:04o}",
        }


@dataclass
class Descriptor:
    source: str | None
    target: str | None
    entries: dict[str, DescriptorEntry] = field(default_factory=dict)
    directories: list[NewDirectory] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out = {"apply": 0, "create": 0, "delete": 0, "unchanged": 0, "ops": 0}
        for entry in self.entries.values():
            out[entry.action or "unchanged"] += 1
            out["ops"] += len(entry.change)
        return out

    def to_dict(self, with_content: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.source is not None:
            out["from"] = self.source
        if self.target is not None:
            out["to"] = self.target
        if self.directories:
            out["directories"] = [d.to_dict() for d in self.directories]
        out["patches"] = {path: entry.to_dict(with_content) for path, entry in self.entries.items()}
        return out

    def to_yaml(self, with_content: bool = True) -> str:
        from onetools.config import yamlio

        return yamlio.dump(self.to_dict(with_content))


def _directory_owner(path: str) -> tuple[str, str]:
    if path.startswith("/var/lib/one/"):
        return "oneadmin", "oneadmin"
    return "root", "oneadmin"


def _directories(paths: list[str]) -> set[str]:
    found: set[str] = set()
    for path in paths:
        parent = os.path.dirname(path)
        while parent and parent not in MANAGED_ROOTS and parent != "/":
            found.add(parent)
            parent = os.path.dirname(parent)
    return found


def generate(
    source_files: Mapping[str, str],
    target_files: Mapping[str, str],
    source: str | None = None,
    target: str | None = None,
    classification: Classification = CLASSIFICATION,
) -> Descriptor:
    """Compare two stock trees (unprefixed path -> text) into a descriptor.

    Every file must be classified; a file present in both must keep its class.
    """
    descriptor = Descriptor(source, target)
    ordered = list(source_files) + [p for p in target_files if p not in source_files]
    for path in ordered:
        entry = classification.classify(path)
        if entry is None or entry.format_name is None:
            raise FatalError(f"File '{path}' doesn't have classification.")
        item = DescriptorEntry(path, entry.format_name, entry.owner, entry.group, entry.mode)
        old_text, new_text = source_files.get(path), target_files.get(path)
        if old_text is not None and new_text is not None:
            cls = format_class(entry.format_name)
            try:
                ops = cls.parse(old_text, path).diff(cls.parse(new_text, path))
            except FileParseError as exc:
                raise FatalError(f"Cannot generate a step for '{path}': {exc.detail()}") from None
            if ops:
                item.action, item.change = "apply", ops
            item.content = new_text
        elif old_text is not None:
            item.action, item.content = "delete", old_text
        else:
            item.action, item.content = "create", new_text
        descriptor.entries[path] = item
    new_dirs = _directories(list(target_files)) - _directories(list(source_files))
    for directory in sorted(new_dirs):
        owner, group = _directory_owner(directory)
        descriptor.directories.append(NewDirectory(directory, owner, group))
    return descriptor


def from_dict(
    data: Any,
    name: str = "<descriptor>",
    content: Callable[[DescriptorEntry], str | None] | None = None,
) -> Descriptor:
    """Read a descriptor (ours or the original's ``patches:`` document)."""
    if not isinstance(data, dict) or not isinstance(data.get("patches"), dict):
        raise FileParseError("The descriptor does not contain a 'patches' mapping", name)
    descriptor = Descriptor(
        None if data.get("from") is None else str(data["from"]),
        None if data.get("to") is None else str(data["to"]),
    )
    for raw in data.get("directories") or []:
        descriptor.directories.append(
            NewDirectory(
                str(raw["path"]),
                str(raw.get("owner", "root")),
                str(raw.get("group", "oneadmin")),
                int(str(raw.get("mode", "0750")), 8),
            )
        )
    for path, raw in data["patches"].items():
        if not isinstance(raw, dict) or not isinstance(raw.get("class"), str):
            raise FileParseError(f"Entry '{path}' has no class", name)
        format_class(raw["class"])
        action = raw.get("action")
        if action is not None and action not in ACTIONS:
            raise FileParseError(f"Entry '{path}' has an invalid action '{action}'", name)
        try:
            ops = [ChangeOp.from_dict(op) for op in raw.get("change") or []]
        except ValueError as exc:
            raise FileParseError(f"Entry '{path}': {exc}", name) from None
        entry = DescriptorEntry(
            str(path),
            raw["class"],
            str(raw.get("owner", "root")),
            str(raw.get("group", "oneadmin")),
            int(str(raw.get("mode", "0640")), 8),
            action,
            ops,
            raw.get("content"),
        )
        if entry.content is None and content is not None:
            entry.content = content(entry)
        descriptor.entries[str(path)] = entry
    return descriptor


def load_yaml(text: str, name: str = "<descriptor>") -> Descriptor:
    from onetools.config import yamlio

    return from_dict(yamlio.load(text, name), name)
