"""Build an OpenNebula disk image from a ``docker://`` URL, with no Docker daemon and no root.

Steps (the user-space equivalent of docker_downloader.sh, onemarketapp.md §8.3):

1. pull the manifest, config and layers from the registry (``registry.pull``, all verified);
2. apply the layers to a root directory (``layers.apply_layer``: whiteouts, nothing escapes);
3. contextualize — unless ``context=no`` — with exactly these changes (``contextualize``):
   - ``/etc/one-context.d/`` is created (empty; one-context and users drop scripts there);
   - ``/one_entrypoint.sh`` (0755) runs the image's own Entrypoint+Cmd with its Env, after
     sourcing ``/var/run/one-context/one_env`` when it exists (what 6.8 added);
   - ``/etc/resolv.conf`` becomes a marker comment (the image's build-time DNS is meaningless);
   - ``/etc/ssh/ssh_host_*`` keys are deleted, so each VM makes its own;
   - the root password is locked (a ``!`` prefix in ``/etc/shadow``) when it is set;
   - ``/.dockerenv`` is removed, so tools do not think they are in a container.
   - the one-context package of the image's distribution (``.deb`` or ``.apk`` from
     ``$ONETOOLS_CONTEXT_DIR``, else ``/usr/share/one/context``) is unpacked and its services
     enabled (``context_packages``).  The original apt/yum/apk-installed it, and the init
     system, by running the image's package manager in a container; nothing of the image runs
     here, so its maintainer scripts and dependencies are not run or installed.
4. a disk image with user-space tools: ``mkfs.<fs> -d ROOTFS`` of ``size`` MB (from the URL,
   or the rootfs size plus a margin), then ``qemu-img convert -O qcow2`` for ``format=qcow2``.

Scratch files live in a 0700 directory (``tempfile.mkdtemp``) removed afterwards, and the
destination is written under a temporary name beside it and renamed only when complete.

setuid/setgid bits are dropped from the image (layers.py), so ``sudo``/``su``/``passwd`` in
the guest need them restored by the guest's package manager if they are wanted.  Files keep the
layer's ownership only when this runs as root; as another user they belong to that user.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from onetools.errors import OnetoolsError
from onetools.market import layers, registry

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

FILESYSTEMS = ("ext4", "ext3", "ext2")
FORMATS = ("raw", "qcow2")
MARGIN_RATIO = 0.25  # free space added to a computed size, and inode/journal overhead
MIN_MARGIN_MB = 32
INODE_BYTES = 256  # mke2fs's default inode size
RESOLV_MARKER = "# This file is managed by OpenNebula contextualization\n"
ONE_ENV = "/var/run/one-context/one_env"


class ImageBuildError(OnetoolsError):
    """The disk image cannot be built (bad options, not enough space, a tool failed)."""


def _run(command: list[str], what: str) -> None:
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise ImageBuildError(f"{what}: {command[0]} is not installed") from None
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise ImageBuildError(f"{what} failed: {detail[-1] if detail else result.returncode}")


def _shell_quote(words: list[str]) -> str:
    import shlex

    return " ".join(shlex.quote(word) for word in words)


def _string_list(value: object) -> list[str]:
    if isinstance(value, list):
        return [str(item) for item in value]
    if isinstance(value, str) and value:
        return ["/bin/sh", "-c", value]
    return []


def entrypoint_script(config: dict[str, object]) -> str:
    """``/one_entrypoint.sh``: the image's Env, then Entrypoint + Cmd, after one_env."""
    image_config = config.get("config")
    settings = image_config if isinstance(image_config, dict) else {}
    lines = ["#!/bin/sh", "# Written by onetools from the image config (Env, Entrypoint, Cmd)."]
    for variable in _string_list(settings.get("Env")):
        name, equal, value = variable.partition("=")
        if equal and name.replace("_", "a").isalnum():
            lines.append(f"export {name}={_shell_quote([value])}")
    lines.append(f"[ -f {ONE_ENV} ] && . {ONE_ENV}")
    working_dir = settings.get("WorkingDir")
    if isinstance(working_dir, str) and working_dir:
        lines.append(f"cd {_shell_quote([working_dir])} || exit 1")
    command = _string_list(settings.get("Entrypoint")) + _string_list(settings.get("Cmd"))
    lines.append(f"exec {_shell_quote(command)}" if command else "exec /bin/sh")
    return "\n".join(lines) + "\n"


