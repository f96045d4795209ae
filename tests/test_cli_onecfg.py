"""``onecfg patch`` and ``onecfg validate`` through the real command line (exit codes, messages,
files on disk)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import STOCK_VERSIONS
from helpers import copy_stock, run_tool, snapshot, tool_command
from onetools.config.formats.one import OneDocument
from onetools.config.transaction import tree_lock

MYSQL_PATCH = """\
/etc/one/oned.conf set DB/BACKEND "\\"mysql\\""
/etc/one/oned.conf ins DB/SERVER "\\"localhost\\""
/etc/one/oned.conf ins DB/USER "\\"oneadmin\\""
/etc/one/oned.conf ins DB/PASSWD "\\"oneadmin\\""
/etc/one/oned.conf ins DB/NAME "\\"opennebula\\""
/etc/one/oned.conf set PORT 2633
/etc/one/oned.conf set LISTEN_ADDRESS "\\"127.0.0.1\\""
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return copy_stock("6.0.0", tmp_path / "tree")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"ONECFG_BACKUP_DIR": str(tmp_path / "backups")}


def onecfg(*args: str, **kwargs: object):  # type: ignore[no-untyped-def]
    return run_tool("onecfg", *args, **kwargs)  # type: ignore[arg-type]


def test_mysql_patch_on_stock_6_0_0(tree: Path, tmp_path: Path, env: dict[str, str]) -> None:
    before = (tree / "etc/one/oned.conf").read_text()
    patch_file = tmp_path / "mysql.patch"
    patch_file.write_text(MYSQL_PATCH)
    result = onecfg("patch", "--prefix", str(tree), "--verbose", str(patch_file), env=env)
    assert result.code == 0, result.err
    assert "INFO  : Patched '/etc/one/oned.conf' with 7/7 changes" in result.err
    assert "INFO  : Applied 7/7 changes" in result.err
    backup_lines = [line for line in result.err.splitlines() if line.startswith("ANY   : Backup")]
    assert len(backup_lines) == 1
    backup = Path(backup_lines[0].split("'")[1])
    assert backup.parent == tmp_path / "backups"
    assert (backup / "etc/one/oned.conf").read_text() == before

    after = (tree / "etc/one/oned.conf").read_text()
    document = OneDocument.parse(after, "oned.conf")
    tree_model = document.tree()
    db = tree_model["DB"][None]
    assert db["BACKEND"] == ['"mysql"']
    assert db["SERVER"] == ['"localhost"'] and db["USER"] == ['"oneadmin"']
    assert db["PASSWD"] == ['"oneadmin"'] and db["NAME"] == ['"opennebula"']
    assert tree_model["PORT"] == ["2633"]
    assert tree_model["LISTEN_ADDRESS"] == ['"127.0.0.1"']
    # Comments and unrelated settings are kept as they were.
    kept = [line for line in before.splitlines() if line.startswith("#")]
    assert [line for line in after.splitlines() if line.startswith("#")] == kept


def test_noop_changes_nothing_and_takes_no_backup(
    tree: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    before = snapshot(tree)
    result = onecfg("patch", "--prefix", str(tree), "-n", "-v", stdin=MYSQL_PATCH, env=env)
    assert result.code == 0, result.err
    assert "Changes ARE NOT saved in no-op mode!" in result.err
    assert snapshot(tree) == before
    assert not (tmp_path / "backups").exists()


def test_partial_patch_exits_1_and_saves_applied(tree: Path, env: dict[str, str]) -> None:
    text = MYSQL_PATCH + "/etc/one/oned.conf rm NOT_THERE\n"
    result = onecfg("patch", "--prefix", str(tree), "--json", stdin=text, env=env)
    assert result.code == 1, result.err
    assert '"applied": 7' in result.out and '"total": 8' in result.out
    assert '"mysql"' in (tree / "etc/one/oned.conf").read_text()


def test_all_refuses_to_save_partial_patch(tree: Path, env: dict[str, str]) -> None:
    before = snapshot(tree)
    text = MYSQL_PATCH + "/etc/one/oned.conf rm NOT_THERE\n"
    result = onecfg("patch", "--prefix", str(tree), "--all", stdin=text, env=env)
    assert result.code == 255
    assert "ERROR : Modifications not saved due to 1 unapplied changes!" in result.err
    assert snapshot(tree) == before


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("/etc/one/oned.conf set PORT {oops", "<stdin>: Error reading line patch"),
        ("/etc/one/oned.conf del PORT", "<stdin>: Invalid patch action 'del' at line 2"),
        ("/etc/one/nothere.conf set PORT 1", "Unknown or missing file to patch '/etc/one/nothere"),
        ('/etc/one/oned.conf set "VM_MAD/\\"kvm\\"/A/B" 1', "more than 2 components"),
        ("/etc/one/oned.conf", "Invalid format at line 2"),
    ],
)
def test_bad_input_is_one_error_line_and_changes_nothing(
    tree: Path, env: dict[str, str], line: str, message: str
) -> None:
    before = snapshot(tree)
    text = "/etc/one/oned.conf set PORT 2634\n" + line + "\n"
    result = onecfg("patch", "--prefix", str(tree), stdin=text, env=env)
    assert result.code == 255
    errors = [x for x in result.err.splitlines() if x.strip()]
    assert len(errors) == 1 and errors[0].startswith("ERROR : "), result.err
    assert message in errors[0]
    assert snapshot(tree) == before


