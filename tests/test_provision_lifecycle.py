"""The provision lifecycle on both backends (embedded store, XML-RPC through pyone): on-premise
provisions (no Terraform) without Ansible: create records every object as it goes, delete
leaves nothing, fail modes (retry counts, cleanup, skip, the interactive menu), resume after a
failure, the document lock (refusal, take-over of a dead holder's lock), per-object delete."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from onetools.one import api
from onetools.one.api import OneApi
from onetools.one.errors import LockedError
from onetools.provision import lifecycle
from onetools.provision.failmode import FailPolicy, StepFailed
from onetools.provision.template import load, resolve

ONPREM = """\
name: 'edge'
ansible: {ver_min: '2.15', ver_max: '2.19', playbook: [onprem]}
defaults:
  provision: {provider_name: 'onprem'}
inputs:
  - {name: hosts_names, type: array, default: '10.9.0.1;10.9.0.2'}
cluster:
  name: "${provision}"
  reserved_cpu: '0'
  datastores: [1, 2]
hosts:
  - im_mad: kvm
    vm_mad: kvm
    provision: {hostname: "${input.hosts_names}"}
datastores:
  - {name: "${provision}-image", ds_mad: fs, tm_mad: ssh, meta: {mode: '640'}}
  - {name: "${provision}-system", type: system_ds, tm_mad: ssh,
     replica_host: "${updates.first_host}"}
networks:
  - name: "${provision}-public"
    vn_mad: bridge
    bridge: br0
    ar: [{type: IP4, ip: 10.9.1.1, size: 4}]
images:
  - {name: "${provision}-img", ds_id: "${datastore.0.id}", type: datablock, size: 16}
templates:
  - name: "${provision}-vm"
    cpu: 1
    memory: 128
    disk: {image_id: "${image.0.id}"}
    nic: {network_id: "${network.0.id}"}
vntemplates:
  - {name: "${provision}-private", vn_mad: vxlan, phydev: eth1, cluster_ids: "${cluster.0.id}"}
flowtemplates:
  - {name: "${provision}-flow", deployment: straight, roles: []}