def _write_in_root(root: Path, relative: str, text: str, mode: int) -> None:
    """Write a file in the rootfs without following a symlink the image put there."""
    path = root / relative
    if os.path.islink(path.parent) or not os.path.isdir(path.parent):
        return
    if os.path.lexists(path):
        layers._remove(path)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(descriptor, "w") as output:
        output.write(text)
    os.chmod(path, mode)


def contextualize(root: Path, config: dict[str, object]) -> list[str]:
    """Make the rootfs boot under OpenNebula (see the module docstring); returns what changed."""
    changes = []
    context_dir = root / "etc" / "one-context.d"
    if not os.path.islink(root / "etc"):
        context_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        changes.append("/etc/one-context.d")
    _write_in_root(root, "one_entrypoint.sh", entrypoint_script(config), 0o755)
    changes.append("/one_entrypoint.sh")
    if os.path.lexists(root / "etc" / "resolv.conf"):
        _write_in_root(root, "etc/resolv.conf", RESOLV_MARKER, 0o644)
        changes.append("/etc/resolv.conf")
    ssh_dir = root / "etc" / "ssh"
    if ssh_dir.is_dir() and not ssh_dir.is_symlink():
        for key in sorted(ssh_dir.glob("ssh_host_*")):
            key.unlink()
            changes.append(f"-/etc/ssh/{key.name}")
    shadow = root / "etc" / "shadow"
    if shadow.is_file() and not shadow.is_symlink():
        entries = shadow.read_text(errors="surrogateescape").splitlines(keepends=True)
        for index, entry in enumerate(entries):
            fields = entry.split(":")
            if fields[0] == "root" and len(fields) > 1 and not fields[1].startswith(("!", "*")):
                fields[1] = "!" + fields[1]
                entries[index] = ":".join(fields)
                changes.append("/etc/shadow (root locked)")
        mode = shadow.stat().st_mode & 0o777
        _write_in_root(root, "etc/shadow", "".join(entries), mode)
    if os.path.lexists(root / ".dockerenv"):
        layers._remove(root / ".dockerenv")
        changes.append("-/.dockerenv")
    return changes


