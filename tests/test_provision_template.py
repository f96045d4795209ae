"""The provision template language (``onetools.provision.template``, oneprovision.md §2):
every template OpenNebula shipped (6.0, 6.10) and ours, ``extends``, ``defaults``, inputs,
host indexes, the two Ansible forms, the §2.12 messages with file and line, late ``${...}``."""

from __future__ import annotations

import base64
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import REPO, SHARED_DATA
from onetools.errors import FileParseError
from onetools.one.local import LocalOne
from onetools.provision.provider import create_provider, show_provider
from onetools.provision.template import (
    BUILTIN_CONNECTION,
    InputSpec,
    RawTemplate,
    SubstitutionContext,
    TemplateError,
    load,
    merge_inputs,
    resolve,
    substitute,
    validate,
)

PROVISION_DATA = SHARED_DATA / "opennebula-provision"
SHIPPED_PROVISIONS = sorted(PROVISION_DATA.glob("*/*/*/provisions/*.yml"))
SHIPPED_PROVIDERS = sorted(PROVISION_DATA.glob("*/*/*/providers/*/*.yml"))
OUR_PROVIDERS = sorted((REPO / "providers").glob("*/providers/*/*.yml"))
OUR_PROVISIONS = sorted((REPO / "providers").glob("*/provisions/*.yml"))

#: Values for the inputs that shipped templates leave without a default (on-premise hosts...).
REQUIRED_INPUTS = {
    "hosts_names": "10.0.0.11;10.0.0.12",
    "ceph_full_hosts_names": "10.0.1.1;10.0.1.2;10.0.1.3",
    "ceph_osd_hosts_names": "10.0.1.4",
    "client_hosts_names": "10.0.1.5;10.0.1.6",
    "first_public_ip": "192.0.2.10",
    "public_phydev": "eth0",
    "private_phydev": "eth1",
    "ceph_public_network": "10.0.1.0/24",
}


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def inputs_for(raw: RawTemplate, provider_inputs: Any = ()) -> dict[str, str]:
    """Values for the inputs (template's, with the provider's merged) that have no default,
    as a batch run must give them: REQUIRED_INPUTS, or a list's first option."""
    values: dict[str, str] = {}
    for spec in map(InputSpec.from_mapping, merge_inputs(raw.data.get("inputs", []),
                                                       provider_inputs)):  # fmt: skip
        if spec.default is None:
            values[spec.name] = REQUIRED_INPUTS.get(spec.name) or spec.options[0]
    return values


def problems_of(path: Path, provider: dict[str, Any] | None = None) -> list[str]:
    return [str(problem) for problem in validate(load(path), provider)]


def installed(path: Path, tmp_path: Path) -> Path:
    """Where ``path`` is once installed.  OpenNebula installs the 6.10 ``edge-clusters-extra``
    metal provisions beside the main metal ones, whose ``common.d`` they extend (they ship
    none of their own): rebuild that directory in ``tmp_path``."""
    relative = path.relative_to(PROVISION_DATA)
    if relative.parts[1:3] != ("edge-clusters-extra", "metal"):
        return path
    target = tmp_path / "installed"
    shutil.copytree(PROVISION_DATA / "6.10.0/edge-clusters/metal/provisions", target)
    shutil.copytree(path.parent, target, dirs_exist_ok=True)
    return target / path.name


def provider_for(provision: Path, raw: RawTemplate) -> dict[str, Any] | None:
    """The first provider OpenNebula shipped beside a provision for its driver."""
    driver = raw.data.get("defaults", {}).get("provision", {}).get("provider_name")
    edge = provision.parents[1]
    for path in sorted(edge.glob("providers/*/*.yml")):
        data = yaml.safe_load(path.read_text())
        if data["provider"] == driver or (driver == "vultr_virtual" and "vultr" in path.name):
            return dict(data)
    return None


# -- the corpus -----------------------------------------------------------------------------------
def test_the_corpus_is_found() -> None:
    assert len(SHIPPED_PROVISIONS) == 14
    assert len(OUR_PROVIDERS) >= 7 and len(OUR_PROVISIONS) >= 8


@pytest.mark.parametrize(
    "path", SHIPPED_PROVISIONS, ids=lambda p: str(p.relative_to(PROVISION_DATA))
)
def test_shipped_provisions_validate_and_resolve(path: Path, tmp_path: Path) -> None:
    source = installed(path, tmp_path)
    raw = load(source)
    assert validate(raw) == []
    provider_inputs = (provider_for(path, raw) or {}).get("inputs", ())
    plan = resolve(raw, inputs_for(raw, provider_inputs), provider_inputs=provider_inputs)
    assert plan.name == raw.data["name"]
    assert plan.provider_name == raw.data["defaults"]["provision"]["provider_name"]
    assert plan.hosts and [h.index for h in plan.hosts] == list(range(len(plan.hosts)))
    assert plan.ansible.playbooks
    version = path.relative_to(PROVISION_DATA).parts[0]
    if version == "6.0.0":
        assert plan.ansible.form == "playbook" and plan.ansible.ver_min is None
    else:
        assert plan.ansible.form == "ansible"
        assert plan.ansible.ver_max == "2.17" and plan.ansible.ver_min in ("2.8", "2.12")
    # no ${input.*} is left anywhere; late placeholders are
    text = yaml.safe_dump([h.attributes for h in plan.hosts] + [plan.cluster.attributes])
    assert "${input." not in text
    for network in plan.networks:
        assert all(ar["provision_id"] == "${provision_id}" for ar in network.attributes["ar"])
    assert "provider" not in plan.extra  # a reserved key (fireedge.yml pieces set it)
    if "hci" in path.name:
        assert plan.hci and plan.ceph_vars is not None and plan.ceph_vars["ceph_hci"] is True
        groups = {h.provision["ceph_group"] for h in plan.hosts}
        assert "osd,mon" in groups