"""

#: A second image the store refuses (a datablock needs a SIZE): a real failure after the hosts.
WITH_BAD_IMAGE = ONPREM.replace(
    "\ntemplates:\n", '\n  - {name: bad, ds_id: "${datastore.0.id}", type: datablock}\ntemplates:\n'
)
#: A first datastore the store refuses (no such TM_MAD): a real failure before the hosts.
WITH_BAD_DATASTORE = ONPREM.replace(
    "datastores:\n", "datastores:\n  - {name: bad, ds_mad: fs, tm_mad: nosuch}\n", 1
)


class ScriptedUi:
    """The ``Ui`` of a test: keeps every line, answers the menu from a script."""

    def __init__(self, answers: Sequence[str] = ()) -> None:
        self.lines: list[tuple[str, str]] = []
        self.answers = list(answers)
        self.menus: list[tuple[str, list[str], str | None]] = []

    def info(self, message: str) -> None:
        self.lines.append(("INFO", message))

    def warning(self, message: str) -> None:
        self.lines.append(("WARN", message))

    def error(self, message: str) -> None:
        self.lines.append(("ERROR", message))

    def choose(self, question: str, choices: Sequence[str], default: str | None) -> str:
        self.menus.append((question, list(choices), default))
        return self.answers.pop(0)

    def errors(self, start: str) -> list[str]:
        return [text for level, text in self.lines if level == "ERROR" and text.startswith(start)]


def plan_of(tmp_path: Path, text: str = ONPREM) -> Any:
    path = tmp_path / "provision.yml"
    path.write_text(text)
    return resolve(load(path))


def batch(*flags: str, retries: int | None = None) -> FailPolicy:
    return FailPolicy.from_options(batch=True, flags=flags, max_retries=retries)


def provision_leftovers(one: OneApi) -> dict[str, list[str]]:
    """Every object that is not part of a fresh store."""
    found = {
        "clusters": [c.name for c in one.pool(api.CLUSTER) if c.id != 0],
        "hosts": [h.name for h in one.pool(api.HOST)],
        "datastores": [d.name for d in one.pool(api.DATASTORE) if d.id > 2],
        "networks": [n.name for n in one.pool(api.VNET)],
        "images": [i.name for i in one.pool(api.IMAGE)],
        "templates": [t.name for t in one.pool(api.TEMPLATE)],
        "vntemplates": [t.name for t in one.pool(api.VNTEMPLATE)],
        "flows": [d.name for d in one.pool(api.DOCUMENT, doc_type=api.DOC_SERVICE_TEMPLATE)],
        "provisions": [d.name for d in one.pool(api.DOCUMENT, doc_type=api.DOC_PROVISION)],
    }
    return {key: names for key, names in found.items() if names}


def create(one: OneApi, plan: Any, ui: ScriptedUi, policy: FailPolicy | None = None) -> Any:
    return lifecycle.create(
        one, plan, lifecycle.CreateOptions(skip_config=True), ui, policy or batch()
    )


def test_create_records_every_object_and_delete_leaves_nothing(
    one_api: OneApi, tmp_path: Path
) -> None:
    ui = ScriptedUi()
    allocated: list[int] = []
    provision = lifecycle.create(
        one_api,
        plan_of(tmp_path),
        lifecycle.CreateOptions(skip_config=True),
        ui,
        batch(),
        on_allocated=allocated.append,
    )
    assert allocated == [provision.id]
    stored = lifecycle.get_provision(one_api, provision.id)
    assert stored.state_name == "RUNNING" and stored.provider == "onprem"
    assert stored.meta["steps"] == list(lifecycle.STEPS)
    assert "pending" not in stored.meta
    record = stored.body["provision"]
    hosts = record["infrastructure"]["hosts"]
    assert [h["name"] for h in hosts] == ["10.9.0.1", "10.9.0.2"]  # renamed to hostnames
    for group, kind, key in (
        ("infrastructure", api.CLUSTER, "clusters"),
        ("infrastructure", api.DATASTORE, "datastores"),
        ("infrastructure", api.VNET, "networks"),
        ("infrastructure", api.HOST, "hosts"),
        ("resource", api.IMAGE, "images"),
        ("resource", api.TEMPLATE, "templates"),
        ("resource", api.VNTEMPLATE, "vntemplates"),
    ):
        entries = record[group][key]
        assert entries, key
        for entry in entries:
            obj = one_api.info(kind, entry["id"])
            assert obj.name == entry["name"]
            assert obj.text("TEMPLATE/PROVISION/ID") == str(provision.id), key
    (flow,) = record["resource"]["flowtemplates"]
    assert lifecycle.owner_of(one_api, "flowtemplate", flow["id"]) == provision.id

    # host template §4.3, hosts enabled at the end (also with --skip-config: §8.1 #6)
    host = one_api.info(api.HOST, hosts[0]["id"])
    assert host.text("TEMPLATE/IM_MAD") == "kvm"
    assert host.text("TEMPLATE/PROVISION/HOSTNAME") == "10.9.0.1"
    assert host.text("TEMPLATE/PROVISION/INDEX") == "0"
    assert host.text("TEMPLATE/PROVISION_CONNECTION/REMOTE_USER") == "root"
    assert host.has("TEMPLATE/PROVISION_CONFIGURATION_BASE64")
    assert host.int("STATE") != 8
    # references and late updates resolved; existing datastores attached to the cluster
    image_id = record["resource"]["images"][0]["id"]
    vm = one_api.info(api.TEMPLATE, record["resource"]["templates"][0]["id"])
    assert vm.text("TEMPLATE/DISK/IMAGE_ID") == str(image_id)
    system = one_api.info(api.DATASTORE, record["infrastructure"]["datastores"][1]["id"])
    assert system.text("TEMPLATE/REPLICA_HOST") == "10.9.0.1"
    cluster = one_api.info(api.CLUSTER, record["infrastructure"]["clusters"][0]["id"])
    assert {1, 2} <= set(cluster.ids("DATASTORES"))
    image_ds = one_api.info(api.DATASTORE, record["infrastructure"]["datastores"][0]["id"])
    assert image_ds.permissions is not None and image_ds.permissions.octet() == "640"
    assert stored.body["ar_template"].startswith("AR = [")

    lifecycle.delete(one_api, provision.id, lifecycle.DeleteOptions(), ui, batch())
    assert provision_leftovers(one_api) == {}
    # the pre-existing datastores were detached, not deleted
    assert [d.id for d in one_api.pool(api.DATASTORE)] == [0, 1, 2]


def test_retry_then_cleanup_deletes_everything(one_api: OneApi, tmp_path: Path) -> None:
    ui = ScriptedUi()
    with pytest.raises(StepFailed, match="cleaned up"):
        create(one_api, plan_of(tmp_path, WITH_BAD_IMAGE), ui, batch("retry", "cleanup", retries=2))
    # 1 attempt + 2 counted retries + the popped retry once more (§1.4), then cleanup
    assert len(ui.errors("Failed to create image bad")) == 4
    assert provision_leftovers(one_api) == {}


def test_cleanup_before_the_hosts_exist_is_refused(one_api: OneApi, tmp_path: Path) -> None:
    ui = ScriptedUi()
    plan = plan_of(tmp_path, WITH_BAD_DATASTORE)
    with pytest.raises(StepFailed, match="cleanup unsupported"):
        create(one_api, plan, ui, batch("cleanup"))
    (provision,) = lifecycle.list_provisions(one_api)
    assert provision.state_name == "ERROR"
    assert [e["name"] for e in provision.entries("infrastructure", "clusters")] == ["edge"]
    lifecycle.delete(one_api, provision.id, lifecycle.DeleteOptions(), ui, batch())
    assert provision_leftovers(one_api) == {}


def test_skip_leaves_the_object_out(one_api: OneApi, tmp_path: Path) -> None:
    ui = ScriptedUi()
    provision = create(one_api, plan_of(tmp_path, WITH_BAD_IMAGE), ui, batch("skip"))
    assert provision.state_name == "RUNNING"
    assert [i["name"] for i in provision.entries("resource", "images")] == ["edge-img"]
    assert provision.meta["done"]["images/1"] == "skipped"
    assert ui.errors("Failed to create image bad") == ["Failed to create image bad"]


def test_meta_owner_by_name(one_api: OneApi, tmp_path: Path) -> None:
    """``meta`` uname/gname are looked up by name (§2.10); an unknown one fails that object."""
    group = one_api.allocate_group("edge-admins")
    text = ONPREM.replace(
        "type: datablock, size: 16}",
        "type: datablock, size: 16, meta: {uname: oneadmin, gname: edge-admins}}",
    ).replace("    cpu: 1\n", "    cpu: 1\n    meta: {uname: nobody}\n")
    ui = ScriptedUi()
    provision = create(one_api, plan_of(tmp_path, text), ui, batch("skip"))
    (image,) = provision.ids("resource", "images")
    assert one_api.info(api.IMAGE, image).int("GID") == group
    assert any("User nobody not found" in line for _, line in ui.lines), ui.lines
    # allocated before its owner failed: still recorded, so delete removes it
    assert len(provision.ids("resource", "templates")) == 1
    lifecycle.delete(one_api, provision.id, lifecycle.DeleteOptions(), ui, batch())
    assert provision_leftovers(one_api) == {}


def test_quit_then_resume_creates_nothing_twice(one_api: OneApi, tmp_path: Path) -> None:
    ui = ScriptedUi()
    with pytest.raises(StepFailed, match="Failed to create image bad"):
        create(one_api, plan_of(tmp_path, WITH_BAD_IMAGE), ui)
    (provision,) = lifecycle.list_provisions(one_api)
    assert provision.state_name == "ERROR"
    before = provision_leftovers(one_api)
    assert before["images"] == ["edge-img"] and "templates" not in before

    resumed = lifecycle.resume(one_api, provision.id, ui, batch("skip"))
    assert resumed.state_name == "RUNNING"
    after = provision_leftovers(one_api)
    for key in ("clusters", "hosts", "datastores", "networks", "images"):
        assert after[key] == before[key], key
    assert after["templates"] == ["edge-vm"]
    with pytest.raises(lifecycle.ProvisionError, match="already RUNNING"):
        lifecycle.resume(one_api, provision.id, ui, batch())
    lifecycle.delete(one_api, provision.id, lifecycle.DeleteOptions(), ui, batch())
    assert provision_leftovers(one_api) == {}


def test_interactive_menu_offers_cleanup_once_hosts_exist(one_api: OneApi, tmp_path: Path) -> None:
    ui = ScriptedUi(["retry", "skip"])
    policy = FailPolicy.from_options(batch=False)
    provision = create(one_api, plan_of(tmp_path, WITH_BAD_IMAGE), ui, policy)
    assert provision.state_name == "RUNNING"
    assert [menu[1] for menu in ui.menus] == [["quit", "retry", "skip", "cleanup"]] * 2
    assert ui.menus[0][2] == "quit"  # the default: the head of the mode list


def test_a_held_lock_refuses_other_commands(one_api: OneApi, tmp_path: Path) -> None:
    ui = ScriptedUi()
    provision = create(one_api, plan_of(tmp_path), ui)
    with lifecycle.locked(one_api, provision.id):
        with pytest.raises(LockedError, match="being changed by another command"):
            lifecycle.delete(one_api, provision.id, lifecycle.DeleteOptions(), ui, batch())
        with pytest.raises(LockedError):
            lifecycle.delete_object(one_api, "image", provision.ids("resource", "images")[0], ui)
    # released afterwards
    lifecycle.delete(one_api, provision.id, lifecycle.DeleteOptions(), ui, batch())
    assert provision_leftovers(one_api) == {}


def test_the_lock_of_a_dead_run_is_taken_over(one_api: OneApi, tmp_path: Path) -> None:
    ui = ScriptedUi()
    provision = create(one_api, plan_of(tmp_path), ui)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    one_api.lock(api.DOCUMENT, provision.id, api.LOCK_ADMIN)
    lock_time = one_api.info(api.DOCUMENT, provision.id).lock["TIME"]  # type: ignore[index]
    stored = lifecycle.get_provision(one_api, provision.id)
    stored.meta["lock"] = {**lifecycle._holder(), "pid": dead.pid, "time": lock_time}
    stored.save()
    lifecycle.delete(one_api, provision.id, lifecycle.DeleteOptions(), ui, batch())
    assert provision_leftovers(one_api) == {}


def test_delete_refuses_foreign_images_unless_cleanup(one_api: OneApi, tmp_path: Path) -> None:
    ui = ScriptedUi()
    provision = create(one_api, plan_of(tmp_path), ui)
    datastore = provision.ids("infrastructure", "datastores")[0]
    one_api.allocate_image('NAME = "foreign"\nTYPE = "DATABLOCK"\nSIZE = "8"', datastore)
    with pytest.raises(lifecycle.ProvisionError, match="Provision with images can't be deleted"):
        lifecycle.delete(one_api, provision.id, lifecycle.DeleteOptions(), ui, batch())
    assert lifecycle.get_provision(one_api, provision.id).state_name == "RUNNING"
    lifecycle.delete(one_api, provision.id, lifecycle.DeleteOptions(cleanup=True), ui, batch())
    assert provision_leftovers(one_api) == {}


def test_per_object_delete_removes_only_that_object(one_api: OneApi, tmp_path: Path) -> None:
    ui = ScriptedUi()
    provision = create(one_api, plan_of(tmp_path), ui)
    first, second = provision.ids("infrastructure", "hosts")
    assert lifecycle.delete_object(one_api, "host", first, ui) == provision.id
    stored = lifecycle.get_provision(one_api, provision.id)
    assert stored.ids("infrastructure", "hosts") == [second]
    assert [h.id for h in one_api.pool(api.HOST)] == [second]
    vntemplate = stored.ids("resource", "vntemplates")[0]
    lifecycle.delete_object(one_api, "vntemplate", vntemplate, ui)
    assert lifecycle.get_provision(one_api, provision.id).ids("resource", "vntemplates") == []
    names = {obj.name for obj in lifecycle.provision_objects(one_api, api.HOST)}
    assert names == {"10.9.0.2"}
    lifecycle.delete(one_api, provision.id, lifecycle.DeleteOptions(), ui, batch())
    assert provision_leftovers(one_api) == {}


def test_delete_passes_over_recorded_objects_already_gone(one_api: OneApi, tmp_path: Path) -> None:
    """Delete saves the record once per kind, so a delete killed inside a kind leaves records
    of objects it had already removed: the next delete finds them gone and finishes."""
    ui = ScriptedUi()
    provision = create(one_api, plan_of(tmp_path), ui)
    first, _ = provision.ids("infrastructure", "hosts")
    one_api.host_status(first, lifecycle.HOST_OFFLINE)
    one_api.delete(api.HOST, first)
    one_api.delete(api.TEMPLATE, provision.ids("resource", "templates")[0])
    lifecycle.delete(one_api, provision.id, lifecycle.DeleteOptions(), ui, batch())
    assert provision_leftovers(one_api) == {}
    assert not ui.errors("")


def test_objects_outside_provisions_are_refused(one_api: OneApi) -> None:
    oid = one_api.allocate_template('NAME = "mine"')
    with pytest.raises(lifecycle.ProvisionError, match="does not belong to a provision"):
        lifecycle.delete_object(one_api, "template", oid, ScriptedUi())
    assert one_api.info(api.TEMPLATE, oid).name == "mine"


def test_plan_round_trips_through_the_document(tmp_path: Path) -> None:
    plan = plan_of(tmp_path)
    again = lifecycle.plan_from_dict(lifecycle.plan_to_dict(plan))
    assert lifecycle.plan_to_dict(again) == lifecycle.plan_to_dict(plan)
    assert again.hosts[1].hostname == "10.9.0.2" and again.hosts[1].index == 1


def test_provider_lookup(one_api: OneApi) -> None:
    assert lifecycle.find_provider(one_api, "onprem").driver == "onprem"
    with pytest.raises(lifecycle.ProvisionError, match="No provider found: 'nowhere'"):
        lifecycle.find_provider(one_api, "nowhere")
    with pytest.raises(lifecycle.ProvisionError, match="Provider not found"):
        lifecycle.find_provider(one_api, "42")


def test_template_text_quotes_and_vectors() -> None:
    text = lifecycle.template_text(
        {"name": 'a "b"', "disk": {"image_id": 3}, "ar": [{"size": 1}, {"size": 2}], "x": None}
    )
    assert text == textwrap.dedent(
        """\
        NAME = "a \\"b\\""
        DISK = [ IMAGE_ID = "3" ]
        AR = [ SIZE = "1" ]
        AR = [ SIZE = "2" ]
        """
    )


class Killed(BaseException):
    """The process dying at that point (not an error any handler catches)."""


class CrashAfter:
    """The real store, dying right after the ``count``-th call of ``method`` succeeded: the
    object exists but the provision has not recorded it yet."""

    def __init__(self, one: OneApi, method: str, count: int = 1) -> None:
        self._one = one
        self._method = method
        self._left = count

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._one, name)
        if name != self._method:
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attribute(*args, **kwargs)
            self._left -= 1
            if self._left == 0:
                raise Killed(name)
            return result

        return call


@pytest.mark.parametrize(
    "method", ["allocate_datastore", "allocate_host", "allocate_image", "allocate_document"]
)
def test_an_object_allocated_but_not_recorded_is_adopted(
    one_api: OneApi, tmp_path: Path, method: str
) -> None:
    ui = ScriptedUi()
    count = 2 if method == "allocate_document" else 1  # the provision itself is the first
    with pytest.raises(Killed):
        create(CrashAfter(one_api, method, count), plan_of(tmp_path), ui)  # type: ignore[arg-type]
    (provision,) = lifecycle.list_provisions(one_api)
    pending = provision.body["onetools"]["pending"]
    assert "id" not in pending  # the crash came before the record
    resumed = lifecycle.resume(one_api, provision.id, ui, batch())
    assert resumed.state_name == "RUNNING"
    counts = {key: len(names) for key, names in provision_leftovers(one_api).items()}
    assert counts == {
        "clusters": 1,
        "hosts": 2,
        "datastores": 2,
        "networks": 1,
        "images": 1,
        "templates": 1,
        "vntemplates": 1,
        "flows": 1,
        "provisions": 1,
    }
    for host in one_api.pool(api.HOST):
        assert host.text("TEMPLATE/PROVISION/ID") == str(provision.id)  # finished on resume
    lifecycle.delete(one_api, provision.id, lifecycle.DeleteOptions(), ui, batch())
    assert provision_leftovers(one_api) == {}


def test_delete_after_a_crash_removes_the_unrecorded_object(
    one_api: OneApi, tmp_path: Path
) -> None:
    ui = ScriptedUi()
    with pytest.raises(Killed):
        create(CrashAfter(one_api, "allocate_host"), plan_of(tmp_path), ui)  # type: ignore[arg-type]
    (provision,) = lifecycle.list_provisions(one_api)
    assert provision_leftovers(one_api)["hosts"]  # allocated, not recorded
    lifecycle.delete(one_api, provision.id, lifecycle.DeleteOptions(), ui, batch())
    assert provision_leftovers(one_api) == {}


# -- with real Terraform (the terraform_data test driver) and real Ansible over SSH ------------
TESTS = Path(__file__).resolve().parent
TEST_TEMPLATES = TESTS / "data" / "terraform"
TEST_PLAYBOOKS = TESTS / "data" / "ansible"
TOKEN = "lifecycle-test-token-1"


def fake_cloud_provider(one: OneApi) -> int:
    """A provider document of the test driver (the cloud is faked by ``terraform_data``;
    ``oneprovider create`` only accepts the real drivers, so the document is written here)."""
    from onetools.provision.provider import document_template

    body = {"provider": "test_driver", "connection": {"token": TOKEN}, "name": "fake-cloud"}
    text = document_template("fake-cloud", body, {"provider": "test_driver"})
    return one.allocate_document(text, api.DOC_PROVIDER)


def ssh_plan(
    tmp_path: Path, hosts: Sequence[Any], key: Any, extra: str = "", provision: str = ""
) -> Any:
    """A plan of the given real SSH hosts; ``extra`` is appended to the YAML, ``provision``
    to each host's ``provision`` map."""
    groups = []
    for host in hosts:
        configuration = "".join(f"\n        {k}: '{v}'" for k, v in host.host_vars().items())
        groups.append(
            f"""\
  - im_mad: kvm
    vm_mad: kvm
    provision: {{hostname: '{host.address}'{provision}}}
    connection:
      remote_user: '{host.user}'
      remote_port: {host.port}
      private_key: '{key.private_key}'
      public_key: '{key.public_key}'
    configuration:{configuration}
"""
        )
    text = (
        "name: 'cloudy'\n"
        "ansible: {ver_min: '2.15', ver_max: '2.19', playbook: [write_files]}\n"
        "defaults: {provision: {provider_name: 'fake-cloud'}}\n"
        "cluster: {name: cloudy}\n"
        "hosts:\n" + "".join(groups) + extra
    )
    return plan_of(tmp_path, text)


