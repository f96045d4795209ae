"""One process-wide Augeas handle used in text mode (no files, no autoload).

Documents are parsed with ``text_store`` into a tree under ``/onetools/tree/N`` and rendered with
``text_retrieve`` against their original text, so untouched parts keep their exact bytes.  Lenses
come from the package (``config/lenses``) and from Augeas' stock lens directory (Shellvars).
"""

from __future__ import annotations

import itertools
import os
from typing import Any

from onetools.errors import FileParseError

STOCK_LENS_DIRS = ("/usr/share/augeas/lenses/dist", "/usr/share/augeas/lenses")

_handle: Any = None
_counter = itertools.count(1)


def handle() -> Any:
    """The shared Augeas handle, created on first use."""
    global _handle
    if _handle is None:
        import augeas

        # The lens directory inside the installed package (importlib.resources costs ~14 ms of
        # imports for the same answer).
        package_lenses = os.path.join(os.path.dirname(os.path.dirname(__file__)), "lenses")
        loadpath = ":".join([package_lenses, *(d for d in STOCK_LENS_DIRS if os.path.isdir(d))])
        flags = augeas.Augeas.NO_MODL_AUTOLOAD | augeas.Augeas.NO_LOAD | augeas.Augeas.NO_STDINC
        _handle = augeas.Augeas(flags=flags, loadpath=loadpath)
    return _handle


def _text(value: str | bytes | None) -> str | None:
    """python-augeas returns ``b""`` for empty values (``VAR=``, an empty file): make it text."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value


class AugeasTree:
    """A text parsed by a lens into its own subtree of the shared handle."""

    def __init__(self, lens: str, text: str, name: str) -> None:
        self.lens = lens
        self.name = name
        number = next(_counter)
        self.text_node = f"/onetools/text/t{number}"
        self.out_node = f"/onetools/out/t{number}"
        self.root = f"/onetools/tree/t{number}"
        aug = handle()
        aug.set(self.text_node, text)
        try:
            aug.text_store(lens, self.text_node, self.root)
        except Exception as exc:
            error = self._error(f"/augeas/text{self.root}/error")
            self.release()
            raise error from exc

    def _error(self, node: str) -> FileParseError:
        aug = handle()
        message = aug.get(f"{node}/message") or aug.get(node) or "parse failed"
        line = aug.get(f"{node}/line")
        char = aug.get(f"{node}/char")
        detail = f"Failed to parse file ({message}"
        if char:
            detail += f", character {char}"
        detail += ")"
        return FileParseError(detail, self.name, int(line) if line else None)

    def render(self) -> str:
        aug = handle()
        try:
            aug.text_retrieve(self.lens, self.text_node, self.root, self.out_node)
        except Exception as exc:
            raise FileParseError(
                f"Failed to render file ({self._error(f'/augeas/text{self.out_node}/error')})",
                self.name,
            ) from exc
        text = _text(aug.get(self.out_node)) or ""
        aug.remove(self.out_node)
        return text

    def release(self) -> None:
        aug = handle()
        for node in (self.text_node, self.out_node, self.root, f"/augeas/text{self.root}"):
            aug.remove(node)

    def clone(self) -> AugeasTree:
        """An independent copy (same original text, same tree)."""
        twin = object.__new__(AugeasTree)
        number = next(_counter)
        twin.lens, twin.name = self.lens, self.name
        twin.text_node = f"/onetools/text/t{number}"
        twin.out_node = f"/onetools/out/t{number}"
        twin.root = f"/onetools/tree/t{number}"
        aug = handle()
        aug.set(twin.text_node, _text(aug.get(self.text_node)))
        if aug.match(self.root):
            aug.copy(self.root, twin.root)
        else:
            aug.set(twin.root, None)
        return twin

    # Convenience wrappers with paths relative to the tree root.
    def abs(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def match(self, rel: str) -> list[str]:
        prefix = len(self.root) + 1
        return [p[prefix:] for p in handle().match(self.abs(rel))]

    def get(self, rel: str) -> str | None:
        return _text(handle().get(self.abs(rel)))

    def set(self, rel: str, value: str | None) -> None:
        handle().set(self.abs(rel), value)

    def remove(self, rel: str) -> int:
        count: int = handle().remove(self.abs(rel))
        return count

    def insert(self, rel: str, label: str, before: bool = True) -> None:
        handle().insert(self.abs(rel), label, before)

    def rename(self, rel: str, label: str) -> int:
        count: int = handle().rename(self.abs(rel), label)
        return count

    def __del__(self) -> None:
        try:
            if _handle is not None:
                self.release()
        except Exception:  # interpreter shutdown: the handle may already be gone
            pass
