"""``onecfg validate``: every classified file of a tree parses and round-trips."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass

from onetools.config.files import CLASSIFICATION, prefixed
from onetools.config.formats import format_class
from onetools.errors import FileParseError, OnetoolsError
from onetools.log import get_logger

log = get_logger("validate")

# Formats parsed by Augeas' Shellvars lens, whose one-time compilation (~60 ms) is worth doing in
# a second process while the first one parses the YAML and oned.conf files.
PARALLEL_FORMATS = frozenset({"Augeas::Shell"})


@dataclass
class FileValidation:
    path: str  # as found under the prefix
    format_name: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, object]:
        return {"file": self.path, "class": self.format_name, "ok": self.ok, "error": self.error}


def validate_file(path: str, format_name: str) -> str | None:
    """``None`` when the file is valid, else the reason (with the line when known)."""
    cls = format_class(format_name)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        document = cls.parse(text, path)
        # Parsing builds the whole model (and raises on structural errors); rendering it back
        # must give the same bytes.  A diff against itself, as the original also runs, is empty
        # by construction in our formats and is left to the test suite.
        if document.render() != text:
            return "Error when comparing file content with self (it does not render back as read)"
    except FileParseError as exc:
        return exc.detail()
    except UnicodeDecodeError as exc:
        return f"Not UTF-8 text ({exc.reason} at byte {exc.start})"
    except (OSError, OnetoolsError) as exc:
        return str(exc)
    return None


def _validate_all(files: Iterable[tuple[str, str]]) -> dict[str, str | None]:
    return {path: validate_file(path, format_name) for path, format_name in files}


def _validate_in_child(files: list[tuple[str, str]]) -> tuple[int, int] | None:
    """Fork a process validating ``files``; returns (pid, read end of its result pipe)."""
    try:
        read_end, write_end = os.pipe()
        pid = os.fork()
    except OSError:
        return None
    if pid == 0:  # child: validate, send the results as JSON, exit without cleanup handlers
        code = 0
        try:
            os.close(read_end)
            data = json.dumps(_validate_all(files)).encode()
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(data)
        except BaseException:
            code = 1
        os._exit(code)
    os.close(write_end)
    return pid, read_end


def _collect(child: tuple[int, int]) -> dict[str, str | None] | None:
    pid, read_end = child
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        return None
    try:
        results: dict[str, str | None] = json.loads(data)
    except ValueError:
        return None
    return results


def validate_tree(prefix: str = "/", parallel: bool = True) -> list[FileValidation]:
    """Validate every classified file under ``prefix``, logging one line per file."""
    files = [
        (prefixed(prefix, path), entry.format_name or "")
        for path, entry in CLASSIFICATION.scan(prefix).classified.items()
    ]
    aside = [item for item in files if item[1] in PARALLEL_FORMATS]
    child = _validate_in_child(aside) if parallel and len(aside) > 1 else None
    errors = _validate_all(item for item in files if child is None or item not in aside)
    if child is not None:
        from_child = _collect(child)
        errors.update(from_child if from_child is not None else _validate_all(aside))
    results: list[FileValidation] = []
    for path, format_name in files:
        error = errors[path]
        results.append(FileValidation(path, format_name, error))
        if error is None:
            log.info(f"File '{path}' - OK")
        else:
            log.error(f"Unable to process file '{path}' - {error}")
    return results
