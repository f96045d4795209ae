"""Size and speed of the stock configuration data shipped in the package; asserts nothing.

Usage: python benchmarks/bench_stock.py [--runs N] [--no-wheel]

Prints the size of ``stock.json.xz``, the size of a freshly built wheel (``pip wheel`` on a copy
of the project, so the repository is not written to), and the median over N fresh processes of
the time to import ``onetools.config.stock``, load the store and read every file of 7.5.80.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "src" / "onetools" / "config" / "data" / "stock.json.xz"
VERSION = "7.5.80"

CHILD = """
import time
t0 = time.perf_counter()
from onetools.config.stock import store
t1 = time.perf_counter()
s = store()
s.versions()
t2 = time.perf_counter()
total = sum(len(s.read({version!r}, p) or "") for p in s.paths({version!r}))
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2, t3 - t0, len(s.paths({version!r})), total)
"""


def wheel_size() -> int | None:
    """Bytes of a wheel built from a copy of the project, ``None`` if pip cannot build one."""
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp, "project")
        ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
        shutil.copytree(REPO / "src", project / "src", ignore=ignore)
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            if (REPO / name).exists():
                shutil.copy2(REPO / name, project / name)
        dist = Path(tmp, "dist")
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist)]
        result = subprocess.run([*command, str(project)], capture_output=True, check=False)
        wheels = list(dist.glob("onetools-*.whl")) if dist.is_dir() else []
        if result.returncode != 0 or not wheels:
            return None
        return wheels[0].stat().st_size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--no-wheel", action="store_true", help="skip building the wheel")
    args = parser.parse_args()

    print(f"data file     {DATA.stat().st_size / 1024:8.1f} KiB  ({DATA.relative_to(REPO)})")
    if not args.no_wheel:
        size = wheel_size()
        text = f"{size / 1024:8.1f} KiB" if size is not None else "   (pip could not build)"
        print(f"wheel         {text}")

    samples: list[list[float]] = []
    files = chars = 0
    for _ in range(args.runs):
        output = subprocess.run(
            [sys.executable, "-c", CHILD.format(version=VERSION)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        samples.append([float(x) for x in output[:4]])
        files, chars = int(output[4]), int(output[5])
    labels = ("import module", "load store", f"read {VERSION}", "total")
    print(f"{VERSION}: {files} files, {chars} characters; median of {args.runs} fresh processes:")
    for index, label in enumerate(labels):
        values = [sample[index] for sample in samples]
        print(f"  {label:<14}{statistics.median(values) * 1000:8.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
