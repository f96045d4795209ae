"""Speed and memory of onedb on a big cloud; prints figures, asserts nothing.

Usage: python benchmarks/bench_onedb.py [--vms N] [--done N] [--engines sqlite,mariadb]

Builds, on the fly, a 6.0.0 database with N VMs (default 100,000; each with two history
records, NICs and disks), 500 hosts, 2,000 images and 1,000 users with quotas, then measures
(wall time and peak RSS through GNU time, one fresh process each):

* `onedb upgrade --no-backup` to 6.10.0 (target <= 60 s, <= 300 MB);
* `onedb fsck --dry` and `onedb fsck` on the upgraded database (target <= 60 s, <= 300 MB);
* `onedb purge-done` on a database with 200,000 DONE VMs (target <= 300 MB);
* `onedb version` (target <= 80 ms; median of 11 runs).

MariaDB runs on a private server on loopback started by the benchmark (the test suite's
helper in tests/db_servers.py), stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOW = 1_700_000_000
BATCH = 2000


def onedb() -> list[str]:
    script = Path(sys.executable).with_name("onedb")
    return [str(script)] if script.exists() else [sys.executable, "-m", "onetools.cli.onedb"]


def timed(command: list[str], show: bool = False) -> tuple[float, float | None, int]:
    """(wall seconds, peak RSS MiB or None, exit code) of one run; ``show`` passes its
    output through."""
    gnu_time = shutil.which("time", path="/usr/bin")
    with tempfile.NamedTemporaryFile("r") as report:
        wrapped = [gnu_time, "-f", "%M", "-o", report.name, *command] if gnu_time else command
        start = time.perf_counter()
        completed = subprocess.run(
            wrapped,
            stdout=None if show else subprocess.DEVNULL,
            stderr=None if show else subprocess.PIPE,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - start
        rss = int(report.read().split()[-1]) / 1024 if gnu_time else None
    if completed.returncode not in (0, 1, 2):
        print(f"  ! exit {completed.returncode}: {(completed.stderr or '').strip()[-300:]}")
    return wall, rss, completed.returncode


VERSION_RUNS = 11


def version_latency(command: list[str]) -> tuple[float, float | None]:
    """Median wall time and peak RSS of ``VERSION_RUNS`` runs: one run of a ~60 ms command
    says more about this machine's noise than about the command."""
    runs = [timed(command) for _ in range(VERSION_RUNS)]
    walls = sorted(wall for wall, _, _ in runs)
    return walls[len(walls) // 2], max((rss for _, rss, _ in runs if rss is not None), default=None)


# -- data ---------------------------------------------------------------------------------------
def _t(tag: str, value: object) -> str:
    return f"<{tag}>{value}</{tag}>"


def _perms() -> str:
    return (
        "<PERMISSIONS><OWNER_U>1</OWNER_U><OWNER_M>1</OWNER_M><OWNER_A>0</OWNER_A>"
        "<GROUP_U>0</GROUP_U><GROUP_M>0</GROUP_M><GROUP_A>0</GROUP_A><OTHER_U>0</OTHER_U>"
        "<OTHER_M>0</OTHER_M><OTHER_A>0</OTHER_A></PERMISSIONS>"
    )


def _mac(oid: int) -> str:
    return f"02:00:0a:{oid >> 16 & 255:02x}:{oid >> 8 & 255:02x}:{oid & 255:02x}"


def vm_body(oid: int, uid: int, gid: int, state: int, hid: int, image: int, etime: int) -> str:
    nic = (
        f"<NIC>{_t('NIC_ID', 0)}{_t('NETWORK_ID', 0)}{_t('NETWORK', 'public')}"
        f"{_t('AR_ID', 0)}{_t('MAC', _mac(oid))}"
        f"{_t('IP', f'10.{oid >> 16 & 255}.{oid >> 8 & 255}.{oid & 255}')}"
        f"{_t('SECURITY_GROUPS', 0)}{_t('VN_MAD', 'bridge')}{_t('BRIDGE', 'br0')}</NIC>"
    )
    disk = (
        f"<DISK>{_t('DISK_ID', 0)}{_t('IMAGE_ID', image)}{_t('IMAGE', f'img{image}')}"
        f"{_t('DATASTORE_ID', 1)}{_t('SIZE', 2048)}{_t('TYPE', 'FILE')}"
        f"{_t('TM_MAD', 'ssh')}{_t('DEV_PREFIX', 'vd')}</DISK>"
    )
    history = (
        f"<HISTORY>{_t('OID', oid)}{_t('SEQ', 1)}{_t('HOSTNAME', f'host{hid}')}"
        f"{_t('HID', hid)}{_t('CID', 0)}{_t('STIME', NOW)}{_t('ETIME', etime)}"
        f"{_t('VM_MAD', 'kvm')}{_t('TM_MAD', 'ssh')}{_t('DS_ID', 0)}"
        f"{_t('PSTIME', NOW)}{_t('PETIME', NOW)}{_t('RSTIME', NOW)}{_t('RETIME', 0)}"
        f"{_t('ESTIME', 0)}{_t('EETIME', 0)}{_t('ACTION', 0)}{_t('UID', -1)}"
        f"{_t('GID', -1)}{_t('REQUEST_ID', -1)}</HISTORY>"
    )
    return (
        f"<VM>{_t('ID', oid)}{_t('UID', uid)}{_t('GID', gid)}{_t('UNAME', f'user{uid}')}"
        f"{_t('GNAME', 'users')}{_t('NAME', f'vm-{oid}')}{_perms()}{_t('LAST_POLL', NOW)}"
        f"{_t('STATE', state)}{_t('LCM_STATE', 3 if state == 3 else 0)}{_t('PREV_STATE', state)}"
        f"{_t('PREV_LCM_STATE', 3)}{_t('RESCHED', 0)}{_t('STIME', NOW)}{_t('ETIME', etime)}"
        f"{_t('DEPLOY_ID', f'one-{oid}')}<MONITORING/><TEMPLATE>{_t('CPU', 1)}"
        f"{_t('MEMORY', 1024)}{_t('VCPU', 2)}{disk}{nic}"
        "<GRAPHICS><LISTEN>0.0.0.0</LISTEN><PORT>5900</PORT><TYPE>VNC</TYPE></GRAPHICS>"
        f"{_t('TEMPLATE_ID', 0)}{_t('VMID', oid)}</TEMPLATE>"
        "<USER_TEMPLATE><DESCRIPTION>benchmark</DESCRIPTION></USER_TEMPLATE>"
        f"<HISTORY_RECORDS>{history}</HISTORY_RECORDS></VM>"
    )


def _batches(rows: Iterator[tuple[object, ...]]) -> Iterator[list[tuple[object, ...]]]:
    batch: list[tuple[object, ...]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def populate(backend: object, vms: int, done_vms: int, version: str) -> None:
    """Bootstrap ``version`` and bulk-insert the benchmark's objects."""
    from onetools.db.backends.base import Backend
    from onetools.db.schema import bootstrap

    assert isinstance(backend, Backend)
    with backend.transaction():
        bootstrap(backend, version)
    std = "(oid, name, body, uid, gid, owner_u, group_u, other_u)"

    def insert(table: str, columns: str, rows: Iterator[tuple[object, ...]]) -> None:
        marks = ", ".join("?" * (columns.count(",") + 1))
        for batch in _batches(rows):
            with backend.transaction():
                backend.executemany(f"INSERT INTO {table} {columns} VALUES ({marks})", batch)

    insert(
        "user_pool",
        std,
        (
            (
                uid,
                f"user{uid}",
                f"<USER>{_t('ID', uid)}{_t('GID', 1)}<GROUPS><ID>1</ID></GROUPS>"
                f"{_t('GNAME', 'users')}{_t('NAME', f'user{uid}')}{_t('PASSWORD', 'x')}"
                f"{_t('AUTH_DRIVER', 'core')}{_t('ENABLED', 1)}<LOGIN_TOKEN/><TEMPLATE/></USER>",
                uid,
                1,
                1,
                0,
                0,
            )
            for uid in range(2, 1002)
        ),
    )
    insert(
        "user_quotas",
        "(user_oid, body)",
        (
            (
                uid,
                f"<QUOTAS>{_t('ID', uid)}<DATASTORE_QUOTA/><NETWORK_QUOTA/><VM_QUOTA/>"
                "<IMAGE_QUOTA/></QUOTAS>",
            )
            for uid in range(2, 1002)
        ),
    )
    insert(
        "host_pool",
        "(oid, name, body, state, uid, gid, owner_u, group_u, other_u, cid)",
        (
            (
                hid,
                f"host{hid}",
                f"<HOST>{_t('ID', hid)}{_t('NAME', f'host{hid}')}{_t('STATE', 2)}"
                f"{_t('PREV_STATE', 2)}{_t('IM_MAD', 'kvm')}{_t('VM_MAD', 'kvm')}"
                f"{_t('CLUSTER_ID', 0)}"
                f"{_t('CLUSTER', 'default')}<HOST_SHARE>{_t('MEM_USAGE', 0)}{_t('CPU_USAGE', 0)}"
                f"{_t('TOTAL_MEM', 268435456)}{_t('TOTAL_CPU', 6400)}{_t('RUNNING_VMS', 0)}"
                "</HOST_SHARE><VMS/><TEMPLATE/></HOST>",
                2,
                0,
                0,
                1,
                0,
                0,
                0,
            )
            for hid in range(500)
        ),
    )
    insert(
        "image_pool",
        std,
        (
            (
                iid,
                f"img{iid}",
                f"<IMAGE>{_t('ID', iid)}{_t('UID', 0)}{_t('GID', 0)}"
                f"{_t('NAME', f'img{iid}')}{_perms()}{_t('TYPE', 0)}{_t('PERSISTENT', 0)}"
                f"{_t('SIZE', 2048)}{_t('STATE', 1)}{_t('RUNNING_VMS', 0)}{_t('DATASTORE_ID', 1)}"
                f"{_t('DATASTORE', 'default')}<VMS/><CLONES/><APP_CLONES/><TEMPLATE/></IMAGE>",
                0,
                0,
                1,
                0,
                0,
            )
            for iid in range(2000)
        ),
    )
    total = vms + done_vms

    def vm_rows() -> Iterator[tuple[object, ...]]:
        for oid in range(total):
            state, etime = (6, NOW + oid) if oid >= vms else (3, 0)
            uid = 2 + oid % 1000
            yield (
                oid,
                f"vm-{oid}",
                vm_body(oid, uid, 1, state, oid % 500, oid % 2000, etime),
                uid,
                1,
                state,
                3 if state == 3 else 0,
                1,
                0,
                0,
                "<VM/>",
                "{}" if last == "body_json" else f"vm-{oid}",
            )

    # 6.10.0 replaced vm_pool.search_token with body_json.
    last = "body_json" if "body_json" in backend.columns("vm_pool") else "search_token"
    insert(
        "vm_pool",
        "(oid, name, body, uid, gid, state, lcm_state, owner_u, group_u, other_u, "
        f"short_body, {last})",
        vm_rows(),
    )

    def history_rows() -> Iterator[tuple[object, ...]]:
        for oid in range(total):
            for seq in (0, 1):
                yield (
                    oid,
                    seq,
                    f"<HISTORY>{_t('OID', oid)}{_t('SEQ', seq)}"
                    f"{_t('HOSTNAME', f'host{oid % 500}')}{_t('HID', oid % 500)}"
                    f"{_t('CID', 0)}{_t('STIME', NOW)}{_t('ETIME', NOW + seq)}"
                    f"{_t('VM_MAD', 'kvm')}{_t('TM_MAD', 'ssh')}{_t('DS_ID', 0)}</HISTORY>",
                    NOW,
                    NOW + seq,
                )

    insert("history", "(vid, seq, body, stime, etime)", history_rows())


# -- engines ------------------------------------------------------------------------------------
def sqlite_database(work: Path, name: str) -> tuple[object, list[str]]:
    from onetools.db.backends.base import ConnectionSettings
    from onetools.db.backends.sqlite import SQLiteBackend

    path = work / f"{name}.db"
    backend = SQLiteBackend(ConnectionSettings("sqlite", sqlite_file=str(path)), create=True)
    return backend, ["--sqlite", str(path)]


def mariadb_database(server: object) -> tuple[object, list[str]]:
    from onetools.db.backends import open_backend

    settings = server.new_database()  # type: ignore[attr-defined]
    options = [
        "-t",
        "mysql",
        "-S",
        settings.server,
        "-P",
        str(settings.port),
        "-u",
        settings.user,
        "-p",
        settings.password,
        "-d",
        settings.db_name,
    ]
    return open_backend(settings), options


def report(
    label: str, wall: float, rss: float | None, target_s: float | None, target_mb: float | None
) -> None:
    memory = f"{rss:7.1f} MiB" if rss is not None else "     n/a"
    goals = []
    if target_s is not None:
        goals.append(f"<= {target_s:g} s" + ("" if wall <= target_s else " OVER"))
    if target_mb is not None and rss is not None:
        goals.append(f"<= {target_mb:g} MB" + ("" if rss <= target_mb else " OVER"))
    shown = f"{wall:8.2f} s" if wall >= 1 else f"{wall * 1000:7.1f} ms"
    print(f"{label:<44} {shown}  peak RSS {memory}   target {', '.join(goals)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=100_000)
    parser.add_argument("--done", type=int, default=200_000)
    parser.add_argument("--engines", default="sqlite,mariadb")
    parser.add_argument(
        "--mariadb-option",
        action="append",
        default=[],
        metavar="OPTION",
        help="extra mariadbd option (repeatable); by default the server runs with MariaDB's "
        "own defaults, as installed from Debian",
    )
    parser.add_argument("--steps", action="store_true", help="print the upgrade's step times")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="onedb-bench-"))
    env_backup = {"ONE_LOCATION": str(work / "one"), "ONE_XMLRPC": "http://127.0.0.1:9/RPC2"}
    os.environ.update(env_backup)
    server = None
    tool = onedb()
    print(
        f"# onedb benchmarks: {args.vms} VMs (x2 history), 500 hosts, 2000 images, "
        f"1000 users; purge-done on {args.done} DONE VMs"
    )
    try:
        for engine in args.engines.split(","):
            if engine == "mariadb":
                sys.path.insert(0, str(REPO / "tests"))
                from db_servers import MariaDBServer

                (work / "mariadb").mkdir()
                server = MariaDBServer(work / "mariadb", tuning=tuple(args.mariadb_option))
                server.start()
                make = lambda name, s=server: mariadb_database(s)  # noqa: E731
            else:
                make = lambda name: sqlite_database(work, name)  # noqa: E731
            started = time.perf_counter()
            backend, options = make("big")
            populate(backend, args.vms, 0, "6.0.0")
            backend.close()  # type: ignore[attr-defined]
            print(f"[{engine}] generated in {time.perf_counter() - started:.1f} s")
            wall, rss = version_latency([*tool, "version", *options])
            report(f"[{engine}] onedb version (median of {VERSION_RUNS})", wall, rss, 0.08, None)
            verbose = ["-v"] if args.steps else []
            wall, rss, _ = timed([*tool, "upgrade", "--no-backup", *verbose, *options], args.steps)
            report(f"[{engine}] onedb upgrade 6.0.0 -> 6.10.0", wall, rss, 60, 300)
            wall, rss, _ = timed([*tool, "fsck", "--dry", *options])
            report(f"[{engine}] onedb fsck --dry", wall, rss, 60, 300)
            wall, rss, _ = timed([*tool, "fsck", "-b", str(work / f"{engine}-fsck.sql"), *options])
            report(f"[{engine}] onedb fsck (with its backup)", wall, rss, 60, 300)
            backend, options = make("done")
            populate(backend, 0, args.done, "6.10.0")
            backend.close()  # type: ignore[attr-defined]
            wall, rss, _ = timed([*tool, "purge-done", *options])
            report(f"[{engine}] onedb purge-done ({args.done} DONE VMs)", wall, rss, None, 300)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
