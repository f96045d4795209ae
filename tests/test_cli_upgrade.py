"""``onecfg status|init|diff|upgrade|generate`` through the real command line."""

from __future__ import annotations

import os
import random
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from helpers import Result, run_tool, snapshot, tool_command
from onetools.config.formats.one import OneDocument
from onetools.config.stock import store
from onetools.config.transaction import tree_lock


class Env:
    """A scratch world: a tree, a settings dir, a backup dir, and the environment to use them."""

    def __init__(self, root: Path, version: str | None = "6.0.0", one: str | None = "6.10.0"):
        self.root = root
        self.tree = root / "tree"
        self.etc = root / "etc"
        self.etc.mkdir(parents=True)
        self.settings = self.etc / "onecfg.conf"
        self.env = {
            "ONECFG_ETC_DIR": str(self.etc),
            "ONECFG_BACKUP_DIR": str(root / "backups"),
            "PATH": os.environ.get("PATH", ""),
        }
        if one is not None:
            self.env["ONECFG_ONE_VERSION"] = one
        if version is not None:
            store().materialize(version, str(self.tree))
            self.settings.write_text(f"---\nversion: {version}\n")

    def run(self, *args: str, stdin: str | None = None, **extra: str) -> Result:
        env = dict(self.env)
        env.update(extra)
        clean = {k: v for k, v in os.environ.items() if not k.startswith("ONECFG_")}
        clean.update(env)
        return run_tool("onecfg", *args, stdin=stdin, env=clean)

    def patch(self, text: str) -> None:
        result = self.run("patch", "--prefix", str(self.tree), stdin=text)
        assert result.code == 0, result.err

    def oned(self) -> dict[str, object]:
        text = (self.tree / "etc/one/oned.conf").read_text()
        return OneDocument.parse(text, "oned.conf").tree()


@pytest.fixture
def world(tmp_path: Path) -> Env:
    return Env(tmp_path)


# -- status / init ------------------------------------------------------------------------------


def test_status_lists_steps_and_exits_1(world: Env) -> None:
    result = world.run("status")
    assert result.code == 1, result.err
    assert "OpenNebula:  6.10.0" in result.out and "Config:      6.0.0" in result.out
    assert "New config:  6.10.0" in result.out
    assert "- from 6.0.0 to 6.2.0 (YAML" in result.out
    assert "- from 6.8.0 to 6.10.0 (YAML" in result.out
    as_json = world.run("status", "--json")
    assert as_json.code == 1 and '"new_config": "6.10.0"' in as_json.out


def test_status_exit_codes(tmp_path: Path) -> None:
    current = Env(tmp_path / "a", version="6.10.0", one="6.10.0")
    assert current.run("status").code == 0
    assert "No updates available." in current.run("status").out

    patch_release = Env(tmp_path / "b", version="6.8.0", one="6.10.3")
    result = patch_release.run("status")
    assert result.code == 1 and "New config:  6.10.2" in result.out

    for one, message in [
        ("7.6.0", "Unsupported OpenNebula version 7.6.0"),
        ("x.y", "Invalid OpenNebula version 'x.y'"),
    ]:
        bad = current.run("status", ONECFG_ONE_VERSION=one)
        assert bad.code == 255 and message in bad.out, bad.out

    no_oned = Env(tmp_path / "c", version="6.10.0", one=None)
    result = no_oned.run("status")
    assert result.code == 255 and "Unknown OpenNebula version" in result.out

    current.settings.write_text("---\nversion: 5.4.0\n")
    assert "Unsupported config version 5.4.0" in current.run("status").out
    current.settings.write_text("---\nversion: 6.10.0\noutdated: true\n")
    assert current.run("status").code == 255
    current.settings.write_text("---\nversion: 6.10.0\nbackup: /somewhere\n")
    pending = current.run("status")
    assert pending.code == 1 and "Snapshot:    /somewhere" in pending.out
    assert "update request for backup must be cleared" in pending.out
    current.settings.write_text("version: [unclosed\n")
    corrupt = current.run("status")
    assert corrupt.code == 255
    assert corrupt.err.startswith("ERROR : Corrupt settings file") and "line" in corrupt.err