def test_create_with_terraform_and_ansible_then_host_delete_and_delete(
    one_api: OneApi, tmp_path: Path, ssh_host_factory: Any, ssh_key_pair: Any
) -> None:
    """The cloud is faked (terraform_data resources); Terraform and Ansible run for real, the
    playbook on real SSH hosts."""
    import json as json_module

    from onetools.provision import terraform

    hosts = ssh_host_factory(2)
    fake_cloud_provider(one_api)
    options = lifecycle.CreateOptions(
        playbook_dir=str(TEST_PLAYBOOKS),
        template_dir=str(TEST_TEMPLATES),
        workdir_root=str(tmp_path / "runs"),
        ping_retries=3,
        ping_timeout=0.5,
    )
    ui = ScriptedUi()
    provision = lifecycle.create(one_api, ssh_plan(tmp_path, hosts, ssh_key_pair), options, ui)
    assert provision.state_name == "RUNNING", ui.lines
    assert provision.provider == "fake-cloud"
    recorded = provision.entries("infrastructure", "hosts")
    assert [entry["name"] for entry in recorded] == [host.address for host in hosts]
    for entry, host in zip(recorded, hosts, strict=True):
        one_host = one_api.info(api.HOST, entry["id"])
        assert one_host.name == host.address  # renamed to the IP Terraform gave
        assert one_host.text("TEMPLATE/PROVISION/DEPLOY_ID")  # the terraform_data id
        assert (host.root_dir / "configured").read_text().startswith(f"{host.address} hello")
    conf = terraform.decode(provision.body["tf"]["conf"])
    assert TOKEN not in conf  # the credential went through the environment
    state = json_module.loads(terraform.decode(provision.body["tf"]["state"]))
    devices = sorted(resource["name"] for resource in state["resources"])
    assert devices == sorted(f"device_{entry['id']}" for entry in recorded)
    assert any(line == ("INFO", f"Provision {provision.id}: configuration") for line in ui.lines)

    with pytest.raises(lifecycle.ProvisionError, match="Can't configure provision in RUNNING"):
        lifecycle.configure(one_api, provision.id, ui, batch(), playbook_dir=str(TEST_PLAYBOOKS))
    (hosts[0].root_dir / "configured").unlink()
    again = lifecycle.configure(
        one_api, provision.id, ui, batch(), force=True, playbook_dir=str(TEST_PLAYBOOKS)
    )
    assert again.state_name == "RUNNING"
    assert (hosts[0].root_dir / "configured").is_file()

    # host delete destroys that host's resource only (the 6.0 bug destroyed every host)
    first, second = (entry["id"] for entry in recorded)
    lifecycle.delete_object(
        one_api,
        "host",
        first,
        ui,
        template_dir=str(TEST_TEMPLATES),
        workdir_root=str(tmp_path / "runs"),
    )
    stored = lifecycle.get_provision(one_api, provision.id)
    state = json_module.loads(terraform.decode(stored.body["tf"]["state"]))
    assert [resource["name"] for resource in state["resources"]] == [f"device_{second}"]
    assert stored.ids("infrastructure", "hosts") == [second]

    lifecycle.delete(
        one_api,
        provision.id,
        lifecycle.DeleteOptions(workdir_root=str(tmp_path / "runs")),
        ui,
        batch(),
    )
    assert provision_leftovers(one_api) == {}
    assert [p for p in (tmp_path / "runs").rglob("*") if p.is_file()] == []


