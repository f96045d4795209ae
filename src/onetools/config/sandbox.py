"""A copy-on-write view of a configuration tree, where an upgrade runs before anything is written.

Reads fall through to a base tree on disk (the production prefix, or a backup given with
``--read-from``); writes, deletions and new directories stay in memory.  Parsed documents are
cached so that a file patched by several steps is parsed once and rendered once at the end.
``final_writes`` turns the result into the file writes that make production equal to it.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from onetools.config.files import CLASSIFICATION, UPDATE_ROOTS, prefixed
from onetools.config.formats import format_class
from onetools.config.formats.base import ConfigDocument
from onetools.config.transaction import STATE_DIR, TEMP_MARK, FileWrite
from onetools.errors import FatalError


@dataclass
class FileMeta:
    owner: str
    group: str
    mode: int


class Sandbox:
    def __init__(self, base: str) -> None:
        self.base = base
        self._texts: dict[str, str | None] = {}  # None: deleted
        self._docs: dict[str, ConfigDocument] = {}
        self._meta: dict[str, FileMeta] = {}
        self.directories: dict[str, FileMeta] = {}

    # -- reading ---------------------------------------------------------------------------
    def exists(self, path: str) -> bool:
        if path in self._docs:
            return True
        if path in self._texts:
            return self._texts[path] is not None
        return os.path.isfile(prefixed(self.base, path))

    def dir_exists(self, path: str) -> bool:
        if path in self.directories:
            return True
        if any(p.startswith(path + "/") for p, t in self._texts.items() if t is not None):
            return True
        return os.path.isdir(prefixed(self.base, path))

    def read(self, path: str) -> str | None:
        if path in self._docs:
            return self._docs[path].render()
        if path in self._texts:
            return self._texts[path]
        try:
            with open(prefixed(self.base, path), encoding="utf-8") as handle:
                return handle.read()
        except FileNotFoundError:
            return None
        except UnicodeDecodeError:
            raise FatalError(f"File '{path}' is not UTF-8 text") from None

    def is_text(self, path: str, text: str | None) -> bool:
        """Whether ``path`` currently holds exactly ``text``."""
        if text is None:
            return False
        # A cached document renders its original text for free while unchanged.
        return self.read(path) == text

    def document(self, path: str, format_name: str | None = None) -> ConfigDocument | None:
        """The parsed current state of ``path`` (cached), or ``None`` if it does not exist."""
        cached = self._docs.get(path)
        if cached is not None and (format_name is None or cached.format_name == format_name):
            return cached
        text = self.read(path)
        if text is None:
            return None
        if format_name is None:
            entry = CLASSIFICATION.classify(path)
            if entry is None or entry.format_name is None:
                raise FatalError(f"File '{path}' doesn't have classification.")
            format_name = entry.format_name
        document = format_class(format_name).parse(text, path)
        self._docs[path] = document
        self._texts.pop(path, None)
        return document

    # -- writing ---------------------------------------------------------------------------
    def set_document(self, path: str, document: ConfigDocument) -> None:
        self._docs[path] = document
        self._texts.pop(path, None)

    def write(self, path: str, text: str, meta: FileMeta | None = None) -> None:
        self._docs.pop(path, None)
        self._texts[path] = text
        if meta is not None:
            self._meta[path] = meta

    def delete(self, path: str) -> None:
        self._docs.pop(path, None)
        self._texts[path] = None

    def mkdir(self, path: str, meta: FileMeta) -> None:
        if not self.dir_exists(path):
            self.directories[path] = meta

    def touched(self) -> list[str]:
        return sorted(set(self._texts) | set(self._docs))

    # -- result ----------------------------------------------------------------------------
    def final_text(self, path: str) -> str | None:
        if path in self._docs:
            return self._docs[path].render()
        if path in self._texts:
            return self._texts[path]
        return self.read(path)

    def final_writes(self, prefix: str) -> tuple[list[FileWrite], dict[str, str]]:
        """Writes that make ``prefix`` equal to this sandbox under the updated roots.

        Returns the writes and, per path, what happens (``updated``/``created``/``deleted``).
        When the base is another tree (``--read-from``), files of ``prefix`` that the result
        does not have are deleted (mirror), as the original's copy-back does.
        """
        candidates = set(self.touched())
        if os.path.realpath(self.base) != os.path.realpath(prefix):
            candidates |= set(_walk_update_roots(self.base)) | set(_walk_update_roots(prefix))
        writes: list[FileWrite] = []
        actions: dict[str, str] = {}
        for path in sorted(candidates):
            if not path.startswith(tuple(root + "/" for root in UPDATE_ROOTS)):
                continue
            new = self.final_text(path)
            target = prefixed(prefix, path)
            try:
                with open(target, encoding="utf-8", errors="surrogateescape") as handle:
                    current: str | None = handle.read()
            except FileNotFoundError:
                current = None
            if new == current:
                continue
            if new is None:
                writes.append(FileWrite(target, None))
                actions[path] = "deleted"
                continue
            meta = self._meta.get(path) or self._base_meta(path)
            writes.append(FileWrite(target, new.encode("utf-8"), meta.owner, meta.group, meta.mode))
            actions[path] = "updated" if current is not None else "created"
        return writes, actions

    def _base_meta(self, path: str) -> FileMeta:
        entry = CLASSIFICATION.classify(path)
        meta = (
            FileMeta(entry.owner, entry.group, entry.mode)
            if entry
            else FileMeta("root", "oneadmin", 0o640)
        )
        with contextlib.suppress(FileNotFoundError):
            meta.mode = os.stat(prefixed(self.base, path)).st_mode & 0o7777
        return meta


def _walk_update_roots(prefix: str) -> list[str]:
    found: list[str] = []
    for root in UPDATE_ROOTS:
        top = prefixed(prefix, root)
        for directory, dirnames, filenames in os.walk(top):
            dirnames[:] = [d for d in dirnames if d != STATE_DIR]
            rel = root + directory[len(top) :]
            found.extend(f"{rel}/{name}" for name in filenames if not name.endswith(TEMP_MARK))
    return found


def find_symlinks(prefix: str, roots: tuple[str, ...]) -> list[str]:
    """Symbolic links below the given managed roots of a tree."""
    links: list[str] = []
    for root in roots:
        top = prefixed(prefix, root)
        if os.path.islink(top):
            links.append(top)
            continue
        for directory, dirnames, filenames in os.walk(top):
            for name in dirnames + filenames:
                full = os.path.join(directory, name)
                if os.path.islink(full):
                    links.append(full)
    return links
