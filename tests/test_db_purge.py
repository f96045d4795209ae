"""onedb purge-done and purge-history, offline, on every engine."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from db_objects import NOW, add_vm, body_of, consistent_world, create_schema, dump
from onetools.db.backends import open_backend
from onetools.db.backends.base import Backend, ConnectionSettings
from onetools.db.errors import DatabaseError
from onetools.db.purge import purge_done, purge_history


@pytest.fixture
def world(any_backend_settings: ConnectionSettings) -> Iterator[Backend]:
    backend = open_backend(any_backend_settings, create=True)
    create_schema(backend)
    consistent_world(backend)
    with backend.transaction():
        # DONE VMs ending at NOW-800 (VM 4), NOW-500 (VM 10) and NOW-100 (VM 11)
        for oid, end in ((10, NOW - 500), (11, NOW - 100)):
            add_vm(backend, oid, f"done{oid}", 1, 1, 6, 0, history=[(0, "node0", end - 50, end)],
                   stime=end - 50, etime=end)  # fmt: skip
        # an ACTIVE VM with five history records (seq 0..4), the last one open
        records = [(0, "node0", NOW - 1000 + 100 * i, NOW - 950 + 100 * i) for i in range(4)]
        add_vm(backend, 20, "busy", 1, 1, 3, 3, history=[*records, (0, "node0", NOW - 10, 0)],
               stime=NOW - 1000)  # fmt: skip
    yield backend
    backend.close()


def vms(backend: Backend) -> list[int]:
    return [int(r[0]) for r in backend.query("SELECT oid FROM vm_pool ORDER BY oid")]


def seqs(backend: Backend, vid: int) -> list[int]:
    rows = backend.query("SELECT seq FROM history WHERE vid = ? ORDER BY seq", (vid,))
    return [int(r[0]) for r in rows]


def test_purge_done_window(world: Backend) -> None:
    assert purge_done(world, start=NOW - 600, end=NOW - 400) == 1
    assert vms(world) == [0, 1, 2, 3, 4, 11, 20]
    assert seqs(world, 10) == []
    assert seqs(world, 4) == [0]


def test_purge_done_everything_with_small_batches(world: Backend) -> None:
    assert purge_done(world, batch=1) == 3
    assert vms(world) == [0, 1, 2, 3, 20]
    assert world.scalar("SELECT COUNT(*) FROM history WHERE vid IN (4, 10, 11)") == 0


def test_purge_done_open_ended(world: Backend) -> None:
    assert purge_done(world, start=NOW - 600) == 2
    assert purge_done(world, end=NOW - 600) == 1
    assert purge_done(world) == 0


def test_purge_done_bad_window(world: Backend) -> None:
    before = dump(world)
    with pytest.raises(DatabaseError):
        purge_done(world, start=10, end=5)
    assert dump(world) == before


def test_purge_history_keeps_last_two(world: Backend) -> None:
    assert purge_history(world) == 3
    assert seqs(world, 20) == [0, 1]
    # the kept records were seq 3 (closed) and 4 (open), renumbered
    rows = world.query("SELECT seq, etime, body FROM history WHERE vid = 20 ORDER BY seq")
    assert int(rows[1][1]) == 0
    assert "<SEQ>1</SEQ>" in str(rows[1][2]) and "<SEQ>0</SEQ>" in str(rows[0][2])
    assert "<SEQ>1</SEQ>" in body_of(world, "vm_pool", 20)
    # VM 0 has two records: untouched; DONE VMs untouched
    assert seqs(world, 0) == [0, 1]
    assert purge_history(world) == 0


def test_purge_history_vm_stime_window(world: Backend) -> None:
    assert purge_history(world, start=NOW - 10) == 0  # VM 20 started at NOW-1000
    assert seqs(world, 20) == [0, 1, 2, 3, 4]
    assert purge_history(world, start=NOW - 2000, end=NOW) == 3


def test_purge_history_one_vm_by_record_window(world: Backend) -> None:
    # records 0..3 end at NOW-950, -850, -750, -650; only 1 and 2 fall in the window
    assert purge_history(world, start=NOW - 900, end=NOW - 700, vm_id=20) == 2
    assert seqs(world, 20) == [0, 1, 2]
    etimes = [
        int(r[0]) for r in world.query("SELECT etime FROM history WHERE vid = 20 ORDER BY seq")
    ]
    assert etimes == [NOW - 950, NOW - 650, 0]
    assert "<SEQ>2</SEQ>" in body_of(world, "vm_pool", 20)


def test_purge_history_one_vm_keeps_two(world: Backend) -> None:
    assert purge_history(world, vm_id=20) == 3
    assert seqs(world, 20) == [0, 1]
    assert purge_history(world, vm_id=0) == 0


def test_purge_history_unknown_vm(world: Backend) -> None:
    with pytest.raises(DatabaseError, match="VM 999 not found"):
        purge_history(world, vm_id=999)