CHILD_CREATE = """\
import sys
from onetools.one.local import LocalOne
from onetools.provision import lifecycle
from onetools.provision.failmode import ConsoleUi, FailPolicy
from onetools.provision.template import load, resolve

home, template, templates, runs = sys.argv[1:5]
one = LocalOne(home)
options = lifecycle.CreateOptions(skip_config=True, template_dir=templates, workdir_root=runs)
lifecycle.create(
    one, resolve(load(template)), options, ConsoleUi(verbose=True), FailPolicy(batch=True),
    on_allocated=lambda oid: print(oid, flush=True),
)
"""


def test_sigkill_during_terraform_apply_then_resume_and_delete(tmp_path: Path) -> None:
    """Killed while Terraform creates the (faked) servers: the state Terraform wrote when it
    was interrupted is recovered, resume deploys each host once, delete destroys them all."""
    import json as json_module
    import time

    from onetools.one.local import LocalOne
    from onetools.provision import terraform

    home = tmp_path / "store"
    one = LocalOne(home)
    fake_cloud_provider(one)
    template = tmp_path / "slow.yml"
    template.write_text(
        "name: slow\n"
        "defaults: {provision: {provider_name: 'fake-cloud'}}\n"
        "cluster: {name: slow}\n"
        "hosts:\n"
        "  - {im_mad: kvm, vm_mad: kvm,\n"
        "     provision: {hostname: ['127.0.0.31', '127.0.0.32', '127.0.0.33'], sleep: 4}}\n"
    )
    runs = tmp_path / "runs"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD_CREATE,
            str(home),
            str(template),
            str(TEST_TEMPLATES),
            str(runs),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stderr is not None
    oid = int(child.stdout.readline())
    seen = []
    for line in child.stderr:  # the Terraform lines (-v): wait for the servers' creation
        seen.append(line)
        if "Creating..." in line or "Still creating" in line:
            break
    assert any("Creating..." in line for line in seen), seen
    time.sleep(1.0)  # the servers are being created (each takes 4 s)
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=60)

    ui = ScriptedUi()
    killed = lifecycle.get_provision(one, oid)
    assert "infrastructure" not in killed.meta["steps"]
    assert "state" not in killed.body["tf"]  # only what Terraform left in its run directory
    # the interrupted Terraform finishes writing its state after the kill (lock file meanwhile)
    while list(runs.glob("*/onetools-tf-*/.terraform.tfstate.lock.info")):
        time.sleep(0.1)
    (left,) = runs.glob("*/onetools-tf-*/terraform.tfstate")
    assert [r["name"] for r in json_module.loads(left.read_text())["resources"]]
    resumed = lifecycle.resume(
        one,
        oid,
        ui,
        batch(),
        lifecycle.CreateOptions(template_dir=str(TEST_TEMPLATES), workdir_root=str(runs)),
    )
    assert resumed.state_name == "RUNNING", ui.lines
    state = json_module.loads(terraform.decode(resumed.body["tf"]["state"]))
    hosts = resumed.ids("infrastructure", "hosts")
    assert sorted(r["name"] for r in state["resources"]) == sorted(f"device_{h}" for h in hosts)
    assert all(len(r["instances"]) == 1 for r in state["resources"])
    assert sorted(h.name for h in one.pool(api.HOST)) == ["127.0.0.31", "127.0.0.32", "127.0.0.33"]

    lifecycle.delete(one, oid, lifecycle.DeleteOptions(workdir_root=str(runs)), ui, batch())
    assert provision_leftovers(one) == {}
    one.close()


