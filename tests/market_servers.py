"""pytest plugin: loopback servers for the market tests.

* ``catalog_server``: a stdlib ``http.server`` on 127.0.0.1 (free port, own thread) serving
  whatever a test puts in ``server.routes`` (``path → (status, headers, body)``); the samples
  in ``market-samples`` are read in place from ``conftest.SHARED_DATA``.  Docker Hub and the
  public catalogs cannot be reached from the test machines, so their real-shaped JSON is
  served from here.
* ``docker_registry``: the REAL distribution registry from Debian (``docker-registry serve
  config.yml``) on a free loopback port, storage in tmp; ``.url``, ``.host`` and
  ``.push_oci(layout_dir, name, tag)`` (skopeo copy from an OCI layout).  ``make_oci_layout``
  writes a tiny OCI layout (one gzip layer holding ``/etc/motd``, config, manifest).
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import shutil
import socket
import subprocess
import tarfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

Route = tuple[int, dict[str, str], bytes]


class CatalogServer:
    """Serves ``routes``; a path not routed is 404.  ``requests`` records the paths asked."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                status, headers, body = server.routes.get(
                    self.path, (404, {"Content-Type": "text/plain"}, b"not found")
                )
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if "X-No-Length" not in headers and "Content-Length" not in headers:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def json(self, path: str, data: object, status: int = 200) -> None:
        self.routes[path] = (
            status,
            {"Content-Type": "application/json"},
            json.dumps(data).encode(),
        )

    def file(self, path: str, source: Path) -> None:
        self.routes[path] = (200, {"Content-Type": "application/json"}, source.read_bytes())

    def redirect(self, path: str, target: str) -> None:
        self.routes[path] = (302, {"Location": target}, b"")

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def catalog_server() -> Iterator[CatalogServer]:
    server = CatalogServer()
    try:
        yield server
    finally:
        server.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- docker registry ----------------------------------------------------------------------------
class DockerRegistry:
    """A running ``docker-registry`` on loopback."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        config = root / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: error\n"
            f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.host}\n"
        )
        self.log = (root / "registry.log").open("wb")
        self.process = subprocess.Popen(
            ["docker-registry", "serve", str(config)], stdout=self.log, stderr=self.log
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/v2/", timeout=2):
                    break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError(f"docker-registry did not start: see {root}") from None
                time.sleep(0.1)

    def push_oci(self, layout_dir: Path, name: str, tag: str) -> None:
        """Copy the OCI layout's only image to ``name:tag`` in this registry (skopeo)."""
        subprocess.run(
            [
                "skopeo",
                "copy",
                "--quiet",
                f"oci:{layout_dir}",
                f"docker://{self.host}/{name}:{tag}",
                "--dest-tls-verify=false",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


@pytest.fixture
def docker_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerRegistry]:
    if shutil.which("docker-registry") is None or shutil.which("skopeo") is None:
        pytest.fail("docker-registry and skopeo are required (apt: docker-registry skopeo)")
    registry = DockerRegistry(tmp_path_factory.mktemp("registry"))
    try:
        yield registry
    finally:
        registry.close()


def _blob(layout: Path, data: bytes) -> tuple[str, int]:
    digest = hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return f"sha256:{digest}", len(data)


def make_oci_layout(layout: Path, files: dict[str, bytes] | None = None) -> Path:
    """A one-layer OCI image layout at ``layout`` (default content: ``etc/motd``)."""
    contents = files or {"etc/motd": b"hello from onetools\n"}
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as tar:
        for name, data in contents.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 1700000000
            tar.addfile(info, io.BytesIO(data))
    raw = tar_bytes.getvalue()
    layer = gzip.compress(raw, mtime=0)
    layer_digest, layer_size = _blob(layout, layer)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/usr/bin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(raw).hexdigest()}"]},
    }
    config_digest, config_size = _blob(layout, json.dumps(config).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": layer_digest,
                "size": layer_size,
            }
        ],
    }
    manifest_digest, manifest_size = _blob(layout, json.dumps(manifest).encode())
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": manifest_size,
            }
        ],
    }
    (layout / "index.json").write_text(json.dumps(index))
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    return layout
