"""Install OpenNebula's one-context package into a root filesystem without running the image.

docker_downloader.sh (onemarketapp.md §8.3 step 4) ran the image's package manager in a
container to install ``one-context`` and its init system.  Here nothing of the image runs: the
package's *files* are unpacked into the rootfs through the same safe layer code as image
layers (no path escapes the root, no device nodes, setuid bits dropped) and its services are
enabled the way the package's scripts would (``systemctl enable``: the ``WantedBy=`` symlinks;
OpenRC: the ``default`` runlevel links).  What is not done, and said in the build's messages:
the package's maintainer scripts, and the dependencies it names (an image without e.g.
``iproute2`` or an init system needs them installed in the guest).

Packages come from a directory (``$ONETOOLS_CONTEXT_DIR``, else ``/usr/share/one/context``,
where OpenNebula's front-end keeps them): ``one-context_*.deb`` for Debian and Ubuntu (and
distributions whose ``ID_LIKE`` says debian), ``one-context-*.apk`` for Alpine; the highest
version (by name) wins.  RPM distributions are not handled (that needs ``rpm2cpio`` and the
scriptlets' logic).  No directory or no package for the distribution: nothing is installed, the
message says so, and the build goes on as before.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

from onetools.errors import OnetoolsError
from onetools.market import layers

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

DEFAULT_DIRECTORY = "/usr/share/one/context"
SYSTEMD_DIRS = ("lib/systemd/system", "usr/lib/systemd/system", "etc/systemd/system")


class ContextPackageError(OnetoolsError):
    """A context package that can't be read or unpacked."""


def package_directory() -> Path | None:
    directory = Path(os.environ.get("ONETOOLS_CONTEXT_DIR") or DEFAULT_DIRECTORY)
    return directory if directory.is_dir() else None


def _in_root(root: Path, relative: str, depth: int = 0) -> Path | None:
    """``relative`` inside ``root`` with symlinks resolved *within* the root (an absolute link
    target means the root's own path), None when it leaves the root or loops."""
    current = root
    parts = [part for part in relative.split("/") if part not in ("", ".")]
    while parts:
        part = parts.pop(0)
        if part == "..":
            current = current.parent if current != root else root
            continue
        candidate = current / part
        if candidate.is_symlink():
            if depth > 20:
                return None
            target = os.readlink(candidate)
            base = root if target.startswith("/") else current
            rest = "/".join(parts)
            joined = f"{os.path.relpath(base, root)}/{target.lstrip('/')}/{rest}"
            return _in_root(root, joined, depth + 1)
        current = candidate
    return current


def os_release(root: Path) -> dict[str, str]:
    """The fields of the image's os-release (``/etc/os-release``, else
    ``/usr/lib/os-release``), read as data."""
    for name in ("etc/os-release", "usr/lib/os-release"):
        path = _in_root(root, name)
        if path is not None and path.is_file():
            fields = {}
            for line in path.read_text(errors="replace").splitlines():
                key, equal, value = line.partition("=")
                if equal and key.strip().isidentifier():
                    fields[key.strip()] = value.strip().strip("\"'")
            return fields
    return {}


def family(release: dict[str, str]) -> str | None:
    """``deb`` or ``apk`` by the os-release ID (and ID_LIKE); None for anything else."""
    names = [release.get("ID", "").lower(), *release.get("ID_LIKE", "").lower().split()]
    if any(name in ("debian", "ubuntu") for name in names):
        return "deb"
    if "alpine" in names:
        return "apk"
    return None


def _version_key(path: Path) -> list[object]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def find_package(directory: Path, kind: str) -> Path | None:
    pattern = "one-context_*.deb" if kind == "deb" else "one-context-*.apk"
    candidates = sorted(directory.glob(pattern), key=_version_key)
    return candidates[-1] if candidates else None


def _deb_data(package: Path, scratch: Path) -> Path:
    """The ``data.tar.*`` member of a .deb (an ``ar`` archive), written to ``scratch`` as a
    plain or gzip/xz tar that the layer code reads."""
    with open(package, "rb") as stream:
        if stream.read(8) != b"!<arch>\n":
            raise ContextPackageError(f"{package.name}: not a Debian package")
        while header := stream.read(60):
            if len(header) < 60:
                break
            name = header[:16].decode(errors="replace").strip().rstrip("/")
            size_text = header[48:58].decode(errors="replace").strip()
            if not size_text.isdigit():
                raise ContextPackageError(f"{package.name}: damaged ar header")
            size = int(size_text)
            if name.startswith("data.tar"):
                target = scratch / name
                with open(target, "wb") as output:
                    remaining = size
                    while remaining:
                        chunk = stream.read(min(remaining, 1024 * 1024))
                        if not chunk:
                            raise ContextPackageError(f"{package.name}: truncated")
                        output.write(chunk)
                        remaining -= len(chunk)
                if name.endswith(".zst"):
                    plain = scratch / "data.tar"
                    result = subprocess.run(
                        ["zstd", "-q", "-d", "-f", "-o", str(plain), str(target)],
                        capture_output=True,
                        check=False,
                    )
                    if result.returncode != 0:
                        raise ContextPackageError(f"{package.name}: cannot decompress {name}")
                    return plain
                return target
            stream.seek(size + (size % 2), os.SEEK_CUR)
    raise ContextPackageError(f"{package.name}: no data.tar member")