# -- the fail-mode engine ---------------------------------------------------------------------
def test_mode_list_order_and_defaults() -> None:
    from onetools.errors import UsageError

    policy = FailPolicy.from_options(True, "skip,retry", ["cleanup", "quit"], 5, 2)
    assert (policy.modes, policy.max_retries, policy.sleep) == (
        ["skip", "retry", "cleanup", "quit"],
        5,
        2,
    )
    assert FailPolicy.from_options().modes == ["quit"]
    assert FailPolicy.from_options().max_retries == 3
    with pytest.raises(UsageError, match="Wrong fail mode `later'"):
        FailPolicy.from_options(fail_modes="retry,later")


def test_command_line_keeps_the_order_of_the_fail_options() -> None:
    from onetools.cli.oneprovision import _policy, build_parser

    args = build_parser("create").parse_args(
        ["create", "f.yml", "--fail-cleanup", "--fail-retry", "2", "--fail-modes", "skip", "-b"]
    )
    assert args.fail_order == ["cleanup", "retry"]
    policy = _policy(args)
    assert (policy.batch, policy.modes, policy.max_retries) == (
        True,
        ["skip", "cleanup", "retry"],
        2,
    )


def test_modes_are_shared_by_the_steps_of_a_run() -> None:
    from onetools.errors import OnetoolsError
    from onetools.provision.failmode import SKIPPED, FailureHandler

    sleeps: list[float] = []
    marked: list[bool] = []
    handler = FailureHandler(
        batch("retry", "skip", retries=1),
        ScriptedUi(),
        lambda: marked.append(True),
        sleep=sleeps.append,
    )
    handler.policy.sleep = 0.5
    attempts = {"first": 0, "second": 0}

    def failing(name: str) -> Any:
        def action() -> None:
            attempts[name] += 1
            raise OnetoolsError(f"{name} broke")

        return action

    assert handler.run("first", failing("first")) is SKIPPED
    assert attempts["first"] == 3  # 1 + 1 counted retry + the popped retry, then skip
    assert handler.run("second", failing("second")) is SKIPPED
    assert attempts["second"] == 1  # the list is now [skip]
    assert len(marked) == 4 and sleeps == [0.5, 0.5, 0.5]


