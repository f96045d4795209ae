"""``onetools.market.download``: streamed, resumable, verified downloads, and hostile servers."""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import pytest

from http_files import FileServer
from onetools.errors import OnetoolsError
from onetools.market.download import CHUNK, DownloadError, download, part_path

pytest_plugins = ["http_files"]  # the file_server fixture

TYPE_CHECKING = False
if TYPE_CHECKING:
    from http_files import FileServer

DATA = os.urandom(2 * CHUNK + 123)  # more than one CHUNK, not a multiple of it
MD5 = hashlib.md5(DATA).hexdigest()
SHA256 = hashlib.sha256(DATA).hexdigest()


def _nothing_at(destination: Path) -> bool:
    return not destination.exists()


def test_http_download_verified(file_server: FileServer, tmp_path: Path) -> None:
    url = file_server.add("/img.qcow2", DATA)
    seen: list[tuple[int, int | None]] = []
    result = download(
        url,
        tmp_path / "img",
        md5=MD5.upper(),  # OpenNebula's MD5 compared case-insensitively
        sha256=SHA256,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert result.read_bytes() == DATA
    assert not part_path(result).exists()
    assert seen[-1] == (len(DATA), len(DATA))
    assert len(seen) >= 3  # streamed in chunks, reported as it went


def test_file_source(tmp_path: Path) -> None:
    source = tmp_path / "src.raw"
    source.write_bytes(DATA)
    assert download(f"file://{source}", tmp_path / "a", md5=MD5).read_bytes() == DATA
    assert download(str(source), tmp_path / "b", sha256=SHA256).read_bytes() == DATA


def test_wrong_checksum_leaves_nothing(file_server: FileServer, tmp_path: Path) -> None:
    url = file_server.add("/img", DATA)
    destination = tmp_path / "img"
    with pytest.raises(DownloadError, match="MD5 mismatch") as info:
        download(url, destination, md5="0" * 32)
    assert "\n" not in str(info.value)
    assert _nothing_at(destination) and not part_path(destination).exists()
    with pytest.raises(DownloadError, match="SHA-256 mismatch"):
        download(url, destination, md5=MD5, sha256="1" * 64)
    assert _nothing_at(destination) and not part_path(destination).exists()


def test_truncated_body_refused(file_server: FileServer, tmp_path: Path) -> None:
    url = file_server.add("/img", DATA)
    file_server.cut("/img", times=1)
    destination = tmp_path / "img"
    with pytest.raises(DownloadError, match="interrupted: connection closed after"):
        download(url, destination, md5=MD5, resume=False)
    assert _nothing_at(destination) and not part_path(destination).exists()


def test_resume_after_cut(file_server: FileServer, tmp_path: Path) -> None:
    url = file_server.add("/img", DATA)
    file_server.cut("/img", times=1)
    destination = tmp_path / "img"
    with pytest.raises(DownloadError, match=r"kept img\.part to resume"):
        download(url, destination, md5=MD5, sha256=SHA256)
    assert _nothing_at(destination)
    kept = part_path(destination).stat().st_size
    assert 0 < kept < len(DATA)
    download(url, destination, md5=MD5, sha256=SHA256)
    assert destination.read_bytes() == DATA
    assert file_server.requests[-1] == ("/img", f"bytes={kept}-")
    assert not part_path(destination).exists()


def test_foreign_part_is_refetched(file_server: FileServer, tmp_path: Path) -> None:
    url = file_server.add("/img", DATA)
    destination = tmp_path / "img"
    part_path(destination).write_bytes(b"not the start of this file")
    download(url, destination, md5=MD5)
    assert destination.read_bytes() == DATA
    assert [r for _, r in file_server.requests] == ["bytes=26-", None]


def test_server_without_range_restarts(file_server: FileServer, tmp_path: Path) -> None:
    url = file_server.add("/img", DATA)
    file_server.no_range("/img")
    destination = tmp_path / "img"
    part_path(destination).write_bytes(DATA[:1000])
    download(url, destination, md5=MD5)
    assert destination.read_bytes() == DATA


def test_redirects_followed_and_loop_refused(file_server: FileServer, tmp_path: Path) -> None:
    file_server.add("/real", DATA)
    file_server.redirect("/go", "/real")
    assert download(file_server.url("/go"), tmp_path / "ok", md5=MD5).read_bytes() == DATA
    file_server.redirect("/a", "/b")
    file_server.redirect("/b", "/a")
    with pytest.raises(DownloadError, match="Redirect loop"):
        download(file_server.url("/a"), tmp_path / "loop")
    assert _nothing_at(tmp_path / "loop") and not part_path(tmp_path / "loop").exists()


def test_http_error_and_dead_server(file_server: FileServer, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(file_server.url("/missing"), tmp_path / "x")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed on exit: nothing listens there
    with pytest.raises(DownloadError, match="Cannot connect to"):
        download(f"http://127.0.0.1:{port}/img", tmp_path / "x")
    assert _nothing_at(tmp_path / "x") and not part_path(tmp_path / "x").exists()


def test_stalling_server_times_out(file_server: FileServer, tmp_path: Path) -> None:
    url = file_server.add("/slow", DATA)
    file_server.stall("/slow", 3.0)
    with pytest.raises(DownloadError, match=r"no data for 0\.5 s|Timed out"):
        download(url, tmp_path / "slow", timeout=0.5, resume=False)
    assert _nothing_at(tmp_path / "slow") and not part_path(tmp_path / "slow").exists()


def test_existing_destination_needs_force(file_server: FileServer, tmp_path: Path) -> None:
    url = file_server.add("/img", DATA)
    destination = tmp_path / "img"
    destination.write_bytes(b"old")
    with pytest.raises(DownloadError, match="already exists"):
        download(url, destination)
    assert destination.read_bytes() == b"old"
    download(url, destination, force=True, md5=MD5)
    assert destination.read_bytes() == DATA


def test_failed_forced_download_keeps_old_file(file_server: FileServer, tmp_path: Path) -> None:
    url = file_server.add("/img", DATA)
    destination = tmp_path / "img"
    destination.write_bytes(b"old")
    with pytest.raises(DownloadError):
        download(url, destination, force=True, md5="0" * 32)
    assert destination.read_bytes() == b"old"  # replaced only by a verified file


def test_unsupported_sources(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="Unsupported"):
        download("ftp://example.org/x", tmp_path / "x")
    with pytest.raises(DownloadError, match="Unsupported"):
        download("relative/path", tmp_path / "x")


def test_docker_dispatch(tmp_path: Path) -> None:
    """docker:// goes to onetools.market.docker_image (its own tests cover the build); a
    registry that is not there is one clear error and nothing at the destination."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    destination = tmp_path / "x"
    with pytest.raises(OnetoolsError, match=r"cannot reach|not supported"):
        download(f"docker://127.0.0.1:{port}/alpine?size=64", destination)
    assert _nothing_at(destination) and not part_path(destination).exists()


def test_hash_threads_end_with_the_download(file_server: FileServer, tmp_path: Path) -> None:
    import threading

    url = file_server.add("/img", DATA)
    file_server.cut("/img", times=1)
    with pytest.raises(DownloadError):
        download(url, tmp_path / "cut", md5=MD5, resume=False)
    download(url, tmp_path / "ok", md5=MD5, sha256=SHA256)
    assert [t for t in threading.enumerate() if t.name == "download-hash"] == []
