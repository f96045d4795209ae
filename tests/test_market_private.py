"""Private markets on the embedded store: ``http`` (PUBLIC_DIR + BASE_URL) and ``s3``.

http: PUBLIC_DIR is a tmp directory served by a real loopback ``http.server``; the app's
file is created there by ``onemarketapp create``, downloaded back over HTTP, exported and
removed by ``delete``.

s3: S3 itself is faked by moto's server (``ThreadedMotoServer`` on 127.0.0.1): there is no
real S3-compatible server packaged in Debian or on PyPI here.  IAM authorization is switched
on in moto (``/moto-api/reset-auth``) so that wrong credentials really are refused.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
import urllib.request
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from helpers import run_tool
from market_servers import free_port
from onetools.errors import OnetoolsError
from onetools.market import apps
from onetools.market.download import download
from onetools.market.drivers import http, s3
from onetools.market.export import export
from onetools.one.api import IMAGE, MARKETAPP
from onetools.one.local import LocalOne

DATA = os.urandom(3 * 1024 * 1024 + 11)
MD5 = hashlib.md5(DATA).hexdigest()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def public_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A PUBLIC_DIR and the BASE_URL a real web server publishes it under."""
    # the server's root is www/, PUBLIC_DIR is www/files, BASE_URL ends in /files/ (trimmed)
    directory = tmp_path / "www" / "files"
    directory.mkdir(parents=True)
    handler = functools.partial(QuietHandler, directory=str(directory.parent))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield directory, f"http://127.0.0.1:{server.server_address[1]}/files/"
    server.shutdown()
    server.server_close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalOne]:
    one = LocalOne(tmp_path / "home")
    yield one
    one.close()


def new_image(one: LocalOne, tmp_path: Path, name: str = "alpine", data: bytes = DATA) -> int:
    path = tmp_path / f"{name}.qcow2"
    path.write_bytes(data)
    return one.allocate_image(f'NAME = "{name}"\nPATH = "{path}"\nFORMAT = "qcow2"', 1)


def new_app(one: LocalOne, market: int, image_id: int, name: str = "alpine") -> int:
    return apps.create(one, market, apps.image_app_template(one, image_id, name=name))


def http_market(one: LocalOne, directory: Path, base_url: str) -> int:
    return one.allocate_market(
        f'NAME = "web"\nMARKET_MAD = "http"\nBASE_URL = "{base_url}"\nPUBLIC_DIR = "{directory}"'
    )


# -- http ------------------------------------------------------------------------------------
def test_http_create_download_export_delete(
    store: LocalOne, tmp_path: Path, public_dir: tuple[Path, str]
) -> None:
    directory, base_url = public_dir
    market = http_market(store, directory, base_url)
    app_id = new_app(store, market, new_image(store, tmp_path))
    app = apps.show(store, app_id)
    assert apps.state_name(app) == "READY"
    source = app.text("SOURCE")
    assert source.startswith(base_url.rstrip("/") + "/app-")
    (stored,) = directory.iterdir()  # no temp file left
    assert source.endswith("/" + stored.name)
    assert stored.read_bytes() == DATA and (stored.stat().st_mode & 0o777) == 0o644
    assert app.text("MD5") == MD5 and app.int("SIZE") == 4 and app.text("FORMAT") == "qcow2"

    # the web server really serves it, and download verifies the MD5 while streaming
    got = download(source, tmp_path / "got.img", md5=app.text("MD5"))
    assert got.read_bytes() == DATA

    exported = export(store, app_id, "from-market", 1, template=False)
    (image_id,) = exported.images
    image = store.info(IMAGE, image_id)
    assert hashlib.md5(Path(image.text("SOURCE")).read_bytes()).hexdigest() == MD5

    apps.delete(store, app_id)
    assert list(directory.iterdir()) == []
    assert store.pool(MARKETAPP) == []