def test_console_menu() -> None:
    import io

    from onetools.provision.failmode import ConsoleUi

    stream = io.StringIO()
    ui = ConsoleUi(stream=stream, answers=io.StringIO("2\n\nbogus\ncleanup\n"))
    choices = ["quit", "retry", "skip", "cleanup"]
    assert ui.choose("Failed: what to do?", choices, "quit") == "retry"
    assert ui.choose("Failed: what to do?", choices, "skip") == "skip"  # empty: the default
    assert ui.choose("Failed: what to do?", choices, "quit") == "cleanup"  # asked again
    assert ui.choose("Failed: what to do?", choices, "retry") == "retry"  # end of input
    assert "  3. skip (default)" in stream.getvalue()
    ui.error("one\ntwo")
    assert stream.getvalue().endswith("ERROR : one\nERROR : two\n")


def test_host_configure_and_host_ssh_on_a_real_ssh_host(
    tmp_path: Path, ssh_host_factory: Any, ssh_key_pair: Any
) -> None:
    import os

    from helpers import run_tool
    from onetools.one.local import LocalOne

    (host,) = ssh_host_factory(1)
    home = tmp_path / "store"
    one = LocalOne(home)
    plan = ssh_plan(tmp_path, [host], ssh_key_pair)
    plan.provider_name = "onprem"
    ui = ScriptedUi()
    provision = lifecycle.create(one, plan, lifecycle.CreateOptions(skip_config=True), ui, batch())
    (oid,) = provision.ids("infrastructure", "hosts")
    assert one.info(api.HOST, oid).name == host.address
    assert not (host.root_dir / "configured").exists()

    assert lifecycle.configure_host(one, oid, ui, batch(), playbook_dir=str(TEST_PLAYBOOKS)) == 0
    assert (host.root_dir / "configured").read_text().startswith(f"{host.address} hello")
    assert lifecycle.get_provision(one, provision.id).state_name == "RUNNING"
    one.close()

    env = {"ONETOOLS_HOME": str(home), "HOME": str(tmp_path)}
    env.update({k: v for k, v in os.environ.items() if k == "PATH"})
    result = run_tool(
        "oneprovision", "host", "ssh", host.address, f"cat {host.root_dir}/configured", env=env
    )
    assert result.code == 0 and result.out.startswith(f"{host.address} hello"), result.err


