"""Programmatic upgrade steps: changes that ops on one file cannot express.

A step module is named after its step, ``v<from>_to_<to>`` with dots as underscores (e.g.
``v6_10_2_to_7_0_0``), and defines ``up(ctx: StepContext) -> None``, run after the step's
descriptor has been applied.  It may define ``READS``: files whose state *before* the step it
needs (``ctx.old_document``), e.g. a file the descriptor deletes whose values move elsewhere.

Steps work on parsed documents in the upgrade sandbox and change them with ops (``ctx.apply``),
so the usual formats, quoting and formatting rules hold.  They move the user's values, not the
stock ones.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import ModuleType

from onetools.config.formats import format_class
from onetools.config.formats.base import ConfigDocument
from onetools.config.ops import ChangeOp, PatchResult
from onetools.config.sandbox import FileMeta, Sandbox
from onetools.config.versions import Step


def module_name(step: Step) -> str:
    def part(version: object) -> str:
        return str(version).replace(".", "_")

    return f"v{part(step.source)}_to_{part(step.target)}"


def load_program(step: Step) -> ModuleType | None:
    """The programmatic part of a step, if it has one."""
    try:
        return importlib.import_module(f"{__name__}.{module_name(step)}")
    except ModuleNotFoundError as exc:
        if exc.name == f"{__name__}.{module_name(step)}":
            return None
        raise


@dataclass
class StepContext:
    """What a programmatic step sees: the sandbox, the state before the step, a report."""

    sandbox: Sandbox
    step: Step
    before: dict[str, str | None]
    log: logging.Logger
    notes: list[str] = field(default_factory=list)
    changed: set[str] = field(default_factory=set)

    def exists(self, path: str) -> bool:
        return self.sandbox.exists(path)

    def document(self, path: str) -> ConfigDocument | None:
        """The current document (after the step's descriptor), or ``None`` if missing."""
        return self.sandbox.document(path)

    def old_document(self, path: str, format_name: str) -> ConfigDocument | None:
        """The document as it was before this step (only for paths listed in ``READS``)."""
        if path not in self.before:
            raise KeyError(f"{path} is not in the step's READS")
        text = self.before[path]
        return None if text is None else format_class(format_name).parse(text, path)

    def apply(self, path: str, ops: Iterable[ChangeOp]) -> list[PatchResult]:
        """Apply ops to the current document of ``path`` in replace mode."""
        document = self.sandbox.document(path)
        if document is None:
            raise FileNotFoundError(path)
        op_list = list(ops)
        results = document.patch(op_list, {"replace"})
        if any(result.applied for result in results):
            self.changed.add(path)
        return results

    def mkdir(
        self, path: str, owner: str = "root", group: str = "oneadmin", mode: int = 0o750
    ) -> None:
        self.sandbox.mkdir(path, FileMeta(owner, group, mode))

    def note(self, message: str) -> None:
        """Report something the step did (shown with --verbose, listed in --json)."""
        self.notes.append(message)
        self.log.info(message)
