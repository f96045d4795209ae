"""Speed and memory of onecfg commands; prints figures, asserts nothing.

Usage: python benchmarks/bench_onecfg.py [--shared DIR] [--runs N]

Targets (issue #2): `onecfg validate` over the whole 7.5.80 stock tree <= 0.3 s wall;
`onecfg --help` <= 100 ms wall.  Each figure is the median of N runs of the installed console
script (a fresh process each time, as a user runs it); peak RSS is the child's maxrss.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def onecfg() -> list[str]:
    script = Path(sys.executable).with_name("onecfg")
    if script.exists():
        return [str(script)]
    found = shutil.which("onecfg")
    return [found] if found else [sys.executable, "-m", "onetools.cli.onecfg"]


def measure(command: list[str], runs: int) -> tuple[float, float, int]:
    """(median wall seconds, max wall seconds, peak RSS in KiB) over ``runs`` fresh processes."""
    walls: list[float] = []
    peak = 0
    for _ in range(runs):
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:  # child: exec the command with output discarded
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            os.execv(command[0], command)
        _, status, usage = os.wait4(pid, 0)
        walls.append(time.perf_counter() - start)
        peak = max(peak, usage.ru_maxrss)
        code = os.waitstatus_to_exitcode(status)
        if code not in (0,):
            sys.exit(f"command failed with exit {code}: {' '.join(command)}")
    return statistics.median(walls), max(walls), peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    tree = Path(args.shared) / "opennebula-etc" / "7.5.80"
    base = onecfg()
    if len(base) > 1 or not os.path.isabs(base[0]):
        base = [sys.executable, "-m", "onetools.cli.onecfg"]
    print(f"# onecfg benchmarks ({args.runs} runs each, median / max wall, peak RSS)")
    rows = [
        ("onecfg --help", [*base, "--help"], 0.100),
        ("onecfg validate (7.5.80 tree)", [*base, "validate", "--prefix", str(tree)], 0.300),
    ]
    for label, command, target in rows:
        median, worst, rss = measure(command, args.runs)
        verdict = "ok" if median <= target else "OVER TARGET"
        print(
            f"{label:<32} median {median * 1000:7.1f} ms  max {worst * 1000:7.1f} ms  "
            f"peak RSS {rss / 1024:6.1f} MiB  target {target * 1000:.0f} ms  {verdict}"
        )


if __name__ == "__main__":
    main()
