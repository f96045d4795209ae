"""Regenerate the shipped upgrade steps (src/onetools/config/data/steps.json.xz).

Each step is the descriptor our own ``generate`` computes between two consecutive stock trees of
the stock store (build that first with scripts/build_stock_data.py).  Usage:
python scripts/build_steps.py [--check]
"""

from __future__ import annotations

import argparse
import sys
import time

from onetools.config.steps import DATA_FILE, build_data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check the shipped file")
    parser.add_argument("--output", default=DATA_FILE, help="where to write (default: package)")
    args = parser.parse_args()
    started = time.perf_counter()
    data = build_data()
    if args.check:
        with open(args.output, "rb") as handle:
            same = handle.read() == data
        print("up to date" if same else f"STALE: {args.output}")
        return 0 if same else 1
    with open(args.output, "wb") as handle:
        handle.write(data)
    print(f"wrote {args.output}: {len(data)} bytes in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
