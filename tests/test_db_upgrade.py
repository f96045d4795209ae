"""``upgrade``: whole chains, dry runs, slaves, failures (rollback or restore) and SIGKILL."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from lxml.builder import E

from db_servers import sqlite_settings_for
from onetools.db.backends import open_backend
from onetools.db.backends.base import Backend, ConnectionSettings
from onetools.db.errors import DatabaseError, NotBootstrapped
from onetools.db.migrations import MigrationError, pending_steps
from onetools.db.schema import SCHEMAS, bootstrap, latest_for, list_indexes
from onetools.db.upgrade import plan, upgrade
from onetools.db.versioning import check_version, history, read_versions
from test_db_migrations import (
    disk,
    history_record,
    image,
    insert,
    insert_pool,
    insert_vm,
    nic,
    vm_element,
    vnet,
    xml,
)


def snapshot(backend: Backend) -> dict[str, Any]:
    """Everything a dump would show: tables, columns, indexes and rows (sorted)."""
    result: dict[str, Any] = {}
    for table in backend.tables():
        rows = backend.query(f"SELECT * FROM {table}")
        result[table] = (
            backend.columns(table),
            list_indexes(backend, table),
            sorted(tuple(str(v) for v in row) for row in rows),
        )
    return result


def upgrade_unsaved(
    backend: Backend, settings: ConnectionSettings, *, dry: bool = False, **options: Any
) -> Any:
    """``upgrade`` with ``--no-backup`` (``options``: ``log``, ``progress``)."""
    return upgrade(
        backend, settings, backup_path=None, no_backup=True, force=False, dry=dry, **options
    )


def populate_5_10(backend: Backend, vms: int = 6) -> None:
    """A small 5.10.0 world: hosts, VMs with NICs/disks/history, images, networks, docs."""
    insert(backend, "acl", oid=0, user=4294967297, resource=1, rights=1, zone=17179869184)
    insert_pool(
        backend,
        "datastore_pool",
        1,
        "default",
        xml(E.DATASTORE(E.ID("1"), E.TEMPLATE(E.DRIVER("qcow2")))),
    )
    insert_pool(backend, "zone_pool", 0, "OpenNebula", xml(E.ZONE(E.ID("0"), E.TEMPLATE())))
    for oid in range(3):
        insert_pool(backend, "image_pool", oid, f"img{oid}", image(oid, 0))
    insert_pool(backend, "network_pool", 0, "net0", vnet(0, "0 68719476737"), pid=-1)
    from test_db_migrations import host_5_10, service_document

    insert_pool(backend, "document_pool", 0, "svc", service_document(0), type=100)
    insert_pool(
        backend, "host_pool", 0, "host0", xml(host_5_10(0)), state=2, last_mon_time=1, cid=0
    )
    insert(backend, "host_monitoring", hid=0, last_mon_time=1500, body=xml(host_5_10(0)))
    for oid in range(1, vms + 1):
        state = (3, 8, 6)[oid % 3]
        actions = (E.SCHED_ACTION(E.ACTION("poweroff"), E.TIME("+10")),)
        vm = vm_element(
            oid,
            state,
            nics=(nic(0, 0, f"10.0.0.{oid}"),),
            disks=(disk(0, image_id=oid % 3), disk(1, "SWAP")),
            user_template=(E.LABELS("a,b"), *actions),
            extra=(E.LAST_POLL("1"), E.MONITORING(E.CPU("1"))),
        )
        insert_vm(backend, "5.10.0", vm)
        insert(
            backend,
            "vm_monitoring",
            vmid=oid,
            last_poll=1,
            body=xml(E.VM(E.ID(str(oid)), E.LAST_POLL("1"), E.MONITORING())),
        )
        for seq in range(2):
            body = xml(history_record(oid, seq, 0))
            insert(backend, "history", vid=oid, seq=seq, body=body, stime=1, etime=0)


@pytest.fixture(params=["sqlite", "mysql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> ConnectionSettings:
    if request.param == "sqlite":
        return sqlite_settings_for(tmp_path / "one.db")
    server = request.getfixturevalue(f"{request.param}_server")
    return server.new_database()  # type: ignore[no-any-return]


def test_full_chain(settings: ConnectionSettings, tmp_path: Path) -> None:
    with open_backend(settings) as backend:
        bootstrap(backend, "5.10.0", now=1_600_000_000)
        populate_5_10(backend)
        assert check_version(backend).code == 2
        assert [step.label for step in plan(backend)][:2] == [
            "shared/5.10.0_to_5.12.0",
            "shared/5.12.0_to_6.0.0",
        ]
        logged: list[str] = []
        progress: list[tuple[str, int, int]] = []
        result = upgrade(
            backend,
            settings,
            backup_path=str(tmp_path / "before.bck"),
            no_backup=False,
            force=False,
            dry=False,
            progress=lambda step, done, total: progress.append((step, done, total)),
            log=logged.append,
        )
        assert (result.shared, result.local) == ("6.10.0", "6.10.0")
        assert len(result.steps) == 14 and all(t.seconds >= 0 for t in result.steps)
        assert os.path.isfile(tmp_path / "before.bck")
        assert check_version(backend).code == 0
        rows = history(backend)
        assert [row.version for row in rows] == ["5.10.0", "6.10.0"]
        assert rows[-1].comment == (
            "Database migrated from 5.10.0 to 6.10.0 (OpenNebula 6.10.0) by onedb command."
        )
        assert ">>> Running migrators for shared tables" in logged
        assert any(step == "local/6.8.0_to_6.10.0" for step, _, _ in progress)
        schema = SCHEMAS["6.10.0"]
        for table in schema.tables:
            assert tuple(backend.columns(table.name)) == table.column_names
        assert sorted(backend.tables()) == sorted(schema.table_names)
        assert list_indexes(backend, "vm_pool") == ["state_oid_idx"]
        assert backend.scalar("SELECT COUNT(*) FROM history") == 12
        assert backend.scalar("SELECT COUNT(*) FROM schedaction_pool") == 4  # non-DONE VMs
        # Nothing left to do.
        again = upgrade_unsaved(backend, settings)
        assert again.up_to_date


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    settings = sqlite_settings_for(tmp_path / "one.db")
    with open_backend(settings) as backend:
        bootstrap(backend, "6.4.0")
        before = snapshot(backend)
        result = upgrade_unsaved(backend, settings, dry=True)
        assert [t.step.label for t in result.steps] == [
            "shared/6.4.0_to_6.6.0",
            "shared/6.6.0_to_6.8.0",
            "shared/6.8.0_to_6.10.0",
            "local/6.4.0_to_6.6.0",
            "local/6.6.0_to_6.8.0",
            "local/6.8.0_to_6.10.0",
        ]
        assert snapshot(backend) == before


def test_no_backup_warns_once(tmp_path: Path) -> None:
    settings = sqlite_settings_for(tmp_path / "one.db")
    with open_backend(settings) as backend:
        bootstrap(backend, "6.6.0")
        logged: list[str] = []
        result = upgrade_unsaved(backend, settings, log=logged.append)
        assert sum("WARNING" in line for line in logged) == 1
        assert len(result.warnings) == 1 and result.to_dict()["warnings"] == result.warnings
        assert read_versions(backend).local.version == "6.10.0"


def test_slave_skips_shared_chain(tmp_path: Path) -> None:
    settings = sqlite_settings_for(tmp_path / "one.db")
    with open_backend(settings) as backend:
        bootstrap(backend, "6.6.0", is_slave=True)
        result = upgrade_unsaved(backend, settings)
        assert all(t.step.chain == "local" for t in result.steps)
        versions = read_versions(backend)
        assert versions.shared.version == "6.6.0"
        assert versions.local.version == "6.10.0" and versions.local.is_slave


def test_refusals(tmp_path: Path) -> None:
    path = tmp_path / "one.db"
    settings = sqlite_settings_for(path)
    with open_backend(settings) as backend:
        with pytest.raises(NotBootstrapped):
            upgrade_unsaved(backend, settings)
        bootstrap(backend, "6.10.0")
        backend.execute("INSERT INTO local_db_versioning VALUES (1, '7.0.0', 0, 'future', 0)")
        assert check_version(backend).code == 3
        with pytest.raises(DatabaseError, match="newer than this onedb supports"):
            upgrade_unsaved(backend, settings)
        backend.execute("UPDATE local_db_versioning SET version = '5.8.0'")
        with pytest.raises(DatabaseError, match="Cannot upgrade the local tables from version"):
            upgrade_unsaved(backend, settings)


def test_postgresql_goes_to_6_8(postgresql_server: Any) -> None:
    settings = postgresql_server.new_database()
    with open_backend(settings) as backend:
        bootstrap(backend, "5.12.0")
        insert_pool(backend, "image_pool", 0, "img0", image(0, 0))
        insert_vm(backend, "5.12.0", vm_element(1, 3, nics=(nic(0, 0, "10.0.0.1"),)))
        status = check_version(backend)
        assert status.code == 2 and status.pending_local[-1].target == "6.8.0"
        result = upgrade_unsaved(backend, settings)
        assert (
            (result.shared, result.local) == ("6.8.0", "6.8.0") == (latest_for("postgresql"),) * 2
        )
        assert check_version(backend).code == 0


def corrupt(backend: Backend) -> None:
    """A malformed image body that the local 5.12.0 -> 6.0.0 step reaches last."""
    insert_pool(backend, "image_pool", 42, "broken", "<IMAGE><ID>42</ID><DISK_TYPE>0")


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_failure_rolls_back(engine: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    if engine == "sqlite":
        settings = sqlite_settings_for(tmp_path / "one.db")
    else:
        settings = request.getfixturevalue("postgresql_server").new_database()
    with open_backend(settings) as backend:
        bootstrap(backend, "5.12.0")
        insert_pool(backend, "image_pool", 1, "img1", image(1, 0))
        insert_vm(backend, "5.12.0", vm_element(1, 3))
        corrupt(backend)
        before = snapshot(backend)
        logged: list[str] = []
        with pytest.raises(MigrationError) as caught:
            upgrade(
                backend,
                settings,
                backup_path=str(tmp_path / "b.bck"),
                no_backup=False,
                force=False,
                dry=False,
                log=logged.append,
            )
        error = caught.value
        assert (error.table, error.row_id, error.step) == (
            "image_pool",
            42,
            "local/5.12.0_to_6.0.0",
        )
        assert "rolled back" in logged[-1]
        assert snapshot(backend) == before


def test_failure_on_mysql_restores_backup(mysql_server: Any, tmp_path: Path) -> None:
    settings = mysql_server.new_database()
    with open_backend(settings) as backend:
        bootstrap(backend, "6.6.0")
        insert_vm(backend, "6.6.0", vm_element(1, 3))
        insert_pool(backend, "template_pool", 0, "tpl", xml(E.VMTEMPLATE(E.ID("0"))))
        insert_pool(backend, "template_pool", 9, "bad", "<VMTEMPLATE><ID>9</ID>")
        before = snapshot(backend)
        with pytest.raises(MigrationError, match="table template_pool, row 9"):
            upgrade(
                backend,
                settings,
                backup_path=str(tmp_path / "b.sql"),
                no_backup=False,
                force=False,
                dry=False,
            )
    with open_backend(settings) as backend:
        assert snapshot(backend) == before


# -- fused rewrites ------------------------------------------------------------------------------

VERSIONING = ("db_versioning", "local_db_versioning")


def another_database(settings: ConnectionSettings, request: pytest.FixtureRequest) -> Any:
    """Settings of a second, empty database on the same engine as ``settings``."""
    if settings.backend == "sqlite":
        return sqlite_settings_for(Path(str(settings.sqlite_file) + ".2"))
    return request.getfixturevalue(f"{settings.backend}_server").new_database()


def step_by_step(backend: Backend) -> None:
    """Every pending step run alone on the plain backend: no rewrite waits or fuses."""
    versions = read_versions(backend)
    for chain, version in (("shared", versions.shared.version), ("local", versions.local.version)):
        for step in pending_steps(chain, version, latest_for(backend.kind)):
            with backend.transaction():
                step.run(backend)


def without_versioning(backend: Backend) -> dict[str, Any]:
    return {k: v for k, v in snapshot(backend).items() if k not in VERSIONING}


def populate_6_6(backend: Backend) -> None:
    """VMs with scheduled actions and labels, and a backup image whose 6.10 step reads its
    VM's body: that read must see the VM as the 6.8 step left it."""
    for oid, state in ((1, 3), (2, 8), (3, 6)):
        vm = vm_element(
            oid,
            state,
            disks=(disk(0, image_id=3), disk(1, "SWAP"), disk(2, "FS")),
            nics=(nic(0, 0, f"10.0.0.{oid}"),),
            template=(E.SCHED_ACTION(E.ID("0"), E.ACTION("poweroff"), E.TIME("+60")),),
            user_template=(E.LABELS(" web , db "),),
            extra=(E.BACKUPS(E.BACKUP_CONFIG(E.BACKUP_VOLATILE("YES")), E.BACKUP_IDS()),),
        )
        insert_vm(backend, "6.6.0", vm)
    backup = E.IMAGE(E.ID("10"), E.TYPE("6"), E.VMS(E.ID("1")), E.TEMPLATE())
    insert_pool(backend, "image_pool", 10, "backup", xml(backup))
    insert_pool(backend, "template_pool", 0, "tpl", xml(E.VMTEMPLATE(E.ID("0"))))


