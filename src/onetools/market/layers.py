"""Apply image layers (tar, tar.gz) to a root directory without trusting them.

A layer is checked in full before anything is written, and refused as a whole (one
``LayerError`` line) when an entry is hostile:

- a path that is absolute or has a ``..`` component (after dropping a leading ``./``);
- a path, whiteout or hardlink that would go THROUGH a symlink — one already in the root from a
  lower layer, or one this layer creates earlier (the "symlink then write" trick).  Symlinks
  themselves are created as they are (absolute targets are normal inside an image); they are
  never followed while applying;
- a hardlink whose target is absolute, has ``..``, or does not exist inside the root.

Other rules:

- OCI whiteouts: ``<dir>/.wh.<name>`` removes ``name`` from the lower layers, and
  ``<dir>/.wh..wh..opq`` empties ``dir`` of what the lower layers put there.  Whiteouts are
  applied before the layer's own entries, so siblings in the same layer survive an opaque dir.
- Device nodes and FIFOs are skipped with a warning (a disk image must not get device files
  from a registry; the guest's udev/devtmpfs makes what it needs).
- setuid and setgid bits are dropped from every file and directory (an image from a registry
  must not bring privileged binaries; the sticky bit, e.g. on /tmp, is kept).  Files that need
  them (``su``, ``sudo``, ``passwd``) lose them: the image builder documents this.
- Ownership from the tar is applied only when running as root AND ``preserve_owner`` is asked;
  otherwise everything belongs to the user applying the layer.
- Directory modes are set after all entries are written, so read-only dirs do not block writes.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from onetools.errors import OnetoolsError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
KEPT_MODE_BITS = 0o1777  # drop setuid (0o4000) and setgid (0o2000)
CHUNK = 1024 * 1024


class LayerError(OnetoolsError):
    """A layer cannot be applied (hostile entry, unreadable archive, I/O failure)."""


def _clean_name(name: str, what: str, layer: str) -> str:
    """The member path relative to the root, or a LayerError if it could escape it."""
    while name.startswith("./"):
        name = name[2:]
    name = name.rstrip("/")
    if name in ("", "."):
        return ""
    if name.startswith("/"):
        raise LayerError(f"layer {layer}: {what} {name!r} is an absolute path")
    parts = PurePosixPath(name).parts
    if ".." in parts:
        raise LayerError(f"layer {layer}: {what} {name!r} escapes the root")
    return "/".join(part for part in parts if part != ".")


def _parents(name: str) -> list[str]:
    parts = name.split("/")
    return ["/".join(parts[:index]) for index in range(1, len(parts))]


@dataclass
class _LayerState:
    """What the layer being checked does to paths, so lower-layer symlinks it replaces or
    whites out are not held against it."""

    symlinks: set[str] = field(default_factory=set)  # made by this layer (so far)
    replaced: set[str] = field(default_factory=set)  # made by this layer as non-symlinks
    removed: set[str] = field(default_factory=set)  # whited out from the lower layers
    opaque: set[str] = field(default_factory=set)  # dirs emptied of lower-layer content

    def lower_is_gone(self, path: str) -> bool:
        """Whether the lower layers' ``path`` is deleted by this layer's whiteouts."""
        if path in self.removed:
            return True
        return any(
            parent in self.opaque or parent in self.removed for parent in _parents(path)
        ) or ("" in self.opaque)


def _through_symlink(root: Path, name: str, state: _LayerState) -> str | None:
    """The first parent of ``name`` that is a symlink (in the root or this layer), or None."""
    for parent in _parents(name):
        if parent in state.symlinks:
            return parent
        if parent in state.replaced or state.lower_is_gone(parent):
            continue
        try:
            if stat.S_ISLNK(os.lstat(root / parent).st_mode):
                return parent
        except (FileNotFoundError, NotADirectoryError):
            return None
    return None


def _remove(path: Path) -> None:
    """Remove a file, symlink or directory tree without following symlinks."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        shutil.rmtree(path)
    else:
        path.unlink()


def _check_layer(
    members: list[tarfile.TarInfo], root: Path, layer: str
) -> list[tuple[tarfile.TarInfo, str]]:
    """Validate every entry; return (member, clean name) pairs in archive order."""
    named = [(member, _clean_name(member.name, "entry", layer)) for member in members]
    named = [(member, name) for member, name in named if name]
    state = _LayerState()
    # Whiteouts act before the layer's files (see _apply_checked), so collect them first.
    for _member, name in named:
        directory, _, base = name.rpartition("/")
        if base == OPAQUE_MARKER:
            state.opaque.add(directory)
        elif base.startswith(WHITEOUT_PREFIX):
            whited = base[len(WHITEOUT_PREFIX) :]
            if whited in ("", ".", ".."):
                raise LayerError(f"layer {layer}: bad whiteout {name!r}")
            state.removed.add(f"{directory}/{whited}" if directory else whited)
    layer_names: set[str] = set()
    for member, name in named:
        base = name.rpartition("/")[2]
        is_whiteout = base.startswith(WHITEOUT_PREFIX)
        # A whiteout is judged against the lower layers alone: this layer's own entries do not
        # exist yet when whiteouts are applied.
        via = _through_symlink(root, name, _LayerState() if is_whiteout else state)
        if via is not None:
            raise LayerError(f"layer {layer}: entry {name!r} goes through the symlink {via!r}")
        if is_whiteout:
            continue
        if member.islnk():
            target = _clean_name(member.linkname, "hardlink target", layer)
            if not target:
                raise LayerError(f"layer {layer}: hardlink {name!r} points at the root")
            if _through_symlink(root, target, state) is not None:
                raise LayerError(f"layer {layer}: hardlink {name!r} goes through a symlink")
            in_lower = not state.lower_is_gone(target) and os.path.lexists(root / target)
            if target not in layer_names and not in_lower:
                raise LayerError(f"layer {layer}: hardlink {name!r} -> {target!r} has no target")
        if member.issym():
            state.symlinks.add(name)
            state.replaced.discard(name)
        else:
            state.symlinks.discard(name)
            state.replaced.add(name)
        layer_names.add(name)
    return named


