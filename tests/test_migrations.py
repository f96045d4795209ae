"""The programmatic upgrade steps (``onetools.config.migrations.v*``), through real upgrades.

For each step: a stock tree of the source version, customized by editing its files as a user
would, is upgraded across the step by the library; the user's values must land where the new
version keeps them, element by element, while everything else is the new version's stock
content.  A stock tree must upgrade to exactly the new stock files, with nothing to report.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from helpers import run_tool, snapshot
from onetools.config.formats.one import OneDocument, Tree
from onetools.config.formats.yaml import YamlDocument
from onetools.config.migrations import load_program
from onetools.config.ops import Symbol, strict_equal
from onetools.config.stock import store
from onetools.config.upgrade import UpgradeOptions, UpgradeOutcome, upgrade
from onetools.config.versions import Step, Version

STEPS = [
    ("5.10.0", "5.12.0"),
    ("6.0.0", "6.2.0"),
    ("6.10.0", "6.10.2"),
    ("6.10.2", "7.0.0"),
    ("7.2.0", "7.4.0"),
]


# -- helpers ------------------------------------------------------------------------------------
@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ONECFG_ETC_DIR", str(tmp_path / "etc"))
    monkeypatch.setenv("ONECFG_BACKUP_DIR", str(tmp_path / "backups"))
    (tmp_path / "etc").mkdir()
    return tmp_path / "tree"


def materialize(version: str, prefix: Path) -> Path:
    store().materialize(version, str(prefix))
    return prefix


def edit(prefix: Path, path: str, old: str, new: str) -> None:
    """Replace the one occurrence of ``old`` in a file of the tree."""
    file = prefix / path.lstrip("/")
    text = file.read_text()
    assert text.count(old) == 1, f"{old!r} in {path}"
    file.write_text(text.replace(old, new))


def run(prefix: Path, source: str, target: str, noop: bool = False) -> UpgradeOutcome:
    outcome = upgrade(UpgradeOptions(prefix=str(prefix), source=source, target=target, noop=noop))
    assert outcome.final == target
    return outcome


def one_tree(prefix: Path, path: str) -> Tree:
    return OneDocument.parse((prefix / path.lstrip("/")).read_text(), path).tree()


def stock_one(version: str, path: str) -> Tree:
    return OneDocument.parse(store().read(version, path) or "", path).tree()


def yaml_content(prefix: Path, path: str) -> Any:
    return YamlDocument.parse((prefix / path.lstrip("/")).read_text(), path).content


def stock_yaml(version: str, path: str) -> Any:
    return YamlDocument.parse(store().read(version, path) or "", path).content


def notes(outcome: UpgradeOutcome) -> str:
    return "\n".join(outcome.notes)


# -- every step ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("source", "target"), STEPS, ids=[f"{a}->{b}" for a, b in STEPS])
def test_step_has_program(source: str, target: str) -> None:
    program = load_program(Step(Version(source), Version(target)))
    assert program is not None and callable(program.up)
    assert program.__doc__ and len(program.__doc__) > 200


@pytest.mark.parametrize(("source", "target"), STEPS, ids=[f"{a}->{b}" for a, b in STEPS])
def test_stock_tree_upgrades_to_new_stock(source: str, target: str, tree: Path) -> None:
    materialize(source, tree)
    outcome = run(tree, source, target)
    assert outcome.saved
    assert outcome.notes == []
    for path in store().paths(target):
        wanted = store().read(target, path)
        assert (tree / path.lstrip("/")).read_text() == wanted, path


# -- 5.10.0 -> 5.12.0: IM_MAD into monitord.conf ------------------------------------------------
ONED = "/etc/one/oned.conf"
MONITORD = "/etc/one/monitord.conf"
EC2_COMMENTED = """\
#IM_MAD = [
#      NAME          = "ec2",
#      SUNSTONE_NAME = "Amazon EC2",
#      EXECUTABLE    = "one_im_sh",
#      ARGUMENTS     = "-c -t 1 -r 0 -w 600 ec2" ]"""
EC2 = """\
IM_MAD = [
      NAME          = "ec2",
      SUNSTONE_NAME = "Amazon EC2",
      EXECUTABLE    = "one_im_sh",
      ARGUMENTS     = "-c -t 1 -r 0 -w 660 ec2" ]"""
