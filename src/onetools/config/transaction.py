"""Crash-safe multi-file writes, the tree lock and emergency backups.

A change to several files goes through a journal kept in ``<prefix>/etc/one/.onecfg/``:

1. the journal is written in state ``prepare`` listing every target and its temp file;
2. each new content goes to a hidden temp file next to its target (same filesystem), is fsynced
   and given the target's owner and mode;
3. the journal is switched to ``commit`` (written aside, fsynced, renamed: the commit point);
4. temp files are renamed over their targets, deletions done, directories fsynced;
5. the journal is removed.

A crash before (3) leaves the targets untouched and the next run removes the temp files (roll
back); a crash after (3) is completed by the next run (roll forward).  Every run takes an
exclusive ``flock`` on ``.onecfg/lock`` first, so concurrent runs on one tree are serialized, and
recovers any interrupted transaction before doing anything else.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import grp
import json
import os
import pwd
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from onetools.config.files import MANAGED_ROOTS, prefixed
from onetools.errors import FatalError, LockError
from onetools.log import any_, get_logger

STATE_DIR = ".onecfg"
TEMP_MARK = ".onecfg-new"
DEFAULT_BACKUP_DIR = "/var/lib/one/backups/config"
LOCAL_BACKUP_DIR = "/tmp/onescape/backups"

log = get_logger("transaction")


@dataclass
class FileWrite:
    """One file to write (``content``) or delete (``content is None``), by absolute path.

    ``owner``/``group``/``mode`` apply to files that do not exist yet; an existing file keeps its
    own owner and mode.
    """

    path: str
    content: bytes | None
    owner: str | None = None
    group: str | None = None
    mode: int = 0o640


def state_dir(prefix: str) -> str:
    etc = prefixed(prefix, "/etc/one")
    if not os.path.isdir(etc):
        raise FatalError(f"Directory '{etc}' not found")
    return os.path.join(etc, STATE_DIR)


def _crash_point() -> None:
    """Testing aid: ``ONETOOLS_TXN_DELAY`` seconds of sleep between commit steps, so that a
    crash test can kill the process in the middle of a transaction."""
    delay = os.environ.get("ONETOOLS_TXN_DELAY")
    if delay:
        time.sleep(float(delay))


@contextlib.contextmanager
def tree_lock(prefix: str, timeout: float | None = None) -> Iterator[None]:
    """Hold the exclusive lock of a tree; waits for another run, up to ``timeout`` seconds."""
    directory = state_dir(prefix)
    os.makedirs(directory, mode=0o750, exist_ok=True)
    if timeout is None:
        timeout = float(os.environ.get("ONECFG_LOCK_TIMEOUT", "600"))
    fd = os.open(os.path.join(directory, "lock"), os.O_RDWR | os.O_CREAT, 0o640)
    try:
        deadline = time.monotonic() + timeout
        waiting = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if not waiting:
                    log.warning(f"Waiting for another onecfg run on '{prefix}' to finish")
                    waiting = True
                if time.monotonic() >= deadline:
                    raise LockError(
                        f"Another onecfg run holds the lock on '{prefix}' (gave up after "
                        f"{timeout:g} s)"
                    ) from None
                time.sleep(0.05)
        recover(prefix)
        yield
    finally:
        os.close(fd)


def _journal_path(prefix: str) -> str:
    return os.path.join(state_dir(prefix), "journal.json")


def write_atomic(path: str, data: bytes, mode: int = 0o644) -> None:
    """Write one file durably: temp file in the same directory, fsync, rename."""
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}{TEMP_MARK}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(path) or ".")


def _write_durable(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(path))


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_name(path: str) -> str:
    directory, name = os.path.split(path)
    return os.path.join(directory, f".{name}{TEMP_MARK}")


def recover(prefix: str) -> str | None:
    """Finish or undo an interrupted transaction; returns what was done, if anything."""
    journal = _journal_path(prefix)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(f"{journal}.tmp")
    try:
        with open(journal, encoding="utf-8") as handle:
            record = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise FatalError(f"Corrupt transaction journal '{journal}': {exc}") from None
    entries = record.get("entries", [])
    if record.get("state") == "commit":
        _roll_forward(entries)
        outcome = "completed"
    else:
        for entry in entries:
            if entry.get("temp"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry["temp"])
        for directory in reversed(record.get("created_dirs", [])):
            with contextlib.suppress(OSError):
                os.rmdir(directory)
        outcome = "rolled back"
    os.unlink(journal)
    _fsync_dir(os.path.dirname(journal))
    log.warning(f"Interrupted configuration change in '{prefix}' {outcome}")
    return outcome


def _roll_forward(entries: list[dict[str, str | None]]) -> None:
    touched: set[str] = set()
    for entry in entries:
        target = str(entry["target"])
        temp = entry.get("temp")
        if temp is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(target)
        elif os.path.exists(temp):
            os.replace(temp, target)
        touched.add(os.path.dirname(target))
        _crash_point()
    for directory in touched:
        if os.path.isdir(directory):
            _fsync_dir(directory)


@dataclass
class NewDir:
    """A directory to create (absolute path) with its owner and mode."""

    path: str
    owner: str | None = None
    group: str | None = None
    mode: int = 0o750


def commit(
    prefix: str,
    writes: list[FileWrite],
    unprivileged: bool = False,
    directories: list[NewDir] | None = None,
) -> None:
    """Write every file of ``writes`` or none of them (see the module docstring).

    ``directories`` are created too (parents of new files are created 0750 anyway).  Must be
    called with the tree lock held.
    """
    if not writes and not directories:
        return
    journal = _journal_path(prefix)
    wanted = {d.path: d for d in directories or []}
    created_dirs: list[str] = []
    for path in list(wanted) + [os.path.dirname(w.path) for w in writes if w.content]:
        for missing in _missing_dirs(path):
            if missing not in created_dirs:
                created_dirs.append(missing)
    entries = [
        {"target": w.path, "temp": None if w.content is None else _temp_name(w.path)}
        for w in writes
    ]
    record = {"state": "prepare", "entries": entries, "created_dirs": created_dirs}
    _write_durable(journal, json.dumps(record).encode())
    _crash_point()
    for directory in created_dirs:
        os.mkdir(directory, 0o750)
        spec = wanted.get(directory)
        if spec is not None:
            os.chmod(directory, spec.mode)
            if not unprivileged:
                os.chown(directory, *_ids(spec.owner, spec.group))
    for write, entry in zip(writes, entries, strict=True):
        if write.content is not None and entry["temp"] is not None:
            _write_temp(write, entry["temp"], unprivileged)
            _crash_point()
    record["state"] = "commit"
    _write_durable(journal, json.dumps(record).encode())
    _crash_point()
    _roll_forward(entries)
    os.unlink(journal)
    _fsync_dir(os.path.dirname(journal))


def _missing_dirs(directory: str) -> list[str]:
    missing: list[str] = []
    while directory and not os.path.isdir(directory):
        missing.append(directory)
        directory = os.path.dirname(directory)
    return list(reversed(missing))


def _write_temp(write: FileWrite, temp: str, unprivileged: bool) -> None:
    assert write.content is not None
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(write.content)
        handle.flush()
        os.fsync(handle.fileno())
    try:
        current = os.stat(write.path)
    except FileNotFoundError:
        os.chmod(temp, write.mode)
        if not unprivileged:
            uid, gid = _ids(write.owner, write.group)
            os.chown(temp, uid, gid)
    else:
        os.chmod(temp, current.st_mode & 0o7777)
        if not unprivileged:
            with contextlib.suppress(PermissionError):
                os.chown(temp, current.st_uid, current.st_gid)


def _ids(owner: str | None, group: str | None) -> tuple[int, int]:
    """Numeric ids for a created file; -1 (unchanged) for names this host doesn't know."""
    uid = gid = -1
    if owner:
        with contextlib.suppress(KeyError):
            uid = pwd.getpwnam(owner).pw_uid
    if group:
        with contextlib.suppress(KeyError):
            gid = grp.getgrnam(group).gr_gid
    return uid, gid


