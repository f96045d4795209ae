"""``onecfg validate``: every classified file of a tree parses and round-trips."""

from __future__ import annotations

from dataclasses import dataclass

from onetools.config.files import CLASSIFICATION, prefixed
from onetools.config.formats import format_class
from onetools.errors import FileParseError, OnetoolsError
from onetools.log import get_logger

log = get_logger("validate")


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
        if document.render() != text:
            return "Error when comparing file content with self (it does not render back as read)"
        if document.diff(document):
            return "Error when comparing file content with self"
    except FileParseError as exc:
        return exc.detail()
    except UnicodeDecodeError as exc:
        return f"Not UTF-8 text ({exc.reason} at byte {exc.start})"
    except (OSError, OnetoolsError) as exc:
        return str(exc)
    return None


def validate_tree(prefix: str = "/") -> list[FileValidation]:
    """Validate every classified file under ``prefix``, logging one line per file."""
    results: list[FileValidation] = []
    for path, entry in CLASSIFICATION.scan(prefix).classified.items():
        real = prefixed(prefix, path)
        format_name = entry.format_name or ""
        error = validate_file(real, format_name)
        results.append(FileValidation(real, format_name, error))
        if error is None:
            log.info(f"File '{real}' - OK")
        else:
            log.error(f"Unable to process file '{real}' - {error}")
    return results
