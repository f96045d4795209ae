"""Host configuration with Ansible: inventory, SSH reachability, playbooks, failure summary.

Public API (independent of the CLI; the provision lifecycle builds on it):

* ``AnsibleHost(name, address, port, user, private_key, host_vars, inventory_vars)`` — one host
  to configure.  ``name`` is the inventory name (OpenNebula names provision hosts by their IP);
  ``address`` is where SSH connects when it differs from the name.
* ``check_version(ver_min, ver_max) -> str`` — the ansible-core version that will run, after
  checking it against a template's ``ansible: {ver_min, ver_max}`` range (see *Version ranges*).
* ``run_playbooks(hosts, playbooks, ...)`` — SSH reachability check, then each playbook through
  ``ansible_runner`` with its event stream; raises ``AnsibleError`` (with ``summary`` lines
  ``<host> : TASK[<task>] - <message>``) when a host fails.
* ``gather_facts(hosts, ...) -> dict[str, dict]`` — network and hardware facts per host name.
* ``write_run_directory(directory, hosts, ...)`` — the files ``run_playbooks`` works with
  (``inventory``, ``host_vars/<name>.yml``, ``ansible.cfg``), for inspection and tests.
* ``default_playbook_dir()`` — our own playbooks (``playbooks/`` of the project).

Every run works in a fresh 0700 temporary directory that is removed afterwards, also when the
run fails (the original kept it, with inventories and host variables, forever: §8.1 item 17).

Version ranges.  Templates give ranges in the numbering that ``ansible --version`` printed when
they were written: Ansible 2.8/2.9 were single packages, and from 2.10 on that first line shows
the version of ``ansible-base``/``ansible-core`` (``ansible [core 2.17.1]``), which continued the
2.x numbering.  So a ``2.x`` bound is compared with ansible-core's version.  A bound of 3 or more
can only name the community ``ansible`` package, whose release N bundles ansible-core 2.(N+7)
(3 → 2.10, 4 → 2.11, … 10 → 2.17, 12 → 2.19); it is mapped that way.  ``ver_min`` is inclusive;
``ver_max`` is inclusive at the precision it is written with (``2.17`` admits every 2.17.x),
because "tested up to 2.17" is what a template means by it.  A template without a range (the 6.0
``playbook:`` form) gets ``DEFAULT_VERSION_RANGE``: at least the ansible-core onetools depends on,
no upper bound (the original's fixed window 2.8 to <2.10 refused every ansible-core: §8.1 item 7).
YAML reads an unquoted ``2.10`` as the float 2.1: templates should quote such bounds.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from onetools.errors import OnetoolsError

TYPE_CHECKING = False  # typing costs start-up time: annotations only
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence
    from typing import Any

# The lowest ansible-core onetools declares as a dependency (pyproject.toml).
DEFAULT_VERSION_RANGE: tuple[str, str | None] = ("2.15", None)
DEFAULT_THREADS = 3
# What a template without a playbook list gets (the original's `default` did not exist).
DEFAULT_PLAYBOOKS = ("default",)
DEFAULT_PING_RETRIES = 30
DEFAULT_PING_TIMEOUT = 20.0
# The community "ansible" package N bundles ansible-core 2.(N + offset) from N = 3 on.
_COMMUNITY_TO_CORE_OFFSET = 7
_VERSION_RE = re.compile(r"^\d+(\.\d+){0,2}$")
_PLAYBOOK_SUFFIXES = (".yml", ".yaml")
# Characters that would break an INI inventory line or a host_vars file name.
_BAD_NAME_RE = re.compile(r"[\s/\\#;=\[\]]")


class AnsibleError(OnetoolsError):
    """Ansible could not configure the hosts.

    ``summary`` holds one line per failed or unreachable host, ``<host> : TASK[<task>] -
    <message>``; ``failed_hosts`` their names.
    """

    def __init__(
        self, message: str, summary: Sequence[str] = (), failed_hosts: Sequence[str] = ()
    ) -> None:
        self.headline = message
        self.summary = list(summary)
        self.failed_hosts = list(failed_hosts)
        super().__init__("\n".join([message, *self.summary]))


@dataclass(frozen=True)
class AnsibleHost:
    """One host to configure.

    ``host_vars`` become ``host_vars/<name>.yml`` (the decoded PROVISION_CONFIGURATION_BASE64 of
    an OpenNebula host); ``inventory_vars`` (``ANSIBLE_HOST_VARS``, e.g. ``private_ip=10.0.0.4``)
    are appended to the host's line in the ``[nodes]`` group.
    """

    name: str
    address: str | None = None
    port: int = 22
    user: str = "root"
    private_key: str | None = None
    host_vars: Mapping[str, Any] = field(default_factory=dict)
    inventory_vars: str = ""


# --------------------------------------------------------------------------- versions


def _parse_version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _bound_to_core(value: str | float, which: str) -> tuple[tuple[int, ...], str]:
    """A range bound as an ansible-core version tuple, and how to show it to the user."""
    text = repr(value) if isinstance(value, float) else str(value).strip()
    if isinstance(value, bool) or not _VERSION_RE.match(text):
        raise AnsibleError(f"Wrong Ansible version {which} '{value}' (expected e.g. 2.17)")
    parts = _parse_version(text)
    if parts[0] >= 3:  # community package release: only its major number maps onto core
        core = (2, parts[0] + _COMMUNITY_TO_CORE_OFFSET)
        return core, f"{text} (ansible-core {core[0]}.{core[1]})"
    return parts, text


def ansible_core_version() -> str:
    """The version of the ansible-core that ``run_playbooks`` runs (the one installed with us)."""
    from ansible.release import __version__  # type: ignore[import-untyped]

    return str(__version__)


def check_version(ver_min: str | float | None, ver_max: str | float | None) -> str:
    """Check the ansible-core that will run against a template's range; return its version.

    ``None`` for both bounds means the template gave no range (6.0 ``playbook:`` form):
    ``DEFAULT_VERSION_RANGE`` applies.  See the module docstring for how bounds written in
    "Ansible" numbering map onto ansible-core.  Outside the range → ``AnsibleError``.
    """
    if ver_min is None and ver_max is None:
        ver_min, ver_max = DEFAULT_VERSION_RANGE
    version = ansible_core_version()
    match = re.match(r"\d+(\.\d+){0,2}", version)
    if not match:
        raise AnsibleError(f"Unknown ansible-core version '{version}'")
    current = _parse_version(match.group())
    wanted: list[str] = []
    too_old = too_new = False
    if ver_min is not None:
        low, shown = _bound_to_core(ver_min, "minimum")
        wanted.append(f">= {shown}")
        too_old = current[: max(len(low), 1)] < low
    if ver_max is not None:
        high, shown = _bound_to_core(ver_max, "maximum")
        wanted.append(f"<= {shown}")
        too_new = current[: len(high)] > high
    if too_old or too_new:
        raise AnsibleError(
            f"Unsupported Ansible version: ansible-core {version} is "
            f"{'older' if too_old else 'newer'} than this provision allows "
            f"({' and '.join(wanted)}); change 'ansible: ver_min/ver_max' in the provision "
            "template or install a matching ansible-core"
        )
    return version


# --------------------------------------------------------------------------- files


def default_playbook_dir() -> Path:
    """Our playbooks: ``$ONETOOLS_PLAYBOOKS``, the copy in the wheel, or the project's tree."""
    configured = os.environ.get("ONETOOLS_PLAYBOOKS")
    if configured:
        return Path(configured)
    package = Path(__file__).resolve().parents[1]
    shipped = package / "share" / "playbooks"
    if shipped.is_dir():
        return shipped
    return package.parents[1] / "playbooks"  # source checkout / editable install