LATE_UPDATES = """\
ceph_vars: {ceph_hci: true}
datastores:
  - {name: "ceph-${provision_id}", ds_mad: fs, tm_mad: ssh,
     bridge_list: "${updates.ceph_hosts_list}",
     ceph_secret: "${updates.ceph_secret}"}
networks:
  - {name: "public-${provision_id}", vn_mad: bridge, phydev: "${updates.default_ipv4_nic}",
     ar: [{type: IP4, ip: 10.9.1.1, size: 4}]}
vntemplates:
  - {name: "private-${provision_id}", vn_mad: vxlan, phydev: "${updates.default_ipv4_nic}"}
"""


def default_route_interface() -> str:
    output = subprocess.run(
        ["ip", "-o", "-4", "route", "show", "default"], capture_output=True, text=True, check=True
    ).stdout.split()
    return output[output.index("dev") + 1]


def test_facts_resolve_late_updates_and_hci_reservations(
    tmp_path: Path, ssh_host_factory: Any, ssh_key_pair: Any
) -> None:
    """After the playbooks, facts gathered on the real SSH hosts give the networks' PHYDEV
    (the first host's default IPv4 interface) and each HCI host's reservations (§2.11, §2.14);
    with the configuration skipped the facts are not gathered and the placeholders stay."""
    from onetools.one.local import LocalOne
    from onetools.provision import ansible

    hosts = ssh_host_factory(2)
    one = LocalOne(tmp_path / "store")
    plan = ssh_plan(tmp_path, hosts, ssh_key_pair, LATE_UPDATES, ", ceph_group: 'osd,mon'")
    plan.provider_name = "onprem"
    ui = ScriptedUi()
    options = lifecycle.CreateOptions(
        playbook_dir=str(TEST_PLAYBOOKS), ping_retries=3, ping_timeout=0.5
    )
    provision = lifecycle.create(one, plan, options, ui, batch())
    assert provision.state_name == "RUNNING", ui.lines
    nic = default_route_interface()
    (network,) = provision.ids("infrastructure", "networks")
    assert one.info(api.VNET, network).text("TEMPLATE/PHYDEV") == nic
    (vntemplate,) = provision.ids("resource", "vntemplates")
    assert one.info(api.VNTEMPLATE, vntemplate).text("TEMPLATE/PHYDEV") == nic
    (datastore,) = provision.ids("infrastructure", "datastores")
    ds = one.info(api.DATASTORE, datastore)
    assert ds.text("TEMPLATE/BRIDGE_LIST") == " ".join(h.address for h in hosts)
    assert ds.text("TEMPLATE/CEPH_SECRET") == provision.body["ceph_vars"]["ceph_secret_uuid"]
    facts = ansible.gather_facts(
        [
            ansible.AnsibleHost(
                h.address, None, h.port, h.user, str(ssh_key_pair.private_key), h.host_vars()
            )
            for h in hosts
        ]
    )
    for oid, host in zip(provision.ids("infrastructure", "hosts"), hosts, strict=True):
        expected = lifecycle.reservations(facts[host.address])
        assert expected is not None
        one_host = one.info(api.HOST, oid)
        assert one_host.text("TEMPLATE/RESERVED_CPU") == str(expected[0])
        assert one_host.text("TEMPLATE/RESERVED_MEM") == str(expected[1])

    skipped_plan = ssh_plan(tmp_path, hosts[:1], ssh_key_pair, LATE_UPDATES)
    skipped_plan.provider_name = "onprem"
    one.close()
    one = LocalOne(tmp_path / "second-store")
    options = lifecycle.CreateOptions(skip_config=True)
    skipped = lifecycle.create(one, skipped_plan, options, ui, batch())
    (network,) = skipped.ids("infrastructure", "networks")
    assert one.info(api.VNET, network).text("TEMPLATE/PHYDEV") == "${updates.default_ipv4_nic}"
    assert ("WARN", "Configuration skipped: values from Ansible facts are left unresolved") in (
        ui.lines
    )
    one.close()


