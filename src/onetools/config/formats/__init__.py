"""Configuration file formats, looked up by the class names used in files.yaml and descriptors.

Modules are imported on first use so that commands which never touch a format stay fast.
"""

from __future__ import annotations

import importlib

from onetools.config.formats.base import ConfigDocument
from onetools.errors import FatalError

# class name (as in the original's files.yaml) -> (module, class)
FORMATS: dict[str, tuple[str, str]] = {
    "Simple": ("onetools.config.formats.plain", "PlainDocument"),
    "Yaml": ("onetools.config.formats.yaml", "YamlDocument"),
    "Yaml::Strict": ("onetools.config.formats.yaml", "StrictYamlDocument"),
    "Augeas::Shell": ("onetools.config.formats.shell", "ShellDocument"),
    "Augeas::ONE": ("onetools.config.formats.one", "OneDocument"),
}


def format_class(name: str) -> type[ConfigDocument]:
    """The document class for a format name such as ``Augeas::ONE``."""
    try:
        module_name, class_name = FORMATS[name]
    except KeyError:
        raise FatalError(
            f"Unknown file class '{name}'. Available classes - {', '.join(FORMATS)}"
        ) from None
    cls: type[ConfigDocument] = getattr(importlib.import_module(module_name), class_name)
    return cls