def _check_hosts(hosts: Sequence[AnsibleHost]) -> None:
    if not hosts:
        raise AnsibleError("No hosts to configure")
    seen: set[str] = set()
    for host in hosts:
        if not host.name or _BAD_NAME_RE.search(host.name) or host.name.startswith("."):
            raise AnsibleError(f"Wrong host name for Ansible '{host.name}'")
        if host.name in seen:
            raise AnsibleError(f"Host '{host.name}' given twice")
        seen.add(host.name)
        if "\n" in host.inventory_vars or "\r" in host.inventory_vars:
            raise AnsibleError(f"Host '{host.name}': inventory variables span several lines")
        _check_inventory_vars(host)
        if host.address is not None and _BAD_NAME_RE.search(host.address):
            raise AnsibleError(f"Host '{host.name}': wrong address '{host.address}'")
        if not 0 < int(host.port) < 65536:
            raise AnsibleError(f"Host '{host.name}': wrong SSH port {host.port}")
        for value, what in ((host.user, "user"), (host.private_key or "", "private key")):
            if any(char.isspace() for char in value):
                raise AnsibleError(f"Host '{host.name}': white space in the {what} '{value}'")


_VARIABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def _check_inventory_vars(host: AnsibleHost) -> None:
    """``ANSIBLE_HOST_VARS`` must be ``key=value`` words: anything else would change the INI."""
    import shlex

    try:
        words = shlex.split(host.inventory_vars)
    except ValueError as exc:
        raise AnsibleError(f"Host '{host.name}': wrong inventory variables ({exc})") from exc
    for word in words:
        if not _VARIABLE_RE.match(word):
            raise AnsibleError(
                f"Host '{host.name}': wrong inventory variable '{word}' (expected name=value)"
            )


