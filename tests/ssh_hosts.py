"""Pytest plugin: real SSH hosts (one ``sshd`` per host on its own loopback address).

Each host is an ``sshd -D`` process from openssh-server listening on ``127.0.0.<x>`` (x from 10
up, one address per host) on a free port, with its own host key, an ``authorized_keys`` for a
key pair generated once per session, ``PermitRootLogin prohibit-password``, ``StrictModes no``,
its PID file in a temporary directory and its own *root directory*: a temporary directory that
playbooks write into (passed to them as the host variable ``test_root``).  Logging in is done as
the user running the tests (root in CI: sshd only lets a non-root daemon log its own user in).

Hosts are stopped by PID: the whole process group of the daemon (its per-connection children
too, so an Ansible ControlPersist master cannot keep a "stopped" host reachable), at the end of
the test, ``atexit``, and through ``PR_SET_PDEATHSIG`` if the test process dies.  That signal
is sent when the *thread* that started the daemon ends: start hosts from the main thread, or
keep the starting thread alive while the host is needed.

Fixtures:

* ``ssh_key_pair`` (session): ``SSHKeyPair`` with ``private_key`` / ``public_key`` paths;
* ``ssh_host_factory`` (session): ``make(count)`` starts ``count`` new hosts and returns them;
* ``ssh_hosts`` (session): three started hosts shared by the tests that only read them.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"
PYTHON = "/usr/bin/python3"
STARTUP_TIMEOUT = 15.0
FIRST_ADDRESS = 10  # 127.0.0.10, .11, ...: below that are addresses other tools like to use
_PR_SET_PDEATHSIG = 1
# Addresses are handed out per test process; ports are picked free on each address, so two
# test processes sharing an address still never share a listening socket.
_address_counter = itertools.count(FIRST_ADDRESS)


@dataclass(frozen=True)
class SSHKeyPair:
    """The client key pair that every test host authorises."""

    private_key: Path
    public_key: Path


def _free_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def _daemon_setup() -> None:
    """preexec_fn: own process group (stopped as a group), killed if the test process dies."""
    os.setpgrp()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )


class SSHHost:
    """One sshd process on its own loopback address, with its own root directory."""

    def __init__(self, base: Path, address: str, key_pair: SSHKeyPair) -> None:
        self.base = base
        self.address = address
        self.port = _free_port(address)
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.key_pair = key_pair
        self.root_dir = base / "root"
        self.pid_file = base / "sshd.pid"
        self.log_file = base / "sshd.log"
        self.process: subprocess.Popen[bytes] | None = None

    def host_vars(self, **extra: object) -> dict[str, object]:
        """Host variables for Ansible: the host's root directory as ``test_root``.

        The interpreter is given explicitly: on a login shell of this machine Ansible's
        discovery finds pyenv shims first (``/root/.pyenv/shims/python3.13``) that fail with
        "command not found", and every module then fails with "Module result deserialization
        failed: No start of json char found".
        """
        return {"test_root": str(self.root_dir), "ansible_python_interpreter": PYTHON, **extra}

    @property
    def name(self) -> str:
        """The inventory name of the host: its address (as OpenNebula names hosts by IP)."""
        return self.address

    def _write_config(self) -> Path:
        host_key = self.base / "ssh_host_ed25519_key"
        if not host_key.exists():  # a restarted host keeps its identity
            _keygen(host_key, f"host {self.address}")
        authorized = self.base / "authorized_keys"
        shutil.copyfile(self.key_pair.public_key, authorized)
        sftp = next(
            (
                p
                for p in ("/usr/lib/openssh/sftp-server", "/usr/libexec/sftp-server")
                if Path(p).exists()
            ),
            "internal-sftp",
        )
        config = self.base / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"ListenAddress {self.address}:{self.port}",
                    f"HostKey {host_key}",
                    f"PidFile {self.pid_file}",
                    f"AuthorizedKeysFile {authorized}",
                    "PermitRootLogin prohibit-password",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    # the key files live in a world-readable temp tree
                    "StrictModes no",
                    "UseDNS no",
                    "MaxStartups 100",
                    "MaxSessions 100",
                    f"Subsystem sftp {sftp}",
                    "",
                ]
            )
        )
        return config

    def start(self) -> None:
        """Start the daemon and wait until it sends its SSH banner."""
        self.root_dir.mkdir(parents=True, exist_ok=True)
        # sshd refuses to start without its privilege separation directory
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        config = self._write_config()
        log = open(self.log_file, "ab")  # noqa: SIM115 - the daemon owns it
        try:
            self.process = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_daemon_setup,
                cwd=self.base,
            )
        finally:
            log.close()
        atexit.register(self.stop)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(
                    f"sshd on {self.address}:{self.port} exited with "
                    f"{self.process.returncode}:\n{self.log_tail()}",
                    pytrace=False,
                )
            try:
                with socket.create_connection((self.address, self.port), timeout=1) as sock:
                    if sock.recv(64).startswith(b"SSH-"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"sshd on {self.address}:{self.port} not ready:\n{self.log_tail()}")

    def log_tail(self) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return ""

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """Stop the daemon and its connection children (the process group of its PID)."""
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def __repr__(self) -> str:
        return f"<SSH test host {self.address}:{self.port}>"


@pytest.fixture(scope="session")
def ssh_key_pair() -> Iterator[SSHKeyPair]:
    if not os.access(SSHD, os.X_OK) or not shutil.which("ssh-keygen"):
        pytest.fail(
            f"{SSHD} or ssh-keygen not found: install openssh-server (`make system-deps`)",
            pytrace=False,
        )
    base = Path(tempfile.mkdtemp(prefix="onetools-sshkey-"))
    private = base / "id_ed25519"
    _keygen(private, "onetools tests")
    yield SSHKeyPair(private, base / "id_ed25519.pub")
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def ssh_host_factory(ssh_key_pair: SSHKeyPair) -> Iterator[Callable[[int], list[SSHHost]]]:
    made: list[SSHHost] = []

    def make(count: int) -> list[SSHHost]:
        hosts = []
        for _ in range(count):
            address = f"127.0.0.{next(_address_counter)}"
            host = SSHHost(Path(tempfile.mkdtemp(prefix="onetools-sshd-")), address, ssh_key_pair)
            made.append(host)
            host.start()
            hosts.append(host)
        return hosts

    yield make
    for host in made:
        host.remove()


@pytest.fixture(scope="session")
def ssh_hosts(ssh_host_factory: Callable[[int], list[SSHHost]]) -> list[SSHHost]:
    return ssh_host_factory(3)
