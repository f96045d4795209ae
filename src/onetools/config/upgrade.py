"""``onecfg upgrade``: take a customized configuration tree from one OpenNebula version to another.

The chain of steps runs in a sandbox (nothing is written while it runs).  Per step, each file the
step changes is patched with the step's ops in the file's patch modes, then the step's program (if
any) moves values that ops cannot.  A change that cannot apply is reported and skipped, unless
``--patch-strict`` asks for failure.  At the end the result is written to the tree in one
transaction together with the new version in the settings file, after an emergency backup.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from onetools.config.descriptors import Descriptor, DescriptorEntry
from onetools.config.files import MANAGED_ROOTS, prefixed
from onetools.config.formats import format_class
from onetools.config.formats.base import ConfigDocument
from onetools.config.lineformat import render_op
from onetools.config.migrations import StepContext, load_program
from onetools.config.ops import PATCH_MODES, ChangeOp
from onetools.config.sandbox import FileMeta, Sandbox, find_symlinks
from onetools.config.settings import Settings, load_settings
from onetools.config.transaction import FileWrite, NewDir, commit, make_backup, tree_lock
from onetools.config.versions import (
    Step,
    Version,
    VersionError,
    check_supported,
    detect_one_version,
    parse_version,
    step_range,
)
from onetools.errors import FatalError, OnetoolsError, PatchError, UsageError
from onetools.log import any_, get_logger

log = get_logger("upgrade")


# -- patch modes ------------------------------------------------------------------------------
class PatchModes:
    """``--patch-modes MODES[:FILE[:VERSION]]`` settings (reference §4.7).

    Resolution for a file and a step's target version: the global modes, overridden by a global
    per-version entry (``MODES::VERSION``, which the original cannot express), by the file's
    modes, then by the file's per-version modes.  Overrides replace; nothing accumulates.
    """

    def __init__(self) -> None:
        self._table: dict[tuple[str | None, Version | None], frozenset[str]] = {}

    @classmethod
    def parse(cls, values: list[str]) -> PatchModes:
        modes = cls()
        for value in values:
            for item in value.split(";"):
                if not item.strip():
                    continue
                parts = item.strip().split(":")
                if len(parts) > 3 or not parts[0]:
                    raise UsageError("Wrong modes format, check documentation.")
                names = [name.strip() for name in parts[0].split(",") if name.strip()]
                for name in names:
                    if name not in PATCH_MODES:
                        raise UsageError(f"Unsupported mode '{name}'")
                file = parts[1] if len(parts) > 1 and parts[1] else None
                version = None
                if len(parts) > 2 and parts[2]:
                    try:
                        version = Version(parts[2])
                    except VersionError:
                        raise UsageError(f"Wrong version '{parts[2]}' in patch modes") from None
                key = (file, version)
                modes._table[key] = modes._table.get(key, frozenset()) | frozenset(names)
        return modes

    def resolve(self, path: str, target: Version) -> frozenset[str] | None:
        """The user's modes for ``path`` in the step to ``target`` (``None``: none given)."""
        found: frozenset[str] | None = None
        for key in ((None, None), (None, target), (path, None), (path, target)):
            if key in self._table:
                found = self._table[key]
        return found

    def __bool__(self) -> bool:
        return bool(self._table)


# -- outcome ----------------------------------------------------------------------------------
@dataclass
class ChangeReport:
    """A change of a step that did not simply apply: skipped, forced, replaced or a conflict."""

    step: str
    path: str
    change: str
    kind: str  # skipped | conflict | forced | replaced
    reason: str

    def line(self) -> str:
        return f"{self.path}: {self.kind} {self.change} ({self.reason}) [{self.step}]"

    def to_dict(self) -> dict[str, str]:
        return {
            "step": self.step,
            "file": self.path,
            "change": self.change,
            "kind": self.kind,
            "reason": self.reason,
        }


