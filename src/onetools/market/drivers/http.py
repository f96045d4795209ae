"""The ``http`` private market's IMPORT and DELETE, done by us on the embedded store.

Reference: onemarketapp.md §7.2.  On a real front-end oned's market driver copies the file;
on the embedded store nothing runs behind the store, so ``onemarketapp create`` of an IMAGE app
calls ``import_image`` and ``onemarketapp delete`` calls ``delete_file``.

* the file is named ``app-<id>-<random hex>`` (the original used md5 of "epoch:id": two
  imports in one second of a re-used id collided), written to a temp file in PUBLIC_DIR,
  fsync'ed and renamed into place with mode 0644, so a reader never sees half a file;
* MD5 and SIZE are computed while copying, never by a second read;
* delete only removes a plain file directly inside PUBLIC_DIR: names with ``/`` or ``..``
  and symlinks (even to a file inside) are refused, so a tampered SOURCE cannot remove
  anything else.

With ``BRIDGE_LIST`` the files live on the bridge hosts: the host is picked as oned's driver
does (app id modulo the number of hosts), the file streams to it through ``ssh`` (MD5 and
SIZE computed here while it streams), into a temporary name renamed into place by the remote
shell, and delete removes it there under the same rules (plain file only).  ``ssh`` runs in
batch mode with the user's own configuration; ``$ONETOOLS_SSH`` replaces the command (e.g.
``ssh -F /etc/onetools/ssh_config``), as ``GIT_SSH_COMMAND`` does for git.  The original
(§7.2) piped ``downloader.sh`` into ``ssh dd`` and left half a file on a broken pipe.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shlex
import subprocess
from pathlib import Path

from onetools.errors import OnetoolsError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

CHUNK = 1024 * 1024
FILE_MODE = 0o644


class HttpMarketError(OnetoolsError):
    """An http market import or delete that did not happen (nothing was left behind)."""


class Imported:
    """What an import gives the app: SOURCE, MD5 (hex), SIZE (MB, rounded up), FORMAT."""

    def __init__(self, source: str, md5: str, size_bytes: int, image_format: str) -> None:
        self.source = source
        self.md5 = md5
        self.size_bytes = size_bytes
        self.image_format = image_format

    @property
    def size_mb(self) -> int:
        return max(1, (self.size_bytes + 1024 * 1024 - 1) // (1024 * 1024))


def _settings(market: Mapping[str, str], here: bool = True) -> tuple[str, Path]:
    """BASE_URL (trimmed) and PUBLIC_DIR, checked; ``here``: PUBLIC_DIR must be a directory
    on this machine (not for bridge hosts, whose shell checks it)."""
    base_url = (market.get("BASE_URL") or "").strip().rstrip("/")
    public_dir = (market.get("PUBLIC_DIR") or "").strip()
    if not base_url or not public_dir:
        raise HttpMarketError("The http marketplace needs BASE_URL and PUBLIC_DIR")
    directory = Path(public_dir)
    if not directory.is_absolute():
        raise HttpMarketError(f"PUBLIC_DIR {public_dir} is not an absolute path")
    if here and not directory.is_dir():
        raise HttpMarketError(f"PUBLIC_DIR {public_dir} is not a directory")
    return base_url, directory


def files_here(market: Mapping[str, str]) -> bool:
    """Whether the files are ours to copy: a BRIDGE_LIST (copied through ssh) or a PUBLIC_DIR
    that is a directory on this machine.  When not, the embedded store cannot play the driver
    and the app is only allocated (as before this driver existed): a market configured for
    a front-end's web server stays usable for catalog work here."""
    public_dir = (market.get("PUBLIC_DIR") or "").strip()
    if public_dir and not Path(public_dir).is_absolute():
        raise HttpMarketError(f"PUBLIC_DIR {public_dir} is not an absolute path")
    if bridges(market):
        return bool(public_dir)
    return bool(public_dir) and Path(public_dir).is_dir()


def bridges(market: Mapping[str, str]) -> list[str]:
    return (market.get("BRIDGE_LIST") or "").split()


def bridge_for(market: Mapping[str, str], app_id: int) -> str | None:
    """The bridge host of app ``app_id`` (id modulo the number of hosts, as oned's driver)."""
    hosts = bridges(market)
    return hosts[app_id % len(hosts)] if hosts else None


def ssh_command() -> list[str]:
    # Fact learned the hard way: OpenSSH finds ~/.ssh/config (and keys, known_hosts) through
    # the passwd entry's home directory, not $HOME, so setting HOME does not give it another
    # configuration; `ssh -F FILE` through $ONETOOLS_SSH does (the tests rely on it).
    configured = os.environ.get("ONETOOLS_SSH", "").strip()
    base = shlex.split(configured) if configured else ["ssh"]
    return [*base, "-o", "BatchMode=yes", "-o", "ConnectTimeout=20"]


def _remote(host: str, script: str, stdin: int | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*ssh_command(), host, script],
        stdin=subprocess.PIPE if stdin is None else stdin,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _remote_error(process: subprocess.Popen[bytes]) -> str:
    text = process.stderr.read().decode(errors="replace").strip() if process.stderr else ""
    return text.splitlines()[-1] if text else f"exit status {process.returncode}"