def _inventory_text(hosts: Sequence[AnsibleHost]) -> str:
    nodes = ["[nodes]"]
    targets = ["[targets]"]
    for host in hosts:
        nodes.append(f"{host.name} {host.inventory_vars}".rstrip())
        line = [host.name, "ansible_connection=ssh"]
        if host.address and host.address != host.name:
            line.append(f"ansible_host={host.address}")
        if host.private_key:
            line.append(f"ansible_ssh_private_key_file={host.private_key}")
        line += [f"ansible_user={host.user}", f"ansible_port={int(host.port)}"]
        if host.user != "root":  # the node roles manage the system: root through sudo
            line.append("ansible_become=true")
        targets.append(" ".join(line))
    return "\n".join([*nodes, "", *targets, ""])


def _config_text(
    directory: Path, roles_path: Sequence[Path], threads: int, control_dir: Path
) -> str:
    return "\n".join(
        [
            "[defaults]",
            f"inventory = {directory / 'inventory'}",
            f"roles_path = {':'.join(str(path) for path in roles_path)}",
            "host_key_checking = False",
            "retry_files_enabled = False",
            "interpreter_python = auto_silent",
            f"forks = {threads}",
            f"local_tmp = {directory / 'tmp'}",
            # facts gathered once per host and run, not once per playbook
            "gathering = smart",
            "fact_caching = jsonfile",
            f"fact_caching_connection = {directory / 'facts'}",
            "fact_caching_timeout = 0",
            "timeout = 20",
            "",
            "[ssh_connection]",
            # New hosts get new host keys: never learn them into the user's known_hosts.
            "ssh_args = -o ControlMaster=auto -o ControlPersist=30s "
            "-o UserKnownHostsFile=/dev/null -o ServerAliveInterval=30",
            f"control_path_dir = {control_dir}",
            "pipelining = True",
            "",
        ]
    )


def _write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as stream:
        stream.write(text)


def _yaml_text(variables: Mapping[str, Any], what: str) -> str:
    import yaml

    if not isinstance(variables, Mapping):
        raise AnsibleError(f"The {what} are not a mapping: {type(variables).__name__}")
    try:
        return "---\n" + yaml.safe_dump(dict(variables), default_flow_style=False, sort_keys=True)
    except yaml.YAMLError as exc:
        raise AnsibleError(f"The {what} cannot be written as YAML: {exc}") from exc


