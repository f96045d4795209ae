"""A loopback HTTP file server for the download and export tests (stdlib ``http.server``).

``FileServer.add(path, data)`` publishes bytes; GET honours ``Range: bytes=N-`` with 206.
Hostile behaviours, chosen per path:

* ``cut(path, times)``: announce the full Content-Length, send half, close (``times`` times);
* ``stall(path, seconds)``: send the headers, then nothing for ``seconds``;
* ``redirect(path, to)``: a 302 to another path (two of them make a loop);
* ``no_range(path)``: ignore Range and always answer 200 with the whole file.

``requests`` records ``(path, Range header or None)`` of every GET.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class FileServer:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cuts: dict[str, int] = {}
        self.stalls: dict[str, float] = {}
        self.redirects: dict[str, str] = {}
        self.ignore_range: set[str] = set()
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def add(self, path: str, data: bytes) -> str:
        self.files[path] = data
        return self.url(path)

    def cut(self, path: str, times: int = 1) -> None:
        self.cuts[path] = times

    def stall(self, path: str, seconds: float) -> None:
        self.stalls[path] = seconds

    def redirect(self, path: str, to: str) -> None:
        self.redirects[path] = to

    def no_range(self, path: str) -> None:
        self.ignore_range.add(path)

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        path = request.path
        range_header = request.headers.get("Range")
        self.requests.append((path, range_header))
        if path in self.redirects:
            request.send_response(302)
            request.send_header("Location", self.redirects[path])
            request.send_header("Content-Length", "0")
            request.end_headers()
            return
        data = self.files.get(path)
        if data is None:
            request.send_response(404)
            request.send_header("Content-Length", "0")
            request.end_headers()
            return
        start = 0
        if range_header and range_header.startswith("bytes=") and path not in self.ignore_range:
            start = int(range_header[6:].split("-")[0])
            if start >= len(data):
                request.send_response(416)
                request.send_header("Content-Length", "0")
                request.end_headers()
                return
        body = data[start:]
        request.send_response(206 if start else 200)
        request.send_header("Content-Length", str(len(body)))
        if start:
            request.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        request.end_headers()
        if path in self.stalls:
            request.wfile.flush()
            time.sleep(self.stalls[path])
        if self.cuts.get(path, 0) > 0:
            self.cuts[path] -= 1
            request.wfile.write(body[: len(body) // 2])
            request.wfile.flush()
            request.close_connection = True
            return
        request.wfile.write(body)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def file_server() -> Iterator[FileServer]:
    """A running ``FileServer`` on 127.0.0.1 (free port), stopped after the test."""
    server = FileServer()
    try:
        yield server
    finally:
        server.stop()


class GatedFileServer(FileServer):
    """A ``FileServer`` that holds every GET until ``gate`` GETs have arrived (or ``hold``
    seconds passed, so a client that never sends them cannot hang a test), and records the
    most GETs it had in flight at once in ``max_in_flight``: concurrent downloads show as
    ``max_in_flight >= gate``, one-by-one downloads as 1 (after waiting ``hold`` each)."""

    def __init__(self, gate: int = 2, hold: float = 10.0) -> None:
        self.gate = gate
        self.hold = hold
        self.arrived = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.condition = threading.Condition()
        super().__init__()

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        with self.condition:
            self.arrived += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.condition.notify_all()
            self.condition.wait_for(lambda: self.arrived >= self.gate, timeout=self.hold)
        try:
            super().handle(request)
        finally:
            with self.condition:
                self.in_flight -= 1


@pytest.fixture
def gated_file_server() -> Iterator[GatedFileServer]:
    """A running ``GatedFileServer`` (gate 2) on 127.0.0.1, stopped after the test."""
    server = GatedFileServer()
    try:
        yield server
    finally:
        server.stop()