LXD = """\
IM_MAD = [
      NAME          = "lxd",
      SUNSTONE_NAME = "LXD",
      EXECUTABLE    = "one_im_ssh",
      ARGUMENTS     = "-r 3 -t 15 -w 90 lxd" ]"""


def customize_5_10(prefix: Path) -> None:
    # a stock driver changed, one added (uncommented and changed), one removed, collectd changed
    edit(prefix, ONED, '"-r 3 -t 15 -w 90 kvm" ]', '"-r 5 -t 15 -w 90 kvm" ]')
    edit(prefix, ONED, EC2_COMMENTED, EC2)
    edit(prefix, ONED, LXD, "")
    edit(prefix, ONED, '"-p 4124 -f 5 -t 50 -i 60"', '"-p 4124 -f 5 -t 50 -i 30"')
    edit(prefix, ONED, "MONITORING_INTERVAL_VM        = 180", "MONITORING_INTERVAL_VM = 60")


def test_5_10_im_mads_move_to_monitord(tree: Path) -> None:
    materialize("5.10.0", tree)
    customize_5_10(tree)
    outcome = run(tree, "5.10.0", "5.12.0")

    expected = copy.deepcopy(stock_one("5.12.0", MONITORD))
    drivers = expected["IM_MAD"]
    assert isinstance(drivers, dict)
    drivers['"kvm"']["ARGUMENTS"] = ['"-r 5 -t 15 -w 90 kvm"']  # the rest: 5.12 (THREADS = 0)
    drivers['"ec2"'] = {
        "NAME": ['"ec2"'],
        "SUNSTONE_NAME": ['"Amazon EC2"'],
        "EXECUTABLE": ['"one_im_sh"'],
        "ARGUMENTS": ['"-c -t 1 -r 0 -w 660 ec2"'],
    }
    del drivers['"lxd"']
    probes = expected["PROBES_PERIOD"]
    assert isinstance(probes, dict)
    probes[None]["MONITOR_VM"] = ["60"]  # MONITOR_HOST stays 120: its old value was stock
    got = one_tree(tree, MONITORD)
    assert got == expected
    assert set(got["IM_MAD"]) == {'"kvm"', '"firecracker"', '"vcenter"', '"ec2"'}

    # oned.conf keeps only the monitor daemon, and has no driver of the user's left
    oned = one_tree(tree, ONED)
    assert oned["IM_MAD"] == stock_one("5.12.0", ONED)["IM_MAD"]
    assert "MONITORING_INTERVAL_VM" not in oned and "MONITORING_INTERVAL_HOST" not in oned
    text = notes(outcome)
    for what in ('"kvm"', '"ec2"', '"lxd"', '"collectd"', "MONITOR_VM"):
        assert what in text, what
    assert "MONITOR_HOST" not in text


# -- 6.0.0 -> 6.2.0: FireEdge provision and support token ---------------------------------------
FIREEDGE = "/etc/one/fireedge-server.conf"
PROVISION = "/etc/one/fireedge/provision/provision-server.conf"
SUNSTONE = "/etc/one/sunstone-server.conf"
FE_SUNSTONE = "/etc/one/fireedge/sunstone/sunstone-server.conf"


