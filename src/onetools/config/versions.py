"""OpenNebula versions, the upgrade step chain and version detection (reference §1.4).

Versions compare segment by segment as numbers, trailing zeros ignored (``6.10 == 6.10.0``), as
RubyGems' ``Gem::Version`` does for the original.  Each upgrade step covers the half-open
interval ``[from, to)``; a chain of steps takes a configuration from one version to a later one.
Patch releases that no step names (``6.10.3``, ``6.8.5``) fall inside a step's interval.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import total_ordering

from onetools.errors import OnetoolsError

# The stock versions we ship, oldest first; consecutive pairs are the upgrade steps.
CHAIN: tuple[str, ...] = (
    "5.8.0",
    "5.10.0",
    "5.12.0",
    "6.0.0",
    "6.2.0",
    "6.4.0",
    "6.6.0",
    "6.8.0",
    "6.10.0",
    "6.10.2",
    "7.0.0",
    "7.2.0",
    "7.4.0",
    "7.5.80",
)

ONE_VERSION_ENV = "ONECFG_ONE_VERSION"
_ONED_OUTPUT = re.compile(r"^OpenNebula (\d+\.\d+\.\d+(?:\.\d+)?) ", re.MULTILINE)


class VersionError(OnetoolsError):
    """An unknown, malformed or unsupported version."""


@total_ordering
class Version:
    """A dotted numeric version with RubyGems comparison semantics."""

    __slots__ = ("segments", "text")

    def __init__(self, text: str) -> None:
        text = str(text).strip()
        if not re.fullmatch(r"\d+(?:\.\d+)*", text):
            raise VersionError(f"Invalid version '{text}'")
        self.text = text
        self.segments = tuple(int(part) for part in text.split("."))

    @property
    def _key(self) -> tuple[int, ...]:
        segments = list(self.segments)
        while len(segments) > 1 and segments[-1] == 0:
            segments.pop()
        return tuple(segments)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            other = Version(other)
        return isinstance(other, Version) and self._key == other._key

    def __lt__(self, other: Version | str) -> bool:
        if isinstance(other, str):
            other = Version(other)
        return self._key < other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def bump(self) -> Version:
        """Drop the last segment and increment the new last one (``7.5.80`` -> ``7.6``)."""
        segments = list(self.segments[:-1]) if len(self.segments) > 1 else list(self.segments)
        segments[-1] += 1
        return Version(".".join(str(s) for s in segments))

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Version({self.text!r})"


@dataclass(frozen=True)
class Step:
    """One upgrade step, from one stock version to the next."""

    source: Version
    target: Version

    def contains(self, version: Version) -> bool:
        return self.source <= version < self.target

    @property
    def name(self) -> str:
        return f"{self.source}_to_{self.target}"

    def __str__(self) -> str:
        return f"{self.source} -> {self.target}"


STEPS: tuple[Step, ...] = tuple(Step(Version(a), Version(b)) for a, b in itertools.pairwise(CHAIN))


def parse_version(text: str | None, what: str = "version") -> Version:
    if text is None or str(text).strip() == "":
        raise VersionError(f"Unknown {what}")
    try:
        return Version(str(text))
    except VersionError:
        raise VersionError(f"Invalid {what} '{text}'") from None


def supported_range() -> tuple[Version, Version]:
    """``[first, limit)``: from the first step's source to the last step's target bumped."""
    return STEPS[0].source, STEPS[-1].target.bump()


def is_supported(version: Version) -> bool:
    first, limit = supported_range()
    return first <= version < limit


def check_supported(version: Version, what: str = "version") -> Version:
    if not is_supported(version):
        first, limit = supported_range()
        raise VersionError(
            f"Unsupported {what} {version} (supported: {first} up to, not including, {limit})"
        )
    return version


def latest() -> Version:
    return STEPS[-1].target


def step_range(source: Version, target: Version) -> list[Step]:
    """The steps that take a configuration of ``source`` to ``target`` (empty: nothing to do).

    Both must be supported.  A step is taken when its interval holds ``source`` or lies between
    the two; the step whose interval holds ``target`` is not (its ``source`` is already past).
    No downgrades: ``target <= source`` gives no steps.
    """
    check_supported(source, "from version")
    check_supported(target, "to version")
    if target <= source:
        return []
    chosen: list[Step] = []
    for step in STEPS:
        if step.contains(target):
            break
        if step.target > source:
            chosen.append(step)
    return chosen


def final_version(source: Version, target: Version) -> Version:
    """The configuration version after upgrading: the last step's target, or ``source``."""
    steps = step_range(source, target)
    return steps[-1].target if steps else source


def detect_one_version(explicit: str | None = None) -> Version | None:
    """The installed OpenNebula version.

    In order: ``explicit`` (the ``--one-version`` option), the ``ONECFG_ONE_VERSION``
    environment variable (for containers and hosts without ``oned``), then ``oned --version``.
    ``None`` when none of them tells.
    """
    for candidate in (explicit, os.environ.get(ONE_VERSION_ENV)):
        if candidate:
            return parse_version(candidate, "OpenNebula version")
    oned = shutil.which("oned")
    if oned is None:
        return None
    try:
        completed = subprocess.run(
            [oned, "--version"], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    match = _ONED_OUTPUT.search(completed.stdout)
    if completed.returncode != 0 or match is None:
        return None
    return Version(match.group(1))