def test_onprem_hci_hosts_come_from_array_inputs() -> None:
    path = PROVISION_DATA / "6.10.0/edge-clusters/metal/provisions/onprem-hci.yml"
    raw = load(path)
    plan = resolve(raw, inputs_for(raw))
    assert [(h.hostname, h.provision["ceph_group"], h.index) for h in plan.hosts] == [
        ("10.0.1.1", "osd,mon", 0),
        ("10.0.1.2", "osd,mon", 1),
        ("10.0.1.3", "osd,mon", 2),
        ("10.0.1.4", "osd", 3),
        ("10.0.1.5", "clients", 4),
        ("10.0.1.6", "clients", 5),
    ]
    assert plan.ceph_vars == {
        "ceph_hci": True,
        "devices": ["/dev/sdb"],  # an array input: the whole scalar becomes a list
        "monitor_interface": "eth0",
        "public_network": "10.0.1.0/24",
    }
    image, system = plan.datastores
    assert image.attributes["bridge_list"] == "${updates.ceph_hosts_list}"
    assert system.attributes["ceph_secret"] == "${updates.ceph_secret}"


def test_equinix_needs_its_providers_inputs() -> None:
    path = PROVISION_DATA / "6.10.0/edge-clusters/metal/provisions/equinix.yml"
    provider = provider_for(path, load(path))
    assert provider is not None
    plan = resolve(load(path), {"equinix_plan": "m3.large"}, provider_inputs=provider["inputs"])
    assert plan.hosts[0].provision["plan"] == "m3.large"
    with pytest.raises(TemplateError, match=r"equinix_plan: value 'x1' is not one of c3\.small"):
        resolve(load(path), {"equinix_plan": "x1"}, provider_inputs=provider["inputs"])


@pytest.mark.parametrize("path", SHIPPED_PROVIDERS + OUR_PROVIDERS, ids=lambda p: p.name)
def test_providers_are_accepted_by_oneprovider_create(path: Path, tmp_path: Path) -> None:
    keyfile = tmp_path / "key.json"
    keyfile.write_text('{"type": "service_account", "private_key": "k"}')
    text = path.read_text()
    data = yaml.safe_load(text)
    if data["provider"] == "google":  # the key file a real user points at
        text = text.replace(str(data["connection"]["credentials"]), str(keyfile))
    one = LocalOne(tmp_path / "home")
    try:
        provider = show_provider(one, create_provider(one, text, path=str(path)))
        assert provider.name == data["name"] and provider.driver == data["provider"]
    finally:
        one.close()


def test_our_providers_cover_every_driver_and_are_ours() -> None:
    drivers = {yaml.safe_load(p.read_text())["provider"] for p in OUR_PROVIDERS}
    assert drivers == {
        "aws",
        "equinix",
        "google",
        "digitalocean",
        "vultr_metal",
        "vultr_virtual",
        "onprem",
    }
    shipped_names = {yaml.safe_load(p.read_text())["name"] for p in SHIPPED_PROVIDERS}
    assert not shipped_names & {yaml.safe_load(p.read_text())["name"] for p in OUR_PROVIDERS}


@pytest.mark.parametrize("path", OUR_PROVISIONS, ids=lambda p: str(p.relative_to(REPO)))
def test_our_provisions_validate_and_resolve(path: Path) -> None:
    raw = load(path)
    assert validate(raw) == []
    assert len(raw.files) > 1  # built from .d/ pieces
    plan = resolve(raw, inputs_for(raw))
    assert plan.hosts and plan.ansible.form == "ansible" and plan.ansible.ver_min
    driver = plan.provider_name
    ours = [yaml.safe_load(p.read_text()) for p in OUR_PROVIDERS]
    assert driver in {p["provider"] for p in ours}


def test_the_packaged_copy_of_providers_is_identical() -> None:
    source = REPO / "providers"
    packaged = REPO / "src/onetools/provision/data/providers"
    files = sorted(p.relative_to(source) for p in source.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(packaged) for p in packaged.rglob("*") if p.is_file())
    for relative in files:
        assert (source / relative).read_bytes() == (packaged / relative).read_bytes(), relative