def _import_bridged(
    market: Mapping[str, str], host: str, app_id: int, image_file: Path, image_format: str
) -> Imported:
    base_url, directory = _settings(market, here=False)
    public_dir = str(directory)
    name = f"app-{app_id}-{secrets.token_hex(8)}"
    target = shlex.quote(f"{public_dir}/{name}")
    temp = shlex.quote(f"{public_dir}/.{name}.tmp")
    try:
        expected = image_file.stat().st_size
    except OSError as exc:
        raise HttpMarketError(f"Cannot read {image_file}: {exc.strerror or exc}") from None
    # A stream cut short (Ctrl-C, a killed process) reaches the remote cat as a plain end of
    # input: the size check keeps that half file from being published, the trap removes it.
    script = (
        f"umask 022; trap 'rm -f {temp}' EXIT; "
        f"[ -d {shlex.quote(public_dir)} ] || {{ echo 'PUBLIC_DIR is not a directory' >&2; "
        f"exit 2; }}; cat > {temp} || exit 3; n=$(wc -c < {temp}); "
        f'[ "$n" -eq {expected} ] || {{ echo "truncated: $n of {expected} bytes" >&2; '
        f"exit 4; }}; sync {temp} 2>/dev/null; mv {temp} {target} && trap - EXIT"
    )
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    try:
        process = _remote(host, script)
    except OSError as exc:
        raise HttpMarketError(f"Cannot run ssh: {exc.strerror or exc}") from None
    assert process.stdin is not None
    try:
        with open(image_file, "rb") as source:
            while chunk := source.read(CHUNK):
                digest.update(chunk)
                process.stdin.write(chunk)
                size += len(chunk)
        process.stdin.close()
    except BrokenPipeError:
        pass  # the remote side ended: its status and message say why
    except OSError as exc:
        process.kill()
        process.wait()
        raise HttpMarketError(f"Cannot read {image_file}: {exc.strerror or exc}") from None
    except BaseException:
        process.kill()  # Ctrl-C: the remote shell's trap removes the temporary file
        process.wait()
        raise
    if process.wait() != 0:
        raise HttpMarketError(
            f"Cannot copy {image_file} to {host}:{public_dir}: {_remote_error(process)}"
        )
    return Imported(f"{base_url}/{name}", digest.hexdigest(), size, image_format or "raw")


def _delete_bridged(market: Mapping[str, str], host: str, source: str) -> None:
    base_url, directory = _settings(market, here=False)
    public_dir = str(directory)
    name = _name_of(base_url, source)
    path = shlex.quote(f"{public_dir}/{name}")
    script = (
        f"if [ -L {path} ]; then echo 'it is a symbolic link' >&2; exit 3; fi; "
        f"[ -e {path} ] || exit 0; "
        f"[ -f {path} ] || {{ echo 'not a regular file' >&2; exit 3; }}; rm -f {path}"
    )
    try:
        process = _remote(host, script, stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise HttpMarketError(f"Cannot run ssh: {exc.strerror or exc}") from None
    if process.wait() != 0:
        raise HttpMarketError(f"Cannot delete {host}:{public_dir}/{name}: {_remote_error(process)}")


def import_image(
    market: Mapping[str, str], app_id: int, image_file: Path, image_format: str
) -> Imported:
    """Copy ``image_file`` into the market's PUBLIC_DIR (on its bridge host when it has a
    BRIDGE_LIST); what the app records."""
    host = bridge_for(market, app_id)
    if host is not None:
        return _import_bridged(market, host, app_id, image_file, image_format)
    base_url, directory = _settings(market)
    name = f"app-{app_id}-{secrets.token_hex(8)}"
    target = directory / name
    temp = directory / f".{name}.tmp"
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    try:
        with open(image_file, "rb") as source, open(temp, "xb") as output:
            while chunk := source.read(CHUNK):
                digest.update(chunk)
                output.write(chunk)
                size += len(chunk)
            output.flush()
            os.fsync(output.fileno())
        os.chmod(temp, FILE_MODE)
        os.rename(temp, target)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise HttpMarketError(
            f"Cannot copy {image_file} into {directory}: {exc.strerror or exc}"
        ) from None
    except BaseException:  # Ctrl-C: no temp file left in the published directory
        temp.unlink(missing_ok=True)
        raise
    _fsync_dir(directory)
    return Imported(f"{base_url}/{name}", digest.hexdigest(), size, image_format or "raw")


def _fsync_dir(directory: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_of(market: Mapping[str, str], source: str) -> Path:
    """The file in PUBLIC_DIR that ``source`` names; hostile names refused."""
    base_url, directory = _settings(market)
    return directory / _name_of(base_url, source)


def _name_of(base_url: str, source: str) -> str:
    if not base_url or not source.startswith(base_url + "/"):
        raise HttpMarketError(f"Bad formed or unavailable app source {source!r}")
    name = source[len(base_url) + 1 :]
    if not name or "/" in name or "\\" in name or name in (".", "..") or "\0" in name:
        raise HttpMarketError(f"Bad formed or unavailable app source {source!r}")
    return name


def delete_file(market: Mapping[str, str], source: str, app_id: int = 0) -> None:
    """Remove the app's file (on its bridge host when the market has a BRIDGE_LIST); a missing
    file is fine (already gone), anything odd is refused."""
    host = bridge_for(market, app_id)
    if host is not None:
        _delete_bridged(market, host, source)
        return
    path = file_of(market, source)
    if path.is_symlink():
        raise HttpMarketError(f"Refusing to delete {path}: it is a symbolic link")
    if not path.exists():
        return
    if not path.is_file():
        raise HttpMarketError(f"Refusing to delete {path}: not a regular file")
    try:
        path.unlink()
    except OSError as exc:
        raise HttpMarketError(f"Cannot delete {path}: {exc.strerror or exc}") from None