@pytest.mark.parametrize("start", ["5.10.0", "6.6.0"])
def test_fused_rewrites_equal_step_by_step(
    start: str, settings: ConnectionSettings, request: pytest.FixtureRequest
) -> None:
    """``upgrade`` fuses steps' rewrites of one table into one pass; the database it leaves
    is the one running each step alone leaves, table for table and row for row."""
    results = []
    logged: list[str] = []
    for fused, each in ((True, settings), (False, another_database(settings, request))):
        with open_backend(each) as backend:
            bootstrap(backend, start, now=1_600_000_000, oneadmin_password="secret")
            (populate_5_10 if start == "5.10.0" else populate_6_6)(backend)
            if fused:
                result = upgrade_unsaved(backend, each, log=logged.append)
                assert check_version(backend).code == 0
            else:
                step_by_step(backend)
            results.append(without_versioning(backend))
    assert results[0] == results[1]
    fusions = [line.strip() for line in logged if "once for" in line]
    if start == "5.10.0":
        # The 5.12 history step reads vm_pool, so the 5.10 VM rewrite runs before it; the
        # four later ones run as one pass.  Nothing reads host_pool in between.
        assert sorted(fusions) == [
            "> Rewriting host_pool once for local/5.10.0_to_5.12.0, local/6.6.0_to_6.8.0",
            "> Rewriting vm_pool once for local/6.0.0_to_6.2.0, local/6.4.0_to_6.6.0, "
            "local/6.6.0_to_6.8.0, local/6.8.0_to_6.10.0",
        ]
        assert sorted((table, len(steps)) for table, steps, _ in result.fused) == [
            ("host_pool", 2),
            ("vm_pool", 4),
        ]
        assert [r["table"] for r in result.to_dict()["fused_rewrites"]] == [
            table for table, _, _ in result.fused
        ]
        assert "(vm_pool rewritten once for 4 steps, local/6.0.0_to_6.2.0 to " in result.render(
            verbose=True
        )
    else:
        # The backup image's read of vm_pool runs the 6.8 VM rewrite first: nothing fuses.
        assert fusions == [] and result.fused == []


