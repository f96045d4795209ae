"""``onedb upgrade``: take the database from its versions to ``LATEST`` through the steps.

PostgreSQL databases go to 6.8.0, the last release whose oned ran on PostgreSQL.

The shared chain runs first (skipped on federation slaves, whose shared tables come from
the master), then the local chain; each chain that ran appends one versioning row.

Atomicity: on engines whose DDL is transactional (SQLite, PostgreSQL) the whole run, both
chains and their version rows, is one transaction, so a failure or a crash leaves the
database exactly as it was.  On MySQL/MariaDB DDL commits implicitly; there a failure
restores the pre-upgrade backup.  A backup is made first on every engine unless
``no_backup``.  Printing is the caller's: messages go to ``log``, row counts to ``progress``.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from onetools.db.backends.base import Backend, ConnectionSettings
from onetools.db.errors import DatabaseError
from onetools.db.migrations import (
    DeferringBackend,
    MigrationError,
    MigrationStep,
    Progress,
    no_progress,
    pending_steps,
)
from onetools.db.schema import latest_for
from onetools.db.versioning import (
    LOCAL_TABLE,
    SHARED_TABLE,
    VERSION_NEWER,
    DbVersions,
    VersionRow,
    append_version_row,
    compare,
    read_versions,
)

Log = Callable[[str], None]


def _ignore(*_: object) -> None:
    """Default ``log``/``progress``: say nothing."""


@dataclass
class StepTiming:
    """One step that ran (or, in a dry run, would run) and how long it took."""

    step: MigrationStep
    seconds: float = 0.0


@dataclass
class UpgradeResult:
    """What an upgrade did: versions before and after, steps with timings, the backup."""

    before: DbVersions
    shared: str
    local: str
    steps: list[StepTiming] = field(default_factory=list)
    rows: list[VersionRow] = field(default_factory=list)
    backup_path: str | None = None
    dry: bool = False
    seconds: float = 0.0
    #: Warnings also sent to ``log`` (e.g. ``--no-backup``), for callers that filter the log.
    warnings: list[str] = field(default_factory=list)
    #: Tables rewritten once for several steps: (table, steps, seconds).  Their time is
    #: part of the timing of the step during which the pass ran.
    fused: list[tuple[str, list[str], float]] = field(default_factory=list)

    @property
    def up_to_date(self) -> bool:
        """Nothing had to run."""
        return not self.steps

    def to_dict(self) -> dict[str, Any]:
        return {
            "before": {"shared": self.before.shared.version, "local": self.before.local.version},
            "after": {"shared": self.shared, "local": self.local},
            "is_slave": self.before.is_slave,
            "dry": self.dry,
            "backup": self.backup_path,
            "warnings": self.warnings,
            "steps": [
                {"step": timing.step.label, "seconds": round(timing.seconds, 3)}
                for timing in self.steps
            ],
            "fused_rewrites": [
                {"table": table, "steps": steps, "seconds": round(seconds, 3)}
                for table, steps, seconds in self.fused
            ],
            "versioning_rows": [row.to_dict() for row in self.rows],
            "seconds": round(self.seconds, 3),
        }

    def render(self, verbose: bool = False) -> str:
        """A short human summary: the steps (timed with ``verbose``) and the comments written."""
        if self.up_to_date:
            return "Database schema is up to date.\n"
        lines = []
        if self.dry:
            lines.append("Steps that would run:")
            lines += [f"  {timing.step.label}" for timing in self.steps]
            return "\n".join(lines) + "\n"
        for timing in self.steps:
            suffix = f" ({timing.seconds:.2f}s)" if verbose else ""
            lines.append(f"  > {timing.step.label}{suffix}")
        if verbose:
            for table, steps, seconds in self.fused:
                lines.append(
                    f"    ({table} rewritten once for {len(steps)} steps, {steps[0]} to "
                    f"{steps[-1]}: {seconds:.2f}s)"
                )
        lines += [row.comment for row in self.rows]
        if self.backup_path:
            lines.append(f"Backup: {self.backup_path}")
        if verbose:
            lines.append(f"Total time: {self.seconds:.2f}s")
        return "\n".join(lines) + "\n"


def _chains(versions: DbVersions, target: str) -> dict[str, list[MigrationStep]]:
    shared = versions.shared.version
    return {
        "shared": [] if versions.is_slave else pending_steps("shared", shared, target),
        "local": pending_steps("local", versions.local.version, target),
    }


def plan(backend: Backend) -> list[MigrationStep]:
    """The steps an upgrade would run, shared chain first, then local."""
    chains = _chains(read_versions(backend), latest_for(backend.kind))
    return chains["shared"] + chains["local"]


def _check_reachable(
    versions: DbVersions, chains: dict[str, list[MigrationStep]], target: str
) -> None:
    """Refuse before touching anything when a chain cannot reach ``target``."""
    starts = {"shared": versions.shared.version, "local": versions.local.version}
    for chain, steps in chains.items():
        if chain == "shared" and versions.is_slave:
            continue
        reached = steps[-1].target if steps else starts[chain]
        if reached != target:
            raise DatabaseError(
                f"Cannot upgrade the {chain} tables from version {starts[chain]}: "
                f"there are migration steps from 5.10.0 to {target} only"
            )


def upgrade(
    backend: Backend,
    settings: ConnectionSettings,
    *,
    backup_path: str | None,
    no_backup: bool,
    force: bool,
    dry: bool,
    progress: Progress | None = None,
    log: Log | None = None,
) -> UpgradeResult:
    """Upgrade the database to the newest version its engine supports (see the module
    docstring for the guarantees).

    Raises ``NotBootstrapped`` for an empty database, ``DatabaseError`` when it is newer than
    that version or no chain of steps leads from its version, and ``MigrationError`` (after
    the rollback or restore) when a step fails.
    """
    say: Log = log or _ignore
    report: Progress = progress or no_progress
    started = time.monotonic()
    versions = read_versions(backend)
    target = latest_for(backend.kind)
    if compare(versions, target) == VERSION_NEWER:
        raise DatabaseError(
            f"Database version (shared {versions.shared.version}, local "
            f"{versions.local.version}) is newer than this onedb supports ({target})"
        )
    chains = _chains(versions, target)
    result = UpgradeResult(versions, versions.shared.version, versions.local.version, dry=dry)
    if not chains["shared"] and not chains["local"]:
        _check_reachable(versions, chains, target)
        say("Database schema is up to date.")
        return result
    _check_reachable(versions, chains, target)
    say(
        f"Version read: shared {versions.shared.version} : {versions.shared.comment}; "
        f"local {versions.local.version} : {versions.local.comment}"
    )
    if dry:
        result.steps = [StepTiming(step) for step in chains["shared"] + chains["local"]]
        return result

    if no_backup:
        warning = "WARNING: no backup of the database is made (--no-backup)"
        result.warnings.append(warning)
        say(warning)
    else:
        result.backup_path = _backup(backend, settings, backup_path, force)
        say(f"Database backed up in {result.backup_path}")

    tables_before = backend.tables()
    try:
        if backend.transactional_ddl:
            with backend.transaction():
                _run_chains(backend, versions, chains, result, report, say)
        else:
            _run_chains(backend, versions, chains, result, report, say)
    except Exception as exc:
        if backend.transactional_ddl:
            say("The upgrade failed; every change was rolled back")
            raise
        _restore_after_failure(backend, settings, result.backup_path, tables_before, exc, say)
        raise
    result.seconds = time.monotonic() - started
    say(f"Total time: {result.seconds:.2f}s")
    return result


def _run_chains(
    backend: Backend,
    versions: DbVersions,
    chains: dict[str, list[MigrationStep]],
    result: UpgradeResult,
    progress: Progress,
    say: Log,
) -> None:
    if versions.is_slave:
        say("Federation slave: the shared tables are upgraded on the master")
    for chain, table, start in (
        ("shared", SHARED_TABLE, versions.shared.version),
        ("local", LOCAL_TABLE, versions.local.version),
    ):
        steps = chains[chain]
        if not steps:
            if not (chain == "shared" and versions.is_slave):
                say(f"Database already uses version {start}")
            continue
        say(f">>> Running migrators for {chain} tables")
        # Steps' rewrites of one table fuse into one pass where they allow it; what is still
        # waiting runs with (and is timed as part of) the chain's last step.
        deferring = DeferringBackend(backend, say)
        for step in steps:
            say(f"  > Running migrator {step.label}")
            begun = time.monotonic()
            # Nested in the run's transaction where DDL is transactional; on MySQL it only
            # groups the row copies (DDL commits implicitly).
            with backend.transaction():
                step.run(deferring, progress)
                if step is steps[-1]:
                    deferring.flush()
            timing = StepTiming(step, time.monotonic() - begun)
            result.steps.append(timing)
            say(f"  > Done in {timing.seconds:.2f}s")
        result.fused += deferring.fused
        row = append_version_row(backend, table, start, steps[-1].target)
        result.rows.append(row)
        say(row.comment)
        if chain == "shared":
            result.shared = row.version
        else:
            result.local = row.version


def _backup_module() -> Any:
    """``onetools.db.backup`` (dumps and restores), imported only when needed."""
    return importlib.import_module("onetools.db.backup")


def _backup(backend: Backend, settings: ConnectionSettings, path: str | None, force: bool) -> str:
    backups = _backup_module()
    target = path or backups.default_backup_name(settings)
    written = backups.backup(backend, target, force=force)
    return str(written) if written else target


def _restore_after_failure(
    backend: Backend,
    settings: ConnectionSettings,
    path: str | None,
    tables_before: list[str],
    error: Exception,
    say: Log,
) -> None:
    """MySQL: put the pre-upgrade dump back (DDL cannot be rolled back there).

    Tables the failed steps created (``old_T`` copies, new pools) are dropped first: the
    dump only knows the tables that existed before.
    """
    if path is None:
        say(
            "WARNING: the upgrade failed and no backup was made (--no-backup): "
            "the database may be left inconsistent"
        )
        return
    backups = _backup_module()
    say(f"The upgrade failed; restoring the database from {path}")
    try:
        for table in backend.tables():
            if table not in tables_before:
                backend.execute(f"DROP TABLE IF EXISTS {table}")
        backups.restore(settings, path, force=True)
    except Exception as restore_error:
        raise MigrationError(
            f"{error}; restoring the backup {path} failed too: {restore_error}"
        ) from error