@pytest.mark.parametrize(
    ("path", "garbage", "line"),
    [
        ("etc/one/oned.conf", "BROKEN = [ A = 1,\n", None),
        ("etc/one/sunstone-server.conf", "key: [unclosed\n", None),
    ],
)
def test_unparsable_target_file_fails_cleanly(
    tree: Path, env: dict[str, str], path: str, garbage: str, line: int | None
) -> None:
    target = tree / path
    target.write_text(target.read_text() + garbage)
    before = snapshot(tree)
    patch_line = (
        "/etc/one/oned.conf set PORT 2634\n"
        if "oned" in path
        else "/etc/one/sunstone-server.conf set :port 9000\n"
    )
    result = onecfg("patch", "--prefix", str(tree), stdin=patch_line, env=env)
    assert result.code == 255
    errors = [x for x in result.err.splitlines() if x.strip()]
    assert len(errors) == 1, result.err
    assert errors[0].startswith(f"ERROR : Failed to patch file '/{path}' - ")
    assert " at line " in errors[0]
    assert snapshot(tree) == before


def test_yaml_change_document(tree: Path, env: dict[str, str]) -> None:
    sunstone = tree / "etc/one/sunstone-server.conf"
    before = sunstone.read_text().splitlines()
    document = """---
patches:
  /etc/one/oned.conf:
    class: Augeas::ONE
    change:
    - path: []
      key: PORT
      value: '2700'
      old: '2633'
      state: set
      extra: {}
  /etc/one/sunstone-server.conf:
    class: Yaml
    change:
    - path: []
      key: :port
      value: 9999
      old: 9869
      state: set
      extra: {}
"""
    result = onecfg("patch", "--prefix", str(tree), "-v", stdin=document, env=env)
    assert result.code == 0, result.err
    assert "Applied 2/2 changes" in result.err
    assert "PORT = 2700" in (tree / "etc/one/oned.conf").read_text()
    after = sunstone.read_text().splitlines()
    # Only the changed line differs: comments, quoting and layout elsewhere are kept.
    changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
    assert len(changed) == 1
    assert before[changed[0]] == ":port: 9869" and after[changed[0]] == ":port: 9999"


def test_nothing_applied_is_an_error(tree: Path, env: dict[str, str]) -> None:
    before = snapshot(tree)
    result = onecfg(
        "patch", "--prefix", str(tree), stdin="/etc/one/oned.conf rm NOT_THERE\n", env=env
    )
    assert result.code == 255
    assert "ERROR : No changes applied" in result.err
    assert snapshot(tree) == before
    result = onecfg("patch", "--prefix", str(tree), stdin="# only a comment\n", env=env)
    assert result.code == 255 and "ERROR : No changes to apply" in result.err


def test_format_option_and_usage_errors(tree: Path) -> None:
    result = onecfg("patch", "--prefix", str(tree), "--format", "xml", stdin="x")
    assert result.code == 255
    assert "Unsupported format 'xml'. Available formats - line, yaml" in result.err
    assert onecfg("--bogus").code == 255
    assert onecfg("patch", "--prefix", str(tree)).code == 255  # no data on stdin
    helped = onecfg()
    assert helped.code == 0 and "patch" in helped.out and "validate" in helped.out


@pytest.mark.parametrize("version", STOCK_VERSIONS)
def test_validate_every_stock_tree(version: str) -> None:
    from conftest import stock_tree

    result = onecfg("validate", "--prefix", str(stock_tree(version)), "--json")
    assert result.code == 0, result.err
    assert '"ok": false' not in result.out


def test_validate_reports_broken_files(tree: Path) -> None:
    oned = tree / "etc/one/oned.conf"
    oned.write_text(oned.read_text() + "KEY = a b\n")
    result = onecfg("validate", "--prefix", str(tree))
    assert result.code == 1
    errors = [x for x in result.err.splitlines() if x.startswith("ERROR")]
    assert len(errors) == 1
    assert errors[0].startswith(f"ERROR : Unable to process file '{oned}' - Failed to parse")
    assert errors[0].endswith(f"at line {len(oned.read_text().splitlines())}")


