"""Crash-safe multi-file writes, recovery, locking and backups."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from onetools.config import transaction
from onetools.config.transaction import FileWrite, commit, make_backup, recover, tree_lock
from onetools.errors import FatalError, LockError


def make_tree(root: Path, count: int = 4) -> list[Path]:
    files = []
    for index in range(count):
        path = root / "etc" / "one" / f"f{index}.conf"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"old {index}\n" * 50)
        path.chmod(0o640)
        files.append(path)
    return files


def test_commit_writes_all_files_keeping_modes(tmp_path: Path) -> None:
    files = make_tree(tmp_path)
    files[0].chmod(0o600)
    new_file = tmp_path / "etc" / "one" / "sub" / "new.yaml"
    writes = [FileWrite(str(p), f"new {i}\n".encode()) for i, p in enumerate(files)]
    writes.append(FileWrite(str(new_file), b"x: 1\n", mode=0o644))
    writes.append(FileWrite(str(files[3]), None))
    with tree_lock(str(tmp_path)):
        commit(str(tmp_path), writes[:3] + writes[4:], unprivileged=True)
    assert files[0].read_text() == "new 0\n"
    assert files[0].stat().st_mode & 0o777 == 0o600
    assert files[1].stat().st_mode & 0o777 == 0o640
    assert new_file.read_text() == "x: 1\n" and new_file.stat().st_mode & 0o777 == 0o644
    assert not files[3].exists()
    leftovers = [p for p in tmp_path.rglob("*") if transaction.TEMP_MARK in p.name]
    assert leftovers == []
    assert not (tmp_path / "etc/one/.onecfg/journal.json").exists()


def _journal(root: Path, state: str, entries: list[dict[str, str | None]]) -> None:
    path = root / "etc/one/.onecfg/journal.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"state": state, "entries": entries, "created_dirs": []}))


def test_recover_rolls_back_a_prepared_transaction(tmp_path: Path) -> None:
    files = make_tree(tmp_path, 2)
    temp = files[0].parent / f".{files[0].name}{transaction.TEMP_MARK}"
    temp.write_text("half written")
    _journal(tmp_path, "prepare", [{"target": str(files[0]), "temp": str(temp)}])
    assert recover(str(tmp_path)) == "rolled back"
    assert not temp.exists()
    assert files[0].read_text().startswith("old 0")


def test_recover_rolls_forward_a_committed_transaction(tmp_path: Path) -> None:
    files = make_tree(tmp_path, 3)
    temp = files[0].parent / f".{files[0].name}{transaction.TEMP_MARK}"
    temp.write_text("new 0\n")
    entries = [
        {"target": str(files[0]), "temp": str(temp)},
        {"target": str(files[1]), "temp": None},  # a deletion
        {"target": str(files[2]), "temp": str(files[2]) + ".gone"},  # already renamed
    ]
    _journal(tmp_path, "commit", entries)
    assert recover(str(tmp_path)) == "completed"
    assert files[0].read_text() == "new 0\n"
    assert not files[1].exists()
    assert recover(str(tmp_path)) is None


def test_corrupt_journal_is_a_clear_error(tmp_path: Path) -> None:
    make_tree(tmp_path, 1)
    path = tmp_path / "etc/one/.onecfg/journal.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(FatalError, match="Corrupt transaction journal"):
        recover(str(tmp_path))


CHILD = """
import sys
from onetools.config.transaction import FileWrite, commit, tree_lock
prefix, count = sys.argv[1], int(sys.argv[2])
writes = [FileWrite(f"{prefix}/etc/one/f{i}.conf", (f"new {i}\\n" * 80).encode())
          for i in range(count)]
with tree_lock(prefix):
    commit(prefix, writes, unprivileged=True)
print("done", flush=True)
"""


def test_sigkill_at_random_moments_leaves_all_old_or_all_new(tmp_path: Path) -> None:
    rng = random.Random(20261121)
    count = 5
    outcomes = {"old": 0, "new": 0}
    for attempt in range(25):
        root = tmp_path / f"run{attempt}"
        files = make_tree(root, count)
        env = dict(os.environ, ONETOOLS_TXN_DELAY="0.01")
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(root), str(count)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        time.sleep(rng.uniform(0.0, 0.35))
        child.send_signal(signal.SIGKILL)
        child.wait()
        # The next run recovers first (under the lock), whatever state the crash left.
        with tree_lock(str(root)):
            pass
        texts = [p.read_text() for p in files]
        states = {"new" if t.startswith("new") else "old" for t in texts}
        assert len(states) == 1, f"mixed tree after crash in attempt {attempt}: {texts}"
        for index, text in enumerate(texts):
            assert text in (f"old {index}\n" * 50, f"new {index}\n" * 80)
        outcomes[states.pop()] += 1
        assert not [p for p in root.rglob("*") if transaction.TEMP_MARK in p.name]
    # The random kill times must have hit both sides of the commit point at least once.
    assert outcomes["old"] and outcomes["new"], outcomes


def test_lock_serializes_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_tree(tmp_path, 1)
    code = (
        "import sys\nfrom onetools.config.transaction import tree_lock\n"
        "with tree_lock(sys.argv[1], timeout=0.3):\n    print('got it')\n"
    )
    with tree_lock(str(tmp_path)):
        blocked = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True
        )
    assert blocked.returncode != 0
    assert "LockError" in blocked.stderr and "holds the lock" in blocked.stderr
    free = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True
    )
    assert free.stdout.strip() == "got it"
    with tree_lock(str(tmp_path)), pytest.raises(LockError), tree_lock(str(tmp_path), 0.1):
        pass  # a second lock from the same process (another open file) waits too


def test_backup_copies_managed_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = make_tree(tmp_path / "tree", 2)
    (tmp_path / "tree/var/lib/one/remotes/etc").mkdir(parents=True)
    (tmp_path / "tree/var/lib/one/remotes/etc/kvmrc").write_text("A=1\n")
    monkeypatch.setenv("ONECFG_BACKUP_DIR", str(tmp_path / "backups"))
    target = Path(make_backup(str(tmp_path / "tree"), version="6.0.0"))
    assert target.parent == tmp_path / "backups"
    assert (target / "etc/one" / files[0].name).read_text() == files[0].read_text()
    assert (target / "var/lib/one/remotes/etc/kvmrc").read_text() == "A=1\n"
    assert (target / "version").read_text() == "6.0.0\n"
