"""The ``http`` private market's IMPORT and DELETE, done by us on the embedded store.

Reference: onemarketapp.md §7.2.  On a real front-end oned's market driver copies the file;
on the embedded store nothing runs behind the store, so ``onemarketapp create`` of an IMAGE app
calls ``import_image`` and ``onemarketapp delete`` calls ``delete_file``.

* the file is named ``app-<id>-<random hex>`` (the original used md5 of "epoch:id": two
  imports in one second of a re-used id collided), written to a temp file in PUBLIC_DIR,
  fsync'ed and renamed into place with mode 0644, so a reader never sees half a file;
* MD5 and SIZE are computed while copying, never by a second read;
* delete only removes a plain file directly inside PUBLIC_DIR: names with ``/`` or ``..``
  and symlinks (even to a file inside) are refused, so a tampered SOURCE cannot remove
  anything else.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

from onetools.errors import OnetoolsError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

CHUNK = 1024 * 1024
FILE_MODE = 0o644


class HttpMarketError(OnetoolsError):
    """An http market import or delete that did not happen (nothing was left behind)."""


class Imported:
    """What an import gives the app: SOURCE, MD5 (hex), SIZE (MB, rounded up), FORMAT."""

    def __init__(self, source: str, md5: str, size_bytes: int, image_format: str) -> None:
        self.source = source
        self.md5 = md5
        self.size_bytes = size_bytes
        self.image_format = image_format

    @property
    def size_mb(self) -> int:
        return max(1, (self.size_bytes + 1024 * 1024 - 1) // (1024 * 1024))


def _settings(market: Mapping[str, str]) -> tuple[str, Path]:
    base_url = (market.get("BASE_URL") or "").strip().rstrip("/")
    public_dir = (market.get("PUBLIC_DIR") or "").strip()
    if not base_url or not public_dir:
        raise HttpMarketError("The http marketplace needs BASE_URL and PUBLIC_DIR")
    directory = Path(public_dir)
    if not directory.is_absolute():
        raise HttpMarketError(f"PUBLIC_DIR {public_dir} is not an absolute path")
    if not directory.is_dir():
        raise HttpMarketError(f"PUBLIC_DIR {public_dir} is not a directory")
    return base_url, directory


def files_here(market: Mapping[str, str]) -> bool:
    """Whether PUBLIC_DIR is on this machine: no BRIDGE_LIST (the files live on the bridge
    hosts) and an existing directory.  When not, the embedded store cannot play the driver
    and the app is only allocated (as before this driver existed): a market configured for
    a front-end's web server stays usable for catalog work here."""
    public_dir = (market.get("PUBLIC_DIR") or "").strip()
    if public_dir and not Path(public_dir).is_absolute():
        raise HttpMarketError(f"PUBLIC_DIR {public_dir} is not an absolute path")
    if (market.get("BRIDGE_LIST") or "").strip():
        return False
    return bool(public_dir) and Path(public_dir).is_dir()


def import_image(
    market: Mapping[str, str], app_id: int, image_file: Path, image_format: str
) -> Imported:
    """Copy ``image_file`` into the market's PUBLIC_DIR; what the app records."""
    base_url, directory = _settings(market)
    name = f"app-{app_id}-{secrets.token_hex(8)}"
    target = directory / name
    temp = directory / f".{name}.tmp"
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    try:
        with open(image_file, "rb") as source, open(temp, "xb") as output:
            while chunk := source.read(CHUNK):
                digest.update(chunk)
                output.write(chunk)
                size += len(chunk)
            output.flush()
            os.fsync(output.fileno())
        os.chmod(temp, FILE_MODE)
        os.rename(temp, target)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise HttpMarketError(
            f"Cannot copy {image_file} into {directory}: {exc.strerror or exc}"
        ) from None
    except BaseException:  # Ctrl-C: no temp file left in the published directory
        temp.unlink(missing_ok=True)
        raise
    _fsync_dir(directory)
    return Imported(f"{base_url}/{name}", digest.hexdigest(), size, image_format or "raw")


def _fsync_dir(directory: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_of(market: Mapping[str, str], source: str) -> Path:
    """The file in PUBLIC_DIR that ``source`` names; hostile names refused."""
    base_url, directory = _settings(market)
    if not source.startswith(base_url + "/"):
        raise HttpMarketError(f"Bad formed or unavailable app source {source!r}")
    name = source[len(base_url) + 1 :]
    if not name or "/" in name or "\\" in name or name in (".", "..") or "\0" in name:
        raise HttpMarketError(f"Bad formed or unavailable app source {source!r}")
    return directory / name


def delete_file(market: Mapping[str, str], source: str) -> None:
    """Remove the app's file; a missing file is fine (already gone), anything odd is refused."""
    path = file_of(market, source)
    if path.is_symlink():
        raise HttpMarketError(f"Refusing to delete {path}: it is a symbolic link")
    if not path.exists():
        return
    if not path.is_file():
        raise HttpMarketError(f"Refusing to delete {path}: not a regular file")
    try:
        path.unlink()
    except OSError as exc:
        raise HttpMarketError(f"Cannot delete {path}: {exc.strerror or exc}") from None
