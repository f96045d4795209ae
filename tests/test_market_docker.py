"""docker:// images: URL parsing, the Registry v2 client against the REAL distribution registry
(docker-registry on loopback, images pushed with skopeo), safe layer application, and the
daemon-less disk image build checked with debugfs and qemu-img.

Token auth, bad digests, huge manifests and redirect loops cannot be produced by the plain
registry, so a small FAKED registry/auth server (stdlib http.server) plays those parts.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import socket
import stat
import subprocess
import tarfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from market_servers import DockerRegistry, free_port
from onetools.market import docker_image, registry
from onetools.market.docker_image import ImageBuildError, build_image
from onetools.market.layers import LayerError, apply_layer
from onetools.market.registry import RegistryError, parse_docker_url

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

# -- building layers and OCI layouts ---------------------------------------------------------


@dataclass
class Entry:
    """One tar member of a test layer."""

    name: str
    kind: str = "file"  # file, dir, symlink, hardlink, chr, fifo
    data: bytes = b""
    target: str = ""
    mode: int = 0o644
    uid: int = 0


def make_layer(entries: list[Entry], compress: bool = True) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.mode = entry.mode
            info.mtime = 1_700_000_000
            info.uid = info.gid = entry.uid
            if entry.kind == "file":
                info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
                continue
            info.type = {
                "dir": tarfile.DIRTYPE,
                "symlink": tarfile.SYMTYPE,
                "hardlink": tarfile.LNKTYPE,
                "chr": tarfile.CHRTYPE,
                "fifo": tarfile.FIFOTYPE,
            }[entry.kind]
            info.linkname = entry.target
            if entry.kind == "dir":
                info.mode = entry.mode if entry.mode != 0o644 else 0o755
            tar.addfile(info)
    raw = buffer.getvalue()
    return gzip.compress(raw, mtime=0) if compress else raw


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _put_blob(layout: Path, data: bytes) -> dict[str, object]:
    digest = sha256(data)
    path = layout / "blobs" / "sha256" / digest.split(":")[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"digest": digest, "size": len(data)}


def _image_manifest(layout: Path, layer_blobs: list[bytes], architecture: str) -> bytes:
    config = {
        "architecture": architecture,
        "os": "linux",
        "config": {"Env": ["PATH=/usr/bin:/bin", "GREETING=hi there"], "Cmd": ["/bin/app"]},
        "rootfs": {
            "type": "layers",
            "diff_ids": [sha256(gzip.decompress(blob)) for blob in layer_blobs],
        },
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": registry.MEDIA_OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            **_put_blob(layout, json.dumps(config).encode()),
        },
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **_put_blob(layout, blob)}
            for blob in layer_blobs
        ],
    }
    return json.dumps(manifest).encode()


def write_layout(layout: Path, tag: str, images: dict[str, list[bytes]]) -> None:
    """An OCI layout with one image (one architecture) or an index of several."""
    (layout / "oci-layout").parent.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    entries = []
    for architecture, layer_blobs in images.items():
        manifest = _image_manifest(layout, layer_blobs, architecture)
        entries.append(
            {
                "mediaType": registry.MEDIA_OCI_MANIFEST,
                **_put_blob(layout, manifest),
                "platform": {"os": "linux", "architecture": architecture},
            }
        )
    if len(entries) == 1:
        top = dict(entries[0])
        del top["platform"]
    else:
        nested = {"schemaVersion": 2, "mediaType": registry.MEDIA_OCI_INDEX, "manifests": entries}
        top = {
            "mediaType": registry.MEDIA_OCI_INDEX,
            **_put_blob(layout, json.dumps(nested).encode()),
        }
    top["annotations"] = {"org.opencontainers.image.ref.name": tag}
    index = {"schemaVersion": 2, "mediaType": registry.MEDIA_OCI_INDEX, "manifests": [top]}
    (layout / "index.json").write_text(json.dumps(index))


LOWER = [
    Entry("etc", "dir"),
    Entry("etc/os-release", data=b"ID=testos\nVERSION_ID=1\n"),
    Entry("etc/resolv.conf", data=b"nameserver 10.9.9.9\n"),
    Entry("etc/shadow", data=b"root:$6$salt$hash:19000:0:99999:7:::\n", mode=0o640),
    Entry("etc/ssh", "dir"),
    Entry("etc/ssh/ssh_host_ed25519_key", data=b"PRIVATE", mode=0o600),
    Entry("bin", "dir"),
    Entry("bin/app", data=b"#!/bin/sh\necho app\n", mode=0o4755),
    Entry("bin/sh-link", "symlink", target="/bin/app"),
    Entry("old.txt", data=b"to be whited out\n"),
    Entry("cache", "dir"),
    Entry("cache/lower-only", data=b"gone after opaque\n"),
    Entry(".dockerenv", data=b""),
]
UPPER = [
    Entry(".wh.old.txt"),
    Entry("cache/.wh..wh..opq"),
    Entry("cache/upper", data=b"kept\n"),
    Entry("etc/motd", data=b"hello from the upper layer\n"),
    Entry("home", "dir"),
    Entry("home/user", "dir", uid=1000, mode=0o750),
    Entry("bin/app-hard", "hardlink", target="bin/app"),
]


# -- the real registry -----------------------------------------------------------------------


@dataclass
class PushedImages:
    """helper A's ``market_servers.DockerRegistry`` with this module's images pushed."""

    server: DockerRegistry

    @property
    def host(self) -> str:
        return self.server.host

    def push(self, layout: Path, name: str, tag: str, *extra: str) -> None:
        """skopeo copy with extra options (``--all``, ``--format v2s2``) push_oci lacks."""
        subprocess.run(
            [
                "skopeo",
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
                *extra,
                f"oci:{layout}:{tag}",
                f"docker://{self.host}/{name}:{tag}",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def digest(self, name: str, tag: str, accept: str) -> str:
        request = urllib.request.Request(
            f"http://{self.host}/v2/{name}/manifests/{tag}", headers={"Accept": accept}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return sha256(response.read())


@pytest.fixture(scope="module")
def docker_images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PushedImages]:
    """One real registry for the module (images pushed once), stopped at the end."""
    base = tmp_path_factory.mktemp("registry")
    server = DockerRegistry(base)
    try:
        local = PushedImages(server)
        layout = base / "layout-simple"
        write_layout(layout, "v1", {"amd64": [make_layer(LOWER), make_layer(UPPER)]})
        local.push(layout, "test/simple", "v1")  # skopeo keeps the OCI manifest
        local.push(layout, "test/simple-s2", "v1", "--format", "v2s2")
        multi = base / "layout-multi"
        amd = make_layer([Entry("arch", data=b"amd64\n")])
        arm = make_layer([Entry("arch", data=b"arm64\n")])
        write_layout(multi, "multi", {"amd64": [amd], "arm64": [arm]})
        local.push(multi, "test/multi", "multi", "--all")
        yield local
    finally:
        server.close()


# -- URL grammar -----------------------------------------------------------------------------


def test_parse_docker_hub_defaults() -> None:
    reference = parse_docker_url("docker://alpine")
    assert (reference.registry, reference.repository, reference.reference) == (
        "registry-1.docker.io",
        "library/alpine",
        "latest",
    )
    assert not reference.plain_http
    assert parse_docker_url("docker://docker.io/bitnami/redis:7").repository == "bitnami/redis"


def test_parse_registry_tag_digest_and_options() -> None:
    reference = parse_docker_url("docker://127.0.0.1:5000/a/b:v2?size=300&format=qcow2")
    assert (reference.registry, reference.repository, reference.reference) == (
        "127.0.0.1:5000",
        "a/b",
        "v2",
    )
    assert reference.plain_http
    assert reference.options == {"size": "300", "format": "qcow2"}
    digest = "sha256:" + "a" * 64
    assert parse_docker_url(f"docker://quay.io/x/y@{digest}").reference == digest
    assert parse_docker_url("docker://ubuntu?tag=22.04").reference == "22.04"
    assert parse_docker_url("docker://[::1]:5000/a:1").plain_http
    assert parse_docker_url("docker://localhost/a").plain_http
    assert not parse_docker_url("docker://127.0.0.1.example.com/a").plain_http


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("docker://alpine?PATH=/tmp", "unknown docker:// URL parameter 'PATH'"),
        ("docker://alpine?size=", "has no value"),
        ("docker://alpine:3?tag=4", "pick one"),
        ("docker://alpine@sha256:abc", "bad digest"),
        ("docker://Alpine", "bad image name"),
        ("http://alpine", "not a docker:// URL"),
        ("docker://", "no image name"),
    ],
)
def test_parse_refuses_bad_urls(url: str, message: str) -> None:
    with pytest.raises(RegistryError, match=message):
        parse_docker_url(url)


# -- the real registry -----------------------------------------------------------------------


def test_pull_oci_by_tag_and_digest(docker_images: PushedImages, tmp_path: Path) -> None:
    by_tag = registry.pull(
        parse_docker_url(f"docker://{docker_images.host}/test/simple:v1"), tmp_path
    )
    assert by_tag.manifest.media_type == registry.MEDIA_OCI_MANIFEST
    assert len(by_tag.layers) == 2
    for descriptor, path in by_tag.layers:
        assert sha256(path.read_bytes()) == descriptor.digest
    config = by_tag.config["config"]
    assert isinstance(config, dict) and config["Cmd"] == ["/bin/app"]
    digest = docker_images.digest("test/simple", "v1", registry.MEDIA_OCI_MANIFEST)
    assert by_tag.manifest.digest == digest
    other = tmp_path / "by-digest"
    other.mkdir()
    by_digest = registry.pull(
        parse_docker_url(f"docker://{docker_images.host}/test/simple@{digest}"), other
    )
    assert by_digest.manifest == by_tag.manifest


def test_pull_docker_schema2(docker_images: PushedImages, tmp_path: Path) -> None:
    pulled = registry.pull(
        parse_docker_url(f"docker://{docker_images.host}/test/simple-s2:v1"), tmp_path
    )
    assert pulled.manifest.media_type == registry.MEDIA_DOCKER_MANIFEST
    assert len(pulled.layers) == 2


def test_multi_arch_index_platform_choice(docker_images: PushedImages, tmp_path: Path) -> None:
    reference = parse_docker_url(f"docker://{docker_images.host}/test/multi:multi")
    for platform, expected in (("linux/amd64", b"amd64\n"), ("linux/arm64", b"arm64\n")):
        directory = tmp_path / platform.replace("/", "-")
        directory.mkdir()
        pulled = registry.pull(reference, directory, platform=platform)
        with tarfile.open(pulled.layers[0][1]) as tar:
            member = tar.extractfile("arch")
            assert member is not None and member.read() == expected
    with pytest.raises(RegistryError, match="has no image for linux/s390x"):
        registry.pull(reference, tmp_path, platform="linux/s390x")


def test_unknown_tag_is_one_clear_error(docker_images: PushedImages, tmp_path: Path) -> None:
    url = f"docker://{docker_images.host}/test/simple:nosuchtag"
    with pytest.raises(RegistryError, match="answered 404: MANIFEST_UNKNOWN"):
        registry.pull(parse_docker_url(url), tmp_path)


def test_tags_list(docker_images: PushedImages) -> None:
    client = registry.RegistryClient(docker_images.host, plain_http=True)
    assert client.tags("test/simple") == ["v1"]


# -- the faked registry and auth server ------------------------------------------------------


class FakeRegistry:
    """A stdlib HTTP server whose routes are (status, headers, body); a faked registry AND a
    faked token server (the real registry has no token auth configured)."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.token: str | None = None
        self.issued_token: str | None = None  # what /token hands out (default: token)
        self.delay = 0.0
        self.seen_auth: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                authorization = self.headers.get("Authorization", "")
                fake.seen_auth.append(f"{path} {authorization}")
                time.sleep(fake.delay)
                if path == "/token":
                    issued = fake.issued_token or fake.token
                    self._send(200, {}, json.dumps({"access_token": issued}).encode())
                    return
                if fake.token and authorization != f"Bearer {fake.token}":
                    challenge = (
                        f'Bearer realm="http://{fake.host}/token",service="fake",'
                        'scope="repository:test/img:pull"'
                    )
                    self._send(401, {"WWW-Authenticate": challenge}, b'{"errors":[]}')
                    return
                status, headers, body = fake.routes.get(path, (404, {}, b"{}"))
                self._send(status, headers, body)

            def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add_image(self, name: str, tag: str, layer: bytes, *, bad_blob: bool = False) -> bytes:
        config = json.dumps({"config": {"Cmd": ["/bin/true"]}}).encode()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": registry.MEDIA_OCI_MANIFEST,
                "config": {"mediaType": "x", "digest": sha256(config), "size": len(config)},
                "layers": [{"mediaType": "x", "digest": sha256(layer), "size": len(layer)}],
            }
        ).encode()
        content_type = {"Content-Type": registry.MEDIA_OCI_MANIFEST}
        self.routes[f"/v2/{name}/manifests/{tag}"] = (200, content_type, manifest)
        self.routes[f"/v2/{name}/blobs/{sha256(config)}"] = (200, {}, config)
        served = layer[:-1] + bytes([layer[-1] ^ 1]) if bad_blob else layer
        self.routes[f"/v2/{name}/blobs/{sha256(layer)}"] = (200, {}, served)
        return manifest

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_registry() -> Iterator[FakeRegistry]:
    fake = FakeRegistry()
    yield fake
    fake.close()