def check_no_symlinks(prefix: str, paths: list[str]) -> None:
    """Refuse to write through symbolic links (a rename would replace the link itself)."""
    for path in paths:
        current = prefixed(prefix, path)
        top = prefixed(prefix, "/")
        while len(current) > len(top.rstrip("/")) and current != "/":
            if os.path.islink(current):
                raise FatalError(f"Found symbolic link '{current}'")
            current = os.path.dirname(current)


def backup_root() -> str:
    """Where emergency backups go: ``ONECFG_BACKUP_DIR``, else the original's defaults."""
    if os.environ.get("ONECFG_BACKUP_DIR"):
        return os.environ["ONECFG_BACKUP_DIR"]
    if os.environ.get("ONE_LOCATION"):
        return LOCAL_BACKUP_DIR
    return DEFAULT_BACKUP_DIR


def make_backup(prefix: str, version: str | None = None) -> str:
    """Copy the managed directories of ``prefix`` into a new timestamped backup directory."""
    stamp = datetime.now().strftime("%Y-%m-%d_%H:%M:%S")
    base = os.path.join(backup_root(), f"{stamp}_{os.getpid()}")
    ignore = shutil.ignore_patterns(STATE_DIR, f"*{TEMP_MARK}")
    try:
        os.makedirs(backup_root(), mode=0o700, exist_ok=True)
        target, counter = base, 0
        while True:  # two backups in one second from one process get distinct names
            try:
                os.mkdir(target, 0o700)
                break
            except FileExistsError:
                counter += 1
                target = f"{base}.{counter}"
        for root in MANAGED_ROOTS:
            source = prefixed(prefix, root)
            if os.path.isdir(source):
                shutil.copytree(
                    source, os.path.join(target, root.lstrip("/")), symlinks=True, ignore=ignore
                )
        if version:
            with open(os.path.join(target, "version"), "w", encoding="utf-8") as handle:
                handle.write(f"{version}\n")
    except OSError as exc:
        raise FatalError(f"Error making backup due to {exc}") from None
    any_(log, f"Backup stored in '{target}'")
    return target
