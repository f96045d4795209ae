"""The Ansible layer: run files, version ranges, real runs on real SSH hosts (tests/ssh_hosts.py).

The hosts are sshd processes on 127.0.0.x started by the test session; the test playbook
(tests/data/ansible/write_files.yml) writes into each host's own root directory.  Our OpenNebula
node playbooks need package repositories, so they run in check mode only.
"""

from __future__ import annotations

import configparser
import dataclasses
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from onetools.errors import OnetoolsError
from onetools.provision import ansible
from onetools.provision.ansible import AnsibleError, AnsibleHost
from ssh_hosts import SSHHost, SSHKeyPair

TESTS = Path(__file__).resolve().parent
TEST_PLAYBOOKS = TESTS / "data" / "ansible"
PLAYBOOKS = TESTS.parent / "playbooks"
BIN = Path(sys.executable).parent
FAST_PING = {"ping_retries": 2, "ping_timeout": 0.2}


def as_ansible_host(host: SSHHost, key: SSHKeyPair, **host_vars: object) -> AnsibleHost:
    return AnsibleHost(
        host.name, None, host.port, host.user, str(key.private_key), host.host_vars(**host_vars)
    )


@pytest.fixture
def work_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Where the run's temporary directory is created (so a test can see it is removed)."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    # the path under tmp_path is long: SSH control sockets go to a short /tmp directory, named
    # after the process (other test processes run oneprovision at the same time)
    mine = f"otcp-{os.getpid()}-*"
    controls = set(Path("/tmp").glob(mine))
    yield root
    assert set(Path("/tmp").glob(mine)) <= controls


def leftovers(work_root: Path) -> list[Path]:
    """Run directories left behind (and short SSH control directories, made in /tmp)."""
    return sorted(work_root.glob("onetools-ansible-*"))


def clean_roots(hosts: list[SSHHost]) -> None:
    for host in hosts:
        shutil.rmtree(host.root_dir)
        host.root_dir.mkdir()


# --------------------------------------------------------------------------- run files


def test_run_directory_layout(tmp_path: Path) -> None:
    hosts = [
        AnsibleHost(
            "10.0.0.1", None, 22, "root", "/keys/id_rsa", {"a": 1}, "private_ip=192.168.1.1"
        ),
        AnsibleHost("node2", "10.0.0.2", 2222, "ubuntu", None, {}, ""),
    ]
    config = ansible.write_run_directory(
        tmp_path, hosts, playbook_dir=PLAYBOOKS, threads=7, extra_vars={"x": "y"}
    )
    assert (tmp_path / "inventory").read_text() == (
        "[nodes]\n"
        "10.0.0.1 private_ip=192.168.1.1\n"
        "node2\n"
        "\n"
        "[targets]\n"
        "10.0.0.1 ansible_connection=ssh ansible_ssh_private_key_file=/keys/id_rsa "
        "ansible_user=root ansible_port=22\n"
        "node2 ansible_connection=ssh ansible_host=10.0.0.2 ansible_user=ubuntu "
        "ansible_port=2222 ansible_become=true\n"
    )
    assert yaml.safe_load((tmp_path / "host_vars" / "10.0.0.1.yml").read_text()) == {"a": 1}
    assert yaml.safe_load((tmp_path / "host_vars" / "node2.yml").read_text()) == {}
    assert yaml.safe_load((tmp_path / "extra_vars.yml").read_text()) == {"x": "y"}
    parser = configparser.ConfigParser()
    parser.read(config)
    assert config == tmp_path / "ansible.cfg"
    assert parser.getboolean("defaults", "host_key_checking") is False
    assert parser.getboolean("defaults", "retry_files_enabled") is False
    # the project's playbooks/ first, then ours as installed (the same directory when editable)
    shipped = ansible.default_playbook_dir().resolve() / "roles"
    expected = [str(PLAYBOOKS.resolve() / "roles")]
    if shipped != PLAYBOOKS.resolve() / "roles":
        expected.append(str(shipped))
    assert parser.get("defaults", "roles_path").split(":") == expected
    assert parser.getint("defaults", "forks") == 7
    assert "UserKnownHostsFile=/dev/null" in parser.get("ssh_connection", "ssh_args")
    # host variables may hold secrets (ceph keys, private key paths): owner-only files
    assert stat.S_IMODE((tmp_path / "host_vars" / "10.0.0.1.yml").stat().st_mode) == 0o600