def test_bearer_token_flow(fake_registry: FakeRegistry, tmp_path: Path) -> None:
    fake_registry.token = "t0ken"
    fake_registry.add_image("test/img", "v1", make_layer([Entry("f", data=b"x")]))
    pulled = registry.pull(parse_docker_url(f"docker://{fake_registry.host}/test/img:v1"), tmp_path)
    assert len(pulled.layers) == 1
    assert "/token " in fake_registry.seen_auth  # the token request itself was anonymous
    assert "/v2/test/img/manifests/v1 Bearer t0ken" in fake_registry.seen_auth


def test_wrong_token_is_not_authorized(fake_registry: FakeRegistry, tmp_path: Path) -> None:
    fake_registry.token = "t0ken"
    fake_registry.issued_token = "stale"
    fake_registry.add_image("test/img", "v1", make_layer([Entry("f", data=b"x")]))
    with pytest.raises(RegistryError, match=r"not authorized by 127\.0\.0\.1"):
        registry.pull(parse_docker_url(f"docker://{fake_registry.host}/test/img:v1"), tmp_path)


def test_basic_challenge_unsupported(fake_registry: FakeRegistry, tmp_path: Path) -> None:
    challenge = {"WWW-Authenticate": 'Basic realm="registry"'}
    fake_registry.routes["/v2/test/img/manifests/v1"] = (401, challenge, b"{}")
    with pytest.raises(RegistryError, match="asks for Basic authentication"):
        registry.pull(parse_docker_url(f"docker://{fake_registry.host}/test/img:v1"), tmp_path)