def test_http_cli_create_and_delete(tmp_path: Path, public_dir: tuple[Path, str]) -> None:
    directory, base_url = public_dir
    home = tmp_path / "home"
    one = LocalOne(home)
    try:
        market = http_market(one, directory, base_url)
        image_id = new_image(one, tmp_path)
    finally:
        one.close()
    env = {"ONETOOLS_HOME": str(home)}
    done = run_tool(
        "onemarketapp", "create", "--name", "cli", "--image", str(image_id),
        "--marketplace", str(market), env=env,
    )  # fmt: skip
    assert done.code == 0, done.err
    app_id = int(done.out.split()[-1])
    (stored,) = directory.iterdir()
    assert hashlib.md5(stored.read_bytes()).hexdigest() == MD5
    shown = json.loads(run_tool("onemarketapp", "show", str(app_id), "-j", env=env).out)
    assert json.dumps(shown).count(MD5) >= 1
    done = run_tool("onemarketapp", "delete", str(app_id), env=env)
    assert done.code == 0, done.err
    assert list(directory.iterdir()) == []


def test_http_failed_import_leaves_no_app(
    store: LocalOne, tmp_path: Path, public_dir: tuple[Path, str]
) -> None:
    directory, base_url = public_dir
    market = http_market(store, directory, base_url)
    image_id = new_image(store, tmp_path)
    (tmp_path / "alpine.qcow2").unlink()  # the image's file is gone
    with pytest.raises(OnetoolsError, match="no local file to import"):
        new_app(store, market, image_id)
    assert store.pool(MARKETAPP) == [] and list(directory.iterdir()) == []
    relative = store.allocate_market(
        'NAME = "rel"\nMARKET_MAD = "http"\nBASE_URL = "http://x/"\nPUBLIC_DIR = "public"'
    )
    new_image(store, tmp_path, "other")
    with pytest.raises(OnetoolsError, match="not an absolute path"):
        new_app(store, relative, store.pool(IMAGE)[-1].id, "other")
    assert store.pool(MARKETAPP) == []


def test_http_hostile_sources_refused(tmp_path: Path) -> None:
    directory = tmp_path / "public"
    directory.mkdir()
    (tmp_path / "precious").write_text("keep")
    settings = {"BASE_URL": "http://m/x", "PUBLIC_DIR": str(directory)}
    for source in (
        "http://m/x/../precious",
        "http://m/x/sub/../../precious",
        "http://m/x/",
        "http://other/precious",
        "http://m/x/..",
    ):
        with pytest.raises(http.HttpMarketError, match="Bad formed"):
            http.delete_file(settings, source)
    (directory / "link").symlink_to(tmp_path / "precious")
    with pytest.raises(http.HttpMarketError, match="symbolic link"):
        http.delete_file(settings, "http://m/x/link")
    assert (tmp_path / "precious").read_text() == "keep" and (directory / "link").is_symlink()


def test_http_delete_refused_keeps_the_app(
    store: LocalOne, tmp_path: Path, public_dir: tuple[Path, str]
) -> None:
    directory, base_url = public_dir
    market = http_market(store, directory, base_url)
    app_id = new_app(store, market, new_image(store, tmp_path))
    (stored,) = directory.iterdir()
    stored.unlink()
    stored.symlink_to(tmp_path / "alpine.qcow2")  # someone swapped the file for a link
    with pytest.raises(http.HttpMarketError, match="symbolic link"):
        apps.delete(store, app_id)
    assert [app.id for app in store.pool(MARKETAPP)] == [app_id]
    assert (tmp_path / "alpine.qcow2").read_bytes() == DATA


