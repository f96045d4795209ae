"""Logging as the original tools print it: ``LEVEL : message`` lines on stderr.

Levels are DEBUG, INFO, WARN, ERROR, FATAL and ANY (always shown: backups, final results).
Default threshold is WARN; ``--verbose`` shows INFO, ``--debug`` DEBUG.
"""

from __future__ import annotations

import logging
import sys

ANY = 60
LOGGER_NAME = "onetools"

_LABELS = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARN",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "FATAL",
    ANY: "ANY",
}


class _LineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        label = _LABELS.get(record.levelno, record.levelname)
        return f"{label:<5} : {record.getMessage()}"


def get_logger(name: str | None = None) -> logging.Logger:
    return logging.getLogger(LOGGER_NAME if name is None else f"{LOGGER_NAME}.{name}")


def setup(verbose: bool = False, debug: bool = False) -> logging.Logger:
    """Send onetools logs to stderr at the threshold the flags ask for."""
    logger = get_logger()
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LineFormatter())
    logger.addHandler(handler)
    logger.propagate = False
    if debug:
        logger.setLevel(logging.DEBUG)
    elif verbose:
        logger.setLevel(logging.INFO)
    else:
        logger.setLevel(logging.WARNING)
    return logger


def any_(logger: logging.Logger, message: str) -> None:
    """Log a message that is shown at every threshold (the original's ``ANY``)."""
    logger.log(ANY, message)