def test_schema1_and_zstd_refused(fake_registry: FakeRegistry, tmp_path: Path) -> None:
    schema1 = json.dumps({"schemaVersion": 1, "name": "test/img", "fsLayers": []}).encode()
    prettyjws = {"Content-Type": "application/vnd.docker.distribution.manifest.v1+prettyjws"}
    fake_registry.routes["/v2/test/img/manifests/old"] = (200, prettyjws, schema1)
    with pytest.raises(RegistryError, match="unsupported manifest type"):
        registry.pull(parse_docker_url(f"docker://{fake_registry.host}/test/img:old"), tmp_path)
    manifest = json.loads(fake_registry.add_image("test/img", "v1", b"zstd bytes"))
    manifest["layers"][0]["mediaType"] = "application/vnd.oci.image.layer.v1.tar+zstd"
    content_type = {"Content-Type": registry.MEDIA_OCI_MANIFEST}
    fake_registry.routes["/v2/test/img/manifests/v1"] = (
        200,
        content_type,
        json.dumps(manifest).encode(),
    )
    with pytest.raises(RegistryError, match="zstd-compressed: not supported"):
        registry.pull(parse_docker_url(f"docker://{fake_registry.host}/test/img:v1"), tmp_path)


def test_silent_registry_times_out(fake_registry: FakeRegistry, tmp_path: Path) -> None:
    fake_registry.delay = 3
    url = f"docker://{fake_registry.host}/test/img:v1"
    started = time.monotonic()
    with pytest.raises(RegistryError, match=r"cannot reach .* timed out"):
        registry.pull(parse_docker_url(url), tmp_path, timeout=0.5)
    assert time.monotonic() - started < 2.5