# -- loading and extends --------------------------------------------------------------------------
def test_extends_three_levels_relative_to_each_file(tmp_path: Path) -> None:
    write(
        tmp_path,
        "lib/base/root.yml",
        """\
        playbook: [base]
        hosts:
          - {im_mad: kvm, vm_mad: kvm, provision: {hostname: root}}
        defaults:
          provision: {provider_name: p, ami: root-ami, size: root}
        cluster: {name: from-root, reserved_cpu: '1'}
        tag: root
        """,
    )
    write(
        tmp_path,
        "lib/middle.yml",
        """\
        extends: base/root.yml
        playbook: middle
        hosts:
          - {im_mad: lxc, vm_mad: lxc, provision: {hostname: middle}}
        defaults:
          provision: {ami: middle-ami}
        tag: middle
        """,
    )
    main = write(
        tmp_path,
        "site/main.yml",
        """\
        name: demo
        extends: [../lib/middle.yml]
        playbook: [top]
        defaults:
          provision: {size: top}
        cluster: {name: from-main}
        """,
    )
    raw = load(main)
    assert raw.data["playbook"] == ["base", "middle", "top"]
    assert [h["provision"]["hostname"] for h in raw.data["hosts"]] == ["root", "middle"]
    assert raw.data["defaults"]["provision"] == {
        "provider_name": "p",
        "ami": "middle-ami",
        "size": "top",
    }
    assert raw.data["cluster"] == {"name": "from-main"}  # maps are replaced, not deep-merged
    assert raw.data["tag"] == "middle"
    assert "extends" not in raw.data
    assert raw.files == (
        str(main),
        str(tmp_path / "lib/middle.yml"),
        str(tmp_path / "lib/base/root.yml"),
    ) or set(raw.files) == {
        str(main),
        str(tmp_path / "lib/middle.yml"),
        str(tmp_path / "lib/base/root.yml"),
    }
    # provenance: each key names the file (and line) it came from
    assert raw.location(("hosts", 0, "im_mad")).file.endswith("lib/base/root.yml")
    assert raw.location(("hosts", 1)).file.endswith("lib/middle.yml")
    assert raw.location(("hosts", 1)).line == 4
    assert raw.location(("defaults", "provision", "size")).file == str(main)
    assert raw.location(("defaults", "provision", "provider_name")).line == 5


def test_extends_list_order_later_bases_win(tmp_path: Path) -> None:
    write(tmp_path, "a.yml", "x: a\nitems: [a]\n")
    write(tmp_path, "b.yml", "x: b\nitems: [b]\n")
    write(tmp_path, "c.yml", "items: [c]\n")
    main = write(tmp_path, "main.yml", "name: n\nextends: [a.yml, b.yml, c.yml]\nitems: [m]\n")
    raw = load(main)
    assert raw.data["x"] == "b" and raw.data["items"] == ["a", "b", "c", "m"]
    assert raw.location(("items", 3)).file == str(main)
    assert raw.location(("items", 1)).file.endswith("b.yml")


def test_extends_cycle_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "a.yml", "extends: b.yml\n")
    write(tmp_path, "b.yml", "extends: [c.yml]\n")
    write(tmp_path, "c.yml", "x: 1\nextends: a.yml\n")
    with pytest.raises(FileParseError, match=r"extends cycle: a.yml -> b.yml -> c.yml -> a.yml"):
        load(tmp_path / "a.yml")
    write(tmp_path, "self.yml", "extends: self.yml\n")
    with pytest.raises(FileParseError, match="extends cycle"):
        load(tmp_path / "self.yml")


def test_extends_missing_file_names_the_extending_line(tmp_path: Path) -> None:
    main = write(tmp_path, "main.yml", "name: n\nextends:\n  - ok.yml\n  - gone.yml\n")
    write(tmp_path, "ok.yml", "x: 1\n")
    with pytest.raises(FileParseError) as caught:
        load(main)
    assert str(caught.value) == (
        f"{main}: Failed to read template: extended file gone.yml not found at line 4"
    )


def test_yaml_errors_name_the_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, "broken.yml", "hosts:\n  - im_mad: kvm\n  bad: [\n")
    main = write(tmp_path, "main.yml", "name: n\nextends: broken.yml\n")
    with pytest.raises(FileParseError) as caught:
        load(main)
    assert str(caught.value).startswith(f"{tmp_path / 'broken.yml'}: Failed to read template:")
    assert caught.value.line == 3
    write(tmp_path, "list.yml", "- a\n- b\n")
    with pytest.raises(FileParseError, match="not a YAML mapping"):
        load(tmp_path / "list.yml")
    with pytest.raises(FileParseError, match="file not found"):
        load(tmp_path / "nowhere.yml")


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    write(
        tmp_path,
        "piece.yml",
        "hosts:\n  - im_mad: kvm\n    provision: {count: 2}\n    provision: {}\n",
    )
    main = write(tmp_path, "main.yml", "name: n\nextends: piece.yml\n")
    with pytest.raises(FileParseError) as caught:
        load(main)
    assert str(caught.value) == (
        f"{tmp_path / 'piece.yml'}: Failed to read template: duplicate key provision at line 4"
    )


def test_null_top_level_keys_are_dropped_and_empty_files_are_empty(tmp_path: Path) -> None:
    write(tmp_path, "empty.yml", "---\n# nothing\n")
    main = write(tmp_path, "main.yml", "name: n\nextends: empty.yml\nhosts:\ndescription: ~\n")
    assert load(main).data == {"name": "n"}