def test_user_playbook_dir_keeps_our_roles(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    config = ansible.write_run_directory(
        tmp_path, [AnsibleHost("h1")], playbook_dir=mine, threads=1
    )
    parser = configparser.ConfigParser()
    parser.read(config)
    assert parser.get("defaults", "roles_path").split(":") == [
        str(mine.resolve() / "roles"),
        str(ansible.default_playbook_dir() / "roles"),
    ]


@pytest.mark.parametrize(
    ("host", "message"),
    [
        (AnsibleHost("bad name"), "Wrong host name"),
        (AnsibleHost("h/1"), "Wrong host name"),
        (AnsibleHost(""), "Wrong host name"),
        (AnsibleHost("h1", inventory_vars="a=1\n[targets]"), "several lines"),
        (AnsibleHost("h1", port=0), "wrong SSH port"),
        (
            AnsibleHost("h1", inventory_vars="a=1 [targets]"),
            "wrong inventory variable '\\[targets\\]'",
        ),
        (AnsibleHost("h1", inventory_vars="a='1"), "wrong inventory variables"),
        (AnsibleHost("h1", private_key="/a key"), "white space"),
    ],
)
def test_bad_hosts_refused(tmp_path: Path, host: AnsibleHost, message: str) -> None:
    with pytest.raises(AnsibleError, match=message):
        ansible.write_run_directory(tmp_path, [host])
    assert not (tmp_path / "inventory").exists()


def test_unwritable_variables_refused(tmp_path: Path) -> None:
    with pytest.raises(AnsibleError, match="host 'h1' variables cannot be written as YAML"):
        ansible.write_run_directory(tmp_path, [AnsibleHost("h1", host_vars={"a": object()})])
    with pytest.raises(AnsibleError, match="extra variables are not a mapping"):
        ansible.write_run_directory(tmp_path, [AnsibleHost("h1")], extra_vars=["a"])  # type: ignore[arg-type]


def test_inventory_vars_with_quoted_values(tmp_path: Path) -> None:
    host = AnsibleHost("h1", inventory_vars="private_ip=10.0.0.4 label='rack 2'")
    ansible.write_run_directory(tmp_path, [host])
    assert "h1 private_ip=10.0.0.4 label='rack 2'" in (tmp_path / "inventory").read_text()


def test_duplicate_and_missing_hosts_refused(tmp_path: Path) -> None:
    with pytest.raises(AnsibleError, match="given twice"):
        ansible.write_run_directory(tmp_path, [AnsibleHost("h1"), AnsibleHost("h1")])
    with pytest.raises(AnsibleError, match="No hosts"):
        ansible.write_run_directory(tmp_path, [])


@pytest.mark.parametrize(
    ("playbooks", "message"),
    [
        ([], "Playbook 'default' not found"),  # no list: our default playbook
        (["missing"], "Playbook 'missing' not found"),
        (["../data/ansible/write_files"], "Wrong playbook name"),
        (["/etc/passwd"], "Wrong playbook name"),
    ],
)
def test_bad_playbooks_refused(work_root: Path, playbooks: list[str], message: str) -> None:
    with pytest.raises(AnsibleError, match=message) as caught:
        ansible.run_playbooks([AnsibleHost("h1")], playbooks, playbook_dir=TEST_PLAYBOOKS)
    assert isinstance(caught.value, OnetoolsError)
    assert leftovers(work_root) == []


def test_limit_to_unknown_host_refused(work_root: Path) -> None:
    with pytest.raises(AnsibleError, match=r"Unknown host.*h9"):
        ansible.run_playbooks(
            [AnsibleHost("h1")], ["write_files"], playbook_dir=TEST_PLAYBOOKS, limit=["h9"]
        )


# --------------------------------------------------------------------------- versions


@pytest.mark.parametrize(
    ("running", "ver_min", "ver_max"),
    [
        ("2.17.3", "2.8", "2.17"),  # ver_max inclusive at its precision
        ("2.8.0", 2.8, 2.17),  # YAML floats
        ("2.12.0", "2.12", None),
        ("2.19.14", "2.8", "12"),  # community ansible 12 bundles ansible-core 2.19
        ("2.10.1", "3", "3"),  # community ansible 3 = ansible-base 2.10
        ("2.16.0", None, "2.16.0"),
        ("2.15.0", None, None),  # no range (6.0 `playbook:`): our dependency's floor
    ],
)
def test_version_inside_range(
    monkeypatch: pytest.MonkeyPatch, running: str, ver_min: object, ver_max: object
) -> None:
    monkeypatch.setattr(ansible, "ansible_core_version", lambda: running)
    assert ansible.check_version(ver_min, ver_max) == running  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("running", "ver_min", "ver_max", "message"),
    [
        ("2.11.12", "2.12", "2.17", r"ansible-core 2\.11\.12 is older .*>= 2\.12 and <= 2\.17"),
        ("2.19.14", "2.8", "2.17", r"ansible-core 2\.19\.14 is newer .*<= 2\.17\)"),
        ("2.18.0", None, "10", r"newer .*<= 10 \(ansible-core 2\.17\)"),
        ("2.16.1", None, "2.16.0", "newer"),
        ("2.14.0", None, None, r"older .*>= 2\.15\)"),  # 6.0 default range
    ],
)
def test_version_outside_range(
    monkeypatch: pytest.MonkeyPatch, running: str, ver_min: object, ver_max: object, message: str
) -> None:
    monkeypatch.setattr(ansible, "ansible_core_version", lambda: running)
    with pytest.raises(AnsibleError, match=message):
        ansible.check_version(ver_min, ver_max)  # type: ignore[arg-type]