def test_6_0_fireedge_values_copied(tree: Path) -> None:
    materialize("6.0.0", tree)
    edit(tree, FIREEDGE, "oneprovision_prepend_command: ''", "oneprovision_prepend_command: sudo")
    edit(tree, FIREEDGE, "# Guacamole:", "oneprovision_extra_flags: '--debug'\n\n# Guacamole:")
    edit(tree, SUNSTONE, "#:token_remote_support:", ":token_remote_support: abc123")
    outcome = run(tree, "6.0.0", "6.2.0")

    expected = stock_yaml("6.2.0", PROVISION)
    expected["oneprovision_prepend_command"] = "sudo"
    expected["oneprovision_extra_flags"] = "--debug"
    got = yaml_content(tree, PROVISION)
    assert strict_equal(got, expected), got
    assert got["oneprovision_optional_create_command"] == ""  # untouched: the default

    expected = stock_yaml("6.2.0", FE_SUNSTONE)
    expected["support_token"] = "abc123"
    assert strict_equal(yaml_content(tree, FE_SUNSTONE), expected)

    # copied, not moved: 6.2.0's fireedge-server.conf still has the keys
    fireedge = yaml_content(tree, FIREEDGE)
    assert fireedge["oneprovision_prepend_command"] == "sudo"
    assert yaml_content(tree, SUNSTONE)[Symbol(":token_remote_support")] == "abc123"
    text = notes(outcome)
    assert "oneprovision_prepend_command" in text and "oneprovision_extra_flags" in text
    assert "oneprovision_optional_create_command" not in text
    assert "support_token" in text


def test_6_0_existing_support_token_is_kept(tree: Path) -> None:
    materialize("6.0.0", tree)
    edit(tree, SUNSTONE, "#:token_remote_support:", ":token_remote_support: abc123")
    existing = tree / FE_SUNSTONE.lstrip("/")
    existing.parent.mkdir(parents=True)
    text = (store().read("6.2.0", FE_SUNSTONE) or "").replace(
        "support_token: ''", "support_token: mine"
    )
    existing.write_text(text)
    outcome = run(tree, "6.0.0", "6.2.0")
    assert existing.read_text() == text
    assert "already has a support_token" in notes(outcome)


# -- 6.10.0 -> 6.10.2: renamed keys -------------------------------------------------------------
TABS = "/etc/one/fireedge/sunstone"
GUESTAGENT = "/var/lib/one/remotes/etc/im/kvm-probes.d/guestagent.conf"


def tab(view: str) -> str:
    return f"{TABS}/{view}/service-tab.yaml"


def test_6_10_names_renamed(tree: Path) -> None:
    materialize("6.10.0", tree)
    # an old-style tab (key), a list of the user's naming it, a file with both names
    edit(tree, tab("cloud"), "  sched_actions:\n", "  scheduler_actions:\n")
    edit(tree, tab("admin"), "  sched_actions:\n", "  scheduler_actions:\n")
    edit(tree, tab("admin"), "# Dialogs\n", "hidden_tabs:\n  - log\n  - scheduler_actions\n")
    edit(tree, tab("groupadmin"), "  log:\n", "  scheduler_actions:\n    enabled: false\n  log:\n")
    edit(tree, GUESTAGENT, ":vm_qemu_ping:", ":vm_crash:")
    edit(tree, GUESTAGENT, ":commands:\n", ":commands:\n  :vm_users: one-$vm_id users\n")
    outcome = run(tree, "6.10.0", "6.10.2")

    assert strict_equal(yaml_content(tree, tab("cloud")), stock_yaml("6.10.2", tab("cloud")))
    expected = stock_yaml("6.10.2", tab("admin"))
    expected["hidden_tabs"] = ["log", "sched_actions"]
    admin = yaml_content(tree, tab("admin"))
    assert strict_equal(admin, expected)
    assert admin["hidden_tabs"] == ["log", "sched_actions"]  # the list keeps its order
    # both names: nothing renamed, the user's file is kept
    group = yaml_content(tree, tab("groupadmin"))
    assert group["info-tabs"]["scheduler_actions"] == {"enabled": False}
    assert (
        group["info-tabs"]["sched_actions"]
        == stock_yaml("6.10.2", tab("groupadmin"))["info-tabs"]["sched_actions"]
    )

    stock_agent = stock_yaml("6.10.2", GUESTAGENT)
    expected = copy.deepcopy(stock_agent)
    expected[Symbol(":commands")][Symbol(":vm_users")] = "one-$vm_id users"
    agent = yaml_content(tree, GUESTAGENT)
    assert strict_equal(agent, expected)
    assert Symbol(":vm_crash") not in agent[Symbol(":commands")]

    text = notes(outcome)
    assert f"{tab('cloud')}: scheduler_actions renamed" in text
    assert f"{tab('admin')}: scheduler_actions renamed" in text
    assert f"{tab('groupadmin')}: info-tabs/scheduler_actions not renamed" in text
    assert f"{GUESTAGENT}: :vm_crash renamed to :vm_qemu_ping" in text


