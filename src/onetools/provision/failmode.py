"""The fail-mode engine of ``oneprovision`` (``reference/oneprovision.md`` §1.4, §4.9).

Every step of a lifecycle command that can fail (one datastore, one host, the Terraform apply,
the Ansible run…) runs through ``FailureHandler.run(what, action)``.  On a failure the engine
prints ``ERROR : <what>`` and the detail, marks the provision ERROR and then, as the original:

* batch (``--batch``): takes the head of the mode list (``--fail-modes`` first, then each
  ``--fail-retry/--fail-cleanup/--fail-skip/--fail-quit`` in the order given; ``quit`` when
  empty); after ``max_retries`` counted retries the head is popped and used once more, so
  ``--fail-retry 2 --fail-cleanup`` attempts a step 1 + 3 times, then cleans up;
* interactive (a TTY): asks through the ``Ui`` (``quit``, ``retry``, ``skip`` and, once the
  hosts exist, ``cleanup``), the batch choice being the default.

``retry`` re-runs only the failing unit; ``skip`` returns ``SKIPPED`` to the caller; ``quit``
raises ``StepFailed`` (exit 255); ``cleanup`` raises ``CleanupRequested`` when allowed (create
then deletes everything and exits 255: the original said "successfully created" and 0).

Nothing here knows about OpenNebula: the lifecycle passes ``on_failure`` to mark the state.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

from onetools.errors import OnetoolsError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any, Protocol, TypeVar

    T = TypeVar("T")

    class Ui(Protocol):
        """What the lifecycle tells the user and asks: stderr lines and the failure menu."""

        def info(self, message: str) -> None: ...

        def warning(self, message: str) -> None: ...

        def error(self, message: str) -> None: ...

        def choose(self, question: str, choices: Sequence[str], default: str | None) -> str:
            """One of ``choices`` (the default on an empty answer or end of input)."""
            ...


MODES = ("cleanup", "retry", "skip", "quit")
DEFAULT_MAX_RETRIES = 3


class StepFailed(OnetoolsError):
    """A step failed and the chosen mode was ``quit`` (or no mode was left)."""


class CleanupRequested(Exception):
    """``cleanup`` was chosen: the create deletes what it made (not an ``OnetoolsError``: it
    must not be caught as an ordinary failure on its way up)."""

    def __init__(self, what: str, cause: BaseException | None) -> None:
        super().__init__(what)
        self.what = what
        self.cause = cause


class Skipped:
    """The marker ``run`` returns when a failed step was skipped."""

    def __repr__(self) -> str:
        return "SKIPPED"


SKIPPED = Skipped()


def parse_modes(text: str | None) -> list[str]:
    """``"retry,cleanup"`` → ``["retry", "cleanup"]``; an unknown mode is a usage error with
    the original's text (``Wrong fail mode `x'``)."""
    modes: list[str] = []
    for item in (text or "").split(","):
        mode = item.strip()
        if not mode:
            continue
        if mode not in MODES:
            raise UsageError(f"Wrong fail mode `{mode}'")
        modes.append(mode)
    return modes


@dataclass
class FailPolicy:
    """The fail-mode options of one command run."""

    batch: bool = False
    modes: list[str] = field(default_factory=list)
    max_retries: int = DEFAULT_MAX_RETRIES
    sleep: float | None = None

    @classmethod
    def from_options(
        cls,
        batch: bool = False,
        fail_modes: str | None = None,
        flags: Sequence[str] = (),
        max_retries: int | None = None,
        sleep: float | None = None,
    ) -> FailPolicy:
        """Build the mode list as §1.4: ``fail_modes`` first, then ``flags`` (the
        ``--fail-retry/-cleanup/-skip/-quit`` options in command-line order); ``quit`` if
        empty."""
        modes = parse_modes(fail_modes) + [flag for flag in flags if flag in MODES]
        if max_retries is not None and max_retries < 0:
            raise UsageError("--fail-retry needs a number of retries >= 0")
        if sleep is not None and sleep < 0:
            raise UsageError("--fail-sleep needs a number of seconds >= 0")
        return cls(
            batch=batch,
            modes=modes or ["quit"],
            max_retries=DEFAULT_MAX_RETRIES if max_retries is None else max_retries,
            sleep=sleep,
        )


class FailureHandler:
    """Runs steps under a ``FailPolicy``; the mode list is shared by every step of the run,
    the retry counter is per step (as the original)."""

    def __init__(
        self,
        policy: FailPolicy,
        ui: Ui,
        on_failure: Callable[[], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.policy = policy
        self.modes = list(policy.modes)
        self.ui = ui
        self.on_failure = on_failure
        self.cleanup_allowed = False
        self._sleep = sleep

    def _pause(self) -> None:
        if self.policy.sleep:
            self._sleep(self.policy.sleep)

    def run(self, what: str, action: Callable[[], T]) -> T | Skipped:
        """``action()``, or what the fail modes make of its failures (see the module doc)."""
        retries = 0
        while True:
            try:
                return action()
            except OnetoolsError as exc:
                retries += 1
                choice, retries = self._choose(what, exc, retries)
                if self.on_failure is not None:
                    self.on_failure()
                if choice == "retry":
                    self._pause()
                    continue
                if choice == "skip":
                    self.ui.warning(f"Skipped: {what}")
                    return SKIPPED
                if choice == "cleanup":
                    if self.cleanup_allowed:
                        raise CleanupRequested(what, exc) from exc
                    raise StepFailed(f"{what}: cleanup unsupported for this operation") from exc
                raise StepFailed(f"{what}: {_first_line(exc)}") from exc

    def _choose(self, what: str, exc: OnetoolsError, retries: int) -> tuple[str | None, int]:
        """The mode for this failure and the step's retry counter after it."""
        self.ui.error(what)
        self.ui.error(exc.log_line())
        if self.policy.batch:
            if retries > self.policy.max_retries:
                # the head is popped and used once more (the original's off-by-one, kept:
                # scripts count on "--fail-retry N --fail-cleanup" trying N + 2 times)
                popped = self.modes.pop(0) if self.modes else None
                self._pause()
                return popped, 0
            return (self.modes[0] if self.modes else None), retries
        candidate = self.modes[0] if self.modes else None
        choices = ["quit", "retry", "skip"] + (["cleanup"] if self.cleanup_allowed else [])
        default = candidate if candidate in choices else "quit"
        return self.ui.choose(f"{what}: what to do?", choices, default), retries


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