def write_run_directory(
    directory: str | Path,
    hosts: Sequence[AnsibleHost],
    *,
    playbook_dir: str | Path | None = None,
    threads: int = DEFAULT_THREADS,
    extra_vars: Mapping[str, Any] | None = None,
    control_dir: str | Path | None = None,
) -> Path:
    """Write ``inventory``, ``host_vars/<name>.yml``, ``ansible.cfg`` (and ``extra_vars.yml``).

    The inventory has the ``[nodes]`` group (name and inventory variables) and the ``[targets]``
    group (SSH connection settings) of the original; ``ansible.cfg`` turns host key checking and
    retry files off and puts the playbook directory's ``roles/`` (then ours) on ``roles_path``.
    ``control_dir`` holds the SSH ControlPersist sockets (default ``<directory>/cp``).
    Returns the path of ``ansible.cfg``.
    """
    _check_hosts(hosts)
    if threads < 1:
        raise AnsibleError(f"Wrong number of threads {threads}: at least 1")
    directory = Path(directory)
    books = (Path(playbook_dir) if playbook_dir is not None else default_playbook_dir()).resolve()
    roles_path = [books / "roles"]
    if (default_playbook_dir() / "roles").resolve() != roles_path[0].resolve():
        roles_path.append(default_playbook_dir() / "roles")
    (directory / "host_vars").mkdir(mode=0o700, exist_ok=True)
    (directory / "tmp").mkdir(mode=0o700, exist_ok=True)
    control = Path(control_dir) if control_dir is not None else directory / "cp"
    control.mkdir(mode=0o700, exist_ok=True)
    _write(directory / "inventory", _inventory_text(hosts))
    for host in hosts:
        text = _yaml_text(host.host_vars, f"host '{host.name}' variables")
        _write(directory / "host_vars" / f"{host.name}.yml", text)
    if extra_vars:
        _write(directory / "extra_vars.yml", _yaml_text(extra_vars, "extra variables"))
    # ansible-runner looks at its cancel callback (Ctrl-C) every pexpect_timeout seconds
    # (default 5).  Only its env/settings file sets it: a `settings=` argument is dropped when
    # that file is missing (ansible-runner 2.4).
    (directory / "env").mkdir(mode=0o700, exist_ok=True)
    _write(directory / "env" / "settings", "---\npexpect_timeout: 1\n")
    config = directory / "ansible.cfg"
    _write(config, _config_text(directory, roles_path, threads, control))
    return config


def _resolve_playbook(books: Path, name: str) -> Path:
    if not name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise AnsibleError(f"Wrong playbook name '{name}' (a name inside {books})")
    path = books / name if name.endswith(_PLAYBOOK_SUFFIXES) else books / f"{name}.yml"
    if not path.is_file():
        raise AnsibleError(f"Playbook '{name}' not found in {books}")
    return path


# --------------------------------------------------------------------------- running


# ssh's notice about a new host key is noise in a failure message (we never keep the keys).
_SSH_NOISE_RE = re.compile(r"Warning: Permanently added \S+ \([^)]*\) to the list of known hosts\.")


def _one_line(text: object) -> str:
    return " ".join(_SSH_NOISE_RE.sub("", str(text)).split())


def _event_message(result: Mapping[str, Any]) -> str:
    """The message of a failed task result, on one line."""
    for key in ("msg", "reason", "stderr", "module_stderr", "stdout"):
        value = result.get(key)
        if value:
            return _one_line(value)
    if result.get("rc") is not None:
        return f"non-zero return code {result['rc']}"
    return "failed"


_STATUS_OF_EVENT = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_skipped": "skipping",
    "runner_on_unreachable": "unreachable",
}


class _EventCollector:
    """Turns ansible-runner events into progress lines, failure lines and per-host results."""

    def __init__(self, progress: Callable[[str], None] | None) -> None:
        self.progress = progress
        self.failures: dict[str, str] = {}  # host -> last failure line
        self.results: dict[str, dict[str, Any]] = {}  # host -> last ok result

    def __call__(self, event: Mapping[str, Any]) -> bool:
        status = _STATUS_OF_EVENT.get(str(event.get("event", "")))
        if status is None:
            return True
        data = event.get("event_data") or {}
        host = str(data.get("host") or data.get("remote_addr") or "?")
        task = _one_line(data.get("task") or data.get("task_action") or "?")
        result = data.get("res") or {}
        if status == "failed" and data.get("ignore_errors"):
            status = "ignored"
        elif status in ("failed", "unreachable"):
            self.failures[host] = f"{host} : TASK[{task}] - {_event_message(result)}"
        elif status == "ok":
            self.results[host] = dict(result)
            if result.get("changed"):
                status = "changed"
        if self.progress is not None:
            self.progress(f"{host} : TASK[{task}] - {status}")
        return True