@pytest.mark.parametrize("bound", ["abc", "2.x", "", True, "2.1.2.3"])
def test_wrong_version_bound(bound: object) -> None:
    with pytest.raises(AnsibleError, match="Wrong Ansible version"):
        ansible.check_version(bound, None)  # type: ignore[arg-type]


def test_real_ansible_core_version() -> None:
    from ansible.release import __version__

    assert ansible.check_version(None, None) == __version__
    # the 6.10 templates say 2.8 to 2.17: our ansible-core is newer (documented)
    if tuple(int(p) for p in __version__.split(".")[:2]) > (2, 17):
        with pytest.raises(AnsibleError, match="newer"):
            ansible.check_version(2.8, 2.17)


# --------------------------------------------------------------------------- real runs


def test_playbook_runs_on_every_host_in_parallel(
    ssh_hosts: list[SSHHost], ssh_key_pair: SSHKeyPair, work_root: Path
) -> None:
    clean_roots(ssh_hosts)
    lines: list[str] = []
    ansible.run_playbooks(
        [
            dataclasses.replace(as_ansible_host(host, ssh_key_pair), inventory_vars=f"rack=r{n}")
            for n, host in enumerate(ssh_hosts)
        ],
        ["write_files"],
        playbook_dir=TEST_PLAYBOOKS,
        extra_vars={"greeting": "bonjour"},
        threads=3,
        progress=lines.append,
        **FAST_PING,
    )
    for n, host in enumerate(ssh_hosts):
        assert (host.root_dir / "configured").read_text() == f"{host.name} bonjour r{n}\n"
    starts = [float((host.root_dir / "started").read_text()) for host in ssh_hosts]
    ends = [float((host.root_dir / "finished").read_text()) for host in ssh_hosts]
    # each host sleeps 1 s between its time stamps: with 3 forks all started before any ended
    assert max(starts) < min(ends)
    for host in ssh_hosts:
        assert f"{host.name} : TASK[Write the host's file] - changed" in lines
        assert f"{host.name} : TASK[Fail where asked to] - skipping" in lines
    assert len(lines) == 3 * len(ssh_hosts)
    assert leftovers(work_root) == []


