"""``onecfg patch``: apply a set of changes to the files of a tree, all or nothing on disk."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from onetools.config.files import CLASSIFICATION, prefixed
from onetools.config.formats import format_class
from onetools.config.lineformat import ChangeSet, render_op
from onetools.config.ops import ChangeOp, PatchResult
from onetools.config.transaction import (
    FileWrite,
    check_no_symlinks,
    commit,
    make_backup,
    tree_lock,
)
from onetools.errors import EXIT_OK, EXIT_PARTIAL, FileParseError, OnetoolsError, PatchError
from onetools.log import get_logger

log = get_logger("patch")


@dataclass
class FileReport:
    """What patching one file did."""

    path: str
    format_name: str
    results: list[tuple[ChangeOp, PatchResult]] = field(default_factory=list)

    @property
    def applied(self) -> int:
        return sum(1 for _, result in self.results if result.applied)

    @property
    def in_place(self) -> int:
        """Changes that did nothing because the file already says so (``ins`` of a present
        value, ``rm`` of an absent one); under replace mode that is every unapplied change that
        was not skipped."""
        return sum(1 for _, r in self.results if not r.applied and r.mode != "skip")

    @property
    def total(self) -> int:
        return len(self.results)


@dataclass
class PatchOutcome:
    files: list[FileReport]
    saved: bool
    backup: str | None = None
    converge: bool = False

    @property
    def applied(self) -> int:
        return sum(report.applied for report in self.files)

    @property
    def in_place(self) -> int:
        return sum(report.in_place for report in self.files)

    @property
    def total(self) -> int:
        return sum(report.total for report in self.files)

    @property
    def satisfied(self) -> int:
        """Changes that count as done: applied, plus already in place with ``converge``."""
        return self.applied + (self.in_place if self.converge else 0)

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.satisfied == self.total else EXIT_PARTIAL

    def to_dict(self) -> dict[str, object]:
        return {
            "applied": self.applied,
            "in_place": self.in_place,
            "total": self.total,
            "saved": self.saved,
            "backup": self.backup,
            "files": [
                {
                    "path": report.path,
                    "class": report.format_name,
                    "applied": report.applied,
                    "total": report.total,
                    "changes": [
                        {
                            "change": render_op(op, format_class(report.format_name)),
                            "applied": result.applied,
                            "mode": result.mode,
                            "in_place": not result.applied and result.mode != "skip",
                        }
                        for op, result in report.results
                    ],
                }
                for report in self.files
            ],
        }


class PatchFailed(OnetoolsError):
    """The patch ended with nothing saved; carries the per-file reports for output."""

    def __init__(self, message: str, outcome: PatchOutcome | None = None) -> None:
        super().__init__(message)
        self.outcome = outcome


def classify_existing(prefix: str) -> dict[str, str]:
    """Format names of the classified files that exist under ``prefix``."""
    scan = CLASSIFICATION.scan(prefix)
    return {path: entry.format_name or "" for path, entry in scan.classified.items()}


def report_line(op: ChangeOp, result: PatchResult, format_name: str) -> str:
    """``[OK] set PORT 2634`` / ``[--] skip rm …`` as the original's patch reports
    (``[==]`` marks a change already in place)."""
    status = "[OK]" if result.applied else ("[--]" if result.mode == "skip" else "[==]")
    mode = f"{result.mode} " if result.mode else ""
    return f"{status} {mode}{render_op(op, format_class(format_name))}"


def apply_patch(
    changes: ChangeSet,
    prefix: str = "/",
    noop: bool = False,
    require_all: bool = False,
    unprivileged: bool = False,
    modes: frozenset[str] = frozenset({"replace"}),
    converge: bool = False,
) -> PatchOutcome:
    """Apply ``changes`` to the tree at ``prefix``.

    Returns the outcome when at least one change applied (``exit_code`` 0 or 1); raises
    ``PatchFailed`` (exit 255, nothing written) when nothing applies, a file cannot be patched,
    or ``require_all`` is set and some change did not apply.  With ``converge``, changes that
    are already in place count as done (a re-applied patch exits 0).  Files whose text does not
    change are neither backed up nor rewritten.
    """
    if not any(entry.ops for entry in changes.values()):
        raise PatchFailed("No changes to apply")
    with tree_lock(prefix):
        check_no_symlinks(prefix, list(changes))
        reports: list[FileReport] = []
        writes: list[FileWrite] = []
        for path, entry in changes.items():
            report, new_text = _patch_file(prefix, path, entry.format_name, entry.ops, modes)
            reports.append(report)
            log.info(f"Patched '{path}' with {report.applied}/{report.total} changes")
            for op, result in report.results:
                log.debug(f"Patch {report_line(op, result, entry.format_name)}")
            if new_text is not None:
                writes.append(FileWrite(prefixed(prefix, path), new_text.encode("utf-8")))
        outcome = PatchOutcome(reports, saved=False, converge=converge)
        if outcome.satisfied == 0:
            raise PatchFailed("No changes applied", outcome)
        if require_all and outcome.satisfied < outcome.total:
            raise PatchFailed(
                f"Modifications not saved due to {outcome.total - outcome.satisfied} "
                "unapplied changes!",
                outcome,
            )
        log.info(f"Applied {outcome.applied}/{outcome.total} changes")
        if converge and outcome.in_place:
            log.info(f"{outcome.in_place} changes already in place")
        if noop:
            log.info("Changes ARE NOT saved in no-op mode!")
            return outcome
        if not writes:
            log.info("Nothing to write: every file already has this content")
            return outcome
        outcome.backup = make_backup(prefix)
        commit(prefix, writes, unprivileged=unprivileged)
        outcome.saved = True
        return outcome


def _patch_file(
    prefix: str, path: str, format_name: str, ops: list[ChangeOp], modes: frozenset[str]
) -> tuple[FileReport, str | None]:
    real = prefixed(prefix, path)
    if not os.path.isfile(real):
        raise PatchFailed(f"Unknown or missing file to patch '{path}'")
    cls = format_class(format_name)
    try:
        with open(real, encoding="utf-8") as handle:
            text = handle.read()
        document = cls.parse(text, path)
        results = document.patch(ops, modes)
    except FileParseError as exc:
        raise PatchFailed(f"Failed to patch file '{path}' - {exc.detail()}") from exc
    except (PatchError, OnetoolsError, OSError, UnicodeDecodeError) as exc:
        raise PatchFailed(f"Failed to patch file '{path}' - {exc}") from exc
    report = FileReport(path, format_name, list(zip(ops, results, strict=True)))
    if not report.applied:
        return report, None
    new_text = document.render()
    return report, (new_text if new_text != text else None)