def test_fused_rewrite_names_the_failing_step(tmp_path: Path) -> None:
    """A row that only a later step of a fused pass rejects is reported against that step,
    and the database is left as it was."""
    settings = sqlite_settings_for(tmp_path / "one.db")
    with open_backend(settings) as backend:
        bootstrap(backend, "6.0.0")
        good = E.SCHED_ACTION(E.ACTION("poweroff"), E.TIME("+10"))
        bad = E.SCHED_ACTION(E.ACTION("poweroff"), E.TIME("+soon"))
        insert_vm(backend, "6.0.0", vm_element(1, 3, user_template=(good,)))
        insert_vm(backend, "6.0.0", vm_element(2, 3, user_template=(bad,)))
        before = snapshot(backend)
        logged: list[str] = []
        with pytest.raises(MigrationError) as caught:
            upgrade_unsaved(backend, settings, log=logged.append)
        assert (caught.value.table, caught.value.row_id, caught.value.step) == (
            "vm_pool",
            2,
            "local/6.6.0_to_6.8.0",
        )
        assert any("Rewriting vm_pool once for local/6.0.0_to_6.2.0" in line for line in logged)
        assert snapshot(backend) == before


# -- SIGKILL ------------------------------------------------------------------------------------

UPGRADE_SCRIPT = """
import sys
from onetools.db.backends import open_backend
from onetools.db.backends.base import ConnectionSettings
from onetools.db.upgrade import upgrade
settings = ConnectionSettings("sqlite", sqlite_file=sys.argv[1])
with open_backend(settings) as backend:
    upgrade(backend, settings, backup_path=None, no_backup=True, force=False, dry=False)
print("done")
"""


