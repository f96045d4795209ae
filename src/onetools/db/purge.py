"""``purge-history`` and ``purge-done`` on the database itself (onedb.md §6.2, §6.3).

The originals go through oned's XML-RPC API; these run with oned stopped and talk to the
database directly.  Both page through ``vm_pool`` by id (keyset paging, ``batch`` rows per
query) and write each page in one transaction, so memory stays bounded however many VMs
there are.  Time windows are inclusive at both ends; ``None`` means unbounded.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from onetools.db.backends.base import Backend, Row
from onetools.db.body import int_of, parse_xml, set_text, to_xml
from onetools.db.errors import DatabaseError

DONE = 6
_ETIME = re.compile(r"<ETIME>\s*(?:<!\[CDATA\[)?\s*(\d+)")
_STIME = re.compile(r"<STIME>\s*(?:<!\[CDATA\[)?\s*(\d+)")


def _in_window(value: int, start: int | None, end: int | None) -> bool:
    return (start is None or value >= start) and (end is None or value <= end)


def _vm_pages(backend: Backend, where: str, batch: int) -> Iterator[list[Row]]:
    """``(oid, body)`` of the VMs matching ``where``, ``batch`` per query, in id order."""
    last = -1
    while True:
        rows = backend.query(
            f"SELECT oid, body FROM vm_pool WHERE {where} AND oid > ? ORDER BY oid "
            f"LIMIT {int(batch)}",
            (last,),
        )
        if not rows:
            return
        yield rows
        last = int(rows[-1][0])


def _first_time(pattern: re.Pattern[str], body: str, tag: str) -> int:
    """The VM's own STIME/ETIME: the first one in the body (they precede TEMPLATE/HISTORY)."""
    match = pattern.search(body)
    if match:
        return int(match.group(1))
    return int_of(parse_xml(body), tag, 0)


def _placeholders(count: int) -> str:
    return ", ".join("?" for _ in range(count))


# -- purge-done -------------------------------------------------------------------------------


def purge_done(
    backend: Backend, start: int | None = None, end: int | None = None, batch: int = 500
) -> int:
    """Delete the DONE VMs (state 6) whose ETIME is in [start, end], and their history rows.

    Returns how many VMs were removed.  As in the original, ``vm_monitoring``,
    ``vm_showback`` and ``vm_import`` rows are left alone (oned expires monitoring itself;
    showback is accounting data).
    """
    if start is not None and end is not None and start > end:
        raise DatabaseError("The start time is after the end time")
    removed = 0
    for rows in _vm_pages(backend, f"state = {DONE}", batch):
        doomed = [
            (int(oid),)
            for oid, body in rows
            if _in_window(_first_time(_ETIME, str(body), "ETIME"), start, end)
        ]
        if not doomed:
            continue
        with backend.transaction():
            backend.executemany("DELETE FROM history WHERE vid = ?", doomed)
            backend.executemany("DELETE FROM vm_pool WHERE oid = ?", doomed)
        removed += len(doomed)
    return removed


# -- purge-history ----------------------------------------------------------------------------


def purge_history(
    backend: Backend,
    start: int | None = None,
    end: int | None = None,
    vm_id: int | None = None,
    batch: int = 500,
) -> int:
    """Delete old history records and renumber the rest; returns how many were deleted.

    Without ``vm_id`` (6.0.0 semantics): for every VM that is not DONE and whose STIME is in
    [start, end], keep only its last two history records, renumbered 0 and 1.

    With ``vm_id`` (any state; HEAD semantics): delete that VM's closed records with
    STIME ≥ start and ETIME ≤ end, scanning in sequence order and stopping at the first open
    record (ETIME 0), never touching the last two records; the remaining records are
    renumbered from 0 without gaps.

    Renumbering updates the ``seq`` column, ``HISTORY/SEQ`` in each record and the record
    embedded in the VM body.  Unknown ``vm_id`` → ``DatabaseError``.
    """
    if start is not None and end is not None and start > end:
        raise DatabaseError("The start time is after the end time")
    if vm_id is not None:
        body = backend.scalar("SELECT body FROM vm_pool WHERE oid = ?", (vm_id,))
        if body is None:
            raise DatabaseError(f"VM {vm_id} not found")
        records = backend.query(
            "SELECT seq, stime, etime FROM history WHERE vid = ? ORDER BY seq", (vm_id,)
        )
        doomed: list[int] = []
        for seq, stime, etime in records[:-2]:
            if not etime:
                break
            if (start is None or int(stime) >= start) and (end is None or int(etime) <= end):
                doomed.append(int(seq))
        if not doomed:
            return 0
        keep = [int(r[0]) for r in records if int(r[0]) not in set(doomed)]
        with backend.transaction():
            _rewrite(backend, vm_id, str(body), doomed, keep)
        return len(doomed)

    deleted = 0
    for rows in _vm_pages(backend, f"state <> {DONE}", batch):
        candidates = {
            int(oid): str(body)
            for oid, body in rows
            if _in_window(_first_time(_STIME, str(body), "STIME"), start, end)
        }
        if not candidates:
            continue
        ids = sorted(candidates)
        seqs: dict[int, list[int]] = {}
        for vid, seq in backend.query(
            f"SELECT vid, seq FROM history WHERE vid IN ({_placeholders(len(ids))}) "
            "ORDER BY vid, seq",
            ids,
        ):
            seqs.setdefault(int(vid), []).append(int(seq))
        work = {vid: s for vid, s in seqs.items() if len(s) > 2}
        if not work:
            continue
        with backend.transaction():
            for vid, all_seqs in work.items():
                _rewrite(backend, vid, candidates[vid], all_seqs[:-2], all_seqs[-2:])
                deleted += len(all_seqs) - 2
    return deleted


def _rewrite(
    backend: Backend, vid: int, vm_body: str, doomed: Sequence[int], keep: Sequence[int]
) -> None:
    """Delete records ``doomed`` of VM ``vid`` and renumber ``keep`` (ascending) to 0, 1, …"""
    backend.executemany("DELETE FROM history WHERE vid = ? AND seq = ?", [(vid, s) for s in doomed])
    renumber = [(new, old) for new, old in enumerate(sorted(keep)) if new != old]
    for new, old in renumber:  # ascending: the target slot is always free
        body = backend.scalar("SELECT body FROM history WHERE vid = ? AND seq = ?", (vid, old))
        root = parse_xml(str(body))
        set_text(root, "SEQ", str(new))
        backend.execute(
            "UPDATE history SET seq = ?, body = ? WHERE vid = ? AND seq = ?",
            (new, to_xml(root), vid, old),
        )
    if renumber:
        vm = parse_xml(vm_body)
        record = vm.find("HISTORY_RECORDS/HISTORY")
        if record is not None:
            set_text(record, "SEQ", str(len(keep) - 1))
            backend.execute("UPDATE vm_pool SET body = ? WHERE oid = ?", (to_xml(vm), vid))
