"""``onecfg status`` and ``onecfg init``: versions, pending work, available steps."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from onetools.config.settings import Settings, load_settings
from onetools.config.versions import (
    Step,
    Version,
    VersionError,
    check_supported,
    detect_one_version,
    final_version,
    parse_version,
    step_range,
)
from onetools.errors import EXIT_FATAL, EXIT_OK, EXIT_PARTIAL, FatalError
from onetools.log import any_, get_logger

log = get_logger("status")


@dataclass
class Status:
    one_version: str | None
    config_version: str | None
    settings: Settings
    steps: list[str] = field(default_factory=list)
    new_config: str | None = None
    error: str | None = None
    message: str | None = None
    exit_code: int = EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "one_version": self.one_version,
            "config_version": self.config_version,
            "backup": self.settings.backup,
            "outdated": self.settings.outdated,
            "settings": self.settings.path,
            "new_config": self.new_config,
            "steps": self.steps,
            "error": self.error,
            "message": self.message,
            "exit_code": self.exit_code,
        }

    def render(self) -> str:
        def row(label: str, value: str | None) -> str:
            return f"{label:<12} {value or '-':<9}".rstrip()

        lines = [
            "--- Versions ------------------------------",
            row("OpenNebula:", self.one_version),
            row("Config:", self.config_version),
        ]
        if self.error:
            lines += ["", f"ERROR: {self.error}"]
            return "\n".join(lines) + "\n"
        if self.settings.backup:
            lines += [
                "",
                "--- Backup to Process ---------------------",
                row("Snapshot:", self.settings.backup),
                "(will be used as one-shot source for next update)",
            ]
        lines += ["", "--- Available Configuration Updates -------"]
        if self.steps:
            lines.append(row("New config:", self.new_config))
            lines += [f"- {step}" for step in self.steps]
        else:
            lines.append(self.message or "")
        return "\n".join(lines) + "\n"


def _has_program(step: Step) -> bool:
    # A file check, not an import: status must stay fast (see migrations/__init__.py for names).
    name = f"v{step.source}_to_{step.target}".replace(".", "_")
    return os.path.exists(os.path.join(os.path.dirname(__file__), "migrations", f"{name}.py"))


def _describe(source: Version, target: Version) -> list[str]:
    out = []
    for step in step_range(source, target):
        kinds = "YAML,Python" if _has_program(step) else "YAML"
        out.append(f"from {step.source} to {step.target} ({kinds})")
    return out


def status(one_version: str | None = None) -> Status:
    """Versions and what an upgrade would do; ``exit_code`` as the original (0/1/255)."""
    settings = load_settings()
    result = Status(None, settings.version, settings)
    try:
        detected = detect_one_version(one_version)
    except VersionError as exc:
        result.error, result.exit_code = exc.message, EXIT_FATAL
        return result
    if detected is None:
        result.error, result.exit_code = "Unknown OpenNebula version", EXIT_FATAL
        return result
    result.one_version = str(detected)
    try:
        check_supported(detected, "OpenNebula version")
    except VersionError as exc:
        result.error, result.exit_code = exc.message, EXIT_FATAL
        return result
    try:
        config = parse_version(settings.version, "config version")
        check_supported(config, "config version")
    except VersionError as exc:
        result.error, result.exit_code = exc.message, EXIT_FATAL
        return result
    if settings.outdated:
        result.error, result.exit_code = "Configurations metadata are outdated.", EXIT_FATAL
        return result
    result.steps = _describe(config, detected)
    if result.steps:
        result.new_config = str(final_version(config, detected))
        result.exit_code = EXIT_PARTIAL
    elif settings.backup:
        result.message = "No updates available, but update request for backup must be cleared."
        result.exit_code = EXIT_PARTIAL
    else:
        result.message = "No updates available."
    return result


def init(force: bool = False, to: str | None = None, one_version: str | None = None) -> Settings:
    """Create the settings file at a validated version (the detected OpenNebula one by default)."""
    settings = load_settings()
    if settings.exists and not force:
        any_(log, "Already initialized")
        return settings
    if to is not None:
        version = check_supported(parse_version(to, "version"), "version")
    else:
        detected = detect_one_version(one_version)
        if detected is None:
            raise FatalError("Could not detect OpenNebula version to initialize on")
        version = check_supported(detected, "OpenNebula version")
    fresh = Settings(settings.path, exists=True, version=str(version))
    directory = os.path.dirname(fresh.path)
    if directory and not os.path.isdir(directory):
        raise FatalError(f"Settings directory '{directory}' does not exist")
    from onetools.config.transaction import write_atomic  # not needed by status: keep it fast

    try:
        write_atomic(fresh.path, fresh.to_text().encode())
    except OSError as exc:
        raise FatalError(f"Cannot write settings file '{fresh.path}': {exc.strerror}") from None
    log.info(f"Initialized on version {version}")
    return fresh
