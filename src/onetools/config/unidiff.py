"""Unified diffs of whole texts, made and applied in-process.

The original tool shells out to ``diff -ud --label old --label new`` to describe a change of a
``Simple`` file and to ``patch -f`` to replay it on the user's copy.  This module does both in
Python so no external program is needed:

* ``make_diff`` produces the same layout as GNU diff (labels ``old``/``new``, three lines of
  context, ``\\ No newline at end of file`` markers, GNU range notation in hunk headers).  The
  hunks themselves come from ``difflib`` and may group changes differently from GNU diff; any
  correct diff is fine because the text is only ever replayed, never compared byte-wise.
* ``apply_diff`` replays hunks the way ``patch -f`` does: at the expected line (shifted by the
  offset of the previous hunk), else at the nearest place where the context matches, else with up
  to two context lines dropped at each edge of the hunk ("fuzz").
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Final

from onetools.errors import PatchError

CONTEXT: Final = 3
MAX_FUZZ: Final = 2
NO_NEWLINE: Final = "\\ No newline at end of file"

_HUNK_HEADER = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


class DiffApplyError(PatchError):
    """A unified diff could not be applied, or is not a well-formed unified diff."""

    def __init__(self, detail: str) -> None:
        # Same wording as the original's error for a failing ``patch`` run, plus the reason.
        super().__init__(f"Patch command failed: {detail}")
        self.detail = detail


# --------------------------------------------------------------------------------------------
# Making diffs
# --------------------------------------------------------------------------------------------


def _range(start: int, length: int) -> str:
    """GNU notation for a hunk side: ``l`` for one line, ``l,n`` otherwise.

    ``start`` is 0-based; an empty side names the line *before* the gap (``0,0`` at the top).
    """
    if length == 1:
        return str(start + 1)
    if length == 0:
        return f"{start},0"
    return f"{start + 1},{length}"


def split_lines(text: str) -> list[str]:
    """Lines with their ``\\n``; only ``\\n`` ends a line (``str.splitlines`` would also split
    on ``\\r``, form feeds, ``\\x85``... which diff and patch treat as ordinary characters)."""
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _emit(out: list[str], prefix: str, line: str) -> None:
    """Append one body line; a line without newline (last of a file) gets the GNU marker."""
    if line.endswith("\n"):
        out.append(prefix + line)
    else:
        out.append(prefix + line + "\n")
        out.append(NO_NEWLINE + "\n")


def make_diff(old_text: str, new_text: str) -> str:
    """Unified diff turning ``old_text`` into ``new_text``; ``""`` when they are equal."""
    if old_text == new_text:
        return ""
    # keepends: a last line without newline differs from the same line with one, as in diff.
    old = split_lines(old_text)
    new = split_lines(new_text)
    out = ["--- old\n", "+++ new\n"]
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    for group in matcher.get_grouped_opcodes(CONTEXT):
        first, last = group[0], group[-1]
        old_start, old_end = first[1], last[2]
        new_start, new_end = first[3], last[4]
        out.append(
            f"@@ -{_range(old_start, old_end - old_start)} "
            f"+{_range(new_start, new_end - new_start)} @@\n"
        )
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                for line in old[i1:i2]:
                    _emit(out, " ", line)
                continue
            for line in old[i1:i2]:
                _emit(out, "-", line)
            for line in new[j1:j2]:
                _emit(out, "+", line)
    return "".join(out)


# --------------------------------------------------------------------------------------------
# Parsing diffs
# --------------------------------------------------------------------------------------------


@dataclass
class Hunk:
    """One hunk: 1-based header numbers and its body as (kind, line) pairs.

    ``kind`` is ``" "`` (context), ``"-"`` (removed) or ``"+"`` (added); lines keep their newline
    unless a ``\\ No newline at end of file`` marker followed them.
    """

    number: int
    old_start: int
    old_count: int
    new_start: int
    new_count: int
    body: list[tuple[str, str]] = field(default_factory=list)

    def old_lines(self) -> list[str]:
        return [line for kind, line in self.body if kind != "+"]

    def new_lines(self) -> list[str]:
        return [line for kind, line in self.body if kind != "-"]

    def leading_context(self) -> int:
        count = 0
        for kind, _ in self.body:
            if kind != " ":
                break
            count += 1
        return count

    def trailing_context(self) -> int:
        count = 0
        for kind, _ in reversed(self.body):
            if kind != " ":
                break
            count += 1
        return count


def parse_diff(diff_text: str) -> list[Hunk]:
    """The hunks of a single-file unified diff; ``DiffApplyError`` when it is malformed."""
    lines = split_lines(diff_text)
    hunks: list[Hunk] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        match = _HUNK_HEADER.match(line)
        if match is None:
            # File headers (---/+++), "diff ..." lines and other chatter between hunks are
            # ignored, as patch does; only text inside a hunk is checked strictly.
            index += 1
            continue
        hunk = Hunk(
            number=len(hunks) + 1,
            old_start=int(match.group(1)),
            old_count=int(match.group(2)) if match.group(2) is not None else 1,
            new_start=int(match.group(3)),
            new_count=int(match.group(4)) if match.group(4) is not None else 1,
        )
        index += 1
        old_seen = new_seen = 0
        while old_seen < hunk.old_count or new_seen < hunk.new_count:
            if index >= len(lines):
                raise DiffApplyError(f"malformed diff: hunk {hunk.number} is truncated")
            body_line = lines[index]
            kind = body_line[0]
            # Some editors strip the single space of an empty context line; patch accepts that.
            if body_line in ("\n", "\r\n"):
                kind, text = " ", body_line
            elif kind in " -+":
                text = body_line[1:]
            else:
                raise DiffApplyError(
                    f"malformed diff: unexpected line {index + 1} in hunk {hunk.number}: "
                    f"{body_line.rstrip()!r}"
                )
            if kind != "+":
                old_seen += 1
            if kind != "-":
                new_seen += 1
            hunk.body.append((kind, text))
            index += 1
            # The marker belongs to the line just read: that line has no newline.
            if index < len(lines) and lines[index].startswith("\\"):
                last_kind, last_text = hunk.body[-1]
                hunk.body[-1] = (last_kind, last_text.removesuffix("\n"))
                index += 1
        after = lines[index] if index < len(lines) else ""
        if (
            old_seen != hunk.old_count
            or new_seen != hunk.new_count
            or (after[:1] in ("+", "-", " ") and not after.startswith(("--- ", "+++ ")))
        ):
            raise DiffApplyError(
                f"malformed diff: hunk {hunk.number} line counts do not match its header"
            )
        hunks.append(hunk)
    if not hunks and diff_text.strip():
        raise DiffApplyError("malformed diff: no hunks found")
    return hunks


# --------------------------------------------------------------------------------------------
# Applying diffs
# --------------------------------------------------------------------------------------------


def _candidates(expected: int, low: int, high: int) -> list[int]:
    """Positions from ``low`` to ``high`` ordered by distance from ``expected`` (earlier first)."""
    expected = min(max(expected, low), high)
    order = [expected]
    for distance in range(1, max(expected - low, high - expected) + 1):
        if expected - distance >= low:
            order.append(expected - distance)
        if expected + distance <= high:
            order.append(expected + distance)
    return order


def _find(
    lines: list[str], pattern: list[str], expected: int, low: int, anchor: str | None
) -> int | None:
    """First place at or after ``low`` where ``pattern`` matches, nearest to ``expected``.

    ``anchor`` ``"start"``/``"end"`` pins the match to the beginning/end of the text.
    """
    high = len(lines) - len(pattern)
    if high < low:
        return None
    if anchor == "start":
        positions = [0] if low == 0 else []
    elif anchor == "end":
        positions = [high]
    else:
        positions = _candidates(expected, low, high)
    size = len(pattern)
    for position in positions:
        if lines[position : position + size] == pattern:
            return position
    return None


def apply_diff(text: str, diff_text: str) -> str:
    """Apply a unified diff to ``text`` like ``patch -f``; ``DiffApplyError`` when it can't.

    All hunks must apply: a partly applied text is never returned (``patch`` would leave a
    ``.rej`` file and fail, which the original reports as a failed patch as well).
    """
    hunks = parse_diff(diff_text)
    lines = split_lines(text)
    out: list[str] = []
    cursor = 0  # first line of ``lines`` not yet copied to ``out``
    offset = 0  # how far the previous hunk was from its stated place; later hunks follow it
    for hunk in hunks:
        old = hunk.old_lines()
        new = hunk.new_lines()
        # An empty old side names the line after which to insert; otherwise its first line.
        expected = (hunk.old_start if not old else hunk.old_start - 1) + offset
        lead, trail = hunk.leading_context(), hunk.trailing_context()
        placed = None
        for fuzz in range(MAX_FUZZ + 1):
            cut_lead, cut_trail = min(fuzz, lead), min(fuzz, trail)
            if fuzz and not (cut_lead or cut_trail):
                break  # nothing left to drop: more fuzz would just repeat the search
            if cut_lead + cut_trail >= len(old) > 0:
                break  # never reduce a hunk to nothing: it would match anywhere
            pattern = old[cut_lead : len(old) - cut_trail]
            # Like patch: a hunk with less context at one edge was cut there by the start or
            # end of the file, so without fuzz it may only match at that end of the text.
            anchor = None
            if fuzz == 0 and lead < trail and hunk.old_start <= 1:
                anchor = "start"
            elif fuzz == 0 and trail < lead:
                anchor = "end"
            position = _find(lines, pattern, expected + cut_lead, cursor, anchor)
            if position is not None:
                placed = (position, cut_lead, cut_trail)
                break
        if placed is None:
            raise DiffApplyError(f"hunk {hunk.number} does not apply")
        position, cut_lead, cut_trail = placed
        out.extend(lines[cursor:position])
        out.extend(new[cut_lead : len(new) - cut_trail])
        cursor = position + len(old) - cut_lead - cut_trail
        offset = position - cut_lead - (hunk.old_start - 1 if old else hunk.old_start)
    out.extend(lines[cursor:])
    return "".join(out)
