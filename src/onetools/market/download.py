"""Downloading a marketplace app's file: streamed, resumable, verified while it streams.

``download(source_url, destination)`` fetches ``http://``, ``https://`` and ``file://``
sources (a bare absolute path is a ``file://``) and hands ``docker://`` to
``onetools.market.docker_image.build_image``.  The rules (reference/onemarketapp.md §1.3 and the
bug list §10.1 item 5, which we do not repeat):

* constant memory: the body is read in ``CHUNK`` pieces and written to ``<destination>.part``
  next to the destination (same filesystem, so the final rename is atomic), handed to the
  kernel's writeback every ``WRITEBACK_EVERY`` bytes;
* MD5 (as OpenNebula records it in the app: lowercase hex) and SHA-256 are computed on the
  bytes as they arrive, each in a thread of its own; the ``.part`` is fsync'ed and renamed
  onto the destination only after the checksums matched, so a file at ``destination`` is
  always complete and verified;
* a checksum mismatch deletes the ``.part``; an interrupted transfer (connection cut, short
  body, stall) keeps it when ``resume`` is set so that the next call continues with an HTTP
  ``Range`` request, and deletes it otherwise.  A resumed file whose checksum does not match is
  fetched once more from the start (the ``.part`` may have come from another source);
* redirects are followed up to ``MAX_REDIRECTS`` and a loop is refused; every socket operation
  has a timeout;
* an existing ``destination`` is refused unless ``force`` (the original ignored ``--force``).

Every failure is one ``DownloadError`` line naming the source.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from pathlib import Path

from onetools.errors import OnetoolsError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from http.client import HTTPConnection, HTTPResponse
    from typing import IO, Any

    #: ``progress(bytes_done, bytes_total_or_None)``
    Progress = Callable[[int, int | None], None]

#: Read size: large reads keep the per-chunk cost (a syscall, a queue hand-off) small.
CHUNK = 4 * 1024 * 1024
#: Chunks queued for each digest thread at most (memory stays bounded).
HASH_QUEUE = 4
#: Bytes written between two hand-offs to the kernel's writeback (see ``_copy``).
WRITEBACK_EVERY = 64 * 1024 * 1024
MAX_REDIRECTS = 5
DEFAULT_TIMEOUT = 30.0
USER_AGENT = "OpenNebula onetools"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class DownloadError(OnetoolsError):
    """A download that did not produce a verified file (nothing is left at the destination)."""


class _Interrupted(Exception):
    """The transfer stopped early; the ``.part`` holds what arrived."""


def part_path(destination: Path) -> Path:
    """Where the download is written until it is verified."""
    return destination.with_name(destination.name + ".part")


class _Hashes:
    """MD5 and SHA-256 of the bytes given to ``update``, in order.

    Each digest runs in a thread of its own, fed through a short queue: hashlib releases the
    GIL on large buffers, so the two digests and the transfer run on separate cores (MD5
    alone is slower than a loopback transfer; in one thread the three add up).  ``close``
    waits for both; the digests are read after it.  ``update`` takes ``bytes`` (they are
    queued, not copied)."""

    def __init__(self) -> None:
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.sha256 = hashlib.sha256()
        self.size = 0
        self._feeds: list[queue.Queue[bytes | None]] = []
        self._threads: list[threading.Thread] = []

    def update(self, data: bytes) -> None:
        if not self._threads:
            self._start()
        self.size += len(data)
        for feed in self._feeds:
            feed.put(data)

    def _start(self) -> None:
        for digest in (self.md5, self.sha256):
            feed: queue.Queue[bytes | None] = queue.Queue(maxsize=HASH_QUEUE)
            thread = threading.Thread(
                target=_digest, args=(digest, feed), name="download-hash", daemon=True
            )
            thread.start()
            self._feeds.append(feed)
            self._threads.append(thread)

    def close(self) -> None:
        """Wait until every byte given is hashed (and the threads have ended)."""
        for feed in self._feeds:
            feed.put(None)
        for thread in self._threads:
            thread.join()
        self._feeds, self._threads = [], []


def _digest(digest: Any, feed: queue.Queue[bytes | None]) -> None:
    while (data := feed.get()) is not None:
        digest.update(data)


def download(
    source_url: str,
    destination: str | Path,
    *,
    md5: str | None = None,
    sha256: str | None = None,
    progress: Progress | None = None,
    resume: bool = True,
    force: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    s3_market: Mapping[str, str] | None = None,
) -> Path:
    """Fetch ``source_url`` into ``destination`` and return its path; see the module docstring.

    ``md5``/``sha256`` are hex digests to verify (empty or None: not checked).  ``timeout`` is
    the connect and per-read timeout in seconds (a server that stalls longer fails).
    ``s3://`` sources are fetched by ``drivers.s3`` with ``s3_market`` (the market's template
    attributes; None: the s3 market with that bucket on the environment's connection).
    """
    target = Path(destination)
    if target.is_dir():
        raise DownloadError(f"Cannot download to {target}: it is a directory")
    if (target.exists() or target.is_symlink()) and not force:
        raise DownloadError(f"{target} already exists (use --force to overwrite it)")
    if not target.parent.is_dir():
        raise DownloadError(f"Cannot download to {target}: {target.parent} is not a directory")
    scheme = source_url.split("://", 1)[0].lower() if "://" in source_url else ""
    if scheme == "docker":
        return _docker(source_url, target, progress)
    if scheme not in ("", "file", "http", "https", "s3"):
        raise DownloadError(f"Unsupported download source '{source_url}' ({scheme}://)")
    if scheme == "" and not source_url.startswith("/"):
        raise DownloadError(f"Unsupported download source '{source_url}': not a URL")

    part = part_path(target)
    attempts = 2 if resume else 1
    for attempt in range(attempts):
        offset = part.stat().st_size if resume and part.is_file() else 0
        hashes = _Hashes()
        try:
            try:
                if scheme in ("http", "https"):
                    _fetch_http(source_url, part, offset, hashes, progress, timeout)
                elif scheme == "s3":
                    _fetch_s3(source_url, part, hashes, progress, s3_market)
                else:
                    _fetch_file(source_url, part, hashes, progress)
            finally:
                hashes.close()
        except _Interrupted as exc:
            if not resume:
                part.unlink(missing_ok=True)
            kept = f" (kept {part.name} to resume)" if resume and part.exists() else ""
            raise DownloadError(f"Download of {source_url} interrupted: {exc}{kept}") from None
        except DownloadError:
            part.unlink(missing_ok=True)
            raise
        problem = _mismatch(hashes, md5, sha256)
        if problem is None:
            _commit(part, target)
            return target
        part.unlink(missing_ok=True)
        if offset == 0 or attempt == attempts - 1:
            raise DownloadError(f"Download of {source_url} failed: {problem}")
        # A resumed .part that does not verify may be the start of another file: once more
        # from the first byte.
    raise AssertionError("unreachable")  # pragma: no cover


def _mismatch(hashes: _Hashes, md5: str | None, sha256: str | None) -> str | None:
    if md5 and hashes.md5.hexdigest() != md5.strip().lower():
        return f"MD5 mismatch (expected {md5.strip().lower()}, got {hashes.md5.hexdigest()})"
    if sha256 and hashes.sha256.hexdigest() != sha256.strip().lower():
        return (
            f"SHA-256 mismatch (expected {sha256.strip().lower()}, got {hashes.sha256.hexdigest()})"
        )
    return None


def _commit(part: Path, target: Path) -> None:
    """fsync the verified file, rename it into place, fsync the directory (crash safety)."""
    with open(part, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(part, target)
    try:
        directory = os.open(target.parent, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _copy(
    body: IO[bytes] | HTTPResponse,
    out: IO[Any],
    hashes: _Hashes,
    progress: Progress | None,
    total: int | None,
) -> None:
    unsynced = 0
    while True:
        data = body.read(CHUNK)
        if not data:
            return
        out.write(data)
        hashes.update(data)
        unsynced += len(data)
        if unsynced >= WRITEBACK_EVERY and hasattr(os, "posix_fadvise"):
            # Start the kernel's writeback now (DONTNEED also drops pages already on disk
            # from the cache): the fsync at the end then waits for little, and a big image
            # does not push everything else out of the page cache.
            out.flush()
            os.posix_fadvise(out.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            unsynced = 0
        if progress is not None:
            progress(hashes.size, total)


def _hash_existing(part: Path, hashes: _Hashes) -> None:
    with open(part, "rb") as handle:
        while data := handle.read(CHUNK):
            hashes.update(data)


# -- file:// -------------------------------------------------------------------------------------
def _fetch_file(url: str, part: Path, hashes: _Hashes, progress: Progress | None) -> None:
    from urllib.parse import unquote, urlsplit

    path = Path(unquote(urlsplit(url).path)) if url.lower().startswith("file://") else Path(url)
    try:
        source = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise DownloadError(f"Cannot read {path}: {exc.strerror}") from None
    with source, open(part, "wb") as out:
        total = os.fstat(source.fileno()).st_size
        _copy(source, out, hashes, progress, total)


# -- s3:// ---------------------------------------------------------------------------------------
def _fetch_s3(
    url: str,
    part: Path,
    hashes: _Hashes,
    progress: Progress | None,
    market: Mapping[str, str] | None,
) -> None:
    from onetools.market.drivers import s3

    try:
        s3.fetch(market or s3.market_for(url), url, part, hashes.update, progress, CHUNK)
    except OnetoolsError as exc:
        raise DownloadError(str(exc)) from None


# -- http(s):// ----------------------------------------------------------------------------------
def _connection(url: str, timeout: float) -> tuple[HTTPConnection, str]:
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if not parts.hostname:
        raise DownloadError(f"Invalid URL '{url}': no host")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    conn: HTTPConnection
    if parts.scheme.lower() == "https":
        conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout)
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    return conn, path


def _open_http(url: str, offset: int, timeout: float) -> tuple[HTTPConnection, HTTPResponse, str]:
    """GET with redirects followed; returns the final connection, response and URL."""
    from urllib.parse import urljoin

    seen = [url]
    current = url
    while True:
        conn, path = _connection(current, timeout)
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
        except TimeoutError:
            conn.close()
            raise DownloadError(f"Timed out after {timeout:g} s waiting for {current}") from None
        except OSError as exc:
            conn.close()
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise DownloadError(f"Cannot connect to {current}: {reason}") from None
        if response.status not in _REDIRECTS:
            return conn, response, current
        location = response.getheader("Location")
        response.close()
        conn.close()
        if not location:
            raise DownloadError(f"HTTP {response.status} from {current} without a Location")
        current = urljoin(current, location)
        if current in seen:
            raise DownloadError(f"Redirect loop downloading {url} (back to {current})")
        seen.append(current)
        if len(seen) > MAX_REDIRECTS + 1:
            raise DownloadError(f"More than {MAX_REDIRECTS} redirects downloading {url}")
        if not current.lower().startswith(("http://", "https://")):
            raise DownloadError(f"Refusing a redirect from {url} to {current}")
        if seen[-2].lower().startswith("https://") and current.lower().startswith("http://"):
            # a TLS download must not continue in clear
            raise DownloadError(f"Refusing a redirect from https to http ({current})")


def _fetch_http(
    url: str,
    part: Path,
    offset: int,
    hashes: _Hashes,
    progress: Progress | None,
    timeout: float,
) -> None:
    import http.client

    conn, response, final = _open_http(url, offset, timeout)
    try:
        if response.status == 416 and offset:
            # The .part is not a prefix the server knows (complete or foreign): start over.
            response.close()
            conn.close()
            conn, response, final = _open_http(url, 0, timeout)
            offset = 0
        if response.status == 206 and offset:
            _hash_existing(part, hashes)
            mode = "ab"
        elif response.status == 200:
            mode = "wb"  # no Range support (or no .part): from the first byte
        else:
            raise DownloadError(f"HTTP {response.status} {response.reason} from {final}")
        length = response.getheader("Content-Length")
        total = hashes.size + int(length) if length and length.isdigit() else None
        try:
            with open(part, mode) as out:
                _copy(response, out, hashes, progress, total)
        except http.client.IncompleteRead as exc:
            raise _Interrupted(
                f"connection closed after {hashes.size + len(exc.partial)} of {total} bytes"
            ) from None
        except TimeoutError:
            raise _Interrupted(f"no data for {timeout:g} s") from None
        except OSError as exc:
            if isinstance(exc, FileNotFoundError) or exc.filename:
                raise DownloadError(f"Cannot write {part}: {exc.strerror}") from None
            raise _Interrupted(exc.strerror or str(exc) or type(exc).__name__) from None
        if total is not None and hashes.size < total:
            raise _Interrupted(f"connection closed after {hashes.size} of {total} bytes")
    finally:
        response.close()
        conn.close()


# -- docker:// -----------------------------------------------------------------------------------
def _docker(url: str, target: Path, progress: Progress | None) -> Path:
    """``docker://`` URLs are built into a disk image by ``onetools.market.docker_image``
    (imported only here: it is heavy).  Its progress reports are messages, not byte counts, so
    they are not passed to ``progress``; checksums do not apply (the original's DockerHub MD5s
    were synthetic, §10.1 item 8)."""
    import importlib

    try:
        module = importlib.import_module("onetools.market.docker_image")
        build_image = module.build_image
    except (ImportError, AttributeError):
        raise DownloadError(f"docker:// sources are not supported yet ({url})") from None
    result: Path = build_image(url, target)
    return result