def test_too_many_redirects_refused(fake_registry: FakeRegistry, tmp_path: Path) -> None:
    fake_registry.routes["/v2/test/img/manifests/v1"] = (302, {"Location": "/hop0"}, b"")
    for hop in range(registry.MAX_REDIRECTS + 1):
        fake_registry.routes[f"/hop{hop}"] = (302, {"Location": f"/hop{hop + 1}"}, b"")
    with pytest.raises(RegistryError, match="more than 5 redirects"):
        registry.pull(parse_docker_url(f"docker://{fake_registry.host}/test/img:v1"), tmp_path)


def test_peer_not_speaking_http(tmp_path: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))

    def answer_garbage() -> None:
        connection, _address = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")

    thread = threading.Thread(target=answer_garbage, daemon=True)
    thread.start()
    host = f"127.0.0.1:{listener.getsockname()[1]}"
    try:
        with pytest.raises(RegistryError, match="cannot reach"):
            registry.pull(parse_docker_url(f"docker://{host}/test/img:v1"), tmp_path, timeout=5)
    finally:
        thread.join(5)
        listener.close()


def test_blob_redirect_followed_without_token(fake_registry: FakeRegistry, tmp_path: Path) -> None:
    layer = make_layer([Entry("f", data=b"x")])
    fake_registry.add_image("test/img", "v1", layer)
    blob_path = f"/v2/test/img/blobs/{sha256(layer)}"
    fake_registry.routes["/storage/blob"] = fake_registry.routes[blob_path]
    fake_registry.routes[blob_path] = (307, {"Location": "/storage/blob"}, b"")
    pulled = registry.pull(parse_docker_url(f"docker://{fake_registry.host}/test/img:v1"), tmp_path)
    assert pulled.layers[0][1].read_bytes() == layer