class ConsoleUi:
    """The ``Ui`` of the command line: ``LEVEL : message`` lines on stderr; the failure menu
    on stderr, answered on stdin (interactive runs only).

    ``log_format`` ``json`` or ``xml`` (the commands' ``-j``/``-x``) gives the original's
    machine forms, one per message (§1.2): ``{"timestamp": ..., "severity": ..., "message":
    <base64>}`` or ``<TIMESTAMP>..</TIMESTAMP><SEVERITY>..</SEVERITY><MESSAGE>base64
    </MESSAGE>``; FireEdge-style drivers decode them.
    """

    def __init__(
        self,
        verbose: bool = False,
        stream: Any = None,
        answers: Any = None,
        log_format: str | None = None,
    ) -> None:
        self.verbose = verbose
        self.stream = stream if stream is not None else sys.stderr
        self.answers = answers if answers is not None else sys.stdin
        self.log_format = log_format

    def _line(self, level: str, message: str) -> None:
        if self.log_format in ("json", "xml"):
            self.stream.write(_machine_line(self.log_format, level, message) + "\n")
        else:
            for line in message.splitlines() or [""]:
                self.stream.write(f"{level:<5} : {line}\n")
        self.stream.flush()

    def info(self, message: str) -> None:
        if self.verbose:
            self._line("INFO", message)

    def warning(self, message: str) -> None:
        self._line("WARN", message)

    def error(self, message: str) -> None:
        self._line("ERROR", message)

    def choose(self, question: str, choices: Sequence[str], default: str | None) -> str:
        fallback: str = default if default is not None and default in choices else choices[0]
        for _ in range(10):
            self.stream.write(f"{question}\n")
            for number, choice in enumerate(choices, 1):
                marker = " (default)" if choice == fallback else ""
                self.stream.write(f"  {number}. {choice}{marker}\n")
            self.stream.write("Choose: ")
            self.stream.flush()
            answer = self.answers.readline()
            if not answer:  # end of input keeps the default (§1.4)
                return fallback
            text = answer.strip().lower()
            if not text:
                return fallback
            if text.isdigit() and 1 <= int(text) <= len(choices):
                return choices[int(text) - 1]
            if text in choices:
                return text
        return fallback


def _machine_line(log_format: str, level: str, message: str) -> str:
    import base64
    import json

    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    encoded = base64.b64encode(message.encode("utf-8")).decode("ascii")
    if log_format == "json":
        return json.dumps({"timestamp": stamp, "severity": level, "message": encoded})
    return f"<TIMESTAMP>{stamp}</TIMESTAMP><SEVERITY>{level}</SEVERITY><MESSAGE>{encoded}</MESSAGE>"