def test_oned_version_detection(tmp_path: Path) -> None:
    world = Env(tmp_path, version="6.8.0", one=None)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    oned = bin_dir / "oned"
    oned.write_text("#!/bin/sh\necho 'OpenNebula 6.10.3 (0a1b2c3d) Enterprise Edition'\n")
    oned.chmod(0o755)
    result = world.run("status", PATH=f"{bin_dir}:{os.environ['PATH']}")
    assert result.code == 1 and "OpenNebula:  6.10.3" in result.out
    assert world.run("status", "--one-version", "6.8.1").code == 0


def test_init(tmp_path: Path) -> None:
    world = Env(tmp_path, version=None, one="6.10.0")
    done = world.run("init", "-v")
    assert done.code == 0 and "Initialized on version 6.10.0" in done.err
    assert world.settings.read_text() == "---\nversion: 6.10.0\n"
    again = world.run("init", "--to", "6.0.0")
    assert again.code == 0 and "ANY   : Already initialized" in again.err
    assert "6.10.0" in world.settings.read_text()
    for bad, message in [("foo", "Invalid version 'foo'"), ("5.4.0", "Unsupported version")]:
        result = world.run("init", "--force", "--to", bad)
        assert result.code == 255 and message in result.err
        assert "6.10.0" in world.settings.read_text()
    assert world.run("init", "--force", "--to", "6.8.0").code == 0
    assert world.settings.read_text() == "---\nversion: 6.8.0\n"
    no_oned = Env(tmp_path / "x", version=None, one=None)
    result = no_oned.run("init")
    assert result.code == 255 and "Could not detect OpenNebula version" in result.err


# -- diff ---------------------------------------------------------------------------------------

CUSTOM = """\
/etc/one/oned.conf set PORT 2634
/etc/one/oned.conf ins VM_RESTRICTED_ATTR "\\"MYATTR\\""
/etc/one/oned.conf rm DEFAULT_UMASK
/etc/one/sunstone-server.conf set :port 8080
/etc/one/cli/onevm.yaml ins :default ":MYCOL"
/var/lib/one/remotes/etc/vmm/kvm/kvmrc set LIBVIRT_URI "qemu+tcp://h/system" # {"export":false}
"""


def test_diff_line_output_reproduces_the_customized_tree(world: Env, tmp_path: Path) -> None:
    world.patch(CUSTOM)
    for fmt in ("text", "line", "yaml"):
        assert world.run("diff", "--prefix", str(world.tree), "--format", fmt).code == 0
    lines = world.run("diff", "--prefix", str(world.tree), "--format", "line")
    assert lines.out.count("\n") == 6, lines.out
    fresh = Env(tmp_path / "fresh")
    fresh.patch(lines.out)
    assert snapshot(fresh.tree) == snapshot(world.tree)
    as_yaml = world.run("diff", "--prefix", str(world.tree), "--format", "yaml")
    other = Env(tmp_path / "other")
    other.patch(as_yaml.out)
    assert snapshot(other.tree) == snapshot(world.tree)
    bad = world.run("diff", "--prefix", str(world.tree), "--format", "xml")
    assert bad.code == 255 and "Available formats - text, line, yaml" in bad.err


def test_diff_of_a_stock_tree_is_empty(world: Env) -> None:
    result = world.run("diff", "--prefix", str(world.tree))
    assert result.code == 0 and result.out == ""


# -- upgrade ------------------------------------------------------------------------------------


def test_upgrade_keeps_customizations_and_saves_the_version(world: Env) -> None:
    world.patch(CUSTOM)
    result = world.run("upgrade", "--prefix", str(world.tree), "-v")
    assert result.code == 0, result.err
    assert "Configuration upgraded from 6.0.0 to 6.10.0 (5 steps)" in result.out
    assert "ANY   : Configuration updated to 6.10.0" in result.err
    assert world.settings.read_text() == "---\nversion: 6.10.0\n"
    oned = world.oned()
    assert oned["PORT"] == ["2634"] and '"MYATTR"' in oned["VM_RESTRICTED_ATTR"]
    assert "DEFAULT_UMASK" not in oned
    assert ":MYCOL" in (world.tree / "etc/one/cli/onevm.yaml").read_text()
    assert (world.tree / "etc/one/fireedge/sunstone/admin/vm-tab.yaml").exists()
    assert world.run("status").code == 0
    again = world.run("upgrade", "--prefix", str(world.tree))
    assert again.code == 0 and "No updates available" in again.out