def test_token_not_sent_to_another_host(fake_registry: FakeRegistry, tmp_path: Path) -> None:
    storage = FakeRegistry()  # plays the object storage a real registry redirects blobs to
    try:
        fake_registry.token = "t0ken"
        layer = make_layer([Entry("f", data=b"x")])
        fake_registry.add_image("test/img", "v1", layer)
        blob_path = f"/v2/test/img/blobs/{sha256(layer)}"
        storage.routes["/bucket/blob"] = fake_registry.routes[blob_path]
        location = {"Location": f"http://{storage.host}/bucket/blob?X-Signature=abc"}
        fake_registry.routes[blob_path] = (307, location, b"")
        url = f"docker://{fake_registry.host}/test/img:v1"
        assert registry.pull(parse_docker_url(url), tmp_path).layers[0][1].read_bytes() == layer
        assert f"{blob_path} Bearer t0ken" in fake_registry.seen_auth
        assert storage.seen_auth == ["/bucket/blob "]  # no Authorization header
    finally:
        storage.close()


def test_redirect_loop_refused(fake_registry: FakeRegistry, tmp_path: Path) -> None:
    fake_registry.add_image("test/img", "v1", make_layer([Entry("f", data=b"x")]))
    fake_registry.routes["/v2/test/img/manifests/v1"] = (302, {"Location": "/loop"}, b"")
    fake_registry.routes["/loop"] = (302, {"Location": "/v2/test/img/manifests/v1"}, b"")
    with pytest.raises(RegistryError, match="redirect loop"):
        registry.pull(parse_docker_url(f"docker://{fake_registry.host}/test/img:v1"), tmp_path)


def test_blob_digest_mismatch_refused(fake_registry: FakeRegistry, tmp_path: Path) -> None:
    fake_registry.add_image("test/img", "v1", make_layer([Entry("f", data=b"x")]), bad_blob=True)
    with pytest.raises(RegistryError, match="content digest is sha256:"):
        registry.pull(parse_docker_url(f"docker://{fake_registry.host}/test/img:v1"), tmp_path)
    assert list(tmp_path.iterdir()) == []  # the bad blob was removed


def test_manifest_digest_mismatch_refused(fake_registry: FakeRegistry, tmp_path: Path) -> None:
    manifest = fake_registry.add_image("test/img", "v1", make_layer([Entry("f", data=b"x")]))
    wrong = "sha256:" + "0" * 64
    fake_registry.routes[f"/v2/test/img/manifests/{wrong}"] = (200, {}, manifest)
    with pytest.raises(RegistryError, match="whose digest is"):
        registry.pull(parse_docker_url(f"docker://{fake_registry.host}/test/img@{wrong}"), tmp_path)


def test_huge_manifest_refused(fake_registry: FakeRegistry, tmp_path: Path) -> None:
    huge = b"{" + b" " * (registry.MAX_MANIFEST_BYTES + 10) + b"}"
    fake_registry.routes["/v2/test/img/manifests/v1"] = (200, {}, huge)
    with pytest.raises(RegistryError, match="over 4194304"):
        registry.pull(parse_docker_url(f"docker://{fake_registry.host}/test/img:v1"), tmp_path)


