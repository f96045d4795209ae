"""OpenNebula's stock configuration trees, shipped inside the package.

The default files of every supported OpenNebula version live in one xz-compressed JSON document,
``data/stock.json.xz`` (written by ``scripts/build_stock_data.py``)::

    {"format": 1,
     "versions": {version: {unprefixed path: hash}},
     "blobs": {hash: text}}

Identical contents are stored once under a content hash, so the 14 trees (~5.8 MB of files)
take ~90 KB.  The document is read on first use only (about 40 ms), once per process; importing
this module costs nothing beyond ``os`` (the classification table is imported by
``materialize`` only).
"""

from __future__ import annotations

import os

from onetools.errors import FatalError

DATA_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "stock.json.xz")
DATA_FORMAT = 1
DIR_MODE = 0o750
# Mode of files the classification table does not cover, or when the table is not consulted.
DEFAULT_FILE_MODE = 0o640
PLAIN_FILE_MODE = 0o644


def version_key(version: str) -> tuple[tuple[int, str], ...]:
    """Sort key comparing versions by numeric dot-separated segments (``6.10.0 > 6.8.0``)."""
    return tuple((int(part), "") if part.isdigit() else (-1, part) for part in version.split("."))


def _normalize(path: str) -> str:
    return path if path.startswith("/") else "/" + path


class StockStore:
    """Read access to the shipped stock trees; the data file is loaded on first use."""

    def __init__(self, data_file: str = DATA_FILE) -> None:
        self.data_file = data_file
        self._versions: dict[str, dict[str, str]] | None = None
        self._blobs: dict[str, str] = {}

    def _load(self) -> dict[str, dict[str, str]]:
        if self._versions is not None:
            return self._versions
        import json
        import lzma

        try:
            with open(self.data_file, "rb") as handle:
                raw = handle.read()
            document: object = json.loads(lzma.decompress(raw).decode("utf-8"))
        except (OSError, lzma.LZMAError, ValueError) as exc:
            raise FatalError(
                f"Cannot load stock configuration data {self.data_file}: {exc}"
            ) from exc
        fmt = document.get("format") if isinstance(document, dict) else None
        if not isinstance(document, dict) or fmt != DATA_FORMAT:
            raise FatalError(
                f"Unsupported stock configuration data {self.data_file} (format {fmt!r})"
            )
        self._blobs = document["blobs"]
        versions: dict[str, dict[str, str]] = document["versions"]
        self._versions = versions
        return versions

    def _files(self, version: str) -> dict[str, str]:
        files = self._load().get(version)
        if files is None:
            raise FatalError(f"No stock configuration for version {version}")
        return files

    def versions(self) -> list[str]:
        """The stock versions, oldest first."""
        return sorted(self._load(), key=version_key)

    def has(self, version: str) -> bool:
        """Whether a stock tree of ``version`` is shipped."""
        return version in self._load()

    def paths(self, version: str) -> list[str]:
        """Unprefixed paths (``/etc/one/oned.conf``) of every file of a version, sorted."""
        return sorted(self._files(version))

    def digest(self, version: str, path: str) -> str | None:
        """Content hash of a stock file (equal hashes mean equal contents), ``None`` if absent."""
        return self._files(version).get(_normalize(path))

    def read(self, version: str, path: str) -> str | None:
        """Text of a stock file, ``None`` if the version has no such file."""
        digest = self.digest(version, path)
        return None if digest is None else self._blobs[digest]

    def tree(self, version: str) -> dict[str, str]:
        """Every file of a version: unprefixed path -> text, in path order."""
        files = self._files(version)
        return {path: self._blobs[files[path]] for path in sorted(files)}

    def materialize(self, version: str, prefix: str, *, mode_from_table: bool = True) -> list[str]:
        """Write the stock tree of ``version`` below ``prefix``; return the written paths.

        Files get the mode of their classification table entry (0o640 for files the table does
        not classify) or, with ``mode_from_table=False``, 0o644.  Directories created on the way
        get 0o750; existing directories keep their mode.  Ownership is left as is.  Existing files
        are overwritten; symbolic links are never followed for the files themselves.
        """
        from onetools.config.files import CLASSIFICATION, prefixed

        files = self._files(version)
        written: list[str] = []
        made: set[str] = set()
        for path in sorted(files):
            target = prefixed(prefix, path)
            self._make_dirs(os.path.dirname(target), made)
            if mode_from_table:
                entry = CLASSIFICATION.classify(path)
                mode = entry.mode if entry is not None else DEFAULT_FILE_MODE
            else:
                mode = PLAIN_FILE_MODE
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
            fd = os.open(target, flags, mode)
            try:
                os.fchmod(fd, mode)
                with os.fdopen(fd, "wb", closefd=False) as handle:
                    handle.write(self._blobs[files[path]].encode("utf-8"))
            finally:
                os.close(fd)
            written.append(target)
        return written

    @staticmethod
    def _make_dirs(directory: str, made: set[str]) -> None:
        """Create ``directory`` and missing parents with mode 0o750 (umask ignored)."""
        if directory in made or os.path.isdir(directory):
            return
        missing: list[str] = []
        current = directory
        while current and not os.path.isdir(current):
            missing.append(current)
            parent = os.path.dirname(current)
            if parent == current:
                break
            current = parent
        for path in reversed(missing):
            os.mkdir(path, DIR_MODE)
            os.chmod(path, DIR_MODE)
            made.add(path)


_STORE: StockStore | None = None


def store() -> StockStore:
    """The process-wide store of the shipped stock trees."""
    global _STORE
    if _STORE is None:
        _STORE = StockStore()
    return _STORE


def stock_versions() -> list[str]:
    """The shipped stock versions, oldest first."""
    return store().versions()