def test_6_10_nested_and_listed_names(tree: Path) -> None:
    materialize("6.10.0", tree)
    edit(
        tree,
        tab("cloud"),
        "  sched_actions:\n    enabled: true\n",
        "  scheduler_actions:\n    enabled: true\n    scheduler_actions: true\n"
        "    order:\n      - [info, scheduler_actions]\n      - {scheduler_actions: 1}\n"
        "    title: scheduler_actions\n",
    )
    run(tree, "6.10.0", "6.10.2")
    got = yaml_content(tree, tab("cloud"))["info-tabs"]
    assert "scheduler_actions" not in got
    assert got["sched_actions"]["sched_actions"] is True
    assert got["sched_actions"]["order"] == [["info", "sched_actions"], {"sched_actions": 1}]
    assert got["sched_actions"]["title"] == "scheduler_actions"  # a value, not a name


# -- 6.10.2 -> 7.0.0: sched.conf into oned.conf and rank.conf -----------------------------------
SCHED = "/etc/one/sched.conf"
RANK = "/etc/one/schedulers/rank.conf"
VIEWS = "/etc/one/sunstone-views.yaml"
LABELS = "/etc/one/fireedge/sunstone/default-labels.yaml"


def customize_6_10_2(prefix: Path) -> None:
    edit(prefix, SCHED, "MAX_DISPATCH = 30", "MAX_DISPATCH = 50")
    edit(prefix, SCHED, "MAX_HOST     = 1", "MAX_HOST     = 2")
    edit(prefix, SCHED, "LIVE_RESCHEDS  = 0", "LIVE_RESCHEDS  = 1")
    edit(prefix, SCHED, "SCHED_INTERVAL = 15", "SCHED_INTERVAL = 30")
    edit(prefix, SCHED, "  DEBUG_LEVEL = 3", "  DEBUG_LEVEL = 5")
    edit(
        prefix,
        SCHED,
        "DEFAULT_SCHED = [\n   POLICY = 1\n]",
        'DEFAULT_SCHED = [\n   POLICY = 3,\n   RANK = "FREE_CPU"\n]',
    )
    edit(
        prefix,
        VIEWS,
        "labels_groups:\n    default:\n",
        "labels_groups:\n    default:\n        - Prod\n        - Team/DB\n"
        "    oneadmin:\n        - Admins\n        - Team/Ops\n",
    )