def test_noop_writes_nothing(world: Env, tmp_path: Path) -> None:
    world.patch(CUSTOM)
    before, settings = snapshot(world.tree), world.settings.read_text()
    backups = sorted((tmp_path / "backups").iterdir())
    result = world.run("upgrade", "--prefix", str(world.tree), "--noop", "--json")
    assert result.code == 0 and '"noop": true' in result.out and '"saved": false' in result.out
    assert snapshot(world.tree) == before and world.settings.read_text() == settings
    assert sorted((tmp_path / "backups").iterdir()) == backups


KVM_ARGS = '/etc/one/oned.conf set VM_MAD/"kvm"/ARGUMENTS "\\"-t 15 -r 0 kvm -c\\""\n'


def test_conflicts_per_patch_mode(tmp_path: Path) -> None:
    # 6.2.0 -> 6.4.0 changes the kvm arguments; so does the user.
    world = Env(tmp_path / "a", version="6.2.0", one="6.4.0")
    world.patch(KVM_ARGS)
    before, settings = snapshot(world.tree), world.settings.read_text()

    strict = world.run("upgrade", "--prefix", str(world.tree), "--patch-strict")
    assert strict.code == 255
    assert "Conflict in '/etc/one/oned.conf'" in strict.err and "VM_MAD" in strict.err
    assert strict.err.startswith("FATAL : FAILED - ")
    assert snapshot(world.tree) == before and world.settings.read_text() == settings

    kept = world.run("upgrade", "--prefix", str(world.tree), "--noop", "--json")
    assert kept.code == 0 and '"kind": "conflict"' in kept.out and '"conflicts": 1' in kept.out

    replaced = world.run(
        "upgrade",
        "--prefix",
        str(world.tree),
        "--patch-strict",
        "--patch-modes",
        "replace:/etc/one/oned.conf",
    )
    assert replaced.code == 0, replaced.err
    assert "replaced" in replaced.out
    args = world.oned()["VM_MAD"]['"kvm"']["ARGUMENTS"]  # type: ignore[index]
    assert args == ['"-t 15 -r 0 kvm -p"']


def test_removed_section_is_skipped_not_fatal(tmp_path: Path) -> None:
    world = Env(tmp_path, version="6.2.0", one="6.4.0")
    world.patch('/etc/one/oned.conf rm VM_MAD/"kvm"\n')
    before = snapshot(world.tree)
    strict = world.run("upgrade", "--prefix", str(world.tree), "--patch-strict")
    assert strict.code == 255 and "not found" in strict.err
    assert snapshot(world.tree) == before
    result = world.run("upgrade", "--prefix", str(world.tree))
    assert result.code == 0, result.err
    assert "skipped" in result.out and 'VM_MAD/\\"kvm\\"' in result.out
    assert '"kvm"' not in world.oned()["VM_MAD"]  # type: ignore[operator]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--to", "8.0.0"], "Unsupported to version 8.0.0"),
        (["--from", "5.4.0"], "Unsupported from version 5.4.0"),
        (["--from", "bogus"], "Invalid from version 'bogus'"),
        (["--patch-modes", "explode"], "Unsupported mode 'explode'"),
        (["--patch-modes", "skip:a:b:c"], "Wrong modes format"),
    ],
)
def test_upgrade_bad_versions_and_modes(world: Env, args: list[str], message: str) -> None:
    before = snapshot(world.tree)
    result = world.run("upgrade", "--prefix", str(world.tree), *args)
    assert result.code == 255 and message in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1
    assert snapshot(world.tree) == before