def test_one_thread_runs_hosts_one_after_another(
    ssh_hosts: list[SSHHost], ssh_key_pair: SSHKeyPair, work_root: Path
) -> None:
    hosts = ssh_hosts[:2]
    clean_roots(hosts)
    ansible.run_playbooks(
        [as_ansible_host(host, ssh_key_pair) for host in hosts],
        ["write_files.yml"],
        playbook_dir=TEST_PLAYBOOKS,
        threads=1,
        **FAST_PING,
    )
    first, second = sorted(
        (float((h.root_dir / "started").read_text()), float((h.root_dir / "finished").read_text()))
        for h in hosts
    )
    # one fork: the second host's busy second starts after the first host's ended
    assert first[1] <= second[0]


def test_failing_task_on_one_host(
    ssh_hosts: list[SSHHost], ssh_key_pair: SSHKeyPair, work_root: Path
) -> None:
    clean_roots(ssh_hosts)
    failing = ssh_hosts[1]
    hosts = [as_ansible_host(host, ssh_key_pair, fail_here=host is failing) for host in ssh_hosts]
    with pytest.raises(AnsibleError) as caught:
        ansible.run_playbooks(hosts, ["write_files"], playbook_dir=TEST_PLAYBOOKS, **FAST_PING)
    error = caught.value
    assert error.summary == [
        f"{failing.name} : TASK[Fail where asked to] - failing on purpose on {failing.name}"
    ]
    assert error.failed_hosts == [failing.name]
    assert "playbook 'write_files' failed" in error.message
    assert error.message.endswith(error.summary[0])
    assert not (failing.root_dir / "configured").exists()
    for host in ssh_hosts:
        if host is not failing:
            assert (host.root_dir / "configured").exists()
    assert leftovers(work_root) == []


def test_limit_runs_only_those_hosts(
    ssh_hosts: list[SSHHost], ssh_key_pair: SSHKeyPair, work_root: Path
) -> None:
    clean_roots(ssh_hosts)
    # the other hosts are not even pinged: a stopped one would not matter
    ansible.run_playbooks(
        [as_ansible_host(host, ssh_key_pair) for host in ssh_hosts],
        ["write_files"],
        playbook_dir=TEST_PLAYBOOKS,
        limit=[ssh_hosts[2].name],
        **FAST_PING,
    )
    assert [(h.root_dir / "configured").exists() for h in ssh_hosts] == [False, False, True]


def test_unreachable_host_retried_then_reported(
    ssh_host_factory: Callable[[int], list[SSHHost]],
    ssh_hosts: list[SSHHost],
    ssh_key_pair: SSHKeyPair,
    work_root: Path,
) -> None:
    (gone,) = ssh_host_factory(1)
    gone.stop()
    clean_roots(ssh_hosts[:1])
    lines: list[str] = []
    hosts = [as_ansible_host(ssh_hosts[0], ssh_key_pair), as_ansible_host(gone, ssh_key_pair)]
    with pytest.raises(AnsibleError) as caught:
        ansible.run_playbooks(
            hosts,
            ["write_files"],
            playbook_dir=TEST_PLAYBOOKS,
            progress=lines.append,
            ping_retries=3,
            ping_timeout=0.1,
        )
    error = caught.value
    assert error.headline == "SSH connection is failing on 1 host(s) after 3 attempt(s)"
    assert error.failed_hosts == [gone.name]
    (line,) = error.summary
    assert line.startswith(f"{gone.name} : TASK[") and "Connection refused" in line
    assert lines == [f"SSH not working yet on {gone.name} (attempt {n}/3)" for n in (1, 2, 3)]
    # nothing ran: the reachable host was not configured either
    assert not (ssh_hosts[0].root_dir / "started").exists()
    assert leftovers(work_root) == []