# -- s3 (moto) -------------------------------------------------------------------------------
class FakeS3:
    """moto's S3 with IAM authorization on; ``keys`` are a real (moto) user's access keys."""

    def __init__(self) -> None:
        import boto3
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        admin = {
            "aws_access_key_id": "bootstrap",
            "aws_secret_access_key": "bootstrap",
            "region_name": "us-east-1",
            "endpoint_url": self.endpoint,
        }
        iam = boto3.client("iam", **admin)
        iam.create_user(UserName="market")
        policy = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": "*"}]}  # fmt: skip
        iam.put_user_policy(UserName="market", PolicyName="all", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="market")["AccessKey"]
        self.key_id, self.secret = key["AccessKeyId"], key["SecretAccessKey"]
        boto3.client(
            "s3",
            aws_access_key_id=self.key_id,
            aws_secret_access_key=self.secret,
            region_name="us-east-1",
            endpoint_url=self.endpoint,
        ).create_bucket(Bucket="apps")
        # from now on every request must be signed with a known key
        self.require_auth(b"0")

    def require_auth(self, free_requests: bytes) -> None:
        """moto's setting is process-wide: ``b"inf"`` switches authorization off again."""
        request = urllib.request.Request(
            self.endpoint + "/moto-api/reset-auth",
            data=free_requests,
            method="POST",
            headers={"Content-Type": "text/plain"},  # a form type would hide the body
        )
        urllib.request.urlopen(request, timeout=10).read()

    def settings(self, **changes: str) -> dict[str, str]:
        values = {
            "ACCESS_KEY_ID": self.key_id,
            "SECRET_ACCESS_KEY": self.secret,
            "REGION": "us-east-1",
            "BUCKET": "apps",
            "ENDPOINT": self.endpoint,
            "FORCE_PATH_STYLE": "YES",
        }
        values.update(changes)
        return values

    def client(self) -> Any:
        return s3.client(self.settings())

    def object_keys(self) -> list[str]:
        listing = self.client().list_objects_v2(Bucket="apps")
        return sorted(item["Key"] for item in listing.get("Contents", []))


@pytest.fixture(scope="module")
def fake_s3() -> Iterator[FakeS3]:
    server = FakeS3()
    yield server
    server.require_auth(b"inf")
    server.server.stop()


def s3_market(one: LocalOne, settings: dict[str, str], name: str = "bucket") -> int:
    lines = [f'NAME = "{name}"', 'MARKET_MAD = "s3"']
    lines += [f'{key} = "{value}"' for key, value in settings.items()]
    return one.allocate_market("\n".join(lines))


def test_s3_create_download_export_delete(
    store: LocalOne, tmp_path: Path, fake_s3: FakeS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = fake_s3.settings(APP_PREFIX="small")
    market = s3_market(store, settings)
    app_id = new_app(store, market, new_image(store, tmp_path))
    app = apps.show(store, app_id)
    assert app.text("SOURCE") == f"s3://apps/small-{app_id}"
    assert app.text("MD5") == MD5 and app.int("SIZE") == 4 and app.text("FORMAT") == "qcow2"
    assert f"small-{app_id}" in fake_s3.object_keys()

    got = download(app.text("SOURCE"), tmp_path / "got.img", md5=MD5, s3_market=settings)
    assert got.read_bytes() == DATA
    # export only has the URL: the market is found on the environment's connection
    monkeypatch.setenv("ONETOOLS_HOME", str(store.home))
    monkeypatch.delenv("ONE_XMLRPC", raising=False)
    (image_id,) = export(store, app_id, "from-s3", 1, template=False).images
    image = store.info(IMAGE, image_id)
    assert hashlib.md5(Path(image.text("SOURCE")).read_bytes()).hexdigest() == MD5

    apps.delete(store, app_id)
    assert f"small-{app_id}" not in fake_s3.object_keys()
    assert store.pool(MARKETAPP) == []


def test_s3_multipart(store: LocalOne, tmp_path: Path, fake_s3: FakeS3) -> None:
    big = os.urandom(11 * 1024 * 1024 + 3)
    # READ_LENGTH 5 MB (the S3 minimum part size): 11 MiB go up in three parts
    market = s3_market(store, fake_s3.settings(APP_PREFIX="big", READ_LENGTH="5"))
    app_id = new_app(store, market, new_image(store, tmp_path, "big", big), "big")
    head = fake_s3.client().head_object(Bucket="apps", Key=f"big-{app_id}")
    assert head["ETag"].strip('"').endswith("-3")  # a multipart upload's ETag
    app = apps.show(store, app_id)
    assert app.text("MD5") == hashlib.md5(big).hexdigest() and app.int("SIZE") == 12
    got = download(app.text("SOURCE"), tmp_path / "big.out", md5=app.text("MD5"),
                   s3_market=fake_s3.settings())  # fmt: skip
    assert got.read_bytes() == big
    apps.delete(store, app_id)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"SECRET_ACCESS_KEY": "wrong-secret-value"}, "Access to bucket apps denied"),
        ({"ACCESS_KEY_ID": "AKIDNOBODY"}, "Access to bucket apps denied"),
        ({"BUCKET": "missing"}, "Bucket missing does not exist"),
    ],
)
def test_s3_refusals_create_nothing(
    store: LocalOne, tmp_path: Path, fake_s3: FakeS3, changes: dict[str, str], message: str
) -> None:
    before = fake_s3.object_keys()
    market = s3_market(store, fake_s3.settings(APP_PREFIX="bad", **changes))
    with pytest.raises(s3.S3MarketError, match=message) as caught:
        new_app(store, market, new_image(store, tmp_path))
    text = str(caught.value)
    assert "\n" not in text and "wrong-secret-value" not in text and fake_s3.secret not in text
    assert store.pool(MARKETAPP) == [] and fake_s3.object_keys() == before