def test_6_10_2_scheduler_settings_move(tree: Path) -> None:
    materialize("6.10.2", tree)
    customize_6_10_2(tree)
    outcome = run(tree, "6.10.2", "7.0.0")
    assert not (tree / SCHED.lstrip("/")).exists()
    assert not (tree / VIEWS.lstrip("/")).exists()

    expected = copy.deepcopy(stock_one("7.0.0", ONED))
    expected["MAX_ACTIONS_PER_CLUSTER"] = ["50"]
    expected["MAX_ACTIONS_PER_HOST"] = ["2"]
    expected["LIVE_RESCHEDS"] = ["1"]
    oned = one_tree(tree, ONED)
    assert oned == expected
    assert oned["COLD_MIGRATE_MODE"] == ["0"]  # not customized: the 7.0.0 default
    assert "SCHED_INTERVAL" not in oned and "MAX_DISPATCH" not in oned

    expected = copy.deepcopy(stock_one("7.0.0", RANK))
    log, sched = expected["LOG"], expected["DEFAULT_SCHED"]
    assert isinstance(log, dict) and isinstance(sched, dict)
    log[None]["DEBUG_LEVEL"] = ["5"]
    sched[None]["POLICY"] = ["3"]
    sched[None]["RANK"] = ['"FREE_CPU"']
    expected["MAX_HOST"] = ["2"]
    rank = one_tree(tree, RANK)
    assert rank == expected
    assert rank["DEFAULT_DS_SCHED"] == {None: {"POLICY": ["1"]}}

    labels = yaml_content(tree, LABELS)
    assert labels == {
        "group": {"oneadmin": {"Admins": None, "Team": {"Ops": None}}},
        "user": {"Prod": None, "Team": {"DB": None}},
    }
    text = notes(outcome)
    for what in (
        "MAX_DISPATCH as MAX_ACTIONS_PER_CLUSTER = 50",
        "MAX_HOST as MAX_ACTIONS_PER_HOST = 2",
        "LIVE_RESCHEDS = 1",
        "LOG/DEBUG_LEVEL = 5",
        "DEFAULT_SCHED/RANK",
        f"{SCHED} SCHED_INTERVAL: customized, but 7.0.0 has no such setting",
        "labels_groups moved",
    ):
        assert what in text, what
    assert "COLD_MIGRATE_MODE" not in text and "MEMORY_SYSTEM_DS_SCALE" not in text


def test_noop_writes_nothing(tree: Path, tmp_path: Path) -> None:
    materialize("6.10.2", tree)
    customize_6_10_2(tree)
    before = snapshot(tree)
    outcome = run(tree, "6.10.2", "7.0.0", noop=True)
    assert not outcome.saved and outcome.notes
    assert snapshot(tree) == before
    env = {"ONECFG_ETC_DIR": str(tmp_path / "etc"), "ONECFG_BACKUP_DIR": str(tmp_path / "bk")}
    args = ["--prefix", str(tree), "--from", "6.10.2", "--to", "7.0.0"]
    result = run_tool("onecfg", "upgrade", "--noop", *args, env=env)
    assert result.code == 0, result.err
    assert "would be upgraded" in result.out
    assert snapshot(tree) == before
    assert not (tmp_path / "etc" / "onecfg.conf").exists()


# -- 7.2.0 -> 7.4.0: OneGate :host/:port under :server ------------------------------------------
ONEGATE = "/etc/one/onegate-server.conf"


@pytest.mark.parametrize(
    ("host", "port"),
    [("0.0.0.0", None), (None, 5031), ("192.0.2.7", 6000)],
    ids=["host", "port", "both"],
)
def test_7_2_onegate_server(tree: Path, host: str | None, port: int | None) -> None:
    materialize("7.2.0", tree)
    if host:
        edit(tree, ONEGATE, ":host: 127.0.0.1", f":host: {host}")
    if port:
        edit(tree, ONEGATE, ":port: 5030", f":port: {port}")
    outcome = run(tree, "7.2.0", "7.4.0")
    expected = stock_yaml("7.4.0", ONEGATE)
    server = expected[Symbol(":server")]
    if host:
        server[Symbol(":bind")] = host
    if port:
        server[Symbol(":port")] = port
    got = yaml_content(tree, ONEGATE)
    assert strict_equal(got, expected), got
    assert Symbol(":host") not in got
    text = notes(outcome)
    assert (":bind" in text) == bool(host)
    assert (":server/:port" in text) == bool(port)


def test_stock_chain_is_stock(tree: Path) -> None:
    """The whole chain on a stock tree: the programs only read (a document merely read must
    not count as changed, or later steps stop refreshing pristine files)."""
    materialize("5.8.0", tree)
    outcome = run(tree, "5.8.0", "7.5.80")
    assert outcome.notes == []
    for path in store().paths("7.5.80"):
        assert (tree / path.lstrip("/")).read_text() == store().read("7.5.80", path), path
