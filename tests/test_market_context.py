"""one-context packages installed into docker:// root filesystems without running the image.

The .deb is built by the real ``dpkg-deb``; the .apk is made as Alpine lays one out (gzip
streams of a control tar and a data tar, one after the other). The packages are our own small
stand-ins for OpenNebula's one-context (a unit, a daemon script, a context script): what is
tested is how any such package gets unpacked and enabled.
"""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from onetools.market import context_packages
from onetools.market.docker_image import build_image
from test_market_docker import Entry, FakeRegistry, debugfs, fake_registry, make_layer

__all__ = ["fake_registry"]  # the fixture, imported for this module's tests

UNIT = """\
[Unit]
Description=Contextualization (test stand-in)

[Service]
ExecStart=/usr/sbin/one-contextd

[Install]
WantedBy=multi-user.target
"""


def build_deb(directory: Path, version: str = "6.10.0-1", escape: bool = False) -> Path:
    tree = directory / f"tree-{version}"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: one-context\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: test <t@example.org>\nDescription: test stand-in\n"
    )
    (tree / "lib" / "systemd" / "system").mkdir(parents=True)
    (tree / "lib" / "systemd" / "system" / "one-context.service").write_text(UNIT)
    (tree / "usr" / "sbin").mkdir(parents=True)
    daemon = tree / "usr" / "sbin" / "one-contextd"
    daemon.write_text(f"#!/bin/sh\necho {version}\n")
    daemon.chmod(0o755)
    (tree / "etc" / "one-context.d").mkdir(parents=True)
    (tree / "etc" / "one-context.d" / "loc-10-network").write_text("#!/bin/sh\n")
    package = directory / f"one-context_{version}_all.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(tree), str(package)],
        check=True,
        capture_output=True,
    )
    if escape:  # rewrite the data member with a path that leaves the root
        hostile = make_layer([Entry("../../escaped", data=b"x")])
        raw = package.read_bytes()
        start = raw.index(b"data.tar.gz")
        header = b"data.tar.gz/".ljust(16) + raw[start + 16 : start + 48]
        header += str(len(hostile)).encode().ljust(10) + b"`\n"
        package.write_bytes(raw[:start] + header + hostile)
    return package


def build_apk(directory: Path) -> Path:
    def tar_gz(members: list[tuple[str, bytes, int]]) -> bytes:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for name, data, mode in members:
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), mode
                tar.addfile(info, io.BytesIO(data))
        return gzip.compress(buffer.getvalue(), mtime=0)

    control = tar_gz([(".PKGINFO", b"pkgname = one-context\n", 0o644),
                      (".post-install", b"#!/bin/sh\nrm -rf /\n", 0o755)])  # fmt: skip
    data = tar_gz([("etc/init.d/one-context", b"#!/sbin/openrc-run\n", 0o755),
                   ("usr/sbin/one-contextd", b"#!/bin/sh\n", 0o755)])  # fmt: skip
    package = directory / "one-context-6.10.0-r1.apk"
    package.write_bytes(control + data)
    return package


def debian_root(root: Path) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "usr" / "lib").mkdir(parents=True)
    (root / "usr" / "lib" / "os-release").write_text('ID=debian\nVERSION_ID="12"\n')
    os.symlink("../usr/lib/os-release", root / "etc" / "os-release")  # as Debian has it
    return root


def test_deb_unpacked_and_enabled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    packages = tmp_path / "context"
    packages.mkdir()
    build_deb(packages, "6.8.0-1")
    build_deb(packages, "6.10.0-1")  # the newest version is taken (6.10 sorts after 6.8)
    monkeypatch.setenv("ONETOOLS_CONTEXT_DIR", str(packages))
    root = debian_root(tmp_path / "root")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    messages: list[str] = []
    changes = context_packages.install(root, scratch, messages.append)
    assert changes[0].startswith("installed one-context_6.10.0-1_all.deb")
    assert (root / "usr" / "sbin" / "one-contextd").read_text() == "#!/bin/sh\necho 6.10.0-1\n"
    assert (root / "etc" / "one-context.d" / "loc-10-network").is_file()
    link = root / "etc" / "systemd" / "system" / "multi-user.target.wants" / "one-context.service"
    assert os.readlink(link) == "/lib/systemd/system/one-context.service"
    assert "enabled one-context.service (multi-user.target)" in changes
    assert list(scratch.iterdir()) == []  # the unpacked data is gone


