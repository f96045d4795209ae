"""Speed and memory of onecfg commands; prints figures, asserts nothing.

Usage: python benchmarks/bench_onecfg.py [--shared DIR] [--runs N]

Targets: `onecfg --help` <= 100 ms; `onecfg validate` of the 7.5.80 stock tree <= 0.3 s (the
original: ~3.2 s on 6.10.0); `onecfg status` <= 100 ms; `onecfg upgrade` 6.0.0 -> 6.10.0 of a
customized tree <= 1.0 s (the original: ~8.6 s); `onecfg diff` of a customized 7.5.80 tree
<= 0.3 s (the original: ~2.6 s on 6.10.0).  Each figure is the median of N runs of the installed
console script (a fresh process each time, as a user runs it); peak RSS is the child's maxrss.
Inputs are generated on the fly from the stock trees shipped in the package.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

CUSTOMIZATIONS = """\
/etc/one/oned.conf set PORT 2634
/etc/one/oned.conf set VM_MAD/"kvm"/ARGUMENTS "\\"-t 15 -r 0 kvm -c\\""
/etc/one/oned.conf ins VM_RESTRICTED_ATTR "\\"MYATTR\\""
/etc/one/oned.conf rm DEFAULT_UMASK
/etc/one/oneflow-server.conf set :port 2475
/etc/one/cli/onevm.yaml ins :default ":MYCOL"
/etc/one/defaultrc set PRIORITY "15" # {"export":true}
"""


def onecfg() -> list[str]:
    script = Path(sys.executable).with_name("onecfg")
    if script.exists():
        return [str(script)]
    found = shutil.which("onecfg")
    return [found] if found else [sys.executable, "-m", "onetools.cli.onecfg"]


def measure(
    command: list[str], runs: int, prepare: Callable[[], None] | None = None
) -> tuple[float, float, int | None]:
    """(median wall seconds, max wall seconds, peak RSS in KiB) over ``runs`` fresh processes.

    Peak RSS comes from GNU time (``/usr/bin/time``, Debian package ``time``) when present:
    wait4's ru_maxrss of a child this process spawns would count this process's own memory.
    """
    walls: list[float] = []
    peak: int | None = None
    gnu_time = shutil.which("time", path="/usr/bin")
    for _ in range(runs):
        if prepare is not None:
            prepare()
        with tempfile.NamedTemporaryFile("r") as report:
            wrapped = [gnu_time, "-f", "%M", "-o", report.name, *command] if gnu_time else command
            start = time.perf_counter()
            completed = subprocess.run(
                wrapped, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False
            )
            walls.append(time.perf_counter() - start)
            if completed.returncode not in (0, 1):
                sys.exit(f"command failed with exit {completed.returncode}: {' '.join(command)}")
            if gnu_time:
                kib = int(report.read().split()[-1])
                peak = kib if peak is None else max(peak, kib)
    return statistics.median(walls), max(walls), peak


def customized_tree(version: str, target: Path) -> None:
    from onetools.config.lineformat import parse_lines
    from onetools.config.patch import apply_patch, classify_existing
    from onetools.config.stock import store

    if target.exists():
        shutil.rmtree(target)
    store().materialize(version, str(target))
    changes = parse_lines(CUSTOMIZATIONS, classify_existing(str(target)).get, "bench")
    apply_patch(changes, prefix=str(target))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="onecfg-bench-"))
    os.environ["ONECFG_BACKUP_DIR"] = str(work / "backups")
    os.environ["ONECFG_ETC_DIR"] = str(work / "etc")
    os.environ["ONECFG_ONE_VERSION"] = "6.10.0"
    (work / "etc").mkdir()
    settings = work / "etc" / "onecfg.conf"
    base = onecfg()

    stock = work / "stock-7.5.80"
    from onetools.config.stock import store

    store().materialize("7.5.80", str(stock))
    custom_7 = work / "custom-7.5.80"
    customized_tree("7.5.80", custom_7)
    custom_6 = work / "custom-6.0.0"
    customized_tree("6.0.0", custom_6)
    upgrade_tree = work / "upgrade"

    def fresh_upgrade_tree() -> None:
        if upgrade_tree.exists():
            shutil.rmtree(upgrade_tree)
        shutil.copytree(custom_6, upgrade_tree, symlinks=True)
        settings.write_text("---\nversion: 6.0.0\n")

    def settings_at(version: str) -> Callable[[], None]:
        return lambda: settings.write_text(f"---\nversion: {version}\n")

    print(f"# onecfg benchmarks ({args.runs} runs each, median / max wall, peak RSS)")
    rows: list[tuple[str, list[str], float, Callable[[], None] | None]] = [
        ("onecfg --help", [*base, "--help"], 0.100, None),
        (
            "onecfg validate (7.5.80 stock)",
            [*base, "validate", "--prefix", str(stock)],
            0.300,
            None,
        ),
        ("onecfg status", [*base, "status"], 0.100, settings_at("6.0.0")),
        (
            "onecfg upgrade 6.0.0->6.10.0",
            [*base, "upgrade", "--prefix", str(upgrade_tree)],
            1.000,
            fresh_upgrade_tree,
        ),
        (
            "onecfg diff (custom 7.5.80)",
            [*base, "diff", "--prefix", str(custom_7)],
            0.300,
            settings_at("7.5.80"),
        ),
    ]
    for label, command, target, prepare in rows:
        median, worst, rss = measure(command, args.runs, prepare)
        verdict = "ok" if median <= target else "OVER TARGET"
        memory = f"{rss / 1024:6.1f} MiB" if rss is not None else "   n/a   "
        print(
            f"{label:<32} median {median * 1000:7.1f} ms  max {worst * 1000:7.1f} ms  "
            f"peak RSS {memory}  target {target * 1000:.0f} ms  {verdict}"
        )
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