def test_upgrade_refuses_bad_trees(world: Env) -> None:
    settings = world.settings.read_text()
    link = world.tree / "etc/one/linked.conf"
    link.symlink_to(world.tree / "etc/one/oned.conf")
    before = snapshot(world.tree)
    result = world.run("upgrade", "--prefix", str(world.tree))
    assert result.code == 255 and "Found symbolic links in" in result.err
    assert snapshot(world.tree) == before
    link.unlink()

    oned = world.tree / "etc/one/oned.conf"
    oned.write_text(oned.read_text() + "BROKEN = [ A = 1,\n")
    before = snapshot(world.tree)
    result = world.run("upgrade", "--prefix", str(world.tree))
    assert result.code == 255
    assert "/etc/one/oned.conf" in result.err and "at line" in result.err, result.err
    assert snapshot(world.tree) == before and world.settings.read_text() == settings

    world.settings.write_text("version: 6.0.0\noutdated: maybe\n")
    assert world.run("upgrade", "--prefix", str(world.tree)).code == 255
    world.settings.unlink()
    unknown = world.run("upgrade", "--prefix", str(world.tree))
    assert unknown.code == 255 and "Unknown OpenNebula or config. version" in unknown.err


def test_one_shot_backup_is_upgraded_into_production(world: Env, tmp_path: Path) -> None:
    # Packaging left a snapshot of the old (customized) configuration and installed new stock
    # files over production; the upgrade must start from the snapshot.
    world.patch(CUSTOM)
    snapshot_dir = tmp_path / "pre-upgrade"
    for root in ("etc/one", "var/lib/one/remotes"):
        (snapshot_dir / root).parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-a", str(world.tree / root), str(snapshot_dir / root)], check=True)
    store().materialize("6.10.0", str(tmp_path / "new-stock"))
    subprocess.run(["rm", "-rf", str(world.tree)], check=True)
    subprocess.run(["cp", "-a", str(tmp_path / "new-stock"), str(world.tree)], check=True)
    world.settings.write_text(f"---\nversion: 6.0.0\nbackup: {snapshot_dir}\n")

    result = world.run("upgrade", "--prefix", str(world.tree), "-v")
    assert result.code == 0, result.err
    assert "Found backed up configuration to process!" in result.err
    assert world.settings.read_text() == "---\nversion: 6.10.0\n"
    oned = world.oned()
    assert oned["PORT"] == ["2634"] and '"MYATTR"' in oned["VM_RESTRICTED_ATTR"]

    world.settings.write_text(f"---\nversion: 6.10.0\nbackup: {snapshot_dir}\n")
    cleared = world.run("upgrade", "--prefix", str(world.tree))
    assert cleared.code == 0 and "Considering as processed" in cleared.err
    assert world.settings.read_text() == "---\nversion: 6.10.0\n"


def test_patch_release_upgrades_without_init(tmp_path: Path) -> None:
    world = Env(tmp_path, version="6.8.0", one="6.10.3")
    result = world.run("upgrade", "--prefix", str(world.tree))
    assert result.code == 0, result.err
    assert world.settings.read_text() == "---\nversion: 6.10.2\n"
    assert world.run("status").code == 0