def apply_layer(
    archive: Path,
    root: Path,
    *,
    preserve_owner: bool = False,
    warn: Callable[[str], None] | None = None,
    max_bytes: int | None = None,
) -> int:
    """Apply one layer archive (tar, or tar compressed with gzip/bzip2/xz) onto ``root``.

    Returns the bytes of file content the layer holds.  With ``max_bytes`` a layer holding
    more is refused before anything is written (a decompression bomb never fills the disk).
    """
    layer = archive.name
    warn = warn or (lambda message: None)
    apply_owner = preserve_owner and os.geteuid() == 0
    try:
        tar = tarfile.open(archive, mode="r:*")  # noqa: SIM115 - closed by the with below
    except (tarfile.TarError, OSError) as error:
        raise LayerError(f"layer {layer}: not a readable tar archive ({error})") from None
    with tar:
        try:
            members = tar.getmembers()
        except (tarfile.TarError, OSError, EOFError) as error:
            raise LayerError(f"layer {layer}: damaged tar archive ({error})") from None
        checked = _check_layer(members, root, layer)
        content_bytes = sum(member.size for member, _name in checked if member.isfile())
        if max_bytes is not None and content_bytes > max_bytes:
            raise LayerError(
                f"layer {layer}: holds {content_bytes} bytes of files, over the {max_bytes} left"
            )
        try:
            _apply_checked(tar, checked, root, layer, apply_owner, warn)
        except OSError as error:
            raise LayerError(f"layer {layer}: cannot write {error.filename}: {error}") from None
        except (tarfile.TarError, EOFError) as error:
            raise LayerError(f"layer {layer}: damaged tar archive ({error})") from None
    return content_bytes


def _apply_checked(
    tar: tarfile.TarFile,
    checked: list[tuple[tarfile.TarInfo, str]],
    root: Path,
    layer: str,
    apply_owner: bool,
    warn: Callable[[str], None],
) -> None:
    # Whiteouts first: they act on the lower layers only (OCI image spec, layer changesets).
    for _member, name in checked:
        directory, _, base = name.rpartition("/")
        parent = root / directory
        if base == OPAQUE_MARKER:
            if os.path.isdir(parent) and not os.path.islink(parent):
                for child in os.listdir(parent):
                    _remove(parent / child)
        elif base.startswith(WHITEOUT_PREFIX):
            _remove(parent / base[len(WHITEOUT_PREFIX) :])
    directory_modes: list[tuple[Path, int, float]] = []
    for member, name in checked:
        base = name.rpartition("/")[2]
        if base.startswith(WHITEOUT_PREFIX):
            continue
        target = root / name
        for parent_name in _parents(name):
            parent_path = root / parent_name
            if os.path.islink(parent_path):
                # The check refused every path through a symlink it could foresee; never follow.
                raise LayerError(f"layer {layer}: {name!r} would go through a symlink")
            if not os.path.isdir(parent_path):
                _remove(parent_path)
                parent_path.mkdir(mode=0o755)
        mode = member.mode & KEPT_MODE_BITS
        if member.isdir():
            if os.path.lexists(target) and not (
                os.path.isdir(target) and not os.path.islink(target)
            ):
                _remove(target)
            target.mkdir(mode=0o700, exist_ok=True)
            directory_modes.append((target, mode, member.mtime))
        elif member.isfile():
            _remove(target)
            source = tar.extractfile(member)
            if source is None:
                raise LayerError(f"layer {layer}: cannot read {name!r}")
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
            descriptor = os.open(target, flags, 0o600)
            with os.fdopen(descriptor, "wb") as output, source:
                shutil.copyfileobj(source, output, CHUNK)
            os.chmod(target, mode)
        elif member.issym():
            _remove(target)
            os.symlink(member.linkname, target)
        elif member.islnk():
            link_target = root / _clean_name(member.linkname, "hardlink target", layer)
            _remove(target)
            # follow_symlinks=False: a hardlink to a symlink links the symlink itself, which is
            # harmless (it is never followed here); following it could link a host file.
            os.link(link_target, target, follow_symlinks=False)
            continue  # a hardlink shares the inode: owner and times are the target's
        elif member.ischr() or member.isblk() or member.isfifo():
            kind = "FIFO" if member.isfifo() else "device node"
            warn(f"layer {layer}: skipped {kind} {name!r}")
            continue
        else:
            warn(f"layer {layer}: skipped {name!r} of unknown tar type {member.type!r}")
            continue
        if apply_owner:
            os.lchown(target, member.uid, member.gid)
        if not member.isdir():
            os.utime(target, (member.mtime, member.mtime), follow_symlinks=False)
    # Deepest first so setting a parent's mtime is not undone by its children.
    for path, mode, mtime in reversed(directory_modes):
        os.chmod(path, mode)
        os.utime(path, (mtime, mtime), follow_symlinks=False)
