"""Helpers for tests that drive the real command line in a subprocess."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from conftest import stock_tree


@dataclass
class Result:
    code: int
    out: str
    err: str


def tool_command(tool: str) -> list[str]:
    """The installed console script next to the running interpreter, if there is one."""
    script = Path(sys.executable).with_name(tool)
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", f"onetools.cli.{tool}"]


def run_tool(
    tool: str,
    *args: str,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Result:
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run(
        [*tool_command(tool), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        stdin=None if stdin is not None else subprocess.DEVNULL,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def copy_stock(version: str, target: Path) -> Path:
    """A writable copy of a stock tree."""
    shutil.copytree(stock_tree(version), target)
    for path in [target, *target.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode | stat.S_IWUSR | (stat.S_IXUSR if path.is_dir() else 0))
    return target


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes), hidden state dirs excluded."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".onecfg" not in p.parts
    }