def test_dead_registry_leaves_nothing(tmp_path: Path) -> None:
    destination = tmp_path / "disk.img"
    work = tmp_path / "work"
    work.mkdir()
    url = f"docker://127.0.0.1:{free_port()}/test/img:v1"
    with pytest.raises(RegistryError, match="cannot reach"):
        build_image(url, destination, workdir=work, timeout=5)
    assert not destination.exists()
    assert list(work.iterdir()) == [] and list(tmp_path.iterdir()) == [work]


# -- layers ----------------------------------------------------------------------------------


def _layer_file(tmp_path: Path, name: str, entries: list[Entry], compress: bool = True) -> Path:
    path = tmp_path / name
    path.write_bytes(make_layer(entries, compress))
    return path


def test_layers_apply_whiteouts_opaque_links_and_modes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    apply_layer(_layer_file(tmp_path, "lower.tar.gz", LOWER), root, preserve_owner=True)
    apply_layer(_layer_file(tmp_path, "upper.tar", UPPER, compress=False), root)
    assert not (root / "old.txt").exists()
    assert sorted(os.listdir(root / "cache")) == ["upper"]
    assert os.readlink(root / "bin/sh-link") == "/bin/app"
    assert os.stat(root / "bin/app").st_ino == os.stat(root / "bin/app-hard").st_ino
    assert stat.S_IMODE(os.stat(root / "bin/app").st_mode) == 0o755  # setuid dropped
    assert (root / "etc/motd").read_text() == "hello from the upper layer\n"


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([Entry("ok", data=b"1"), Entry("../escape", data=b"x")], "escapes the root"),
        ([Entry("a/../../escape", data=b"x")], "escapes the root"),
        ([Entry("/etc/passwd", data=b"x")], "is an absolute path"),
        (
            [Entry("evil", "symlink", target=""), Entry("evil/passwd", data=b"x")],
            "goes through the symlink 'evil'",
        ),
        ([Entry("link", "hardlink", target="../../etc/passwd")], "escapes the root"),
        ([Entry("link", "hardlink", target="/etc/passwd")], "is an absolute path"),
        ([Entry("link", "hardlink", target="missing")], "has no target"),
    ],
)
def test_hostile_layer_refused_whole(tmp_path: Path, entries: list[Entry], message: str) -> None:
    for entry in entries:
        if entry.kind == "symlink" and not entry.target:
            entry.target = str(tmp_path / "outside")
    (tmp_path / "outside").mkdir()
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(LayerError, match=message):
        apply_layer(_layer_file(tmp_path, "bad.tar.gz", entries), root)
    assert os.listdir(root) == [] and os.listdir(tmp_path / "outside") == []


def test_write_through_lower_layer_absolute_symlink_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    apply_layer(_layer_file(tmp_path, "l1", [Entry("etc", "symlink", target=str(outside))]), root)
    with pytest.raises(LayerError, match="goes through the symlink 'etc'"):
        apply_layer(_layer_file(tmp_path, "l2", [Entry("etc/cron", data=b"x")]), root)
    with pytest.raises(LayerError, match="goes through the symlink 'etc'"):
        apply_layer(_layer_file(tmp_path, "l3", [Entry("etc/.wh.x")]), root)
    assert os.listdir(outside) == []