def test_s3_delete_of_missing_object_keeps_the_app(
    store: LocalOne, tmp_path: Path, fake_s3: FakeS3
) -> None:
    market = s3_market(store, fake_s3.settings(APP_PREFIX="gone"))
    app_id = new_app(store, market, new_image(store, tmp_path))
    fake_s3.client().delete_object(Bucket="apps", Key=f"gone-{app_id}")
    with pytest.raises(s3.S3MarketError, match="does not exist"):
        apps.delete(store, app_id)
    assert [app.id for app in store.pool(MARKETAPP)] == [app_id]
    with pytest.raises(s3.S3MarketError, match="Bad formed"):
        s3.split_source("s3://onlybucket")


def test_s3_cli_download_and_refused_delete(tmp_path: Path, fake_s3: FakeS3) -> None:
    home = tmp_path / "home"
    one = LocalOne(home)
    try:
        market = s3_market(one, fake_s3.settings(APP_PREFIX="cli"))
        app_id = new_app(one, market, new_image(one, tmp_path))
    finally:
        one.close()
    env = {"ONETOOLS_HOME": str(home)}
    target = tmp_path / "cli.img"
    done = run_tool("onemarketapp", "download", str(app_id), str(target), env=env)
    assert done.code == 0, done.err
    assert target.read_bytes() == DATA
    # --home names the store: the s3 market is found there, not through the environment
    elsewhere = {"ONETOOLS_HOME": str(tmp_path / "other-home")}
    again = tmp_path / "again.img"
    done = run_tool(
        "onemarketapp", "download", str(app_id), str(again), "--home", str(home), env=elsewhere
    )
    assert done.code == 0, done.err
    assert again.read_bytes() == DATA
    fake_s3.client().delete_object(Bucket="apps", Key=f"cli-{app_id}")
    done = run_tool("onemarketapp", "delete", str(app_id), env=env)
    assert done.code == 255 and done.err.count("\n") == 1 and "does not exist" in done.err
    assert fake_s3.secret not in done.err + done.out
    listing = json.loads(run_tool("onemarketapp", "list", "-j", env=env).out)
    assert str(app_id) in json.dumps(listing)  # the app is kept


