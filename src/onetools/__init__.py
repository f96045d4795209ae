"""onetools: command-line tools for OpenNebula cloud administrators."""

from __future__ import annotations

__version__ = "0.1.0"