# -- §2.12 messages, with file and line -----------------------------------------------------------
BROKEN = """\
hosts:
  - vm_mad: kvm
    provision: {hostname: h}
  - im_mad: kvm
    provision: {hostname: h}
  - im_mad: kvm
    vm_mad: kvm
datastores:
  - type: image_ds
  - tm_mad: ssh
networks:
  - name: pub
  - vn_mad: elastic
    ar: {size: 1}
"""


def test_structure_messages(tmp_path: Path) -> None:
    path = write(tmp_path, "broken.yml", BROKEN)
    f = str(path)
    assert problems_of(path) == [
        f"{f}: in your configuration file: no name given",
        f"{f}: in configuration file: no im_mad 1 at line 2",
        f"{f}: in configuration file: no vm_mad 2 at line 4",
        f"{f}: in configuration file: no hostname 3 at line 6",
        f"{f}: in configuration file: no tm_mad 1 at line 9",
        f"{f}: in configuration file: no ds_mad 2 at line 10",
        f"{f}: in configuration file: no vn_mad 1 at line 12",
        f"{f}: Failed to read configuration: ar should be an array at line 14",
    ]


@pytest.mark.parametrize("key", ["hosts", "datastores", "networks"])
def test_sections_must_be_arrays(tmp_path: Path, key: str) -> None:
    path = write(tmp_path, "t.yml", f"name: n\n{key}:\n  a: 1\n")
    assert problems_of(path) == [f"{path}: {key} should be an array at line 2"]


EXPRESSIONS = """\
name: n
inputs:
  - {name: flag, type: boolean, default: maybe}
  - {name: choice, type: list}
  - {name: pick, type: list, options: [a, b], default: c}
  - {name: names, type: array, default: ';;'}
  - {name: span, type: range}
  - {name: span2, type: range, min_value: a, max_value: 3}
cluster:
  name: "${provision}"
  k1: "${nothing}"
  k2: "${provision.name}"
  k3: "${input.absent}"
  k4: "${input.flag}"
  k5: "${input.choice}"
  k6: "${input.pick}"
  k7: "${input.names}"
  k8: "${input.span}"
  k9: "${input.span2}"
  k10: "${a.b.c.d}"
  k11: "${disk.0.id}"
  k12: "${datastore.0.i$d}"
  k13: "${datastore.7.id}"
  k14: "${updates.first_host}"
  k15: "${updates.nothing}"
  k16: "n${index}"
"""