@dataclass
class UpgradeOutcome:
    source: str
    target: str
    final: str | None = None
    steps: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # path -> updated/created/deleted
    reports: list[ChangeReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    backup: str | None = None
    saved: bool = False
    noop: bool = False
    read_from: str | None = None

    def count(self, action: str) -> int:
        return sum(1 for value in self.files.values() if value == action)

    @property
    def conflicts(self) -> list[ChangeReport]:
        return [r for r in self.reports if r.kind in ("conflict", "skipped")]

    def to_dict(self) -> dict[str, Any]:
        return {
            "from": self.source,
            "to": self.target,
            "version": self.final,
            "steps": self.steps,
            "saved": self.saved,
            "noop": self.noop,
            "backup": self.backup,
            "read_from": self.read_from,
            "files": self.files,
            "summary": {
                "updated": self.count("updated"),
                "created": self.count("created"),
                "deleted": self.count("deleted"),
                "conflicts": len(self.conflicts),
                "forced": sum(1 for r in self.reports if r.kind in ("forced", "replaced")),
            },
            "changes": [r.to_dict() for r in self.reports],
            "notes": self.notes,
        }


class UpgradeFailed(OnetoolsError):
    level = "FATAL"

    def log_line(self) -> str:
        return f"FAILED - {self.message}"


# -- the run ----------------------------------------------------------------------------------
@dataclass
class UpgradeOptions:
    prefix: str = "/"
    source: str | None = None
    target: str | None = None
    one_version: str | None = None
    noop: bool = False
    unprivileged: bool = False
    modes: PatchModes = field(default_factory=PatchModes)
    strict: bool = False
    recreate: bool = False
    read_from: str | None = None


def resolve_versions(options: UpgradeOptions, settings: Settings) -> tuple[Version, Version]:
    source_text = options.source or settings.version
    if options.target:
        target: Version | None = parse_version(options.target, "to version")
    else:
        target = detect_one_version(options.one_version)
    if not source_text or target is None:
        raise UpgradeFailed("Unknown OpenNebula or config. version. Check status.")
    source = parse_version(source_text, "from version")
    try:
        check_supported(source, "from version")
        check_supported(target, "to version")
    except VersionError as exc:
        raise UpgradeFailed(exc.message) from None
    return source, target


def upgrade(options: UpgradeOptions) -> UpgradeOutcome:
    """Run the upgrade described by ``options``; see the module docstring."""
    settings = load_settings()
    source, target = resolve_versions(options, settings)
    outcome = UpgradeOutcome(str(source), str(target), noop=options.noop)
    log.info(f"Checking updates from {source} to {target}")
    read_from = options.read_from
    if read_from is None and settings.backup:
        any_(log, "Found backed up configuration to process!")
        any_(log, f"Snapshot to update from '{settings.backup}'")
        read_from = settings.backup
    outcome.read_from = read_from
    steps = step_range(source, target)
    if not steps:
        with tree_lock(options.prefix):
            if settings.backup and not options.noop:
                settings.backup = None
                commit(options.prefix, [_settings_write(settings)], options.unprivileged)
                any_(log, "No updates for backed up configuration. Considering as processed.")
            else:
                any_(log, "No updates available")
        outcome.final = str(source)
        return outcome
    if settings.outdated:
        raise UpgradeFailed("Configuration can't be processed as it looks outdated! Check status.")
    base = read_from or options.prefix
    if read_from is not None and not os.path.isdir(prefixed(read_from, "/etc/one")):
        raise UpgradeFailed(f"Snapshot '{read_from}' has no etc/one directory")
    with tree_lock(options.prefix):
        links = find_symlinks(options.prefix, MANAGED_ROOTS)
        if read_from is not None:
            links += find_symlinks(read_from, MANAGED_ROOTS)
        if links:
            raise UpgradeFailed(f"Found symbolic links in '{links[0]}'")
        sandbox = Sandbox(base)
        log.info(f"Updating from {source} to {target}")
        try:
            for step in steps:
                _run_step(step, sandbox, options, outcome)
        except OnetoolsError as exc:
            raise UpgradeFailed(
                f"{exc.message} -- nothing was changed (TERMINATING UPDATE WITHOUT CHANGING SYSTEM)"
            ) from exc
        final = steps[-1].target
        outcome.final = str(final)
        outcome.steps = [str(step) for step in steps]
        writes, actions = sandbox.final_writes(options.prefix)
        outcome.files = actions
        directories = [
            NewDir(prefixed(options.prefix, path), meta.owner, meta.group, meta.mode)
            for path, meta in sorted(sandbox.directories.items())
            if not os.path.isdir(prefixed(options.prefix, path))
        ]
        if options.noop:
            log.info("Changes ARE NOT saved in no-op mode!")
            return outcome
        settings.version = str(final)
        settings.backup = None
        writes.append(_settings_write(settings))
        outcome.backup = make_backup(options.prefix, version=str(source))
        commit(options.prefix, writes, options.unprivileged, directories)
        outcome.saved = True
    any_(log, f"Configuration updated to {final}")
    return outcome


def _settings_write(settings: Settings) -> FileWrite:
    directory = os.path.dirname(settings.path)
    if directory and not os.path.isdir(directory):
        raise FatalError(f"Settings directory '{directory}' does not exist")
    return FileWrite(settings.path, settings.to_text().encode(), mode=0o644)


def shipped_descriptor(step: Step) -> Descriptor:
    from onetools.config.steps import load_step

    return load_step(step)


def _stock_text(step: Step, entry: DescriptorEntry) -> str | None:
    if entry.content is not None:
        return entry.content
    from onetools.config.stock import store

    version = str(step.source) if entry.action == "delete" else str(step.target)
    return store().read(version, entry.path)


def _run_step(
    step: Step, sandbox: Sandbox, options: UpgradeOptions, outcome: UpgradeOutcome
) -> None:
    log.info(f"Incremental update from {step.source} to {step.target}")
    descriptor = shipped_descriptor(step)
    program = load_program(step)
    reads: tuple[str, ...] = tuple(getattr(program, "READS", ())) if program else ()
    before = {path: sandbox.read(path) for path in reads}
    for directory in descriptor.directories:
        sandbox.mkdir(directory.path, FileMeta(directory.owner, directory.group, directory.mode))
    for path, entry in descriptor.entries.items():
        if entry.action == "apply":
            _apply_entry(step, path, entry, sandbox, options, outcome)
        elif entry.action == "create":
            if sandbox.exists(path):
                log.info(f"Skip file '{path}' - already exists")
                continue
            log.info(f"Create file '{path}'")
            sandbox.write(
                path, _stock_text(step, entry) or "", FileMeta(entry.owner, entry.group, entry.mode)
            )
        elif entry.action == "delete" and sandbox.exists(path):
            log.info(f"Delete file '{path}'")
            sandbox.delete(path)
        elif entry.action is None:
            _refresh_pristine(step, path, entry, sandbox)
    if program is not None and hasattr(program, "up"):
        context = StepContext(sandbox, step, before, get_logger("upgrade.step"))
        program.up(context)
        outcome.notes.extend(f"{step}: {note}" for note in context.notes)
        for changed in sorted(context.changed):
            described = descriptor.entries.get(changed)
            if described is not None and described.action != "delete":
                _take_stock_if_similar(step, changed, described, sandbox)


def _modes_for(
    path: str, entry: DescriptorEntry, step: Step, options: UpgradeOptions
) -> frozenset[str]:
    chosen = options.modes.resolve(path, step.target) or frozenset()
    if not options.strict:
        chosen |= format_class(entry.format_name).safe_modes
    return chosen


def _apply_entry(
    step: Step,
    path: str,
    entry: DescriptorEntry,
    sandbox: Sandbox,
    options: UpgradeOptions,
    outcome: UpgradeOutcome,
) -> None:
    if not sandbox.exists(path):
        if options.recreate:
            log.info(f"Recreating missing file '{path}'")
            sandbox.write(
                path, _stock_text(step, entry) or "", FileMeta(entry.owner, entry.group, entry.mode)
            )
        else:
            log.info(f"Skip file '{path}' - missing")
        return
    log.info(f"Update file '{path}'")
    stock = _stock_text(step, entry)
    if stock is not None and sandbox.is_text(path, _source_text(step, path)):
        # The file is the old stock file: the new stock file is the answer, no parsing needed.
        sandbox.write(path, stock)
        return
    document = sandbox.document(path, entry.format_name)
    assert document is not None
    _patch_document(step, path, entry, document, options, outcome)
    _take_stock_if_similar(step, path, entry, sandbox)


def _take_stock_if_similar(step: Step, path: str, entry: DescriptorEntry, sandbox: Sandbox) -> None:
    """When nothing of the user's is left in a file, give it the stock text (comments, layout)."""
    stock = _stock_text(step, entry)
    document = sandbox.document(path, entry.format_name)
    if stock is None or document is None:
        return
    if not document.diff(format_class(entry.format_name).parse(stock, path)):
        sandbox.write(path, stock)


def _refresh_pristine(step: Step, path: str, entry: DescriptorEntry, sandbox: Sandbox) -> None:
    """A file whose stock text changed only cosmetically (comments, layout) has no ops; if the
    user never touched it, give it the new stock text (the original leaves it as it was)."""
    source = _source_text(step, path)
    target = _stock_text(step, entry)
    if target is not None and source not in (None, target) and sandbox.is_text(path, source):
        log.info(f"Refresh file '{path}'")
        sandbox.write(path, target)


def _source_text(step: Step, path: str) -> str | None:
    from onetools.config.stock import store

    return store().read(str(step.source), path)


def _patch_document(
    step: Step,
    path: str,
    entry: DescriptorEntry,
    document: ConfigDocument,
    options: UpgradeOptions,
    outcome: UpgradeOutcome,
) -> None:
    """Apply the entry's ops one by one, reporting those that do not simply apply.

    One snapshot per file: an op that fails is undone by restoring it and replaying the ops
    that had applied before (failures are rare; snapshots of big files are not cheap).
    """
    modes = _modes_for(path, entry, step, options)
    cls = format_class(entry.format_name)
    step_name = str(step)
    saved = document.snapshot()
    done: list[ChangeOp] = []
    for op in entry.change:
        shown = render_op(op, cls)
        try:
            result = document.apply(op, modes)
        except PatchError as exc:
            if options.strict and "skip" not in modes:
                raise UpgradeFailed(
                    f"Error updating file '{path}' in step {step}: {exc.message} ({shown}); "
                    "use --patch-modes skip to skip such changes"
                ) from None
            document.restore(saved)
            for previous in done:
                document.apply(previous, modes)
            saved = document.snapshot()
            done = []
            _report(outcome, ChangeReport(step_name, path, shown, "skipped", exc.message))
            continue
        done.append(op)
        if result.applied:
            if result.mode in ("force", "replace"):
                kind = "forced" if result.mode == "force" else "replaced"
                detail = (
                    "placed by search"
                    if result.mode == "force"
                    else (f"your value was {result.old!r}")
                )
                _report(outcome, ChangeReport(step_name, path, shown, kind, detail))
            continue
        if result.mode == "skip":
            _report(
                outcome,
                ChangeReport(step_name, path, shown, "skipped", result.reason or "place not found"),
            )
            continue
        if _already_in_place(document, op):
            continue
        if options.strict and not modes:
            raise UpgradeFailed(
                f"Conflict in '{path}' in step {step}: {shown} -- the file has a value of its "
                "own; use --patch-modes replace (take the new default) or skip (keep yours)"
            )
        _report(
            outcome,
            ChangeReport(step_name, path, shown, "conflict", "you changed it; your value is kept"),
        )


def _already_in_place(document: ConfigDocument, op: ChangeOp) -> bool:
    """Whether an unapplied op would change nothing even in replace mode (the file already
    has what the step wants), as opposed to a conflict with a value of the user's."""
    saved = document.snapshot()
    try:
        before = document.render()
        result = document.apply(op, frozenset({"replace"}))
        changed = result.applied and document.render() != before
    except PatchError:
        changed = True
    finally:
        document.restore(saved)
    return not changed


def _report(outcome: UpgradeOutcome, report: ChangeReport) -> None:
    outcome.reports.append(report)
    level = log.warning if report.kind in ("conflict", "skipped") else log.info
    level(report.line())