def versions_of(path: Path) -> tuple[str, str]:
    with open_backend(ConnectionSettings("sqlite", sqlite_file=str(path))) as backend:
        versions = read_versions(backend)
        return versions.shared.version, versions.local.version


@pytest.mark.slow
def test_sigkill_leaves_old_or_new(tmp_path: Path) -> None:
    template = tmp_path / "template.db"
    with open_backend(sqlite_settings_for(template)) as backend:
        bootstrap(backend, "5.10.0")
        with backend.transaction():
            populate_5_10(backend, vms=1500)
    path = tmp_path / "work.db"
    path.write_bytes(template.read_bytes())
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", UPGRADE_SCRIPT, str(path)], check=True)
    full = time.monotonic() - started
    outcomes = set()
    rng = random.Random(7)
    for _ in range(6):
        path.write_bytes(template.read_bytes())
        for suffix in ("-journal", "-wal"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        process = subprocess.Popen([sys.executable, "-c", UPGRADE_SCRIPT, str(path)])
        time.sleep(rng.uniform(0.05, full))
        process.send_signal(signal.SIGKILL)
        process.wait()
        found = versions_of(path)
        assert found in {("5.10.0", "5.10.0"), ("6.10.0", "6.10.0")}
        outcomes.add(found)
        with open_backend(ConnectionSettings("sqlite", sqlite_file=str(path))) as backend:
            if found[0] == "5.10.0":
                assert backend.columns("acl")[1] == "user"
                assert not any(t.startswith("old_") for t in backend.tables())
        # A re-run completes.
        subprocess.run([sys.executable, "-c", UPGRADE_SCRIPT, str(path)], check=True)
        assert versions_of(path) == ("6.10.0", "6.10.0")
    assert ("5.10.0", "5.10.0") in outcomes