def rootfs_usage(root: Path) -> tuple[int, int]:
    """(MB the tree takes on ext4, roughly: 4 KiB blocks per file plus an inode each; entries)."""
    total = 0
    entries = 0
    for directory, subdirs, files in os.walk(root):
        for name in subdirs + files:
            info = os.lstat(os.path.join(directory, name))
            total += -(-info.st_size // 4096) * 4096 + INODE_BYTES
            entries += 1
    return -(-total // (1024 * 1024)) + 1, entries


def inode_count(size_mb: int, entries: int) -> int:
    """Inodes for the file system: mke2fs's own default (one per 4 KiB up to 512 MB, one per
    16 KiB above), raised to twice the image's entries + 1024 when that is more.  The default
    alone runs out before the blocks on big images of many small files (node_modules, Python
    trees), and then mkfs -d fails."""
    bytes_per_inode = 4096 if size_mb <= 512 else 16384
    return max(entries * 2 + 1024, size_mb * 1024 * 1024 // bytes_per_inode)


def _option(options: dict[str, str], key: str, allowed: tuple[str, ...]) -> str:
    value = options.get(key, allowed[0]).lower()
    if value not in allowed:
        raise ImageBuildError(f"{key}={value!r} is not supported (use {' or '.join(allowed)})")
    return value


def build_image(
    url: str,
    destination: Path,
    *,
    progress: Callable[[str], None] | None = None,
    workdir: Path | None = None,
    platform: str = registry.DEFAULT_PLATFORM,
    timeout: float = registry.DEFAULT_TIMEOUT,
) -> Path:
    """Build the disk image of a ``docker://`` URL at ``destination``; returns it."""
    say = progress or (lambda message: None)
    reference = registry.parse_docker_url(url)
    options = reference.options
    filesystem = _option(options, "filesystem", FILESYSTEMS)
    image_format = _option(options, "format", FORMATS)
    context = options.get("context", "yes").lower()
    if context not in ("yes", "no"):
        raise ImageBuildError(f"context={context!r} is not supported (use yes or no)")
    size_mb: int | None = None
    if "size" in options:
        if not options["size"].isdigit() or int(options["size"]) <= 0:
            raise ImageBuildError(f"size={options['size']!r} is not a number of MB")
        size_mb = int(options["size"])
    destination = Path(destination)
    if not destination.parent.is_dir():
        raise ImageBuildError(f"{destination.parent} is not a directory")
    scratch = Path(tempfile.mkdtemp(prefix="onetools-docker-", dir=workdir))  # mode 0700
    partial: Path | None = None
    try:
        blobs = scratch / "blobs"
        rootfs = scratch / "rootfs"
        blobs.mkdir()
        rootfs.mkdir()
        say(f"pulling {reference}")
        # Compressed layers bigger than the disk (plus gzip's worst-case growth) cannot fit.
        layer_limit = size_mb * 1024 * 1024 * 11 // 10 if size_mb is not None else None
        pulled = registry.pull(
            reference, blobs, platform=platform, timeout=timeout, max_layer_bytes=layer_limit
        )
        # With a size, layers whose files add up to more than the disk are refused up front.
        space_left = size_mb * 1024 * 1024 if size_mb is not None else None
        for descriptor, path in pulled.layers:
            say(f"applying layer {descriptor.digest[:19]}")
            written = layers.apply_layer(
                path, rootfs, preserve_owner=True, warn=say, max_bytes=space_left
            )
            if space_left is not None:
                space_left = max(0, space_left - written)
            path.unlink()
        if context == "yes":
            from onetools.market import context_packages

            for change in contextualize(rootfs, pulled.config):
                say(f"context: {change}")
            try:
                for change in context_packages.install(rootfs, scratch, say):
                    say(f"context: {change}")
            except context_packages.ContextPackageError as error:
                raise ImageBuildError(f"one-context: {error}") from None
        needed_mb, entries = rootfs_usage(rootfs)
        if size_mb is None:
            size_mb = needed_mb + max(MIN_MARGIN_MB, int(needed_mb * MARGIN_RATIO))
        elif size_mb <= needed_mb:
            raise ImageBuildError(f"Not enough space, image size must be at least {needed_mb} MB")
        descriptor_number, partial_name = tempfile.mkstemp(
            prefix=f".{destination.name}.", suffix=".partial", dir=destination.parent
        )
        os.close(descriptor_number)
        partial = Path(partial_name)
        raw = partial if image_format == "raw" else scratch / "disk.raw"
        raw.unlink(missing_ok=True)  # mke2fs makes the file at the size given
        say(f"making {filesystem} of {size_mb} MB")
        _run(
            [
                f"mkfs.{filesystem}",
                "-q",
                "-F",
                "-t",
                filesystem,
                "-d",
                str(rootfs),
                "-N",
                str(inode_count(size_mb, entries)),
                "-E",
                "root_owner=0:0",
                "-L",
                "root",
                str(raw),
                f"{size_mb}M",
            ],
            f"mkfs.{filesystem}",
        )
        if image_format == "qcow2":
            say("converting to qcow2")
            _run(
                ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(partial)],
                "qemu-img convert",
            )
        os.chmod(partial, 0o644)
        os.replace(partial, destination)
        partial = None
        say(f"wrote {destination}")
        return destination
    finally:
        if partial is not None:
            partial.unlink(missing_ok=True)
        shutil.rmtree(scratch, ignore_errors=True)
