"""Logging as the original tools print it: ``LEVEL : message`` lines on stderr.

Levels are DEBUG, INFO, WARN, ERROR, FATAL and ANY (always shown: backups, final results).
Default threshold is WARN; ``--verbose`` shows INFO, ``--debug`` DEBUG.

``setup`` only records the threshold; the ``logging`` module (~20 ms to import here) is loaded
and configured when a library module first asks for a logger, so commands that log nothing
(``onedb version``) never pay for it.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging

ANY = 60
LOGGER_NAME = "onetools"
_DEBUG, _INFO, _WARNING = 10, 20, 30

_threshold = _WARNING
_configured = False


def _labels() -> dict[int, str]:
    return {10: "DEBUG", 20: "INFO", 30: "WARN", 40: "ERROR", 50: "FATAL", ANY: "ANY"}


def _configure() -> None:
    global _configured
    import logging

    class LineFormatter(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            label = _labels().get(record.levelno, record.levelname)
            return f"{label:<5} : {record.getMessage()}"

    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LineFormatter())
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(_threshold)
    _configured = True


def get_logger(name: str | None = None) -> logging.Logger:
    import logging

    if not _configured:
        _configure()
    return logging.getLogger(LOGGER_NAME if name is None else f"{LOGGER_NAME}.{name}")


def setup(verbose: bool = False, debug: bool = False) -> None:
    """Set the threshold: DEBUG with ``debug``, INFO with ``verbose``, else WARN."""
    global _threshold
    _threshold = _DEBUG if debug else _INFO if verbose else _WARNING
    if _configured or "logging" in sys.modules:
        _configure()


def any_(logger: logging.Logger, message: str) -> None:
    """Log a message that is shown at every threshold (the original's ``ANY``)."""
    logger.log(ANY, message)
