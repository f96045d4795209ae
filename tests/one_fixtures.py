"""pytest plugin: the ``one_api`` fixture, one ``OneApi`` per backend for the contract suite.

``BACKENDS`` maps a backend name to a factory ``(tmp_path) -> OneApi``; adding a backend (the
XML-RPC client against a test server wrapping ``LocalOne``) is one more entry.  Tests written
against ``one_api`` use only the ``OneApi`` interface and ``onetools.one.errors``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from onetools.one.api import OneApi


def _embedded(tmp_path: Path) -> OneApi:
    from onetools.one.local import LocalOne

    return LocalOne(tmp_path / "onetools-home")


def _xmlrpc(tmp_path: Path) -> OneApi:
    # pyone's client against the test XML-RPC server over a fresh LocalOne; closing the
    # client stops the server.
    from one_xmlrpc_server import served_client

    return served_client(tmp_path / "onetools-home")


BACKENDS: dict[str, Callable[[Path], OneApi]] = {
    "embedded": _embedded,
    "xmlrpc": _xmlrpc,
}


@pytest.fixture(params=sorted(BACKENDS))
def one_api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OneApi]:
    """A fresh OpenNebula (as oned after its first start) behind each backend."""
    api = BACKENDS[request.param](tmp_path)
    try:
        yield api
    finally:
        api.close()