@pytest.mark.parametrize(
    ("processors", "memory", "expected"),
    [
        (1, 3900, (0, 0)),
        (4, 4000, (0, 0)),
        (5, 4001, (100, 1000 * 1024)),
        (10, 6001, (100, 1000 * 1024)),
        (11, 6002, (200, 2000 * 1024)),
        (20, 20000, (200, 4000 * 1024)),
        (21, 40000, (300, 5000 * 1024)),
        (64, 64000, (300, 8000 * 1024)),
        (64, 128000, (300, 12000 * 1024)),
        (64, 128001, (300, 16000 * 1024)),
    ],
)
def test_hci_reservation_steps(processors: int, memory: int, expected: tuple[int, int]) -> None:
    facts = {"ansible_processor_count": processors, "ansible_memtotal_mb": memory}
    assert lifecycle.reservations(facts) == expected
    assert lifecycle.reservations({"ansible_memtotal_mb": memory}) is None


# -- day-2 ------------------------------------------------------------------------------------
def test_host_add_on_premise(one_api: OneApi, tmp_path: Path) -> None:
    ui = ScriptedUi()
    provision = create(one_api, plan_of(tmp_path), ui)
    added = lifecycle.add_hosts(one_api, provision.id, ui, batch(), hostnames=["10.9.0.7"])
    assert len(added) == 1
    host = one_api.info(api.HOST, added[0])
    assert host.name == "10.9.0.7"
    assert host.text("TEMPLATE/PROVISION/ID") == str(provision.id)
    assert host.text("TEMPLATE/PROVISION/INDEX") == "2"  # after the two hosts there are
    assert host.int("STATE") != 8  # enabled
    stored = lifecycle.get_provision(one_api, provision.id)
    assert stored.state_name == "RUNNING"
    assert [e["name"] for e in stored.entries("infrastructure", "hosts")] == [
        "10.9.0.1",
        "10.9.0.2",
        "10.9.0.7",
    ]
    two = lifecycle.add_hosts(one_api, provision.id, ui, batch(), amount=2)
    assert [one_api.info(api.HOST, oid).name for oid in two] == ["edge-host3", "edge-host4"]
    assert len(one_api.pool(api.HOST)) == 5
    lifecycle.delete(one_api, provision.id, lifecycle.DeleteOptions(), ui, batch())
    assert provision_leftovers(one_api) == {}


def test_ip_add_needs_an_elastic_network(one_api: OneApi, tmp_path: Path) -> None:
    ui = ScriptedUi()
    bridged = create(one_api, plan_of(tmp_path), ui)
    with pytest.raises(lifecycle.ProvisionError, match="wrong VN_MAD 'bridge'"):
        lifecycle.add_ips(one_api, bridged.id, ui, batch())
    lifecycle.delete(one_api, bridged.id, lifecycle.DeleteOptions(), ui, batch())

    elastic = ONPREM.replace("vn_mad: bridge", "vn_mad: elastic").replace(
        "ar: [{type: IP4, ip: 10.9.1.1, size: 4}]", "ar: [{type: IP4, ip: 10.9.1.1, size: 1}]"
    )
    provision = create(one_api, plan_of(tmp_path, elastic), ui)
    network = lifecycle.add_ips(one_api, provision.id, ui, batch(), amount=2)
    ranges = one_api.info(api.VNET, network).root.findall("AR_POOL/AR")
    assert len(ranges) == 3
    assert [r.findtext("IP") for r in ranges] == ["10.9.1.1"] * 3
    # (the embedded store keeps only the AR attributes it knows; the template has the id)
    assert f'PROVISION_ID = "{provision.id}"' in provision.body["ar_template"]
    lifecycle.delete(one_api, provision.id, lifecycle.DeleteOptions(), ui, batch())
    assert provision_leftovers(one_api) == {}


def test_host_add_with_terraform_creates_only_the_new_server(
    one_api: OneApi, tmp_path: Path
) -> None:
    import json as json_module

    from onetools.provision import terraform

    fake_cloud_provider(one_api)
    runs = str(tmp_path / "runs")
    options = lifecycle.CreateOptions(
        skip_config=True, template_dir=str(TEST_TEMPLATES), workdir_root=runs
    )
    plan = plan_of(
        tmp_path,
        "name: grow\n"
        "defaults: {provision: {provider_name: 'fake-cloud'}}\n"
        "cluster: {name: grow}\n"
        "hosts:\n"
        "  - {im_mad: kvm, vm_mad: kvm, provision: {hostname: ['127.0.0.41', '127.0.0.42']}}\n",
    )
    ui = ScriptedUi()
    provision = lifecycle.create(one_api, plan, options, ui, batch())
    before = {h.id: h.text("TEMPLATE/PROVISION/DEPLOY_ID") for h in one_api.pool(api.HOST)}
    (new,) = lifecycle.add_hosts(
        one_api,
        provision.id,
        ui,
        batch(),
        hostnames=["127.0.0.43"],
        options=lifecycle.CreateOptions(template_dir=str(TEST_TEMPLATES), workdir_root=runs),
    )
    after = {h.id: h.text("TEMPLATE/PROVISION/DEPLOY_ID") for h in one_api.pool(api.HOST)}
    assert {oid: after[oid] for oid in before} == before  # the old servers untouched
    assert after[new] and one_api.info(api.HOST, new).name == "127.0.0.43"
    stored = lifecycle.get_provision(one_api, provision.id)
    state = json_module.loads(terraform.decode(stored.body["tf"]["state"]))
    assert sorted(r["name"] for r in state["resources"]) == sorted(f"device_{h}" for h in after)
    lifecycle.delete(one_api, provision.id, lifecycle.DeleteOptions(workdir_root=runs), ui, batch())
    assert provision_leftovers(one_api) == {}