def _runner_env(config: Path, become: bool) -> dict[str, str]:
    # ansible-runner starts `ansible-playbook` from PATH: the one installed beside our Python
    # first, so the ansible-core that check_version() saw is the one that runs.
    bin_dir = os.path.dirname(sys.executable)
    env = {
        "ANSIBLE_CONFIG": str(config),
        "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", os.defpath)]),
        "ANSIBLE_NOCOLOR": "1",
    }
    if not become:
        env["ANSIBLE_BECOME"] = "False"
    return env


def _run(
    directory: Path,
    *,
    become: bool = True,
    limit: Sequence[str] | None = None,
    threads: int,
    collector: _EventCollector,
    cmdline: Sequence[str] = (),
    **task: Any,
) -> Any:
    """One ansible-runner run (playbook or ad-hoc module) in ``directory``; the Runner object."""
    import shlex

    import ansible_runner
    from ansible_runner.exceptions import AnsibleRunnerException

    config = directory / "ansible.cfg"
    if not become:
        # inventory variables (ansible_become=true for non-root users) outrank the environment:
        # only an extra variable turns privilege escalation off for the SSH check and facts
        cmdline = [*cmdline, "-e", "ansible_become=false"]
    interrupted = threading.Event()
    try:
        with _sigint_to(interrupted):
            runner = ansible_runner.run(
                private_data_dir=str(directory),
                inventory=str(directory / "inventory"),
                envvars=_runner_env(config, become),
                forks=threads,
                limit=",".join(limit) if limit else None,
                cmdline=shlex.join(cmdline) if cmdline else None,
                event_handler=collector,
                # ansible-runner would take over SIGINT and SIGTERM for good: ours, for this run
                cancel_callback=lambda: _cancel_requested(interrupted),
                suppress_env_files=True,
                # runner points the jsonfile fact cache into each run's own artifacts: one cache for
                # all the runs of this directory instead (an absolute path survives its join)
                fact_cache=str(directory / "facts"),
                quiet=True,
                **task,
            )
    except AnsibleRunnerException as exc:  # e.g. ansible-playbook not found
        raise AnsibleError(f"Ansible could not be started: {exc}") from exc
    if interrupted.is_set():
        # runner has killed ansible's process group; the caller sees the Ctrl-C it expects
        raise KeyboardInterrupt
    return runner


def _child_pids(parents: set[int]) -> dict[int, str]:
    """Processes whose parent is in ``parents``, with their command lines (Linux /proc)."""
    found: dict[int, str] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="utf-8", errors="replace") as stat:
                # the command name in parentheses may hold spaces: the parent PID follows ')'
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            if parent in parents:
                with open(f"/proc/{entry.name}/cmdline", "rb") as cmdline:
                    found[int(entry.name)] = (
                        cmdline.read().replace(b"\0", b" ").decode(errors="replace")
                    )
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    return found


def _cancel_requested(interrupted: threading.Event) -> bool:
    """ansible-runner's cancel callback: on Ctrl-C, first kill Ansible's worker processes.

    Learned the hard way: ansible-core's workers run in sessions of their own, so the SIGKILL
    ansible-runner sends to ``ansible-playbook``'s process group leaves them running (orphans
    finishing their task).  Only our ``ansible*`` children's children are killed.
    """
    if not interrupted.is_set():
        return False
    if os.path.isdir("/proc"):
        ansible_pids = {pid for pid, cmd in _child_pids({os.getpid()}).items() if "ansible" in cmd}
        for worker in _child_pids(ansible_pids) if ansible_pids else {}:
            with contextlib.suppress(OSError):
                if os.getpgid(worker) == worker:
                    os.killpg(worker, signal.SIGKILL)  # with the ssh processes it started
                else:
                    os.kill(worker, signal.SIGKILL)
    return True