def test_apk_unpacked_without_control_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    packages = tmp_path / "context"
    packages.mkdir()
    build_apk(packages)
    monkeypatch.setenv("ONETOOLS_CONTEXT_DIR", str(packages))
    root = tmp_path / "root"
    (root / "etc" / "runlevels" / "default").mkdir(parents=True)
    (root / "etc" / "os-release").write_text("ID=alpine\nVERSION_ID=3.20.0\n")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    changes = context_packages.install(root, scratch, lambda message: None)
    assert (root / "etc" / "init.d" / "one-context").is_file()
    assert not (root / ".PKGINFO").exists() and not (root / ".post-install").exists()
    link = root / "etc" / "runlevels" / "default" / "one-context"
    assert os.readlink(link) == "/etc/init.d/one-context"
    assert "enabled one-context (default runlevel)" in changes


def test_nothing_to_install_is_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONETOOLS_CONTEXT_DIR", str(tmp_path / "none"))
    root = debian_root(tmp_path / "root")
    messages: list[str] = []
    assert context_packages.install(root, tmp_path, messages.append) == []
    assert messages == [f"context: no context package directory {tmp_path / 'none'}: "
                        "one-context not installed"]  # fmt: skip
    other = tmp_path / "fedora"
    (other / "etc").mkdir(parents=True)
    (other / "etc" / "os-release").write_text("ID=fedora\n")
    messages.clear()
    assert context_packages.install(other, tmp_path, messages.append) == []
    assert messages == ["context: no one-context package for fedora: install it in the guest"]


def test_os_release_symlink_cannot_leave_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    outside = tmp_path / "os-release"
    outside.write_text("ID=debian\n")
    os.symlink(str(outside), root / "etc" / "os-release")  # absolute: means the root's own path
    assert context_packages.os_release(root) == {}


def test_hostile_package_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    packages = tmp_path / "context"
    packages.mkdir()
    build_deb(packages, escape=True)
    monkeypatch.setenv("ONETOOLS_CONTEXT_DIR", str(packages))
    root = debian_root(tmp_path / "root")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with pytest.raises(context_packages.ContextPackageError, match=r"one-context_6\.10\.0-1_all"):
        context_packages.install(root, scratch, lambda message: None)
    assert not (tmp_path / "escaped").exists() and not (root.parent / "escaped").exists()
    assert list(scratch.iterdir()) == []


def test_build_image_installs_one_context(
    fake_registry: FakeRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    packages = tmp_path / "context"
    packages.mkdir()
    build_deb(packages)
    monkeypatch.setenv("ONETOOLS_CONTEXT_DIR", str(packages))
    layer = make_layer(
        [
            Entry("etc", "dir"),
            Entry("usr", "dir"),
            Entry("usr/lib", "dir"),
            Entry("usr/lib/os-release", data=b"ID=ubuntu\nID_LIKE=debian\n"),
            Entry("etc/os-release", "symlink", target="../usr/lib/os-release"),
        ]
    )
    fake_registry.add_image("test/ubuntu", "v1", layer)
    destination = tmp_path / "ubuntu.img"
    messages: list[str] = []
    build_image(
        f"docker://{fake_registry.host}/test/ubuntu:v1", destination, progress=messages.append
    )
    assert "one-contextd" in debugfs(destination, "ls /usr/sbin")
    wants = debugfs(destination, "ls /etc/systemd/system/multi-user.target.wants")
    assert "one-context.service" in wants
    assert any(m.startswith("context: installed one-context_6.10.0-1_all.deb") for m in messages)