def test_installed_command_runs_from_another_directory(tree: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run_tool("onecfg", "validate", "--prefix", str(tree), cwd=elsewhere)
    assert result.code == 0, result.err


SET_ONLY_PATCH = """\
/etc/one/oned.conf set PORT 2700
/etc/one/oned.conf set DB/BACKEND "\\"mysql\\""
/etc/one/sunstone-server.conf set :port 9999
/var/lib/one/remotes/etc/vmm/kvm/kvmrc set LIBVIRT_URI "qemu+tcp:///system"
"""


def test_sigkill_during_multi_file_patch(tmp_path: Path) -> None:
    rng = random.Random(4242)
    files = [
        "etc/one/oned.conf",
        "etc/one/sunstone-server.conf",
        "var/lib/one/remotes/etc/vmm/kvm/kvmrc",
    ]
    base = copy_stock("6.0.0", tmp_path / "base")
    # Slow the commit steps down so that random kill times land inside the transaction too.
    env = dict(os.environ, ONECFG_BACKUP_DIR=str(tmp_path / "backups"), ONETOOLS_TXN_DELAY="0.1")

    def start(tree: Path) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [*tool_command("onecfg"), "patch", "--prefix", str(tree), "-"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        assert proc.stdin is not None
        proc.stdin.write(SET_ONLY_PATCH.encode())
        proc.stdin.close()
        return proc

    # One uninterrupted run tells how long a whole run takes on this machine.
    clock = time.monotonic()
    subprocess.run(["cp", "-a", str(base), str(tmp_path / "timing")], check=True)
    assert start(tmp_path / "timing").wait() == 0
    duration = time.monotonic() - clock

    seen = set()
    # Machine speed varies between runs: sample kill times until both sides of the commit
    # point were hit (at least 8 attempts, at most 20).
    for attempt in range(20):
        if attempt >= 8 and seen == {"old", "new"}:
            break
        tree = tmp_path / f"t{attempt}"
        subprocess.run(["cp", "-a", str(base), str(tree)], check=True)
        old = {f: (tree / f).read_bytes() for f in files}
        proc = start(tree)
        time.sleep(rng.uniform(0.15, 1.0) * duration)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # Recover as any next run would, then every file must be wholly old or wholly new,
        # all of them on the same side of the commit point.
        with tree_lock(str(tree)):
            pass
        sides = {"old" if (tree / f).read_bytes() == old[f] else "new" for f in files}
        assert len(sides) == 1, f"attempt {attempt}: mixed tree {sides}"
        seen.add(sides.pop())
        # Re-run: the patch completes (set is idempotent).
        rerun = onecfg("patch", "--prefix", str(tree), stdin=SET_ONLY_PATCH, env=env)
        assert rerun.code == 0, rerun.err
        for f in files:
            assert (tree / f).read_bytes() != old[f]
    assert seen == {"old", "new"}, seen  # kills landed before and after the commit point


def test_reapplying_a_patch(tree: Path, tmp_path: Path, env: dict[str, str]) -> None:
    first = onecfg("patch", "--prefix", str(tree), stdin=MYSQL_PATCH, env=env)
    assert first.code == 0, first.err
    backups = sorted((tmp_path / "backups").iterdir())
    assert len(backups) == 1
    before = snapshot(tree)
    mtime = (tree / "etc/one/oned.conf").stat().st_mtime_ns

    # As the original: the four 'ins' find their values present and count as not applied.
    again = onecfg("patch", "--prefix", str(tree), "-v", "--json", stdin=MYSQL_PATCH, env=env)
    assert again.code == 1, again.err
    assert "Applied 3/7 changes" in again.err
    assert '"in_place": 4' in again.out
    # ...but the file does not change, so it is neither backed up nor rewritten.
    assert "Nothing to write" in again.err
    assert snapshot(tree) == before
    assert (tree / "etc/one/oned.conf").stat().st_mtime_ns == mtime
    assert sorted((tmp_path / "backups").iterdir()) == backups

    converged = onecfg(
        "patch", "--prefix", str(tree), "--converge", "--all", stdin=MYSQL_PATCH, env=env
    )
    assert converged.code == 0, converged.err
    only_ins = "".join(line + "\n" for line in MYSQL_PATCH.splitlines() if " ins " in line)
    assert onecfg("patch", "--prefix", str(tree), stdin=only_ins, env=env).code == 255
    assert onecfg("patch", "--prefix", str(tree), "--converge", stdin=only_ins, env=env).code == 0
    assert snapshot(tree) == before