def test_http_files_elsewhere_only_allocate(store: LocalOne, tmp_path: Path) -> None:
    # PUBLIC_DIR not on this machine and no bridge hosts: the app is allocated, nothing copied
    directory = tmp_path / "far"
    market = store.allocate_market(
        f'NAME = "far"\nMARKET_MAD = "http"\nBASE_URL = "http://x/"\nPUBLIC_DIR = "{directory}"'
    )
    app_id = new_app(store, market, new_image(store, tmp_path, "far"), "far")
    assert apps.show(store, app_id).text("SOURCE") == ""
    assert not directory.exists()
    apps.delete(store, app_id)


def bridge_config(tmp_path: Path, hosts: dict[str, Any], key: Any) -> Path:
    """An ssh_config naming each bridge (``None``: a port where nothing listens)."""
    lines = []
    for name, host in hosts.items():
        address, port = (host.address, host.port) if host else ("127.0.0.1", free_port())
        user = host.user if host else "root"
        lines += [
            f"Host {name}",
            f"  HostName {address}",
            f"  Port {port}",
            f"  User {user}",
            f"  IdentityFile {key.private_key}",
            "  StrictHostKeyChecking no",
            "  UserKnownHostsFile /dev/null",
            "  LogLevel ERROR",
        ]
    path = tmp_path / "ssh_config"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_http_bridged_over_ssh(
    store: LocalOne,
    tmp_path: Path,
    public_dir: tuple[Path, str],
    ssh_host_factory: Any,
    ssh_key_pair: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With BRIDGE_LIST the file goes to PUBLIC_DIR on the bridge host through real ssh (an
    sshd on loopback), the host picked by app id modulo the bridges, as oned's driver does; a
    bridge that can't be reached fails the create with one line and leaves nothing."""
    directory, base_url = public_dir
    (bridge,) = ssh_host_factory(1)
    config = bridge_config(tmp_path, {"live": bridge, "dead": None}, ssh_key_pair)
    monkeypatch.setenv("ONETOOLS_SSH", f"ssh -F {config}")
    market = store.allocate_market(
        f'NAME = "bridged"\nMARKET_MAD = "http"\nBASE_URL = "{base_url}"\n'
        f'PUBLIC_DIR = "{directory}"\nBRIDGE_LIST = "live dead"'
    )
    image_id = new_image(store, tmp_path)
    made: list[int] = []
    refused = []
    for attempt in range(2):  # consecutive ids: one lands on "live", the other on "dead"
        try:
            made.append(new_app(store, market, image_id, f"bridged-{attempt}"))
        except http.HttpMarketError as exc:
            refused.append(str(exc))
    assert len(made) == 1 and len(refused) == 1, (made, refused)
    assert made[0] % 2 == 0  # BRIDGE_LIST index 0 is "live"
    assert "\n" not in refused[0] and "dead" in refused[0]
    (app,) = store.pool(MARKETAPP)  # the refused app was not kept
    assert app.id == made[0]
    source = app.text("SOURCE")
    (stored,) = directory.iterdir()  # no temporary file left by either attempt
    assert source.endswith("/" + stored.name) and stored.read_bytes() == DATA
    assert (stored.stat().st_mode & 0o777) == 0o644
    assert app.text("MD5") == MD5 and app.int("SIZE") == 4
    assert download(source, tmp_path / "got.img", md5=MD5).read_bytes() == DATA

    apps.delete(store, app.id)
    assert list(directory.iterdir()) == [] and store.pool(MARKETAPP) == []

    # a PUBLIC_DIR missing on the bridge: refused, nothing kept
    elsewhere = store.allocate_market(
        f'NAME = "missing"\nMARKET_MAD = "http"\nBASE_URL = "{base_url}"\n'
        f'PUBLIC_DIR = "{tmp_path / "nowhere"}"\nBRIDGE_LIST = "live"'
    )
    with pytest.raises(http.HttpMarketError, match="PUBLIC_DIR is not a directory"):
        new_app(store, elsewhere, image_id, "nowhere")
    assert store.pool(MARKETAPP) == [] and not (tmp_path / "nowhere").exists()