def test_expression_messages(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yml", EXPRESSIONS)
    f = str(path)
    assert problems_of(path) == [
        f"{f}: expression ${{nothing}}: key nothing invalid at line 11",
        f"{f}: expression ${{provision.name}}: key provision.name invalid for user inputs"
        " at line 12",
        f"{f}: expression ${{input.absent}}: user input absent not found at line 13",
        f"{f}: expression ${{input.flag}}: default maybe is invalid at line 14",
        f"{f}: expression ${{input.choice}}: input type list needs options at line 15",
        f"{f}: expression ${{input.pick}}: default c is not in list at line 16",
        f"{f}: expression ${{input.names}}: default ;; invalid format at line 17",
        f"{f}: expression ${{input.span}}: input type range needs min_value and max_value"
        " at line 18",
        f"{f}: expression ${{input.span2}}: min_value and max_value must be integer at line 19",
        f"{f}: expression ${{a.b.c.d}}: there are no 3 elements at line 20",
        f"{f}: expression ${{disk.0.id}}: key disk is not valid at line 21",
        f"{f}: expression ${{datastore.0.i$d}}: i$d has invalid characters at line 22",
        f"{f}: expression ${{datastore.7.id}}: datastore 7 not found at line 23",
        f"{f}: expression ${{updates.nothing}}: key updates.nothing invalid (known: "
        "ceph_hosts_list, ceph_secret, default_ipv4_nic, first_host) at line 25",
        f"{f}: expression n${{index}}: key index is only known in hosts at line 26",
    ]


def test_no_inputs_at_all(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yml", "name: n\ncluster: {description: '${input.x}'}\n")
    assert problems_of(path) == [
        f"{path}: expression ${{input.x}}: user inputs not found at line 2"
    ]


def test_problems_name_the_file_the_key_came_from(tmp_path: Path) -> None:
    write(
        tmp_path,
        "pieces/hosts.yml",
        "# hosts piece\nhosts:\n  - im_mad: kvm\n    provision: {hostname: 'h${index}'}\n",
    )
    write(tmp_path, "pieces/nets.yml", "networks:\n  - name: x\n    dns: '${input.dns}'\n")
    main = write(tmp_path, "main.yml", "name: n\nextends: [pieces/hosts.yml, pieces/nets.yml]\n")
    hosts = tmp_path / "pieces/hosts.yml"
    nets = tmp_path / "pieces/nets.yml"
    assert problems_of(main) == [
        f"{hosts}: in configuration file: no vm_mad 1 at line 3",
        f"{nets}: in configuration file: no vn_mad 1 at line 2",
        f"{nets}: expression ${{input.dns}}: user inputs not found at line 3",
    ]


def test_references_to_names_and_later_kinds(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "t.yml",
        """\
        name: n
        datastores:
          - {name: images, type: image_ds, ds_mad: fs, tm_mad: ssh, x: "${image.0.id}"}
        images:
          - {name: "${provision}-img", ds_id: "${datastore.images.id}"}
        templates:
          - {name: vm, disk: {image_id: "${image.anything.id}"}, nic: "${network.0.id}"}
        marketplaceapps:
          - {appname: Alpine, dsid: "${datastore.0.id}"}
        vntemplates:
          - {name: v, cluster_ids: "${cluster.0.id}", t: "${template.vm.id}"}
        """,
    )
    f = str(path)
    # names with ${provision} cannot be matched before creation: accepted
    assert problems_of(path) == [
        f"{f}: expression ${{image.0.id}}: image objects are created after the datastores"
        " at line 3",
        f"{f}: expression ${{network.0.id}}: network 0 not found at line 7",
    ]


def test_meta_and_ansible_checks(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "t.yml",
        """\
        name: n
        ansible: {ver_min: 2.12, ver_max: '2.9', playbook: [ok, ../../etc/evil]}
        images:
          - name: i
            meta: {wait: 'yes', mode: 999, uid: -1, wait_timeout: 0}
        """,
    )
    f = str(path)
    assert problems_of(path) == [
        f"{f}: meta uid -1 is not an ID at line 5",
        f"{f}: meta mode 999 is not an octet such as 640 at line 5",
        f"{f}: Wait mode yes not supported at line 5",
        f"{f}: meta wait_timeout 0 is not a number of seconds at line 5",
        f"{f}: ansible ver_min 2.12 is greater than ver_max 2.9 at line 2",
        f"{f}: playbook ../../etc/evil is not a playbook name at line 2",
    ]


def test_validate_with_a_provider_merges_its_inputs(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yml", "name: n\ncluster: {description: '${input.size}'}\n")
    assert problems_of(path) == [
        f"{path}: expression ${{input.size}}: user inputs not found at line 2"
    ]
    provider = {"inputs": [{"name": "size", "type": "list", "options": ["s", "m"]}]}
    assert problems_of(path, provider) == []


# -- ansible forms --------------------------------------------------------------------------------
def test_the_two_ansible_forms(tmp_path: Path) -> None:
    host = "hosts: [{im_mad: kvm, vm_mad: kvm, provision: {hostname: h}}]\n"
    old = write(tmp_path, "old.yml", f"name: n\nplaybook: [aws, extra]\n{host}")
    new = write(
        tmp_path,
        "new.yml",
        f"name: n\nansible:\n  ver_min: 2.8\n  ver_max: 2.10\n  playbook: [aws]\n{host}",
    )
    old_plan, new_plan = resolve(load(old)), resolve(load(new))
    assert (old_plan.ansible.playbooks, old_plan.ansible.form) == (("aws", "extra"), "playbook")
    assert (old_plan.ansible.ver_min, old_plan.ansible.ver_max) == (None, None)
    assert new_plan.ansible.playbooks == ("aws",) and new_plan.ansible.form == "ansible"
    # YAML reads 2.10 as the float 2.1: the version is taken from the text
    assert (new_plan.ansible.ver_min, new_plan.ansible.ver_max) == ("2.8", "2.10")
    assert old_plan.hosts[0].provision["ansible_playbook"] == "aws,extra"
    missing = write(tmp_path, "m.yml", f"name: n\nansible: {{playbook: [aws]}}\n{host}")
    assert problems_of(missing) == [
        f"{missing}: ansible: no ver_min given at line 2",
        f"{missing}: ansible: no ver_max given at line 2",
    ]


# -- defaults -------------------------------------------------------------------------------------
DEFAULTS = """\
name: site
defaults:
  provision: {provider_name: p, plan: small, shared: default}
  connection: {remote_user: ubuntu}
  configuration: {opts: [a, b], hv: kvm}
cluster:
  provision: {shared: own, cidr: 10.0.0.0/16}
hosts:
  - im_mad: kvm
    vm_mad: kvm
    connection: {remote_port: 2222}
    configuration: {hv: lxc}
    provision: {hostname: a, plan: big}
  - im_mad: kvm
    vm_mad: kvm
    provision: {hostname: b}
datastores:
  - {name: d, type: system_ds, tm_mad: ssh, provision: {shared: own}}
networks:
  - {name: n, vn_mad: bridge}
"""


def test_defaults_precedence_the_object_wins(tmp_path: Path) -> None:
    plan = resolve(load(write(tmp_path, "t.yml", DEFAULTS)))
    first, second = plan.hosts
    assert first.provision["plan"] == "big" and second.provision["plan"] == "small"
    assert first.configuration == {"opts": ["a", "b"], "hv": "lxc"}
    assert second.configuration == {"opts": ["a", "b"], "hv": "kvm"}
    assert first.connection == {**dict(BUILTIN_CONNECTION), "remote_user": "ubuntu",
                                "remote_port": 2222}  # fmt: skip
    assert second.connection == {**dict(BUILTIN_CONNECTION), "remote_user": "ubuntu"}
    # cluster, datastores and networks get defaults.provision too (also with hosts), and
    # their own keys win (the original let defaults win there, and lost them with hosts)
    assert plan.cluster.attributes["provision"] == {
        "provider_name": "p",
        "plan": "small",
        "shared": "own",
        "cidr": "10.0.0.0/16",
    }
    assert plan.datastores[0].attributes["provision"]["shared"] == "own"
    assert plan.networks[0].attributes["provision"]["provider_name"] == "p"
    assert plan.provider_name == "p" and plan.cluster.name == "site"


def test_no_shared_mutation_between_objects_or_runs(tmp_path: Path) -> None:
    raw = load(write(tmp_path, "t.yml", DEFAULTS))
    before = yaml.safe_dump(raw.data)
    plan = resolve(raw)
    first, second = plan.hosts
    first.configuration["opts"].append("mutated")
    first.connection["private_key"] = "/elsewhere"
    first.provision["plan"] = "changed"
    assert second.configuration["opts"] == ["a", "b"]
    assert second.connection["private_key"] == dict(BUILTIN_CONNECTION)["private_key"]
    assert plan.defaults["configuration"]["opts"] == ["a", "b"]
    assert yaml.safe_dump(raw.data) == before
    again = resolve(raw)
    assert again.hosts[0].connection["private_key"] == dict(BUILTIN_CONNECTION)["private_key"]
    assert again.hosts[0].configuration["opts"] == ["a", "b"]


# -- hosts ----------------------------------------------------------------------------------------
def test_index_is_global_across_host_groups(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "t.yml",
        """\
        name: n
        hosts:
          - {im_mad: kvm, vm_mad: kvm, provision: {hostname: "a${index}", count: 2}}
          - {im_mad: kvm, vm_mad: kvm, provision: {hostname: "b${index}", count: "2"}}
          - {im_mad: kvm, vm_mad: kvm, provision: {hostname: [x, y]}}
          - im_mad: kvm
            vm_mad: kvm
            provision: {hostname: "c${index}", note: "host ${index} of ${provision}"}
        """,
    )
    plan = resolve(load(path))
    assert [h.hostname for h in plan.hosts] == ["a0", "a1", "b2", "b3", "x", "y", "c6"]
    assert [h.index for h in plan.hosts] == list(range(7))
    assert [h.group for h in plan.hosts] == [0, 0, 1, 1, 2, 2, 3]
    assert [h.provision["count"] for h in plan.hosts] == [2, 2, 2, 2, 2, 2, 1]
    assert plan.hosts[6].provision["note"] == "host 6 of ${provision}"  # late: left as is


def test_cloud_hci_counts_make_ceph_groups(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "t.yml",
        """\
        name: n
        hosts:
          - im_mad: kvm
            vm_mad: kvm
            provision: {hostname: "h${index}", ceph_full_count: 2, ceph_osd_count: 1,
                        ceph_client_count: 1}
        """,
    )
    plan = resolve(load(path))
    assert [(h.hostname, h.provision["ceph_group"]) for h in plan.hosts] == [
        ("h0", "osd,mon"),
        ("h1", "osd,mon"),
        ("h2", "osd"),
        ("h3", "clients"),
    ]


def test_network_count_replicates_the_first_ar(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "t.yml",
        """\
        name: n
        inputs: [{name: ips, type: number, default: 3}]
        networks:
          - name: pub
            vn_mad: elastic
            provision: {count: "${input.ips}"}
            ar: [{size: 1, ipam_mad: aws}]
        """,
    )
    plan = resolve(load(path))
    ars = plan.networks[0].attributes["ar"]
    assert ars == [{"size": 1, "ipam_mad": "aws", "provision_id": "${provision_id}"}] * 3
    ars[0]["size"] = 9
    assert ars[1]["size"] == 1


def test_meta_is_data(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "t.yml",
        """\
        name: n
        images:
          - name: i
            ds_id: 1
            meta: {uname: bob, gid: 1, mode: 0640, wait: true, wait_timeout: 600}
        templates:
          - {name: t, meta: {mode: 604}}
        """,
    )
    plan = resolve(load(path))
    image = plan.images[0]
    assert "meta" not in image.attributes
    assert image.meta.to_dict() == {
        "uname": "bob",
        "gid": 1,
        "mode": "640",
        "wait": True,
        "wait_timeout": 600,
    }
    assert plan.templates[0].meta.mode == "604"


# -- inputs ---------------------------------------------------------------------------------------
INPUTS = """\
name: n
inputs:
  - {name: t, type: text, default: hello}
  - {name: t64, type: text64, default: 'a b'}
  - {name: flag, type: boolean, default: 'NO'}
  - {name: secret, type: password, default: pw}
  - {name: num, type: number, default: 2}
  - {name: real, type: number-float, default: 1.5}
  - {name: span, type: range, min_value: 1, max_value: 5, default: 3}
  - {name: fspan, type: range-float, min_value: 0.5, max_value: 1.5, default: 1.0}
  - {name: pick, type: list, options: [a, b], default: b}
  - {name: names, type: array, default: 'x;y'}
  - {name: fixed, type: fixed, default: constant}
  - {name: unused, type: text}
cluster:
  description: "${input.t}/${input.t64}/${input.flag}/${input.secret}"
  numbers: "${input.num} ${input.real} ${input.span} ${input.fspan}"
  pick: "${input.pick}"
  names: "${input.names}"
  inline: "[${input.names}]"
  fixed: "${input.fixed}"
"""


def _cluster(plan: Any) -> dict[str, Any]:
    return dict(plan.cluster.attributes)


def test_every_input_type_defaults(tmp_path: Path) -> None:
    plan = resolve(load(write(tmp_path, "t.yml", INPUTS)))
    cluster = _cluster(plan)
    encoded = base64.b64encode(b"a b").decode()
    assert cluster["description"] == f"hello/{encoded}/NO/pw"
    assert cluster["numbers"] == "2 1.5 3 1.0"
    assert cluster["pick"] == "b"
    assert cluster["names"] == ["x", "y"]  # the whole scalar: a list
    assert cluster["inline"] == "[x;y]"  # inside text: the ;-joined text
    assert cluster["fixed"] == "constant"
    assert "unused" not in plan.inputs  # never asked: nothing references it


def test_every_input_type_given(tmp_path: Path) -> None:
    given = {
        "t": "bye",
        "t64": "é",
        "flag": "yes",
        "num": "7",
        "real": "2.25",
        "span": "5",
        "fspan": "0.5",
        "pick": "a",
        "names": " h1 ; h2;;h3 ",
    }
    plan = resolve(load(write(tmp_path, "t.yml", INPUTS)), given)
    cluster = _cluster(plan)
    assert cluster["description"] == f"bye/{base64.b64encode('é'.encode()).decode()}/YES/pw"
    assert cluster["numbers"] == "7 2.25 5 0.5"
    assert cluster["names"] == ["h1", "h2", "h3"]
    assert plan.inputs["names"] == ["h1", "h2", "h3"]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("flag", "maybe", "user input flag: value 'maybe' must be YES or NO"),
        ("num", "x", "user input num: value 'x' is not an integer"),
        ("real", "x", "user input real: value 'x' is not a number"),
        ("span", "9", "user input span: value '9' is not in [1..5]"),
        ("fspan", "2", "user input fspan: value '2' is not in [0.5..1.5]"),
        ("pick", "c", "user input pick: value 'c' is not one of a, b"),
        ("names", ";", "user input names: value ';' is not a ';'-separated list"),
        ("fixed", "other", "user input fixed is fixed to 'constant'"),
        ("nope", "1", "user input nope is not an input of"),
    ],
)
def test_bad_given_values(tmp_path: Path, name: str, value: str, message: str) -> None:
    raw = load(write(tmp_path, "t.yml", INPUTS))
    with pytest.raises(TemplateError, match="^" + message.replace("[", r"\[").replace(".", r"\.")):
        resolve(raw, {name: value})


def test_prompts_ask_each_input_once_and_reask_bad_answers(tmp_path: Path) -> None:
    raw = load(write(tmp_path, "t.yml", INPUTS))
    answers = {"num": ["abc", "4"], "pick": [""], "flag": [""], "names": ["p;q"]}
    asked: list[tuple[str, str | None]] = []

    def prompt(spec: InputSpec, error: str | None) -> str:
        asked.append((spec.name, error))
        queue = answers.get(spec.name)
        return queue.pop(0) if queue else ""

    plan = resolve(raw, {"t": "given"}, prompt=prompt)
    names = [name for name, _ in asked]
    assert "t" not in names and "fixed" not in names and "unused" not in names
    assert names.count("num") == 2 and ("num", "'abc' is not an integer") in asked
    cluster = _cluster(plan)
    assert cluster["numbers"].startswith("4 ")
    assert cluster["pick"] == "b" and cluster["names"] == ["p", "q"]
    assert cluster["description"].split("/")[2] == "NO"


def test_empty_answers_without_default(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "t.yml",
        """\
        name: n
        inputs:
          - {name: b, type: boolean}
          - {name: n, type: number}
          - {name: l, type: list, options: [first, second]}
        cluster: {x: "${input.b} ${input.n} ${input.l}"}
        """,
    )
    plan = resolve(load(path), prompt=lambda spec, error: "")
    assert plan.cluster.attributes["x"] == "NO 0 first"
    with pytest.raises(TemplateError, match=r"^Cannot parse user input b$"):
        resolve(load(path))  # batch, no default


def test_provider_inputs_replace_and_extend(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "t.yml",
        """\
        name: n
        inputs:
          - {name: size, type: text, default: tiny}
          - {name: os, type: text, default: debian}
        cluster: {x: "${input.size}-${input.os}-${input.zone}"}
        """,
    )
    provider_inputs = [
        {"name": "size", "type": "list", "options": ["m", "l"], "default": "l"},
        {"name": "zone", "type": "text", "default": "z1"},
    ]
    plan = resolve(load(path), provider_inputs=provider_inputs)
    assert plan.cluster.attributes["x"] == "l-debian-z1"
    with pytest.raises(TemplateError, match="is not one of m, l"):
        resolve(load(path), {"size": "tiny"}, provider_inputs=provider_inputs)


def test_resolve_refuses_an_invalid_template(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yml", BROKEN)
    with pytest.raises(TemplateError) as caught:
        resolve(load(path))
    assert len(caught.value.problems) == 8
    assert caught.value.message.endswith("(and 7 more problems)")


# -- late substitution ----------------------------------------------------------------------------
def test_substitute_late_placeholders() -> None:
    created = {("datastore", "0"): {"id": 101}, ("datastore", "edge-images"): {"id": 101}}

    def lookup(kind: str, ref: str, attribute: str) -> Any:
        if (kind, ref) not in created:
            raise LookupError(ref)
        return created[(kind, ref)].get(attribute)

    value = {
        "name": "${provision}-img",
        "ds_id": "${datastore.0.id}",
        "by_name": "ds ${datastore.edge-images.id}",
        "ar": [{"provision_id": "${provision_id}"}],
        "replica": "${updates.first_host}",
        "index": "${index}",
    }
    early = substitute(value, SubstitutionContext(provision="edge", provision_id=7))
    assert early["name"] == "edge-img" and early["ar"] == [{"provision_id": 7}]
    assert early["ds_id"] == "${datastore.0.id}" and early["replica"] == "${updates.first_host}"
    full = substitute(early, SubstitutionContext(lookup=lookup, index=3))
    assert full["ds_id"] == 101 and full["by_name"] == "ds 101" and full["index"] == 3
    assert full["replica"] == "${updates.first_host}"  # only after configuration
    done = substitute(full, SubstitutionContext(updates={"first_host": "10.0.0.1"}))
    assert done["replica"] == "10.0.0.1"
    assert value["name"] == "${provision}-img"  # the input is not changed
    with pytest.raises(TemplateError, match=r"^expression \$\{image.0.id\}: image 0 not found$"):
        substitute("${image.0.id}", SubstitutionContext(lookup=lookup))
    with pytest.raises(TemplateError, match="datastore 0 has no attribute nope"):
        substitute("${datastore.0.nope}", SubstitutionContext(lookup=lookup))


def test_raw_template_dump_round_trips(tmp_path: Path) -> None:
    raw = load(write(tmp_path, "t.yml", DEFAULTS))
    again = yaml.safe_load(raw.to_yaml())
    assert again == raw.data and isinstance(raw, RawTemplate)


def test_marketplace_apps_need_an_app(tmp_path: Path) -> None:
    path = write(
        tmp_path, "t.yml", "name: n\nmarketplaceapps:\n  - {appname: Alpine}\n  - {dsid: 1}\n"
    )
    assert problems_of(path) == [f"{path}: in configuration file: no appid or appname 2 at line 4"]


def test_a_count_from_an_input_is_checked_at_resolve(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "t.yml",
        """\
        name: n
        inputs: [{name: c, type: text, default: many}]
        hosts:
          - im_mad: kvm
            vm_mad: kvm
            provision: {hostname: h, count: "${input.c}"}
        """,
    )
    with pytest.raises(TemplateError) as caught:
        resolve(load(path))
    assert str(caught.value) == f"{path}: count many is not a number at line 6"


# -- properties -----------------------------------------------------------------------------------

WORDS = st.text(
    alphabet=st.characters(blacklist_characters=";$\n\r\"'\\", blacklist_categories=("Cs", "Cc")),
    min_size=1,
    max_size=12,
).filter(lambda word: word.strip() == word and word != "")


@settings(max_examples=60, deadline=None)
@given(names=st.lists(WORDS, min_size=1, max_size=6))
def test_array_inputs_split_on_semicolons(tmp_path_factory: Any, names: list[str]) -> None:
    directory = tmp_path_factory.mktemp("array")
    path = write(
        directory,
        "t.yml",
        """\
        name: n
        inputs: [{name: hosts, type: array}]
        hosts:
          - {im_mad: kvm, vm_mad: kvm, provision: {hostname: "${input.hosts}"}}
        """,
    )
    plan = resolve(load(path), {"hosts": ";".join(names)})
    assert [host.hostname for host in plan.hosts] == names


@settings(max_examples=60, deadline=None)
@given(counts=st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=5))
def test_host_indexes_are_unique_and_global(tmp_path_factory: Any, counts: list[int]) -> None:
    directory = tmp_path_factory.mktemp("index")
    groups = [
        {
            "im_mad": "kvm",
            "vm_mad": "kvm",
            "provision": {"hostname": f"g{g}-${{index}}", "count": c},
        }
        for g, c in enumerate(counts)
    ]
    path = directory / "t.yml"
    path.write_text(yaml.safe_dump({"name": "n", "hosts": groups}))
    plan = resolve(load(path))
    assert [host.index for host in plan.hosts] == list(range(sum(counts)))
    assert len({host.hostname for host in plan.hosts}) == sum(counts)
    assert all(host.hostname.endswith(f"-{host.index}") for host in plan.hosts)


def test_an_input_redefined_by_the_extending_file_wins(tmp_path: Path) -> None:
    write(tmp_path, "base.yml", "inputs:\n  - {name: size, type: text, default: base}\n")
    main = write(
        tmp_path,
        "main.yml",
        """\
        name: n
        extends: base.yml
        inputs:
          - {name: size, type: list, options: [s, m], default: m}
        cluster: {x: "${input.size}"}
        """,
    )
    raw = load(main)
    assert validate(raw) == []
    assert resolve(raw).cluster.attributes["x"] == "m"
    with pytest.raises(TemplateError, match="is not one of s, m"):
        resolve(raw, {"size": "base"})