def test_gather_facts(ssh_hosts: list[SSHHost], ssh_key_pair: SSHKeyPair) -> None:
    facts = ansible.gather_facts([as_ansible_host(h, ssh_key_pair) for h in ssh_hosts[:2]])
    assert sorted(facts) == sorted(h.name for h in ssh_hosts[:2])
    for host_facts in facts.values():
        assert host_facts["ansible_memtotal_mb"] > 0
        assert host_facts["ansible_processor_count"] >= 1


# --------------------------------------------------------------------------- our playbooks

NODE_PLAYBOOKS = sorted(path.stem for path in PLAYBOOKS.glob("*.yml"))


def test_node_playbooks_shipped() -> None:
    # one playbook per provider of the 6.10 templates, the 6.0 name of equinix, and `default`
    assert {
        "aws",
        "default",
        "digitalocean",
        "equinix",
        "google",
        "onprem",
        "packet",
        "vultr",
        "vultr_metal",
    } <= set(NODE_PLAYBOOKS)


@pytest.mark.parametrize("name", NODE_PLAYBOOKS)
def test_node_playbook_syntax(name: str, tmp_path: Path) -> None:
    ansible.write_run_directory(tmp_path, [AnsibleHost("h1")])
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), "--syntax-check", str(PLAYBOOKS / f"{name}.yml")],
        env={**os.environ, "ANSIBLE_CONFIG": str(tmp_path / "ansible.cfg")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_playbooks_pass_ansible_lint() -> None:
    result = subprocess.run(
        [str(BIN / "ansible-lint"), "--offline", "--nocolor", "."],
        cwd=PLAYBOOKS,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_node_playbooks_in_check_mode(
    ssh_hosts: list[SSHHost], ssh_key_pair: SSHKeyPair, work_root: Path
) -> None:
    """Every node playbook, one after the other in one run, in check mode on a test host.

    They need the OpenNebula package repository, which this machine cannot reach: check mode
    skips the package installs and reports the rest without changing anything.
    """
    host = ssh_hosts[0]
    lines: list[str] = []
    node = as_ansible_host(
        host,
        ssh_key_pair,
        oneprovision_hypervisor="kvm",
        oneprovision_private_phydev="lo",
        # this test machine is whatever the CI runs on: let the OS check accept it
        ddc_supported_distributions=[
            "{{ ansible_facts.distribution }} {{ ansible_facts.distribution_major_version }}"
        ],
    )
    sshd_config = Path("/etc/ssh/sshd_config")
    before = sshd_config.read_bytes() if sshd_config.exists() else None
    ansible.run_playbooks(
        [node], NODE_PLAYBOOKS, threads=1, progress=lines.append, check=True, **FAST_PING
    )
    assert [line for line in lines if line.endswith(" - failed")] == []
    # facts gathered once for the whole run (cached between playbooks); every playbook checked
    # the system
    assert lines.count(f"{host.name} : TASK[Gathering Facts] - ok") == 1
    assert lines.count(
        f"{host.name} : TASK[Check that the operating system is one the node roles support] - ok"
    ) == len(NODE_PLAYBOOKS)
    # what the roles would change on a real node is reported, but nothing was written
    assert f"{host.name} : TASK[Set sshd root login] - changed" in lines
    assert (sshd_config.read_bytes() if sshd_config.exists() else None) == before
    assert leftovers(work_root) == []


def test_fabric_roles_render_for_real(
    ssh_hosts: list[SSHHost], ssh_key_pair: SSHKeyPair, work_root: Path
) -> None:
    """frr and iptables applied for real, into the hosts' root directories (tests/data)."""
    clean_roots(ssh_hosts)
    ansible.run_playbooks(
        [as_ansible_host(host, ssh_key_pair) for host in ssh_hosts],
        ["fabric"],
        playbook_dir=TEST_PLAYBOOKS,
        **FAST_PING,
    )
    configs = [(host.root_dir / "frr.conf").read_text().splitlines() for host in ssh_hosts]
    assert configs[0][0] == "! Ansible managed"
    names = [host.name for host in ssh_hosts]
    for number, config in enumerate(configs):
        # frr_iface has no address in the facts: the inventory names are the session addresses
        assert f" bgp router-id {names[number]}" in config
        peers = [line.split()[1] for line in config if line.endswith(" peer-group fabric")]
        if number < 2:  # frr_rr_num: 2 route reflectors, peering with every other node
            assert peers == [name for name in names if name != names[number]]
            assert f" bgp cluster-id {names[number]}" in config
            assert "  neighbor fabric route-reflector-client" in config
        else:  # a client peers with the reflectors only
            assert peers == names[:2]
            assert not any("cluster-id" in line or "reflector" in line for line in config)
    for host in ssh_hosts:
        assert "bgpd=yes" in (host.root_dir / "daemons").read_text().splitlines()
        rules = (host.root_dir / "rules.v4").read_text().splitlines()
        assert ":INPUT DROP [0:0]" in rules
        assert "-A INPUT -i eth0 -p udp -m udp --dport 8472 -j ACCEPT" in rules
        assert "-A POSTROUTING -j MASQUERADE" in rules
        assert stat.S_IMODE((host.root_dir / "rules.v4").stat().st_mode) == 0o600


def test_host_coming_up_late_is_waited_for(
    ssh_host_factory: Callable[[int], list[SSHHost]], ssh_key_pair: SSHKeyPair, work_root: Path
) -> None:
    (late,) = ssh_host_factory(1)
    late.stop()
    finished = threading.Event()

    def boot_late() -> None:  # a server still booting when Terraform is done
        time.sleep(1.0)
        late.start()
        # PR_SET_PDEATHSIG fires when the *thread* that started sshd ends: stay until the run is
        finished.wait()

    starter = threading.Thread(target=boot_late)
    starter.start()
    lines: list[str] = []
    try:
        ansible.run_playbooks(
            [as_ansible_host(late, ssh_key_pair)],
            ["write_files"],
            playbook_dir=TEST_PLAYBOOKS,
            progress=lines.append,
            ping_retries=20,
            ping_timeout=0.5,
        )
    finally:
        finished.set()
        starter.join()
    assert (late.root_dir / "configured").exists()
    waits = [line for line in lines if line.startswith("SSH not working yet")]
    assert waits and waits[0] == f"SSH not working yet on {late.name} (attempt 1/20)"


def test_ctrl_c_stops_ansible(
    ssh_hosts: list[SSHHost], ssh_key_pair: SSHKeyPair, work_root: Path
) -> None:
    host = ssh_hosts[0]
    clean_roots([host])
    lines: list[str] = []
    # Ctrl-C once the busy task runs (the playbook would sleep a minute)
    started = host.root_dir / "started"

    def interrupt_when_busy() -> None:
        deadline = time.monotonic() + 60
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    interrupter = threading.Thread(target=interrupt_when_busy)
    interrupter.start()
    began = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            ansible.run_playbooks(
                [as_ansible_host(host, ssh_key_pair, busy_seconds=60)],
                ["write_files"],
                playbook_dir=TEST_PLAYBOOKS,
                progress=lines.append,
                **FAST_PING,
            )
    finally:
        interrupter.join()
    assert time.monotonic() - began < 30
    assert not (host.root_dir / "finished").exists()
    assert leftovers(work_root) == []
    # no ansible-playbook of ours is left running
    mine = subprocess.run(
        ["pgrep", "-f", f"ansible-playbook.*{TEST_PLAYBOOKS / 'write_files.yml'}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert mine.stdout.strip() == ""