def test_sigkill_during_upgrade(tmp_path: Path) -> None:
    rng = random.Random(7)
    base = Env(tmp_path / "base")
    base.patch(CUSTOM)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONECFG_")}
    env.update(base.env)
    env["ONETOOLS_TXN_DELAY"] = "0.004"

    def start(tree: Path, etc: Path) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [*tool_command("onecfg"), "upgrade", "--prefix", str(tree)],
            env=dict(env, ONECFG_ETC_DIR=str(etc)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def copy(name: str) -> tuple[Path, Path]:
        tree, etc = tmp_path / name / "tree", tmp_path / name / "etc"
        subprocess.run(["mkdir", "-p", str(tree.parent)], check=True)
        subprocess.run(["cp", "-a", str(base.tree), str(tree)], check=True)
        subprocess.run(["cp", "-a", str(base.etc), str(etc)], check=True)
        return tree, etc

    tree, etc = copy("timing")
    clock = time.monotonic()
    assert start(tree, etc).wait() == 0
    duration = time.monotonic() - clock
    old_tree = snapshot(base.tree)
    new_tree = snapshot(tree)
    seen = set()
    # Machine speed varies between runs: sample kill times until both sides of the commit
    # point were hit (at least 8 attempts, at most 20).
    for attempt in range(20):
        if attempt >= 8 and seen == {"old", "new"}:
            break
        tree, etc = copy(f"run{attempt}")
        proc = start(tree, etc)
        time.sleep(rng.uniform(0.15, 1.0) * duration)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with tree_lock(str(tree)):
            pass  # what the next run does first: finish or undo the interrupted change
        now = snapshot(tree)
        version = (etc / "onecfg.conf").read_text()
        if now == old_tree:
            assert version == "---\nversion: 6.0.0\n"
            seen.add("old")
        else:
            assert now == new_tree, f"attempt {attempt}: tree is neither old nor new"
            assert version == "---\nversion: 6.10.0\n"
            seen.add("new")
        rerun = subprocess.run(
            [*tool_command("onecfg"), "upgrade", "--prefix", str(tree)],
            env=dict(env, ONECFG_ETC_DIR=str(etc), ONETOOLS_TXN_DELAY=""),
            capture_output=True,
            text=True,
            check=False,
        )
        assert rerun.returncode == 0, rerun.stderr
        assert snapshot(tree) == new_tree
    assert seen == {"old", "new"}, seen


# -- generate -----------------------------------------------------------------------------------


def test_generate_between_versions_and_trees(tmp_path: Path) -> None:
    world = Env(tmp_path, version=None)
    from_versions = world.run("generate", "6.8.0", "6.10.0")
    assert from_versions.code == 0, from_versions.err
    from onetools.config.descriptors import load_yaml

    descriptor = load_yaml(from_versions.out)
    assert descriptor.counts() == {
        "apply": 15,
        "create": 35,
        "delete": 6,
        "unchanged": 93,
        "ops": 123,
    }
    assert descriptor.entries["/etc/one/oned.conf"].content == store().read(
        "6.10.0", "/etc/one/oned.conf"
    )
    store().materialize("6.8.0", str(tmp_path / "a"))
    store().materialize("6.10.0", str(tmp_path / "b"))
    out = tmp_path / "step.yaml"
    from_dirs = world.run("generate", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(out))
    assert from_dirs.code == 0, from_dirs.err
    again = load_yaml(out.read_text())
    assert again.counts() == descriptor.counts()
    assert (
        again.entries["/etc/one/oned.conf"].change
        == descriptor.entries["/etc/one/oned.conf"].change
    )
    (tmp_path / "a/etc/one/stray.txt").write_text("x")
    stray = world.run("generate", str(tmp_path / "a"), str(tmp_path / "b"))
    assert stray.code == 255 and "doesn't have classification" in stray.err
    assert world.run("generate", "6.8.0", "9.9.9").code == 255


def test_created_files_get_their_modes(world: Env) -> None:
    assert world.run("upgrade", "--prefix", str(world.tree), "--unprivileged").code == 0
    created = world.tree / "etc/one/fireedge/sunstone/admin/vm-tab.yaml"
    assert stat.S_IMODE(created.stat().st_mode) == 0o640
    assert stat.S_IMODE(created.parent.stat().st_mode) == 0o750


def test_container_bootstrap_recipe(tmp_path: Path) -> None:
    """docs/onecfg.md's recipe: first start, restart, then a start on a newer image."""
    world = Env(tmp_path, version=None, one="6.8.0")
    store().materialize("6.8.0", str(world.tree))
    site = tmp_path / "site.patch"
    site.write_text(CUSTOM)

    def boot(one: str) -> None:
        if not world.settings.exists():
            assert world.run("init", ONECFG_ONE_VERSION=one).code == 0
        patched = world.run(
            "patch", "--converge", "--prefix", str(world.tree), str(site), ONECFG_ONE_VERSION=one
        )
        assert patched.code == 0, patched.err
        upgraded = world.run("upgrade", "--prefix", str(world.tree), ONECFG_ONE_VERSION=one)
        assert upgraded.code == 0, upgraded.err

    boot("6.8.0")
    first = snapshot(world.tree)
    boot("6.8.0")  # a restart changes nothing
    assert snapshot(world.tree) == first
    boot("7.0.0")  # the image was updated: the volume's configuration is upgraded
    assert world.settings.read_text() == "---\nversion: 7.0.0\n"
    assert world.oned()["PORT"] == ["2634"]
    assert world.run("status", ONECFG_ONE_VERSION="7.0.0").code == 0