def test_layer_may_replace_a_lower_symlink(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    lower = [
        Entry("usr", "dir"),
        Entry("usr/lib", "dir"),
        Entry("lib", "symlink", target="usr/lib"),
    ]
    lower += [Entry("sbin", "symlink", target="/outside"), Entry("opt", "dir")]
    lower += [Entry("opt/tool", "symlink", target="/outside")]
    apply_layer(_layer_file(tmp_path, "l1", lower), root)
    upper = [
        Entry(".wh.lib"),
        Entry("lib/x", data=b"x"),  # whited-out symlink: lib is a new directory
        Entry("sbin", "dir"),
        Entry("sbin/init", data=b"i"),  # the dir entry replaced the symlink first
        Entry("opt/.wh..wh..opq"),
        Entry("opt/tool/bin", data=b"b"),  # opaque dir: the lower symlink is gone
    ]
    apply_layer(_layer_file(tmp_path, "l2", upper), root)
    assert (root / "lib/x").read_bytes() == b"x" and not (root / "lib").is_symlink()
    assert (root / "sbin/init").read_bytes() == b"i" and not (root / "sbin").is_symlink()
    assert (root / "opt/tool/bin").read_bytes() == b"b"
    assert sorted(os.listdir(root / "usr/lib")) == []


def test_ownership_applied_as_root_only_when_asked(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("ownership is only applied when running as root")
    layer = tmp_path / "owned.tar"
    with tarfile.open(layer, "w") as tar:
        info = tarfile.TarInfo("owned")
        info.uid, info.gid, info.size = 1234, 4321, 1
        tar.addfile(info, io.BytesIO(b"x"))
    for preserve, expected in ((True, (1234, 4321)), (False, (0, 0))):
        root = tmp_path / f"root-{preserve}"
        root.mkdir()
        apply_layer(layer, root, preserve_owner=preserve)
        status = os.lstat(root / "owned")
        assert (status.st_uid, status.st_gid) == expected


def test_device_nodes_and_fifos_skipped(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    warnings: list[str] = []
    entries = [Entry("dev", "dir"), Entry("dev/sda", "chr"), Entry("pipe", "fifo"), Entry("f")]
    apply_layer(_layer_file(tmp_path, "devs", entries), root, warn=warnings.append)
    assert sorted(os.listdir(root)) == ["dev", "f"] and os.listdir(root / "dev") == []
    assert warnings == [
        "layer devs: skipped device node 'dev/sda'",
        "layer devs: skipped FIFO 'pipe'",
    ]


def test_layer_over_the_space_left_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    layer = _layer_file(tmp_path, "big", [Entry("a", data=b"x" * 600), Entry("b", data=b"y" * 600)])
    with pytest.raises(LayerError, match="holds 1200 bytes of files, over the 1000 left"):
        apply_layer(layer, root, max_bytes=1000)
    assert os.listdir(root) == []
    assert apply_layer(layer, root, max_bytes=1200) == 1200


def test_hardlink_to_symlink_links_the_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text("host file")
    root = tmp_path / "root"
    root.mkdir()
    entries = [Entry("s", "symlink", target=str(outside)), Entry("h", "hardlink", target="s")]
    apply_layer(_layer_file(tmp_path, "l", entries), root)
    assert os.readlink(root / "h") == str(outside)  # a second symlink, not the host file
    assert os.stat(outside).st_nlink == 1


def test_not_a_tar_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(LayerError, match="not a readable tar archive"):
        apply_layer(junk, tmp_path)


# -- end to end: disk images -----------------------------------------------------------------


def debugfs(image: Path, request: str) -> str:
    result = subprocess.run(
        ["debugfs", "-R", request, str(image)], capture_output=True, text=True, check=True
    )
    return result.stdout


def test_build_raw_ext4_image(docker_images: PushedImages, tmp_path: Path) -> None:
    destination = tmp_path / "disk.raw"
    messages: list[str] = []
    url = f"docker://{docker_images.host}/test/simple:v1?size=40"
    assert build_image(url, destination, progress=messages.append, workdir=tmp_path) == destination
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disk.raw"]  # scratch and temp gone
    assert "Filesystem OS type" in debugfs(destination, "stats")
    assert destination.stat().st_size == 40 * 1024 * 1024
    assert debugfs(destination, "cat /etc/motd") == "hello from the upper layer\n"
    assert debugfs(destination, "cat /cache/upper") == "kept\n"
    listing = debugfs(destination, "ls -l /")
    assert "old.txt" not in listing and ".dockerenv" not in listing
    assert "one_entrypoint.sh" in listing and "lost+found" in listing
    assert debugfs(destination, "ls /cache").split().count("lower-only") == 0
    entrypoint = debugfs(destination, "cat /one_entrypoint.sh")
    assert "export GREETING='hi there'" in entrypoint and "exec /bin/app" in entrypoint
    assert ". /var/run/one-context/one_env" in entrypoint
    assert debugfs(destination, "cat /etc/resolv.conf") == docker_image.RESOLV_MARKER
    assert debugfs(destination, "cat /etc/shadow").startswith("root:!$6$")
    assert "ssh_host_ed25519_key" not in debugfs(destination, "ls /etc/ssh")
    assert "one-context.d" in debugfs(destination, "ls /etc")
    assert "context: /one_entrypoint.sh" in messages
    app = debugfs(destination, "stat /bin/app")
    assert "Mode:  0755" in app and "Links: 2" in app  # setuid dropped, hardlink kept
    if os.geteuid() == 0:  # layer ownership is kept only when the build runs as root
        home = debugfs(destination, "stat /home/user")
        assert "User:  1000" in home and "Mode:  0750" in home


def test_inode_count_never_below_the_image() -> None:
    assert docker_image.inode_count(40, 10) == 40 * 256  # mke2fs's small-disk default
    assert docker_image.inode_count(1024, 10) == 1024 * 64  # its default above 512 MB
    assert docker_image.inode_count(1024, 100_000) == 201_024  # many small files


def test_build_many_small_files(fake_registry: FakeRegistry, tmp_path: Path) -> None:
    files = [Entry("many", "dir")] + [Entry(f"many/f{n}", data=b"x") for n in range(3000)]
    fake_registry.add_image("test/many", "v1", make_layer(files))
    destination = tmp_path / "many.img"
    build_image(f"docker://{fake_registry.host}/test/many:v1?context=no", destination)
    assert "f2999" in debugfs(destination, "ls /many")
    stats = debugfs(destination, "stats")
    inodes = int(stats.split("Inode count:")[1].split()[0])
    assert inodes >= 3000 * 2 + 1024


def test_build_qcow2_computed_size_no_context(docker_images: PushedImages, tmp_path: Path) -> None:
    destination = tmp_path / "disk.qcow2"
    url = f"docker://{docker_images.host}/test/simple:v1?format=qcow2&context=no"
    build_image(url, destination, workdir=tmp_path)
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", str(destination)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert info["format"] == "qcow2"
    assert info["virtual-size"] >= docker_image.MIN_MARGIN_MB * 1024 * 1024
    raw = tmp_path / "back.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(destination), str(raw)], check=True)
    assert debugfs(raw, "cat /etc/resolv.conf") == "nameserver 10.9.9.9\n"  # context=no


def test_download_hands_docker_urls_to_build_image(
    docker_images: PushedImages, tmp_path: Path
) -> None:
    from onetools.market.download import download

    destination = tmp_path / "app.img"
    download(f"docker://{docker_images.host}/test/simple:v1?size=40", destination)
    assert debugfs(destination, "cat /etc/motd") == "hello from the upper layer\n"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("size=1", "Not enough space, image size must be at least"),
        ("filesystem=xfs", "filesystem='xfs' is not supported"),
        ("format=vmdk", "format='vmdk' is not supported"),
        ("size=lots", "is not a number of MB"),
        ("context=maybe", "context='maybe' is not supported"),
    ],
)
def test_build_refuses_bad_options(
    docker_images: PushedImages, tmp_path: Path, query: str, message: str
) -> None:
    destination = tmp_path / "disk.img"
    url = f"docker://{docker_images.host}/test/simple:v1?{query}"
    with pytest.raises(ImageBuildError, match=message):
        build_image(url, destination, workdir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_build_refuses_layers_bigger_than_the_disk(
    fake_registry: FakeRegistry, tmp_path: Path
) -> None:
    manifest = json.loads(fake_registry.add_image("test/img", "v1", b"small"))
    manifest["layers"][0]["size"] = 50 * 1024 * 1024  # announced; never downloaded
    content_type = {"Content-Type": registry.MEDIA_OCI_MANIFEST}
    fake_registry.routes["/v2/test/img/manifests/v1"] = (
        200,
        content_type,
        json.dumps(manifest).encode(),
    )
    with pytest.raises(RegistryError, match="its layers are 52428800 bytes, over the"):
        build_image(f"docker://{fake_registry.host}/test/img:v1?size=10", tmp_path / "d.img")
    assert not any("/blobs/" in seen for seen in fake_registry.seen_auth)
    assert list(tmp_path.iterdir()) == []


def test_build_refuses_hostile_layer(fake_registry: FakeRegistry, tmp_path: Path) -> None:
    fake_registry.add_image("test/img", "v1", make_layer([Entry("../../x", data=b"x")]))
    destination = tmp_path / "disk.img"
    with pytest.raises(LayerError, match="escapes the root"):
        build_image(f"docker://{fake_registry.host}/test/img:v1", destination, workdir=tmp_path)
    assert list(tmp_path.iterdir()) == []