def _apk_data(package: Path, scratch: Path) -> Path:
    """An .apk is gzip streams of signature, control and data tars one after another: the
    data files, without the control entries (``.PKGINFO``, ``.SIGN.*``, scripts), as one tar."""
    target = scratch / "data.tar"
    try:
        with (
            gzip.open(package, "rb") as stream,
            tarfile.open(fileobj=stream, mode="r|", ignore_zeros=True) as source,
            tarfile.open(target, "w") as output,
        ):
            for member in source:
                name = member.name.removeprefix("./").strip("/")
                if name.startswith(".") and "/" not in name:
                    continue  # a control entry: .PKGINFO, .SIGN.*, install scripts
                data = source.extractfile(member) if member.isfile() else None
                output.addfile(member, data)
    except (OSError, EOFError, tarfile.TarError) as error:
        raise ContextPackageError(f"{package.name}: not a readable apk ({error})") from None
    return target


def _link(directory: Path, name: str, target: str) -> bool:
    """``directory/name`` → ``target`` (absolute inside the guest), unless it exists;
    whether it was made (what ``systemctl enable``/``rc-update add`` leave behind)."""
    directory.mkdir(parents=True, exist_ok=True)
    link = directory / name
    if os.path.lexists(link):
        return False
    os.symlink(target, link)
    return True


def _enable_systemd(root: Path, package_files: list[str]) -> list[str]:
    enabled = []
    for relative in package_files:
        directory, _, unit = relative.rpartition("/")
        if directory not in SYSTEMD_DIRS or not unit.endswith((".service", ".timer")):
            continue
        path = _in_root(root, relative)
        if path is None or not path.is_file():
            continue
        wanted = []
        section = ""
        for line in path.read_text(errors="replace").splitlines():
            line = line.strip()
            if line.startswith("["):
                section = line
            elif section == "[Install]" and line.startswith("WantedBy="):
                wanted += line.partition("=")[2].split()
        for target in wanted:
            if not re.fullmatch(r"[\w@.\-]+\.target", target):
                continue
            wants = _in_root(root, f"etc/systemd/system/{target}.wants")
            if wants is None:
                continue
            if _link(wants, unit, f"/{relative}"):
                enabled.append(f"{unit} ({target})")
    return enabled


def _enable_openrc(root: Path, package_files: list[str]) -> list[str]:
    enabled: list[str] = []
    runlevel = _in_root(root, "etc/runlevels/default")
    if runlevel is None:
        return enabled
    for relative in package_files:
        directory, _, name = relative.rpartition("/")
        if directory != "etc/init.d" or not name.startswith("one-context"):
            continue
        if _link(runlevel, name, f"/etc/init.d/{name}"):
            enabled.append(f"{name} (default runlevel)")
    return enabled


def install(root: Path, scratch: Path, say: Callable[[str], None]) -> list[str]:
    """Unpack the distribution's one-context package into ``root`` and enable its services;
    returns what changed (empty, with a message, when there is nothing to install)."""
    directory = package_directory()
    release = os_release(root)
    kind = family(release)
    distro = release.get("ID") or "unknown"
    if kind is None:
        say(f"context: no one-context package for {distro}: install it in the guest")
        return []
    if directory is None:
        wanted = os.environ.get("ONETOOLS_CONTEXT_DIR") or DEFAULT_DIRECTORY
        say(f"context: no context package directory {wanted}: one-context not installed")
        return []
    package = find_package(directory, kind)
    if package is None:
        say(f"context: no one-context .{kind} in {directory}: one-context not installed")
        return []
    work = scratch / "context-package"
    work.mkdir()
    try:
        data = _deb_data(package, work) if kind == "deb" else _apk_data(package, work)
        with tarfile.open(data, "r:*") as tar:
            files = [member.name.lstrip("./") for member in tar.getmembers() if not member.isdir()]
        try:
            layers.apply_layer(data, root, preserve_owner=True, warn=say)
        except layers.LayerError as error:
            raise ContextPackageError(f"{package.name}: {error}") from None
    except tarfile.TarError as error:
        raise ContextPackageError(f"{package.name}: damaged archive ({error})") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    changes = [f"installed {package.name} ({len(files)} files; its scripts not run)"]
    enabled = _enable_systemd(root, files) if kind == "deb" else _enable_openrc(root, files)
    changes += [f"enabled {name}" for name in enabled]
    return changes