@contextlib.contextmanager
def _sigint_to(interrupted: threading.Event) -> Iterator[None]:
    """While running Ansible, Ctrl-C sets ``interrupted`` (ansible-runner then kills Ansible).

    Ansible runs on its own pseudo-terminal, in its own session: the terminal's Ctrl-C does not
    reach it, and a KeyboardInterrupt raised inside ansible-runner would leave it running.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda _number, _frame: interrupted.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _failed_hosts(runner: Any) -> list[str]:
    stats = runner.stats or {}
    names: set[str] = set()
    for key in ("failures", "dark"):
        names.update((stats.get(key) or {}).keys())
    return sorted(names)


def _stdout_tail(runner: Any, lines: int = 8) -> list[str]:
    try:
        text = runner.stdout.read()
    except (OSError, AttributeError, ValueError):
        return []
    return [line for line in str(text).splitlines() if line.strip()][-lines:]


def _check_ssh(
    directory: Path,
    hosts: Sequence[str],
    *,
    threads: int,
    retries: int,
    timeout: float,
    progress: Callable[[str], None] | None,
) -> None:
    """Run ``raw /bin/true`` on every host until all answer; retry only the silent ones."""
    pending = list(hosts)
    collector = _EventCollector(None)
    for attempt in range(1, max(retries, 1) + 1):
        collector = _EventCollector(None)
        runner = _run(
            directory,
            become=False,
            limit=pending,
            threads=threads,
            collector=collector,
            module="raw",
            module_args="/bin/true",
            host_pattern="all",
        )
        answered = {host for host, _result in collector.results.items()}
        if runner.rc == 0 and not _failed_hosts(runner):
            answered |= set(pending)
        pending = [host for host in pending if host not in answered]
        if not pending:
            return
        if progress is not None:
            progress(f"SSH not working yet on {', '.join(pending)} (attempt {attempt}/{retries})")
        if attempt < retries:
            time.sleep(timeout)
    summary = [
        collector.failures.get(host, f"{host} : TASK[ssh check] - no answer") for host in pending
    ]
    raise AnsibleError(
        f"SSH connection is failing on {len(pending)} host(s) after {max(retries, 1)} attempt(s)",
        summary,
        pending,
    )


# A Unix socket path holds at most 108 bytes; ssh adds ~30 to the ControlPath directory.
_MAX_CONTROL_DIR = 60


def _work_directory() -> Path:
    return Path(tempfile.mkdtemp(prefix="onetools-ansible-"))


def _control_directory(work: Path) -> Path | None:
    """A short directory for SSH control sockets when the work directory's path is too long.

    Learned the hard way: under a long $TMPDIR ssh fails with "unix_listener: path ... too
    long for Unix domain socket" and every host looks unreachable.
    """
    if len(str(work / "cp")) <= _MAX_CONTROL_DIR:
        return None
    return Path(tempfile.mkdtemp(prefix=f"otcp-{os.getpid()}-", dir="/tmp"))


def run_playbooks(
    hosts: Sequence[AnsibleHost],
    playbooks: Sequence[str],
    *,
    playbook_dir: str | Path | None = None,
    extra_vars: Mapping[str, Any] | None = None,
    threads: int = DEFAULT_THREADS,
    limit: Iterable[str] | None = None,
    progress: Callable[[str], None] | None = None,
    ping_retries: int = DEFAULT_PING_RETRIES,
    ping_timeout: float = DEFAULT_PING_TIMEOUT,
    check: bool = False,
) -> None:
    """Configure ``hosts`` with ``playbooks`` (names in ``playbook_dir``, ``.yml`` optional).

    No playbooks means ``DEFAULT_PLAYBOOKS`` (our ``default.yml``: node packages and SSH).

    First checks that SSH works on every host (``raw /bin/true``, ``ping_retries`` attempts
    ``ping_timeout`` seconds apart), then runs the playbooks in order, ``threads`` hosts in
    parallel.  ``limit`` restricts everything to those host names (``host add`` / ``host
    configure``; unlike the original, the first playbook is limited too).  ``progress`` gets one
    line per host and task, ``<host> : TASK[<task>] - ok|changed|failed|skipping|...``.
    ``check`` runs Ansible in check mode (nothing changed on the hosts).

    Raises ``AnsibleError`` whose ``summary`` has ``<host> : TASK[<task>] - <message>`` for each
    failed or unreachable host.  The working directory is removed in every case.
    """
    books = (Path(playbook_dir) if playbook_dir is not None else default_playbook_dir()).resolve()
    playbooks = list(playbooks) or list(DEFAULT_PLAYBOOKS)
    paths = [_resolve_playbook(books, name) for name in playbooks]
    names = [host.name for host in hosts]
    selected = names if limit is None else list(limit)
    unknown = sorted(set(selected) - set(names))
    if unknown:
        raise AnsibleError(f"Unknown host(s) to limit the run to: {', '.join(unknown)}")
    if not selected:
        raise AnsibleError("No hosts to configure")
    directory = _work_directory()
    control = _control_directory(directory)
    try:
        write_run_directory(
            directory,
            hosts,
            playbook_dir=books,
            threads=threads,
            extra_vars=extra_vars,
            control_dir=control,
        )
        _check_ssh(
            directory,
            selected,
            threads=threads,
            retries=ping_retries,
            timeout=ping_timeout,
            progress=progress,
        )
        cmdline: list[str] = []
        if extra_vars:
            cmdline += ["-e", f"@{directory / 'extra_vars.yml'}"]
        if check:
            cmdline.append("--check")
        for name, path in zip(playbooks, paths, strict=True):
            _run_playbook(directory, name, path, selected, threads, cmdline, progress)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        if control is not None:
            shutil.rmtree(control, ignore_errors=True)


def _run_playbook(
    directory: Path,
    name: str,
    path: Path,
    selected: Sequence[str],
    threads: int,
    cmdline: Sequence[str],
    progress: Callable[[str], None] | None,
) -> None:
    collector = _EventCollector(progress)
    runner = _run(
        directory,
        limit=selected,
        threads=threads,
        collector=collector,
        cmdline=cmdline,
        playbook=str(path),
    )
    failed = _failed_hosts(runner)
    if runner.rc == 0 and not failed:
        return
    # A failure rescued by a block leaves an event but not a failed host: trust the stats.
    summary = [collector.failures.get(host, f"{host} : TASK[?] - failed") for host in failed]
    if not summary:  # no host failed: the playbook itself is wrong (syntax, missing role...)
        summary = _stdout_tail(runner)
    raise AnsibleError(
        f"Failed to configure hosts: playbook '{name}' failed (status {runner.status}, "
        f"rc {runner.rc})",
        summary,
        failed,
    )


def gather_facts(
    hosts: Sequence[AnsibleHost],
    *,
    threads: int = DEFAULT_THREADS,
    subset: str = "network,hardware",
) -> dict[str, dict[str, Any]]:
    """Facts (``ansible_facts`` of the ``setup`` module) per host name; unreachable → error."""
    directory = _work_directory()
    control = _control_directory(directory)
    try:
        write_run_directory(directory, hosts, threads=threads, control_dir=control)
        collector = _EventCollector(None)
        runner = _run(
            directory,
            become=False,
            threads=threads,
            collector=collector,
            module="setup",
            module_args=f"gather_subset={subset}",
            host_pattern="all",
        )
        failed = _failed_hosts(runner)
        missing = [host.name for host in hosts if host.name not in collector.results]
        if failed or missing:
            bad = sorted(set(failed) | set(missing))
            summary = [collector.failures.get(host, f"Missing facts for {host}") for host in bad]
            raise AnsibleError("Failed to gather facts", summary, bad)
        return {
            host: dict(result.get("ansible_facts") or {})
            for host, result in collector.results.items()
        }
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        if control is not None:
            shutil.rmtree(control, ignore_errors=True)
