"""``onemarketapp`` through the real command line (subprocess, real exit codes)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import Result, run_tool
from onetools.market import apps
from onetools.one.api import IMAGE
from onetools.one.local import LocalOne
from test_market_apps import PRIVATE_MARKET, publish

pytest_plugins = ["http_files"]  # the file_server fixture

TYPE_CHECKING = False
if TYPE_CHECKING:
    from http_files import FileServer

DATA = os.urandom(1024 * 1024 + 5)
MD5 = hashlib.md5(DATA).hexdigest()


class Cloud:
    """An embedded store with a private market and one IMAGE app (ID ``app``)."""

    def __init__(self, home: Path, work: Path) -> None:
        self.home = home
        store = LocalOne(home)
        try:
            self.market = store.allocate_market(PRIVATE_MARKET)
            local = work / "src.img"
            local.write_bytes(b"x" * 4096)
            self.image = store.allocate_image(f'NAME = "base"\nPATH = "{local}"', 1)
            vm = apps.encode64('CPU = "1"\nMEMORY = "128"')
            template = apps.image_app_template(store, self.image, "ttylinux")
            self.app = apps.create(store, self.market, template + f'VMTEMPLATE64 = "{vm}"\n')
        finally:
            store.close()

    def run(self, *args: str) -> Result:
        return run_tool("onemarketapp", *args, env={"ONETOOLS_HOME": str(self.home)})


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    yield Cloud(tmp_path / "home", tmp_path)


def test_list_columns_and_formats(cloud: Cloud) -> None:
    result = cloud.run("list")
    assert result.code == 0, result.err
    header = result.out.splitlines()[0].split()
    assert header == [
        "ID",
        "NAME",
        "VERSION",
        "SIZE",
        "ARCH",
        "HYPERVISOR",
        "STAT",
        "TYPE",
        "REGTIME",
        "MARKET",
        "ZONE",
    ]
    row = result.out.splitlines()[1].split()
    assert row[:2] == [str(cloud.app), "ttylinux"] and "rdy" in row and "img" in row
    data = json.loads(cloud.run("list", "-j").out)
    assert data["MARKETPLACEAPP_POOL"]["MARKETPLACEAPP"][0]["NAME"] == "ttylinux"
    assert cloud.run("list", "-x").out.startswith("<MARKETPLACEAPP_POOL><MARKETPLACEAPP>")


def test_show_layout(cloud: Cloud) -> None:
    result = cloud.run("show", "ttylinux")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == f"MARKETPLACE APP {cloud.app} INFORMATION"
    assert "TYPE           : IMAGE" in lines
    assert "OWNER          : um-" in lines
    for heading in ("PERMISSIONS", "DETAILS", "IMPORT TEMPLATE", "MARKETPLACE APP TEMPLATE"):
        assert heading in lines
    assert 'TYPE = "OS"' in result.out  # the decoded APPTEMPLATE64
    assert json.loads(cloud.run("show", str(cloud.app), "-j").out)["MARKETPLACEAPP"]["ID"] == str(
        cloud.app
    )


def test_create_dry_and_errors(cloud: Cloud, tmp_path: Path) -> None:
    dry = cloud.run("create", "--image", "base", "--name", "n", "--dry")
    assert dry.code == 0 and 'ORIGIN_ID = "' in dry.out and dry.err == ""
    missing = cloud.run("create", "--image", "base", "--name", "n")
    assert missing.code == 255 and "mandatory" in missing.err
    public = cloud.run("create", "-m", "0", "--image", "base", "--name", "n")
    assert public.code == 255
    assert public.err.startswith("ERROR : ") and "does not accept new apps" in public.err
    created = cloud.run("create", "-m", "private", "--image", "base", "--name", "second")
    assert created.code == 0 and created.out.startswith("ID: ")
    # PUBLIC_DIR "/x" is not here and there is no bridge: allocated only, and said so
    assert created.err.startswith("WARN  : App ") and "the file was not copied" in created.err
    assert created.err.count("\n") == 1
    mixed = cloud.run("create", str(tmp_path / "t"), "-m", "private", "--name", "x")
    assert mixed.code == 255 and "cannot be mixed" in mixed.err


def test_ranged_commands(cloud: Cloud) -> None:
    assert cloud.run("disable", str(cloud.app)).code == 0
    assert "dis" in cloud.run("list").out
    assert cloud.run("enable", str(cloud.app)).code == 0
    assert cloud.run("lock", str(cloud.app), "--admin").code == 0
    assert "LOCK           : Admin" in cloud.run("show", str(cloud.app)).out
    assert cloud.run("unlock", str(cloud.app)).code == 0
    assert cloud.run("chmod", str(cloud.app), "644").code == 0
    assert cloud.run("rename", str(cloud.app), "tty2").code == 0
    both = cloud.run("delete", f"{cloud.app},99")
    assert both.code == 255 and "MARKETPLACEAPP 99:" in both.err
    assert cloud.run("list", "--no-header").out == ""


def test_export_and_download(cloud: Cloud, file_server: FileServer, tmp_path: Path) -> None:
    publish(cloud.home, cloud.app, file_server.add("/tty", DATA), MD5)
    refused = cloud.run("export", str(cloud.app), "tty", "-d", "default", "--parallel", "0")
    assert refused.code == 255 and "'0' is not a whole number of 1 or more" in refused.err
    result = cloud.run("export", str(cloud.app), "tty", "-d", "default", "--parallel", "2")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == "IMAGE" and lines[1].startswith("    ID: ")
    assert lines[2] == "VMTEMPLATE" and lines[3].startswith("    ID: ")
    assert result.err == ""  # no progress bar when piped
    store = LocalOne(cloud.home)
    try:
        image = store.info(IMAGE, int(lines[1].split()[-1]))
        assert Path(image.text("SOURCE")).read_bytes() == DATA
    finally:
        store.close()

    target = tmp_path / "tty.img"
    assert cloud.run("download", str(cloud.app), str(target)).code == 0
    assert target.read_bytes() == DATA
    again = cloud.run("download", str(cloud.app), str(target))
    assert again.code == 255 and "already exists" in again.err
    assert cloud.run("download", str(cloud.app), str(target), "--force").code == 0


def test_export_failure_exit_code(cloud: Cloud, file_server: FileServer) -> None:
    publish(cloud.home, cloud.app, file_server.add("/tty", DATA), "f" * 32)
    result = cloud.run("export", str(cloud.app), "tty", "-d", "1")
    assert result.code == 255
    assert result.out == ""
    assert result.err.count("\n") == 1 and "MD5 mismatch" in result.err
    store = LocalOne(cloud.home)
    try:
        assert [i.name for i in store.pool(IMAGE)] == ["base"]
    finally:
        store.close()


def test_download_and_export_verify_the_catalog_sha256(
    cloud: Cloud, file_server: FileServer, tmp_path: Path
) -> None:
    """A SHA-256 the catalog gave (TEMPLATE/SHA256, as the monitor keeps it) is checked by
    download and export along with the MD5: a wrong one fails both and leaves nothing."""
    publish(cloud.home, cloud.app, file_server.add("/tty", DATA), MD5)
    wrong = tmp_path / "wrong.txt"
    wrong.write_text(f'SHA256 = "{"0" * 64}"\n')
    assert cloud.run("update", str(cloud.app), str(wrong), "--append").code == 0
    target = tmp_path / "tty.img"
    failed = cloud.run("download", str(cloud.app), str(target))
    assert failed.code == 255 and "SHA-256 mismatch" in failed.err, failed.err
    assert not target.exists() and list(tmp_path.glob("tty.img*")) == []
    exported = cloud.run("export", str(cloud.app), "tty", "-d", "1")
    assert exported.code == 255 and "SHA-256 mismatch" in exported.err
    right = tmp_path / "right.txt"
    right.write_text(f'SHA256 = "{hashlib.sha256(DATA).hexdigest()}"\n')
    assert cloud.run("update", str(cloud.app), str(right), "--append").code == 0
    assert cloud.run("download", str(cloud.app), str(target)).code == 0
    assert target.read_bytes() == DATA
    store = LocalOne(cloud.home)
    try:
        assert [i.name for i in store.pool(IMAGE)] == ["base"]  # the failed export left none
    finally:
        store.close()


def test_download_progress_bar_on_a_terminal(
    cloud: Cloud, file_server: FileServer, tmp_path: Path
) -> None:
    import pty
    import subprocess

    from helpers import tool_command

    publish(cloud.home, cloud.app, file_server.add("/tty", DATA), MD5)
    master, slave = pty.openpty()
    try:
        proc = subprocess.run(
            [*tool_command("onemarketapp"), "download", str(cloud.app), str(tmp_path / "f")],
            stdout=subprocess.PIPE,
            stderr=slave,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "ONETOOLS_HOME": str(cloud.home)},
            timeout=60,
        )
        os.close(slave)
        slave = -1
        shown = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the writer side is closed
                break
            if not chunk:
                break
            shown += chunk
    finally:
        if slave != -1:
            os.close(slave)
        os.close(master)
    assert proc.returncode == 0
    assert b"100%" in shown and b"[####" in shown
    assert (tmp_path / "f").read_bytes() == DATA


def test_download_app_without_source(cloud: Cloud, tmp_path: Path) -> None:
    result = cloud.run("download", str(cloud.app), str(tmp_path / "f"))
    assert result.code == 255 and "has no SOURCE" in result.err
    assert not (tmp_path / "f").exists()
